#!/usr/bin/env python3
"""Build BVLC Caffe (CPU, or CUDA with --cuda) with the three Attention-to-Scale layers.

The source is Debian's signed `caffe` source package unless --caffe-root (or CAFFE_ROOT) names
your own tree (BVLC or a DeepLab-style fork), into which the layers are injected. The build is
cached outside the clone (ATTENTION_SCALE_CACHE, default ~/.cache/attention-scale), keyed by
everything that shapes it: a warm run rebuilds nothing, a layer change rebuilds only that layer.
"""
import argparse
import os
import sys
from pathlib import Path

from _repo import REPO  # (puts python/ on sys.path)
from attention_scale.caffe_build import builder, venv_wiring
from attention_scale.caffe_build.debian_source import SourceUnavailable
from attention_scale.caffe_build.tree_injection import InjectionConflict, NotACaffeTree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caffe-root", type=Path, default=os.environ.get("CAFFE_ROOT") or None,
                        help="build this Caffe source tree instead of Debian's (env CAFFE_ROOT)")
    parser.add_argument("--cuda", action="store_true", help="build with CUDA (default: CPU only)")
    parser.add_argument("--cuda-arch", nargs="+", default=list(builder.DEFAULT_CUDA_ARCHS),
                        metavar="SM", help="compute capabilities for --cuda (default: 80 86 90;"
                                           " CUDA 13 supports 75 and newer)")
    parser.add_argument("--openmp", action="store_true",
                        help="compile with OpenMP (Caffe's USE_OPENMP): the layers' CPU loops "
                             "then use OMP_NUM_THREADS threads (same results); a separate build")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--venv", type=Path, help="wire this venv to the build: pycaffe on its "
                                                  "path and bin/caffe")
    parser.add_argument("--print-env", action="store_true",
                        help="print CAFFE_PREFIX=..., CAFFE_SOURCE_DIR=... on stdout")
    args = parser.parse_args(argv)
    cfg = builder.BuildConfig(project_root=REPO, caffe_root=Path(args.caffe_root) if args.caffe_root else None,
                              cuda=args.cuda, cuda_archs=args.cuda_arch, jobs=args.jobs,
                              openmp=args.openmp)
    try:
        result = builder.build(cfg)
        if args.venv:
            venv_wiring.wire_venv(args.venv.resolve(), result.prefix,
                                  builder.python_facts()["version"])
            builder.log(f"{args.venv}/bin/caffe and pycaffe now use {result.prefix}")
    except (builder.BuildError, SourceUnavailable, InjectionConflict, NotACaffeTree,
            venv_wiring.VenvError) as err:
        print(f"build_caffe: {err}", file=sys.stderr)
        return 1
    if args.print_env:
        sys.stdout.write(result.env_lines())
    return 0


if __name__ == "__main__":
    sys.exit(main())
