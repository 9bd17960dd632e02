#!/usr/bin/env python3
"""Training-speed benchmarks, each against a baseline measured in the same run:

  nets: the attention net's training iteration time / the max-merge net's (VGG-16, scales
        1, 0.75, 0.5, reduced input, CPU), beside the ratio their MAC counts predict;
  data: SegmentationData's images/s under the real `caffe` tool (no prefetch, a Python thread,
        worker processes), alone and feeding a net, against what the net consumes.

Writes benchmarks/nets.{md,json} and benchmarks/data.{md,json}. The numbers depend on the
machine's load: run it on a quiet machine.
"""

import argparse
import os
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", choices=("nets", "data"), default=["nets", "data"],
                   help="the nets' iteration times, the data layer's throughput (default both)")
    p.add_argument("--size", type=int, default=161,
                   help="input side for the nets benchmark (reduced from 321 to fit a CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed iterations per net")
    p.add_argument("--iterations", type=int, default=20, help="caffe time iterations per case")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs of every data case, taking turns (median kept)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker-process counts to measure")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="OpenBLAS threads (1: a single-core comparison, steadier on a shared "
                   "machine)")
    p.add_argument("--caffe", help="caffe tool (default: .venv/bin/caffe, then PATH)")
    p.add_argument("--output-dir", type=Path, default=REPO / "benchmarks",
                   help="where the markdown and JSON results go (default benchmarks/)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.blas_threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.benchmarks import common, data_throughput, net_timing
    from attention_scale.training.runner import find_caffe

    # The load average says how busy the machine was (these numbers move with it).
    environment = common.environment({"load_average_1_5_15_min": list(os.getloadavg())})
    seconds_per_image, note = None, ""
    if "nets" in args.what:
        timings = net_timing.run_net_timing(size=args.size, repeats=args.repeats)
        data, markdown = net_timing.net_report(timings, environment, args.size, 1)
        common.publish_report(data, markdown, args.output_dir, "nets", write=not args.no_write)
        seconds_per_image = net_timing.extrapolated_seconds_per_image(timings[0], 321)
        note = (f"extrapolated from the {args.size} x {args.size} timing above by MAC count, "
                f"one OpenBLAS thread" if args.blas_threads == 1 else "extrapolated by MAC count")
    if "data" in args.what:
        results = data_throughput.run_data_benchmarks(find_caffe(args.caffe),
                                                      iterations=args.iterations,
                                                      worker_counts=tuple(args.workers),
                                                      blas_threads=args.blas_threads,
                                                      rounds=args.rounds)
        data, markdown = data_throughput.data_report(results, environment,
                                                     net_seconds_per_image=seconds_per_image,
                                                     net_note=note)
        common.publish_report(data, markdown, args.output_dir, "data", write=not args.no_write)


if __name__ == "__main__":
    main()
