#!/usr/bin/env python3
"""Loss and accuracy curves from Caffe training logs, one PNG; several logs share the axes.

  python tools/plot_log.py snapshots/baseline/train.log -o baseline.png
  python tools/plot_log.py snapshots/scales-1-0.75-0.5/*/train.log -o compare.png

One log: every loss of the train net (with E-Supv also the per-scale ones) and the pixel
accuracy. Several logs: the merged scores' `loss` and the accuracy, one colour per log; a log
with no iterations yet (a run that has not started, or failed at once) is skipped with a warning.
"""

import argparse
import sys

import _package  # noqa: F401  (says so when attention_scale is missing or stale)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", help="Caffe training logs (caffe train's output)")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--labels", nargs="+", help="one legend label per log (default: from the paths)")
    p.add_argument("--smooth", type=int, metavar="N",
                   help="moving-average window in displayed iterations (default: 1/20 of them)")
    p.add_argument("--title", help="figure title")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from attention_scale.training.plots import plot_logs

    def skip(path, why):
        print(f"plot_log.py: warning: skipping {path}: {why}", file=sys.stderr)

    try:
        path = plot_logs(args.logs, args.output, args.labels, args.smooth, args.title,
                         on_skip=skip if len(args.logs) > 1 else None)
    except ValueError as exc:
        print(f"plot_log.py: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename is not None and str(exc.filename) in args.logs:  # reading a log
            print(f"plot_log.py: {exc.filename}: {exc.strerror}", file=sys.stderr)
        else:  # writing the PNG (through a temporary file beside it)
            print(f"plot_log.py: -o {args.output}: cannot write it ({exc.strerror}); give a "
                  "path in a folder you can write", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
