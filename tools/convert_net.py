#!/usr/bin/env python3
"""Switch a whole network prototxt between the C++ layers and their Python-layer fallbacks.

  tools/convert_net.py net.prototxt --to python -o net_py.prototxt   # for an unpatched pycaffe
  tools/convert_net.py net_py.prototxt --to cpp --in-place            # back to the C++ layers
  tools/convert_net.py deploy.prototxt --input-fields -o deploy_v2.prototxt  # for DeepLab-v2
DeepLab `Interp` layers in the input become ScaleInterp in either direction. --input-fields
writes `Input` layers as the net's older input/input_shape fields, which a Caffe from before
2016 (DeepLab-v2) needs and BVLC Caffe still reads. The network is
parsed with your pycaffe's caffe.proto; a prototxt written for a fork (DeepLab's, with fields such
as ImageDataParameter.label_type) needs the fork's: --caffe-proto FORK/src/caffe/proto/caffe.proto.
Templates (${NUM_LABELS}) must be filled in first. Exit status 1 on any error; nothing is written.
-o's folder must exist: it is not created (a mistyped path would make folders silently).
"""

import argparse
import sys
from pathlib import Path

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.files import output_file_problem
from attention_scale.nets.convert import TARGETS, ConversionError, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prototxt", help="network (or solver-free net) prototxt to convert")
    parser.add_argument("--to", choices=TARGETS,
                        help="python: type \"Python\" layers; cpp: the C++ layers (leave out "
                             "with --input-fields to keep the layers' form)")
    parser.add_argument("--input-fields", action="store_true",
                        help="Input layers -> the net's input/input_shape fields (a Caffe "
                             "without the Input layer, such as DeepLab-v2)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="the converted prototxt to write (in an existing "
                     "folder)")
    out.add_argument("--in-place", action="store_true", help="overwrite the input file")
    parser.add_argument("--caffe-proto", metavar="PATH",
                        help="the Caffe's caffe.proto (or a generated caffe_pb2.py) to parse "
                             "with; default: the caffe_pb2 of the importable pycaffe")
    args = parser.parse_args(argv)
    if args.to is None and not args.input_fields:
        parser.error("nothing to do: give --to python|cpp, --input-fields, or both")
    return args


def output_problem(output, prototxt, to):
    """Why -o cannot be written (named as given, not as the temporary file), or None."""
    example = Path(output) / (Path(prototxt).stem + '_' + (to or 'v2') + '.prototxt')
    problem = output_file_problem(output, f"a folder; give the file to write, e.g. {example}")
    return f"-o {output}: {problem}" if problem else None


def main(argv=None):
    args = parse_args(argv)
    output = args.prototxt if args.in_place else args.output
    problem = None if args.in_place else output_problem(output, args.prototxt, args.to)
    if problem:
        sys.exit(f"convert_net: {problem}")
    try:
        result = convert_file(args.prototxt, output, args.to, caffe_proto=args.caffe_proto,
                              input_fields=args.input_fields)
    except (ConversionError, OSError) as exc:
        sys.exit(f"convert_net: {exc}")
    for note in result.notes:
        print(f"convert_net: note: {note}", file=sys.stderr)
    done = " and ".join(([f"the {args.to} form"] if args.to else [])
                        + (["input fields"] if args.input_fields else []))
    print(f"{output}: {result.count} layer(s) converted to {done}")


if __name__ == "__main__":
    main()
