#!/usr/bin/env python3
"""Turn your own single-scale segmentation net into the paper's multi-scale attention net.

  tools/make_multiscale.py train.prototxt -o train_ms.prototxt --scores fc8_voc12 \\
      --features fc7 --scales 1 0.75 0.5 --merge attention --esupv

The layers between the data blob (--data) and the score blob (--scores) run once per scale:
scale 1 keeps their names, every other scale gets a copy with suffixed names (conv1_1_res075)
fed by a ScaleInterp of the data, and every learnable blob (BatchNorm's and Scale's included)
is shared across the copies by `param { name }`, with your lr_mult / decay_mult. Each scale's
scores are resized to the scale-1 scores and merged (max, average, or attention: the head on
the --features blobs); the layers after the scores (loss, accuracy, the resize to the input)
read the merged scores, and --esupv adds one loss per scale. Weights of the single-scale net
load into the result by layer name. Works on train, test and deploy nets; exit status 1 with a
one-line message on any error, and nothing is written.
"""

import argparse
import sys

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.nets.multiscale import MERGES, make_multiscale_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prototxt", help="your single-scale net (train, test or deploy)")
    parser.add_argument("-o", "--output", required=True, help="where to write the multi-scale net")
    parser.add_argument("--scores", required=True, metavar="BLOB",
                        help="the classifier's score blob (e.g. fc8 or fc8_voc12)")
    parser.add_argument("--features", default="fc7", metavar="BLOB",
                        help="the blob the attention head reads, one per scale (default fc7)")
    parser.add_argument("--data", default="data", metavar="BLOB",
                        help="the input blob that is rescaled (default data)")
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 0.75, 0.5],
                        help="first 1, then smaller ones (default 1 0.75 0.5)")
    parser.add_argument("--merge", default="attention", choices=[m.lower() for m in MERGES],
                        help="how the scales' scores merge (default attention)")
    parser.add_argument("--esupv", action="store_true",
                        help="extra supervision: a copy of each loss on the scores per scale")
    parser.add_argument("--form", default="cpp", choices=("cpp", "python"),
                        help="the added layers as C++ types (default) or Python layers (python "
                             "also turns the net's own ScaleInterp and DeepLab Interp layers "
                             "into Python layers: a net for a Caffe without the C++ layers)")
    parser.add_argument("--attention-channels", type=int, default=512, metavar="N",
                        help="width of att_conv1 (default 512, the paper's)")
    parser.add_argument("--caffe-proto", metavar="PATH",
                        help="the Caffe's caffe.proto (or caffe_pb2.py) to parse with; default: "
                             "the importable pycaffe's")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        notes = make_multiscale_file(
            args.prototxt, args.output, caffe_proto=args.caffe_proto, scales=args.scales,
            merge=args.merge, data=args.data, features=args.features, scores=args.scores,
            esupv=args.esupv, form=args.form, attention_channels=args.attention_channels)
    except (ValueError, ImportError) as exc:  # ConversionError, LayerConfigError: say what/where
        sys.exit(f"make_multiscale: {exc}")
    except OSError as exc:
        sys.exit(f"make_multiscale: {exc.filename or args.prototxt}: {exc.strerror or exc}")
    for note in notes:
        print(f"make_multiscale: note: {note}", file=sys.stderr)
    scales = " ".join(f"{s:g}" for s in args.scales)
    print(f"{args.output}: scales {scales}, {args.merge} merge"
          + (", E-Supv" if args.esupv else ""))


if __name__ == "__main__":
    main()
