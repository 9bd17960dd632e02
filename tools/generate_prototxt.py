#!/usr/bin/env python3
"""Write every network variant of the paper (train, test, deploy, solver) into prototxt/.

With no options it regenerates the checked-in files (C++ layer form, VGG-16); --check only
compares and exits 1 when a file differs. --form python writes the Python-layer form for an
unpatched pycaffe, --backbone small the small backbone; give those an --output-dir of their own.
Run from the repository root: the paths inside the files are relative to it.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path, PurePosixPath

import _package  # noqa: F401  (says so when attention_scale is missing or stale)


def _differs(value, default):
    if isinstance(default, (list, tuple)):
        return list(value) != list(default)
    return value != default


# What Caffe accepts: the solvers it registers (REGISTER_SOLVER_CLASS in src/caffe/solvers/) and
# the policies SGDSolver::GetLearningRate knows; anything else aborts `caffe train` at start.
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
# Caffe's AdaGrad and RMSProp refuse a momentum (CHECK_EQ(0, momentum) in sgd_solvers.hpp).
NO_MOMENTUM = ("AdaGrad", "RMSProp")


def _at_least(minimum, kind=int):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def snapshot_root_for(output_dir, own):
    """Where the solvers' snapshot_prefix points by default (see --snapshot-root's help)."""
    if own:
        return "snapshots"
    out = Path(output_dir)
    inside_cwd = not out.is_absolute() and Path.cwd().resolve() in (
        Path.cwd() / out).resolve().parents
    if inside_cwd:
        # One snapshot folder per variant and output folder: `train.py` resumes from the
        # latest snapshot under the solver's prefix, and a small-backbone net's snapshot
        # resumed into the paper's net ends in Caffe's shape-mismatch abort.
        return str(PurePosixPath("snapshots") / out.name)
    # Absolute or leading out (..): inside the output folder, in the same form as the nets'
    # paths, so no path depends on the working folder alone and nothing lands in it.
    return str(PurePosixPath(out.as_posix()) / "snapshots")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="prototxt", help="folder the variants go to "
                   "(relative to the repository root, or absolute; default prototxt)")
    p.add_argument("--form", choices=("cpp", "python"), default="cpp",
                   help="our layers as C++ types (default) or as type \"Python\" fallbacks")
    p.add_argument("--backbone", choices=("vgg16", "small"), default="vgg16",
                   help="DeepLab-LargeFOV's VGG-16 (default; the paper's) or a small net for "
                   "quick experiments on CPU")
    p.add_argument("--data-root", default="data/voc", help="folder the list's paths are joined to")
    p.add_argument("--train-list", default="data/voc/lists/train_aug.txt",
                   help="the training list: 'image label' per line, relative to --data-root "
                   "(default data/voc/lists/train_aug.txt, tools/prepare_voc.py's)")
    p.add_argument("--snapshot-root",
                   help="snapshots go to <this>/<variant>/train_iter_N.caffemodel (default "
                   "snapshots for prototxt/, snapshots/<output dir's name> for another "
                   "--output-dir inside the working folder: nets of another form or backbone "
                   "keep their own snapshots; <output dir>/snapshots for an absolute one or one "
                   "outside the working folder, so nothing is written into the repository)")
    p.add_argument("--random-scale", nargs=2, type=_positive_float, metavar=("MIN", "MAX"),
                   default=(1.0, 1.0), help="random image scaling in training (default 1 1: "
                   "none, as DeepLab-LargeFOV; e.g. 0.5 1.5)")
    p.add_argument("--num-classes", type=_at_least(1), default=21,
                   help="classes including background (default 21: PASCAL VOC)")
    p.add_argument("--batch-size", type=_at_least(1), default=10,
                   help="train net's batch (default 10)")
    p.add_argument("--crop-size", type=_at_least(1), default=321,
                   help="training crop (default 321)")
    solver = p.add_argument_group("solver (defaults: the paper's schedule, see docs/training.md)")
    solver.add_argument("--solver-type", default="SGD", choices=SOLVER_TYPES,
                        help="Caffe's solver (default SGD; AdaGrad and RMSProp get momentum 0)")
    solver.add_argument("--base-lr", type=_positive_float, default=0.001, help="default 0.001")
    solver.add_argument("--lr-policy", default="step", choices=LR_POLICIES,
                        help="Caffe's learning-rate policy: step (x --gamma every --stepsize; "
                             "the default), poly (DeepLab-v2's, with --power), multistep (with "
                             "--stepvalue), fixed, exp, inv, sigmoid")
    solver.add_argument("--gamma", type=_positive_float, default=0.1,
                        help="the policies' gamma (default 0.1)")
    solver.add_argument("--stepsize", type=_at_least(1), default=2000,
                        help="iterations between learning-rate steps (step; sigmoid's midpoint; "
                             "default 2000)")
    solver.add_argument("--stepvalue", type=_at_least(1), nargs="+", metavar="ITER",
                        help="multistep: the iterations where the rate is multiplied by gamma")
    solver.add_argument("--power", type=_positive_float,
                        help="poly and inv: the exponent (DeepLab-v2's poly uses 0.9)")
    solver.add_argument("--max-iter", type=_at_least(1), default=6000, help="default 6000")
    solver.add_argument("--iter-size", type=_at_least(1), default=3,
                        help="batches per update (default 3: "
                        "mini-batch 30)")
    solver.add_argument("--snapshot", type=_at_least(0), default=2000,
                        help="snapshot interval (default 2000)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 listing the files that differ from the generator")
    args = p.parse_args(argv)
    # Caffe reads power and stepvalue as 0 / none when they are missing: poly and inv would keep
    # base_lr all the way, multistep would never step, and nothing would say so.
    uses = {"poly": "--power", "inv": "--power", "multistep": "--stepvalue"}
    if uses.get(args.lr_policy) == "--power" and args.power is None:
        p.error(f"--lr-policy {args.lr_policy} needs --power (e.g. 0.9)")
    if args.lr_policy == "multistep" and not args.stepvalue:
        p.error("--lr-policy multistep needs --stepvalue ITER [ITER ...]")
    for option, value in (("--power", args.power), ("--stepvalue", args.stepvalue)):
        if value is not None and uses.get(args.lr_policy) != option:
            p.error(f"{option} is for --lr-policy "
                    f"{' or '.join(k for k, v in uses.items() if v == option)}; "
                    f"--lr-policy {args.lr_policy} would ignore it")
    if args.stepvalue and list(args.stepvalue) != sorted(set(args.stepvalue)):
        p.error(f"--stepvalue {' '.join(map(str, args.stepvalue))}: give increasing iterations")
    if args.random_scale[0] > args.random_scale[1]:
        p.error(f"--random-scale {args.random_scale[0]:g} {args.random_scale[1]:g}: MIN is above "
                "MAX; give the smaller factor first")
    # prototxt/ holds the checked-in nets, which the defaults make: other options there would
    # rewrite them (and prototxt/solver.prototxt with them) in silence.
    changed = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
               if name not in ("output_dir", "check") and _differs(value, p.get_default(name))]
    checked_in = (_package.REPO / "prototxt").resolve()
    own = Path(args.output_dir).resolve() == checked_in
    if changed and own:
        p.error(f"{', '.join(changed)} would rewrite the checked-in nets in prototxt/ (what "
                "prototxt/solver.prototxt and the tests use): give an --output-dir of their own")
    if args.snapshot_root is None:
        args.snapshot_root = snapshot_root_for(args.output_dir, own)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.nets import generate
    from attention_scale.nets.solver import PAPER

    solver = PAPER.with_(type=args.solver_type, base_lr=args.base_lr, lr_policy=args.lr_policy,
                         gamma=args.gamma, stepsize=args.stepsize,
                         stepvalue=tuple(args.stepvalue or ()), power=args.power,
                         max_iter=args.max_iter,
                         iter_size=args.iter_size, snapshot=args.snapshot,
                         momentum2=0.999 if args.solver_type == "Adam" else None,
                         momentum=0.0 if args.solver_type in NO_MOMENTUM else PAPER.momentum)
    options = generate.GeneratorOptions(
        output_dir=args.output_dir, form=args.form, backbone=args.backbone,
        data_root=args.data_root, train_list=args.train_list, snapshot_root=args.snapshot_root,
        random_scale=tuple(args.random_scale), num_classes=args.num_classes,
        batch_size=args.batch_size, crop_size=args.crop_size, solver=solver)
    from attention_scale.errors import LayerConfigError
    try:
        files = generate.all_files(options)
    except LayerConfigError as exc:  # a value the layers refuse (e.g. --num-classes 300)
        print(f"generate_prototxt.py: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        # the same options without --check, so the command printed rewrites what was checked
        rerun = shlex.join(["python", "tools/generate_prototxt.py"]
                           + [a for a in argv if a != "--check"])
        if not Path(args.output_dir).is_dir():
            print(f"{args.output_dir}: no such folder; nothing was generated there. To write "
                  f"it, run: {rerun}", file=sys.stderr)
            return 1
        stale = generate.differences(files)
        for path in stale:
            what = ("not written by the generator" if path not in files else
                    "differs from the generator" if Path(path).is_file() else "missing")
            print(f"{what}: {path}")
        for folder in generate.foreign_folders(files):
            print(f"not compared (not a folder the generator writes): {folder}/")
        other = generate.forms_on_disk(stale) - {args.form}
        if stale and other:
            # rerunning without the folder's --form would rewrite its nets in the other form
            # (the C++ layers, which a Caffe without them cannot run)
            print(f"{args.output_dir} was generated with --form {' / '.join(sorted(other))} "
                  f"(the files' headers say so), not --form {args.form}: check it with the "
                  "options it was made with", file=sys.stderr)
        elif stale:
            extra = "" if all(path in files for path in stale) else (
                " and remove the files not written by the generator")
            print(f"run: {rerun}{extra}", file=sys.stderr)
        else:
            print(f"{len(files)} files up to date with the generator")
        return 1 if stale else 0
    changed = generate.write(files)
    print(f"{len(files)} files, {len(changed)} written"
          + "".join(f"\n  {path}" for path in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
