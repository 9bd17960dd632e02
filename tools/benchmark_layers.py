#!/usr/bin/env python3
"""Time the Python fallback layers against the C++ layers (CPU, forward + backward) at the sizes of
the paper's nets (DeepLab-LargeFOV, 321 crop, 513 test input), both in one run on the same inputs;
then (unless --no-memory) the peak memory each form needs beyond the net's blobs, each measured in
a fresh child process against a baseline child of the same run; print the Python / C++ ratios and
write benchmarks/layers.json and benchmarks/layers.md."""

import argparse
import os
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (median kept)")
    parser.add_argument("--phase", choices=("train", "test", "large", "all"), nargs="+",
                        default=["all"],
                        help="which sizes: training (N=10, 41x41), test (513x513), all (both; "
                             "the default), large (a 32000 -> 32001 resize); several may be given")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="OpenBLAS threads for numpy and Caffe (1: a single-core comparison)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "benchmarks",
                        help="where layers.json and layers.md go")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the memory measurement (three child processes per case "
                        "and round)")
    parser.add_argument("--memory-repeats", type=int, default=3,
                        help="rounds of baseline, C++ and Python children per case (median kept)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Before numpy and libcaffe load OpenBLAS.
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.blas_threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.benchmarks import common, layer_memory, layer_timing

    phases = tuple(p for name in args.phase
                   for p in (("train", "test") if name == "all" else (name,)))
    timings = layer_timing.run_layer_benchmarks(repeats=args.repeats, phases=phases)
    memory = None
    if not args.no_memory:
        memory = layer_memory.run_memory_benchmarks(phases=phases, repeats=args.memory_repeats)
    data, markdown = layer_timing.layer_report(
        timings, common.environment({"repeats": args.repeats}), memory, args.memory_repeats)
    common.publish_report(data, markdown, args.output_dir, "layers", write=not args.no_write)


if __name__ == "__main__":
    main()
