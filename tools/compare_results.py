#!/usr/bin/env python3
"""Several evaluations in one table, as in the paper's: tools/test_voc.py output folders side by
side (mIOU, difference to the first, mIOU by object size, per-class IoU, mean attention per scale)
and a bar chart.

  python tools/compare_results.py results/baseline results/max-esupv results/attention-esupv \\
      --output results/comparison
  # how sure is each difference? a paired bootstrap over the images (reads the predictions)
  python tools/compare_results.py results/baseline results/attention-esupv \\
      --list data/voc/lists/val.txt --root data/voc --bootstrap 1000 --output results/comparison

Writes <output>/comparison.md, comparison.json and comparison.png, and prints the main table. The
first folder is the baseline of the differences. The folders must have been evaluated with the
same class names on the same number of images; with --bootstrap, each folder's stored predictions
against the list's labels must give the confusion matrix of its metrics.json.
"""

import argparse
import json
import sys
from pathlib import Path

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.data.lists import read_list
from attention_scale.errors import DataError
from attention_scale.evaluation import comparison as cmp
from attention_scale.evaluation.cli import check_output_folder, errors_end_in_one_line
from attention_scale.files import atomic_write


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="tools/test_voc.py --output folders; the first is the baseline")
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="one name per folder for the tables (default: the folders' names)")
    p.add_argument("--output", required=True,
                   help="folder for comparison.md, comparison.json and comparison.png")
    boot = p.add_argument_group("paired bootstrap over images")
    boot.add_argument("--bootstrap", type=int, metavar="N",
                      help="resamples (e.g. 1000); needs --list and --root")
    boot.add_argument("--list", help="the list the folders were evaluated on (with labels)")
    boot.add_argument("--root", help="folder the list's paths are relative to")
    boot.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_intermixed_args(argv)  # folders may follow options too
    if args.names is not None and len(args.names) != len(args.folders):
        p.error(f"--names gives {len(args.names)} names for {len(args.folders)} folders")
    if args.bootstrap is not None:
        if args.bootstrap < 100:
            p.error("--bootstrap needs at least 100 resamples for a 95% interval")
        if args.list is None or args.root is None:
            p.error("--bootstrap needs --list and --root (it reads the labels)")
    elif args.list is not None or args.root is not None:
        p.error("--list and --root are for --bootstrap")
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    names = args.names or [None] * len(args.folders)
    # Only the package's own errors are printed as they are: no net or weights are read here,
    # so a FileNotFoundError is the system's and is named by its file like any OSError.
    with errors_end_in_one_line("compare_results", output, resumable=False,
                                messages=(DataError, ValueError)):
        check_output_folder(output, "--output")
        results = [cmp.load(folder, name) for folder, name in zip(args.folders, names)]
        warnings = cmp.check_comparable(results)
        bootstrap = None
        if args.bootstrap is not None:
            entries = cmp.evaluated_entries(results, read_list(args.list, args.root))
            confusions = [cmp.per_image_confusions(r, entries, progress=not args.quiet)
                          for r in results]
            counts = cmp.resample_counts(len(entries), args.bootstrap, args.seed)
            bootstrap = cmp.paired_bootstrap(confusions, counts)
            # Every folder's predictions scored on this list's labels gave its metrics.json:
            # whatever its list file was called, it held these images.
            warnings = []
        table = cmp.compare(results, bootstrap)
        report = cmp.markdown(table, warnings)
        atomic_write(output / cmp.COMPARISON_JSON, json.dumps(table, indent=1) + "\n")
        atomic_write(output / cmp.COMPARISON_MD, report)
        from attention_scale.evaluation.figures import save_figure
        save_figure(cmp.chart(table), output / cmp.COMPARISON_PNG)
    for warning in warnings:
        print(f"compare_results: warning: {warning}", file=sys.stderr)
    print(report.split("\n## ")[0].rstrip())
    print(f"\nwritten: {output / cmp.COMPARISON_MD}, {output / cmp.COMPARISON_JSON}, "
          f"{output / cmp.COMPARISON_PNG}")


if __name__ == "__main__":
    main()
