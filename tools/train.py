#!/usr/bin/env python3
"""Train a network with the real `caffe train`, adding what a long run needs.

  python tools/train.py prototxt/solver.prototxt --weights init.caffemodel [--gpu 0]

It resumes from the latest <snapshot_prefix>_iter_N.solverstate when one exists (so running the
same command again continues an interrupted run; without a snapshot_prefix, Caffe's default: the
solver's path without its extension; a damaged snapshot is named with the one before it, and a
--resume of an older one moves the later ones aside, as --restart does), appends Caffe's output to
<snapshot folder>/train.log, shows a progress bar with iterations/s, ETA and loss, and draws the
loss curves into <snapshot folder>/loss.png at every snapshot and at the end. Caffe runs in the
current directory: run it from the repository root (the solvers' paths are relative to it).
--restart first moves the earlier run's snapshots, train.log and loss.png into
<snapshot folder>/earlier-<date>-<time>/ (nothing is deleted), and back if Caffe ends before its
first iteration.
Ctrl-C or SIGTERM: Caffe finishes the iteration, snapshots and stops (a second one kills it);
the tool names the command that continues and exits with 130 (SIGINT) or 143 (SIGTERM), so
`train.py ... && test_voc.py ...` does not go on with a half-trained model. SIGHUP: Caffe
snapshots and goes on.
"""

import argparse
import shlex
import signal
import sys
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("solver", help="solver prototxt, e.g. prototxt/solver.prototxt")
    p.add_argument("--weights", help="initial weights (.caffemodel, e.g. from "
                   "tools/init_from_vgg16.py), copied by layer name (refused when they share "
                   "no learned layer with the train net); ignored when resuming from a snapshot")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", metavar="SOLVERSTATE",
                        help="resume from this .solverstate (default: the latest one, if any); "
                        "later snapshots of the same prefix are moved to an earlier-* folder")
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


def continue_command(args, result, runner):
    """The train.py command line that continues from the snapshot this run wrote when it
    stopped, or None when the same command does that (or when it wrote none: then the same
    command starts where this one did). --restart and --weights are left out (a resumed run
    takes the snapshot's weights); --resume names this run's snapshot only where a
    higher-numbered one of an earlier run would be taken instead."""
    if not result.log.solverstates:
        return None
    written = Path(result.log.solverstates[-1])
    latest = runner.latest_solverstate(runner.read_solver(args.solver).snapshot_prefix)
    explicit = latest is None or written.resolve() != latest.resolve()
    if not (explicit or args.restart or args.resume):
        return None
    words = ["python", _here(), args.solver] + (["--resume", str(written)] if explicit else [])
    for option in ("gpu", "caffe", "log", "plot"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    words += [flag for flag, on in (("--no-progress", args.no_progress),
                                    ("--verbose", args.verbose)) if on]
    return shlex.join(words)


def _here():
    path = Path(__file__).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv=None):
    args = parse_args(argv)
    from attention_scale.training import runner

    resume = False if args.restart else (args.resume or True)
    try:
        result = runner.train(args.solver, weights=args.weights, resume=resume, gpu=args.gpu,
                              caffe=args.caffe, log_path=args.log, plot_path=args.plot,
                              progress=not args.no_progress, verbose=args.verbose,
                              set_aside_earlier=args.restart)
    except runner.TrainingError as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 1
    log = result.log
    iteration = result.last_iteration
    if log.stopped_early and result.snapshot_iteration is not None:
        iteration = result.snapshot_iteration  # where Caffe stopped; the display lags behind
    elif log.done and log.max_iter is not None:
        # Caffe displays every `display` iterations only (none past 0 when display > max_iter)
        iteration = max(log.max_iter, iteration or 0)
    # A second signal that arrives while Caffe exits after its stop snapshot kills a process that
    # has already stopped cleanly.
    killed = result.killed and not log.stopped_early
    state = ("killed" if killed else "stopped early" if result.stopped else
             "done" if log.done else "ended")
    if not result.stopped and not log.done and iteration is None and not result.snapshots:
        # exit 0 with no iteration: not a training (`train.py ... && test_voc.py` must stop)
        print(f"train.py: {result.command[0]} exited with code 0 but logged no iteration: "
              f"nothing was trained (is it Caffe's `caffe` tool?); log {result.log_path}",
              file=sys.stderr)
        return 1
    try:
        print(f"{state} " + (f"after iteration {iteration}" if iteration is not None else
                             "before any iteration was logged")
              + f"; log {result.log_path}"
              + (f", curves {result.plot_path}" if result.plot_path else ""))
        if result.snapshots:
            print(f"latest snapshot: {result.snapshots[-1]} "
                  f"(iteration {result.snapshot_iteration})")
        if result.stopped and not result.log.solverstates:
            print("this run wrote no snapshot: the same command starts where this one did")
        elif result.stopped:
            command = continue_command(args, result, runner)
            print(f"to continue from there: {command}" if command else
                  "run the same command again to continue from there")
    except OSError:
        pass  # no terminal any more (a hangup): the log has it all
    if result.stopped:
        # as a shell reports a command ended by that signal: `train.py && test_voc.py` stops
        return 128 + (result.stop_signal or signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
