#!/usr/bin/env python3
"""The synthetic multi-scale demo: Attention to Scale trained and compared end to end, no VOC
needed.

  python tools/demo.py                      # 1 seed: 7 minutes on 2 quiet CPU cores
  python tools/demo.py --seeds 3            # every variant over seeds 0, 1, 2: mean and spread
  python tools/demo.py --quick              # the same path in about a minute (the tests')

Generates a synthetic set whose classes need the right scale (attention_scale.data.synthetic),
trains with the real `caffe train` the single-scale baseline and scales {1, 0.5} with MAX,
AVERAGE and ATTENTION merges with E-Supv and ATTENTION without it, evaluates each on the val
images with tools/test_voc.py's code, and writes into --output: results.md / results.json (mIOU,
per-class IoU, mIOU by object size, each scale's own IoU, attention by object size and by
distance from the object's edge, training times, the paper's ordering checked seed by seed) and
figures/ (mIOU chart, loss curves, attention examples, attention against object size).
Run it again after a stop: finished nets are kept and a stopped training resumes.
"""

import argparse
import os
import sys

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout

# One BLAS thread in this process too (evaluation); before numpy and pycaffe load BLAS.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="results/demo",  # run.DEFAULT_OUTPUT
                   help="folder for everything the demo writes (default %(default)s)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="train every variant with seeds 0..K-1 (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny data and few iterations: checks the whole path in about a minute")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="training iterations per net (default: the config's)")
    p.add_argument("--jobs", type=int, metavar="J",
                   help="trainings side by side, one thread each (default 2)")
    p.add_argument("--fresh", action="store_true",
                   help="delete the runs of another configuration found in --output")
    p.add_argument("--caffe", help="caffe binary (default: .venv/bin/caffe, then caffe on PATH)")
    p.add_argument("--print-config", action="store_true",
                   help="print the configuration as JSON and stop")
    p.add_argument("--benchmark-layout", action="store_true",
                   help="instead of the demo: time one training with one thread, with all cores' "
                        "threads, and one training per core side by side (--iterations, default "
                        "200); writes benchmarks/demo-layout.md and .json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.iterations is not None and args.iterations < 1:
        p.error("--iterations must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    import json

    from attention_scale.demo import experiment, run

    config = experiment.QUICK if args.quick else experiment.DEFAULT
    if args.iterations is not None:
        config = config.with_(iterations=args.iterations)
    if args.jobs is not None:
        config = config.with_(jobs=args.jobs)
    if args.print_config:
        print(json.dumps(config.to_json(), indent=2))
        return 0
    if args.benchmark_layout:
        from pathlib import Path

        from attention_scale.benchmarks.common import environment, publish_report
        from attention_scale.demo import benchmark
        result = benchmark.run_layouts(experiment.DEFAULT, args.iterations or 200,
                                       caffe=args.caffe)
        env = environment()
        publish_report({"result": result, "environment": env}, benchmark.markdown(result, env),
                       Path(__file__).resolve().parents[1] / "benchmarks", "demo-layout")
        return 0
    try:
        results, pictures = run.run_demo(config, args.output, range(args.seeds),
                                         caffe=args.caffe, fresh=args.fresh,
                                         progress=not args.quiet, quick=args.quick)
    except run.DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 130 if isinstance(exc, run.DemoStopped) else 1
    from attention_scale.demo.report import summary_lines
    print("\n".join(summary_lines(results)))
    layout = run.DemoLayout(args.output)
    print(f"\ntable: {layout.results_md} (and {layout.results_json.name})")
    print(f"figures: {layout.figures}/ ({', '.join(sorted(pictures))})")
    print(f"whole run: {results['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
