#!/usr/bin/env python3
"""Speed of the C++ layers against what users would otherwise write (issue 11), in one run:
SoftmaxOverScales + WeightedScaleSum against the stock-Caffe composition (Softmax -> Slice ->
Tile -> Eltwise PROD -> Eltwise SUM), ScaleInterp against cv2.resize, both against the copy
bandwidth measured in the same run, the extra memory of each approach, the OpenMP scaling of the
layers and, with --gpu, the same on a GPU. Prints the table of ratios and writes
benchmarks/speed.md and benchmarks/speed.json; --gpu-only measures the GPU half alone and writes
benchmarks/speed-gpu.md and .json (speed.md then quotes and links them)."""

import argparse
import os
import sys
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=12,
                        help="warm timed runs per contender and case, 3 back to back per round "
                             "after 2 warm-up runs (median kept)")
    parser.add_argument("--only", choices=("merge", "resize"), nargs="+",
                        default=["merge", "resize"], help="which comparisons (default: both)")
    parser.add_argument("--merge-case", type=int, nargs=5, action="append",
                        metavar=("N", "C", "H", "W", "S"),
                        help="softmax + merge case instead of the paper's sizes (repeatable)")
    parser.add_argument("--resize-case", type=int, nargs=3, action="append",
                        metavar=("C", "IN", "OUT"),
                        help="ScaleInterp case C planes IN x IN -> OUT x OUT instead of the "
                             "defaults (repeatable)")
    parser.add_argument("--bandwidth-mib", type=float, default=256,
                        help="size of the copy that measures the bandwidth (default 256 MiB)")
    parser.add_argument("--memory-repeats", type=int, default=1,
                        help="rounds of the memory children per merge case (0: count the "
                             "intermediate blobs only)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="OMP_NUM_THREADS of the OpenMP scaling children (default: 1 2)")
    parser.add_argument("--scaling-rounds", type=int, default=2,
                        help="rounds of the scaling children, alternating the thread counts")
    parser.add_argument("--no-scaling", action="store_true", help="skip the OpenMP scaling")
    parser.add_argument("--openmp-prefix", type=Path,
                        help="a Caffe install built with OpenMP (tools/build_caffe.py --openmp "
                             "--print-env gives it) for the scaling children; default: this "
                             "run's pycaffe if it has OpenMP")
    parser.add_argument("--gpu", type=int, nargs="?", const=0, metavar="ID",
                        help="also run on GPU ID (default 0); skipped with a message where "
                             "pycaffe has no CUDA or there is no GPU")
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the GPU half (on GPU --gpu ID, default 0), written as "
                             "speed-gpu.md/.json; exit status 1 and nothing written without a GPU")
    parser.add_argument("--gpu-passes", type=int, default=10,
                        help="passes back to back per timed GPU run, timed by CUDA events "
                             "after one untimed pass (default 10)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write speed.md and .json again from the stored "
                             "speed.json, quoting the speed-gpu.json beside it as it is now "
                             "(after a --gpu-only run on another machine)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "benchmarks",
                        help="where speed.json and speed.md go (and where --render reads "
                             "speed.json and speed-gpu.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.render and (args.gpu is not None or args.gpu_only):
        parser.error("--render measures nothing: it cannot take --gpu or --gpu-only")
    if args.gpu_only and args.gpu is None:
        args.gpu = 0
    for name in ("repeats", "scaling_rounds", "gpu_passes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.memory_repeats < 0:
        parser.error("--memory-repeats must be >= 0")
    if args.bandwidth_mib <= 0:
        parser.error("--bandwidth-mib must be > 0")
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be >= 1")
    if args.gpu is not None and args.gpu < 0:
        parser.error("--gpu ID must be >= 0")
    for case in args.merge_case or []:
        if min(case) < 1:
            parser.error(f"--merge-case {' '.join(map(str, case))}: every value must be >= 1")
    for case in args.resize_case or []:
        if min(case) < 1 or min(case[1:]) < 2:
            parser.error(f"--resize-case {' '.join(map(str, case))}: C >= 1 and sides >= 2")
    if args.openmp_prefix and not (args.openmp_prefix / "python" / "caffe").is_dir():
        parser.error(f"--openmp-prefix {args.openmp_prefix}: no pycaffe in its python/ folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    # One thread everywhere unless a child says otherwise; before numpy and libcaffe load.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.benchmarks import speed

    return speed.run(args)


if __name__ == "__main__":
    sys.exit(main())
