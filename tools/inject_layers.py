#!/usr/bin/env python3
"""Add the three Attention-to-Scale layers to a Caffe source tree (BVLC or a DeepLab-style fork).

Copies the layer headers, sources, CUDA kernels and C++ tests into the tree and adds the parameter
messages and LayerParameter fields to its src/caffe/proto/caffe.proto (at the symlink's target if
it is one; its BOM and line endings are kept). The list of files written goes to
.attention_scale_injected at the tree's root, each with the SHA-256 of what was written: an injected
file edited afterwards ("modified" in --check) is neither overwritten nor deleted without --force.
Running it again changes nothing; --check only reports; --remove undoes it, byte for byte.
Rebuild Caffe afterwards (cmake or make).
"""
import argparse
import sys
from pathlib import Path

from _repo import REPO  # (puts python/ on sys.path)
from attention_scale.caffe_build import tree_injection as ti
from attention_scale.caffe_build.protofile import ProtoSyntaxError

EPILOG = """exit status:
  0  done (or, with --check, everything is up to date)
  1  --check only: not injected, outdated, locally modified or stale files
  2  refused, nothing written: not a Caffe tree, a clash with the tree's proto or files, a
     manifest entry outside the tree, a proto this tool cannot read, an injected file edited
     since (without --force)
  3  the tree cannot be written (read-only folder, permissions, disk): nothing was changed
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caffe_root", type=Path, help="root of the Caffe source tree")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="report the state without writing; exit 0 when up to date, "
                           "1 when not injected or outdated, 2 on a conflict (said why)")
    mode.add_argument("--remove", action="store_true", help="undo the injection")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only changes")
    parser.add_argument("--force", action="store_true",
                        help="overwrite or delete injected files edited since they were injected "
                             "(refused otherwise: the edit would be lost)")
    args = parser.parse_args(argv)
    tree = args.caffe_root.resolve()
    try:
        if args.check:
            state = ti.tree_state(tree, REPO)
            for rel, what in sorted(state.items()):
                print(f"{what:12s} {rel}")
            if "conflict" in state.values():
                reasons = ti.conflict_reasons(tree, REPO)
                if reasons:
                    print(f"inject_layers: {tree} cannot take the layers:\n  - "
                          + "\n  - ".join(reasons), file=sys.stderr)
                return 2
            return 0 if set(state.values()) == {"current"} else 1
        plan = (ti.plan_removal(tree, REPO, args.force) if args.remove
                else ti.plan_injection(tree, REPO, args.force))
        ti.apply_plan(tree, plan)
    except ti.CannotWrite as err:
        print(f"inject_layers: {err}", file=sys.stderr)
        return 3
    except (ti.InjectionError, ProtoSyntaxError) as err:
        print(f"inject_layers: {err}", file=sys.stderr)
        return 2
    for rel in sorted(plan.writes):
        if rel == ti.PROTO_REL:
            via = (f" (a symlink: patched {plan.proto_path})"
                   if plan.proto_path and plan.proto_path != tree / rel else "")
            print(f"patched   {rel}{via}")
        else:
            print(f"wrote     {rel}")
    for rel in plan.deletes:
        print(f"removed   {rel}")
    if not args.quiet:
        for rel in plan.unchanged:
            print(f"unchanged {rel}")
        if not plan.changes:
            print(f"{tree}: nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
