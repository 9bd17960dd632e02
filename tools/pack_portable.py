#!/usr/bin/env python3
"""Pack a built Caffe (CPU or CUDA), this venv's Python and the named packages into one .tar.xz
that runs on another x86-64 Linux without building anything there (a GPU node without compilers,
say): unpack it, `source env.sh`, and run pycaffe, the `caffe` tool or a packed test binary.
The C library, the GPU driver and the CUDA libraries are the target's own (glibc must be at least
this machine's). See attention_scale.caffe_build.portable for the layout."""

import argparse
import sys
import sysconfig
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
from attention_scale.caffe_build.portable import pack
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout

DEFAULT_PACKAGES = ["numpy", "google", "six", "tqdm", "attention_scale"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path, help="the .tar.xz to write")
    parser.add_argument("--caffe-prefix", type=Path, required=True,
                        help="the Caffe install (tools/build_caffe.py --print-env: CAFFE_PREFIX)")
    parser.add_argument("--package", action="append", default=None,
                        help=f"a top-level package of this venv to pack (repeatable; default: "
                             f"{' '.join(DEFAULT_PACKAGES)})")
    parser.add_argument("--binary", action="append", default=[], type=Path,
                        help="an extra executable for bin/ (repeatable), e.g. the C++ tests")
    args = parser.parse_args(argv)
    if not (args.caffe_prefix / "lib").is_dir():
        parser.error(f"--caffe-prefix {args.caffe_prefix}: no lib/ folder (not a Caffe install)")
    for binary in args.binary:
        if not binary.is_file():
            parser.error(f"--binary {binary}: no such file")
    if args.output.suffixes[-2:] != [".tar", ".xz"]:
        parser.error(f"{args.output}: the output must end in .tar.xz")
    libs = pack(args.output, args.caffe_prefix, sysconfig.get_paths()["purelib"],
                args.package or DEFAULT_PACKAGES, args.binary)
    size = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MiB; {len(libs)} shared libraries packed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
