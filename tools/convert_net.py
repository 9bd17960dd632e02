#!/usr/bin/env python3
"""Switch a whole network prototxt between the C++ layers and their Python-layer fallbacks.

  tools/convert_net.py net.prototxt --to python -o net_py.prototxt   # for an unpatched pycaffe
  tools/convert_net.py net_py.prototxt --to cpp --in-place            # back to the C++ layers
DeepLab `Interp` layers in the input become ScaleInterp in either direction. The network is
parsed with your pycaffe's caffe.proto; a prototxt written for a fork (DeepLab's, with fields such
as ImageDataParameter.label_type) needs the fork's: --caffe-proto FORK/src/caffe/proto/caffe.proto.
Templates (${NUM_LABELS}) must be filled in first. Exit status 1 on any error; nothing is written.
"""

import argparse
import sys

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.nets.convert import TARGETS, ConversionError, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prototxt", help="network (or solver-free net) prototxt to convert")
    parser.add_argument("--to", choices=TARGETS, required=True,
                        help="python: type \"Python\" layers; cpp: the C++ layers")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="where to write the converted prototxt")
    out.add_argument("--in-place", action="store_true", help="overwrite the input file")
    parser.add_argument("--caffe-proto", metavar="PATH",
                        help="the Caffe's caffe.proto (or a generated caffe_pb2.py) to parse "
                             "with; default: the caffe_pb2 of the importable pycaffe")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output = args.prototxt if args.in_place else args.output
    try:
        result = convert_file(args.prototxt, output, args.to, caffe_proto=args.caffe_proto)
    except (ConversionError, OSError) as exc:
        sys.exit(f"convert_net: {exc}")
    for note in result.notes:
        print(f"convert_net: note: {note}", file=sys.stderr)
    print(f"{output}: {result.count} layer(s) converted to the {args.to} form")


if __name__ == "__main__":
    main()
