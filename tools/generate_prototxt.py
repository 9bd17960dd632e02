#!/usr/bin/env python3
"""Write every network variant of the paper (train, test, deploy, solver) into prototxt/.

With no options it regenerates the checked-in files (C++ layer form, VGG-16); --check only
compares and exits 1 when a file differs. --form python writes the Python-layer form for an
unpatched pycaffe, --backbone small the small backbone; give those an --output-dir of their own.
Run from the repository root: the paths inside the files are relative to it.
"""

import argparse
import os
import sys
from pathlib import Path, PurePosixPath

import _package  # noqa: F401  (says so when attention_scale is missing or stale)


def _differs(value, default):
    if isinstance(default, (list, tuple)):
        return list(value) != list(default)
    return value != default


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="prototxt", help="folder the variants go to "
                   "(repository-relative; default prototxt)")
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
                   "--output-dir: nets of another form or backbone keep their own snapshots)")
    p.add_argument("--random-scale", nargs=2, type=float, metavar=("MIN", "MAX"),
                   default=(1.0, 1.0), help="random image scaling in training (default 1 1: "
                   "none, as DeepLab-LargeFOV; e.g. 0.5 1.5)")
    p.add_argument("--num-classes", type=int, default=21,
                   help="classes including background (default 21: PASCAL VOC)")
    p.add_argument("--batch-size", type=int, default=10, help="train net's batch (default 10)")
    p.add_argument("--crop-size", type=int, default=321, help="training crop (default 321)")
    solver = p.add_argument_group("solver (defaults: the paper's schedule, see docs/training.md)")
    solver.add_argument("--solver-type", default="SGD", help="SGD, Adam, ...")
    solver.add_argument("--base-lr", type=float, default=0.001, help="default 0.001")
    solver.add_argument("--lr-policy", default="step",
                        help="step (x0.1 every --stepsize), fixed, ...")
    solver.add_argument("--stepsize", type=int, default=2000,
                        help="iterations between learning-rate steps (default 2000)")
    solver.add_argument("--max-iter", type=int, default=6000, help="default 6000")
    solver.add_argument("--iter-size", type=int, default=3, help="batches per update (default 3: "
                        "mini-batch 30)")
    solver.add_argument("--snapshot", type=int, default=2000,
                        help="snapshot interval (default 2000)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 listing the files that differ from the generator")
    args = p.parse_args(argv)
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
        # One snapshot folder per variant and output folder: `train.py` resumes from the
        # latest snapshot under the solver's prefix, and a small-backbone net's snapshot
        # resumed into the paper's net ends in Caffe's shape-mismatch abort.
        args.snapshot_root = ("snapshots" if own else
                              str(PurePosixPath("snapshots") / Path(args.output_dir).name))
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.nets import generate
    from attention_scale.nets.solver import PAPER

    solver = PAPER.with_(type=args.solver_type, base_lr=args.base_lr, lr_policy=args.lr_policy,
                         stepsize=args.stepsize, max_iter=args.max_iter,
                         iter_size=args.iter_size, snapshot=args.snapshot,
                         momentum2=0.999 if args.solver_type == "Adam" else None)
    options = generate.GeneratorOptions(
        output_dir=args.output_dir, form=args.form, backbone=args.backbone,
        data_root=args.data_root, train_list=args.train_list, snapshot_root=args.snapshot_root,
        random_scale=tuple(args.random_scale), num_classes=args.num_classes,
        batch_size=args.batch_size, crop_size=args.crop_size, solver=solver)
    files = generate.all_files(options)
    if args.check:
        stale = generate.differences(files)
        for path in stale:
            print(f"differs from the generator: {path}")
        if stale:
            print("run: python tools/generate_prototxt.py", file=sys.stderr)
        if not stale:
            print(f"{len(files)} files up to date with the generator")
        return 1 if stale else 0
    changed = generate.write(files)
    print(f"{len(files)} files, {len(changed)} written"
          + "".join(f"\n  {path}" for path in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
