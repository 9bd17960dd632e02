#!/usr/bin/env python3
"""Train a network with the real `caffe train`, adding what a long run needs.

  python tools/train.py prototxt/solver.prototxt --weights init.caffemodel [--gpu 0]

It resumes from the latest <snapshot_prefix>_iter_N.solverstate when one exists (so running the
same command again continues an interrupted run), appends Caffe's output to
<snapshot folder>/train.log, shows a progress bar with iterations/s, ETA and loss, and draws the
loss curves into <snapshot folder>/loss.png at every snapshot and at the end. Run it from the
repository root (the solvers' paths are relative to it). Ctrl-C stops Caffe cleanly with a
snapshot; run the command again to continue.
"""

import argparse
import sys

import _package  # noqa: F401  (says so when attention_scale is missing or stale)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("solver", help="solver prototxt, e.g. prototxt/solver.prototxt")
    p.add_argument("--weights", help="initial weights (.caffemodel, e.g. from "
                   "tools/init_from_vgg16.py); ignored when resuming from a snapshot")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", metavar="SOLVERSTATE",
                        help="resume from this .solverstate (default: the latest one, if any)")
    resume.add_argument("--restart", action="store_true",
                        help="ignore existing snapshots and start from --weights")
    p.add_argument("--gpu", help="GPU id for caffe's -gpu (e.g. 0; several ids are refused when "
                   "the train net has Python layers, as the data layer is: Caffe's multi-GPU "
                   "training does not run them); default: the "
                   "solver's solver_mode")
    p.add_argument("--caffe", help="caffe binary (default: .venv/bin/caffe, then caffe on PATH)")
    p.add_argument("--log", help="log file (default: <snapshot folder>/train.log, appended)")
    p.add_argument("--plot", help="loss-curve PNG (default: <snapshot folder>/loss.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="echo every line of Caffe's output")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from attention_scale.training import runner

    resume = False if args.restart else (args.resume or True)
    try:
        result = runner.train(args.solver, weights=args.weights, resume=resume, gpu=args.gpu,
                              caffe=args.caffe, log_path=args.log, plot_path=args.plot,
                              progress=not args.no_progress, verbose=args.verbose)
    except runner.TrainingError as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 1
    log = result.log
    state = "stopped early" if log.stopped_early else "done" if log.done else "ended"
    print(f"{state} after iteration {result.last_iteration}; log {result.log_path}"
          + (f", curves {result.plot_path}" if result.plot_path else ""))
    if result.snapshots:
        print(f"latest snapshot: {result.snapshots[-1]} (iteration {result.snapshot_iteration})")
    if log.stopped_early:
        print("run the same command again to continue from there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
