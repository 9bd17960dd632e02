#!/usr/bin/env python3
"""Time confusion-matrix accumulation (the evaluation hot path): the cython extension against the
numpy path, in one run on the same labels; print the ratio and write benchmarks/metrics.json/.md."""

import argparse
from pathlib import Path

import _package  # noqa: F401  (says so when attention_scale is missing or stale)

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50, help="images per pass (VOC: 1449 in val)")
    parser.add_argument("--height", type=int, default=375,
                        help="image height (default 375, a typical VOC image)")
    parser.add_argument("--width", type=int, default=500, help="image width (default 500)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (median kept)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "benchmarks",
                        help="where metrics.json and metrics.md go")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from attention_scale.benchmarks import common, metrics_timing

    result = metrics_timing.run_metrics_benchmark(num_images=args.images, height=args.height,
                                                  width=args.width, repeats=args.repeats)
    data, markdown = metrics_timing.metrics_report(result, common.environment())
    common.publish_report(data, markdown, args.output_dir, "metrics", write=not args.no_write)


if __name__ == "__main__":
    main()
