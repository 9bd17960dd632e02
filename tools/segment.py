#!/usr/bin/env python3
"""Segment images that have no ground truth with a trained net: your own photos, or the PASCAL
VOC 2012 test set for the evaluation server.

  # your photos: per image the prediction and, for attention nets, each scale's attention map
  tools/segment.py photos/ more/cat.jpg --output results/photos \\
      --net prototxt/scales-1-0.75-0.5/attention-esupv/test.prototxt \\
      --weights snapshots/scales-1-0.75-0.5/attention-esupv/train_iter_6000.caffemodel
  tools/visualize_attention.py --results results/photos photos/ more/cat.jpg
  # the VOC 2012 test set in the server's layout (comp6: trained with SBD's extra labels too)
  tools/segment.py --list data/voc/lists/test.txt --root data/voc --output results/voc-test \\
      --net ... --weights ... --voc-server
  cd results/voc-test && tar czf results.tgz results/VOC2012/Segmentation/comp6_test_cls
  # --crf refines each prediction with DeepLab's dense CRF, as tools/test_voc.py --crf

Writes <output>/predictions/<name>.png (palette PNG of class ids, VOC's colours), for attention
nets <output>/attention/<name>.npz (what tools/test_voc.py writes; tools/visualize_attention.py
reads both), <output>/sources.jsonl (which image file each name came from), with --branches
each scale's own prediction under <output>/branches/ and, with --voc-server,
<output>/results/VOC2012/Segmentation/<comp>_test_cls/<name>.png. An image's name is its file
name without the extension; two images with one name are refused. A stopped run started again
reuses the images done; a folder made with another net, other weights or other test-time
settings is refused.
"""

import argparse
import sys
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
from attention_scale.evaluation.cli import (add_crf_arguments, add_input_arguments,
                                            add_net_arguments, check_list_arguments,
                                            check_output_folder, errors_end_in_one_line,
                                            make_crf, make_predictor, read_inputs)
from attention_scale.evaluation.segment_images import SKIPPED, VOC_COMPETITIONS, segment_into
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser)
    parser.add_argument("--list", help="DeepLab list file of images (label paths, where lines "
                                       "have them, are ignored)")
    parser.add_argument("--root", help="folder the list's paths are relative to")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    parser.add_argument("--output", required=True,
                        help="folder for predictions/, attention/ and the VOC server's results/")
    voc = parser.add_argument_group("PASCAL VOC evaluation server")
    voc.add_argument("--voc-server", action="store_true",
                     help="also write results/VOC2012/Segmentation/<comp>_test_cls/<name>.png "
                          "under --output, the layout the server takes (tar the results folder)")
    voc.add_argument("--voc-comp", choices=VOC_COMPETITIONS, default=None,
                     help="the competition: comp5 for a net trained on VOC 2012 data only, "
                          "comp6 for one trained with other data too, e.g. SBD's labels as the "
                          "paper's nets (default comp6)")
    add_net_arguments(parser, required=True, branches="predict with")
    add_crf_arguments(parser)
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="leave out an image that cannot be read (damaged, cut short, not "
                             "an image) or is too large for the net, instead of stopping: "
                             "named on the terminal and in <output>/skipped.txt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # Images may follow the options too (`... --quiet photos/`).
    args = parser.parse_intermixed_args(argv)
    check_list_arguments(parser, args)
    if args.voc_comp is not None and not args.voc_server:
        parser.error("--voc-comp names the competition of --voc-server's layout: give both")
    args.voc_comp = (args.voc_comp or "comp6") if args.voc_server else None
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    with errors_end_in_one_line("segment", output):
        check_output_folder(output, "--output")
        inputs = read_inputs(args)
        refine = make_crf(args)  # before the net: a missing pydensecrf is said at once
        predictor = make_predictor(args)
        counts, voc_folder = segment_into(output, inputs, predictor, args.voc_comp,
                                          progress=not args.quiet, crf=refine,
                                          skip_unreadable=args.skip_unreadable)
    print(f"{len(inputs)} images: {counts.computed} predicted, {counts.reused} reused"
          + (f", {len(counts.skipped)} skipped" if counts.skipped else "")
          + f" ({counts.seconds:.1f} s)")
    for entry, reason in counts.skipped[:5]:
        print(f"segment: skipped: {reason}", file=sys.stderr)
    if counts.skipped:
        print(f"segment: {len(counts.skipped)} image(s) skipped, listed with the reasons in "
              f"{output / SKIPPED}" + ("; the VOC server needs every test image: this "
                                       "layout is incomplete" if voc_folder is not None else ""),
              file=sys.stderr)
    if counts.unrecorded:
        print(f"segment: warning: {counts.unrecorded} predictions reused without a source record "
              f"({output / 'sources.jsonl'} does not name their image files: made by an earlier "
              f"test_voc.py?), so whether they came from these images cannot be checked; delete "
              f"them from {output / 'predictions'} to predict them again", file=sys.stderr)
    print(f"predictions in {output / 'predictions'}"
          + (f", attention maps in {output / 'attention'}" if predictor.has_attention else ""))
    if voc_folder is not None:
        # Only this competition's folder is packed: another comp's folder from an earlier run
        # beside it would be uploaded too.
        print(f"VOC server layout in {voc_folder}; to upload: cd {output} && "
              f"tar czf results.tgz {voc_folder.relative_to(output)}")
        names = {entry.name for entry in inputs}
        others = sorted(p.name for p in voc_folder.glob("*.png") if p.stem not in names)
        if others:
            print(f"segment: warning: {voc_folder} also holds {len(others)} file(s) of images "
                  f"not in this run ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
                  f"; the server takes the test set's images only: delete them before packing",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
