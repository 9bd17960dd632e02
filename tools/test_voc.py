#!/usr/bin/env python3
"""Evaluate a segmentation net (or a folder of predictions) on a list: mIOU and friends.

  # a test-form net with its weights: predicts, writes <output>/predictions/*.png, resumes
  tools/test_voc.py --net prototxt/baseline/test.prototxt \\
      --weights snapshots/baseline/x.caffemodel \\
      --list data/voc/lists/val.txt --root data/voc --output results/baseline
  # a folder of prediction PNGs, no net
  tools/test_voc.py --predictions results/baseline/predictions --list ... --root ... --output DIR

Prints per-class IoU, mIOU, pixel and mean class accuracy (one confusion matrix over the list),
IoU by object size and, for attention nets, the mean attention per scale; writes the same as
<output>/metrics.json and <output>/metrics.md. A stopped run started again reuses the predictions
on disk and gives the same metrics. Every list line needs a label; images without one (the VOC
2012 test set, your own photos) are tools/segment.py's.
"""

import argparse
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
from attention_scale.evaluation.cli import (add_crf_arguments, add_data_arguments,
                                            add_net_arguments, check_output_folder,
                                            errors_end_in_one_line, make_crf, make_evaluation,
                                            make_predictor, read_entries)
from attention_scale.evaluation.report import full_report
from attention_scale.evaluation.runner import METRICS_JSON, METRICS_MD, evaluate_into
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--output", required=True,
                        help="folder for predictions/, attention/, metrics.json and metrics.md")
    add_net_arguments(parser)
    parser.add_argument("--predictions", metavar="DIR",
                        help="evaluate these prediction PNGs (<name>.png) instead of running a net")
    add_crf_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.net is None) == (args.predictions is None):
        parser.error("give either --net (with --weights) or --predictions")
    if args.predictions and (args.crf or args.flip or args.branches or args.scales != [1.0]):
        parser.error("--crf, --flip, --branches and --scales apply to a net, not to --predictions")
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    with errors_end_in_one_line("test_voc", output):
        check_output_folder(output, "--output")
        evaluation = make_evaluation(args)
        entries = read_entries(args)
        predictor = make_predictor(args) if args.net is not None else None
        refine = make_crf(args)
        summary, counts, folder = evaluate_into(output, entries, evaluation, predictor, refine,
                                                args.predictions,
                                                # the limit: compare_results.py reads the same
                                                # first N entries of the list
                                                {"list": args.list, "root": args.root,
                                                 "limit": args.limit},
                                                progress=not args.quiet)
    print(full_report(summary))
    print(f"{len(entries)} images: {counts.computed} predicted, {counts.reused} reused from "
          f"{folder.predictions} ({counts.seconds:.1f} s)")
    print(f"mean IoU {100 * (summary['metrics']['mean_iou'] or 0):.2f}%; metrics in "
          f"{output / METRICS_JSON} and {output / METRICS_MD}")


if __name__ == "__main__":
    main()
