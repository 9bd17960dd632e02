#!/usr/bin/env python3
"""Build BVLC Caffe (CPU, or CUDA with --cuda) with the three Attention-to-Scale layers.

The source is BVLC Caffe's commit 99bd997, verified by its content hash whichever way it comes:
Debian's signed `caffe` source package where the apt sources name a Debian mirror, else GitHub's
archive of the commit (or ATTENTION_SCALE_CAFFE_URL / --source-url), or --source-tarball FILE on
an offline machine. --caffe-root (or CAFFE_ROOT) builds your own tree (BVLC or a DeepLab-style
fork) instead: it is copied into the cache and only the copy is fixed and injected, so your tree
is never written. The optional libraries a tree cannot do without (OpenCV, LMDB, LevelDB, matio)
are detected and switched on. The build is cached outside the clone (ATTENTION_SCALE_CACHE,
default ~/.cache/attention-scale), keyed by everything that shapes it: a warm run rebuilds
nothing, an edit (to the layers or to your tree) rebuilds only what depends on it.
"""
import argparse
import os
import shlex
import sys
from pathlib import Path

from _repo import REPO  # (puts python/ on sys.path)
from attention_scale.caffe_build import builder, caffe_source, compat, toolchain, venv_wiring
from attention_scale.caffe_build.debian_source import SourceUnavailable
from attention_scale.caffe_build.protofile import ProtoSyntaxError
from attention_scale.caffe_build.tree_injection import InjectionError


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caffe-root", type=Path, default=os.environ.get("CAFFE_ROOT") or None,
                        help="build this Caffe source tree instead of BVLC's (env CAFFE_ROOT)")
    parser.add_argument("--source-tarball", type=Path, metavar="FILE",
                        help="BVLC Caffe 99bd997 as a tarball (Debian's orig or GitHub's "
                             "archive), for machines without network")
    parser.add_argument("--source-url", metavar="URL",
                        help="download BVLC's source from here when Debian's archive is not "
                             "configured (default: GitHub's archive of the commit; env "
                             f"{caffe_source.URL_ENV})")
    parser.add_argument("--source-route", choices=caffe_source.ROUTES, default="auto",
                        help="auto: cached, then Debian's archive, then the download; or only "
                             "one of them")
    parser.add_argument("--cmake-arg", action="append", default=[], metavar="-DNAME=VALUE",
                        help="pass an option to Caffe's CMake (repeatable; after the build's "
                             f"own, so it wins; env {builder.CMAKE_ARGS_ENV} adds more)")
    parser.add_argument("--cuda", action="store_true", help="build with CUDA (default: CPU only)")
    parser.add_argument("--cuda-arch", nargs="+", default=list(builder.DEFAULT_CUDA_ARCHS),
                        metavar="SM", help="compute capabilities for --cuda (default: 80 86 90;"
                                           " CUDA 13 supports 75 and newer)")
    parser.add_argument("--openmp", action="store_true",
                        help="compile with OpenMP (Caffe's USE_OPENMP): the layers' CPU loops "
                             "then use OMP_NUM_THREADS threads (same results); a separate build")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2,
                        help="parallel compile jobs (default: the CPU count)")
    parser.add_argument("--venv", type=Path, help="wire this venv to the build: pycaffe on its "
                                                  "path and bin/caffe")
    parser.add_argument("--print-env", action="store_true",
                        help="print CAFFE_PREFIX=..., CAFFE_SOURCE_DIR=... on stdout, after "
                             "building first if this configuration is not built yet (a cold "
                             "build: ~30 minutes)")
    parser.add_argument("--fetch-source", type=Path, metavar="DIR",
                        help="only put BVLC's verified source into DIR (which must not exist)")
    parser.add_argument("--compat-patch", type=Path, metavar="DIR",
                        help="only print the toolchain fixes for the Caffe tree DIR as a patch "
                             "(for building it by hand: `patch -p1`; `patch -R -p1` undoes it)")
    parser.add_argument("--print-system-packages", action="store_true",
                        help="only print the Debian packages of the optional libraries the "
                             "tree needs (tools/setup.sh installs them)")
    parser.add_argument("--print-protobuf-requirement", action="store_true",
                        help="only print the pip requirement for the protobuf runtime that "
                             "loads what this machine's protoc generates")
    # tools/setup.sh passes its arguments to every call; unknown ones are an error here.
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.print_protobuf_requirement:
        print(toolchain.protobuf_requirement(toolchain.tool_version(["protoc", "--version"])))
        return 0
    extra = list(args.cmake_arg) + shlex.split(os.environ.get(builder.CMAKE_ARGS_ENV, ""))
    cfg = builder.BuildConfig(project_root=REPO,
                              caffe_root=Path(args.caffe_root) if args.caffe_root else None,
                              cuda=args.cuda, cuda_archs=args.cuda_arch, jobs=args.jobs,
                              source_tarball=args.source_tarball, source_url=args.source_url,
                              source_route=args.source_route,
                              extra_cmake_args=extra, openmp=args.openmp)
    try:
        if args.compat_patch:
            builder.ti.check_tree(args.compat_patch.resolve())
            sys.stdout.write(compat.fixes_as_patch(args.compat_patch.resolve(), args.cuda))
            return 0
        if args.print_system_packages:
            if cfg.caffe_root is not None:
                builder.ti.check_tree(cfg.caffe_root.resolve())
            print(" ".join(builder.system_packages(
                cfg.caffe_root.resolve() if cfg.caffe_root else None)))
            return 0
        if args.fetch_source:
            if args.fetch_source.exists():
                raise SourceUnavailable(f"--fetch-source {args.fetch_source} already exists")
            where = caffe_source.obtain_bvlc_tree(
                args.fetch_source, cfg.cache / "downloads", tarball=args.source_tarball,
                url=args.source_url, route=args.source_route, log=builder.log)
            builder.log(f"BVLC Caffe {caffe_source.COMMIT[:12]} in {args.fetch_source}, "
                        f"from {where}")
            return 0
        result = builder.build(cfg)
        if args.venv:
            venv_wiring.wire_venv(args.venv.resolve(), result.prefix,
                                  builder.python_facts()["version"])
            builder.log(f"{args.venv}/bin/caffe and pycaffe now use {result.prefix}")
    except (builder.BuildError, SourceUnavailable, caffe_source.SourceMismatch,
            InjectionError, ProtoSyntaxError, venv_wiring.VenvError) as err:
        print(f"build_caffe: {err}", file=sys.stderr)
        return 1
    if args.print_env:
        sys.stdout.write(result.env_lines())
    return 0


if __name__ == "__main__":
    sys.exit(main())
