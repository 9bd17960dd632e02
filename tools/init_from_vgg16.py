#!/usr/bin/env python3
"""Turn an ImageNet VGG-16 .caffemodel into DeepLab-LargeFOV initial weights.

  python tools/init_from_vgg16.py VGG_ILSVRC_16_layers.caffemodel -o init.caffemodel
  caffe train -solver prototxt/solver.prototxt -weights init.caffemodel

conv1_1 ... conv5_3 are copied; fc6 (4096 x 512 x 7 x 7) is decimated to 1024 filters of 3 x 3
(filters 0, 4, 8, ...; taps 0, 3, 6), fc7 to 1024 x 1024 (every 4th), as DeepLab did; fc8 and the
attention head are left out (the train nets initialise them). The model is read by pycaffe
through a VGG-16 net made here (give --source-prototxt for a VGG-16 whose layers differ).
"""

import argparse
import os
import sys

import _package  # says so when attention_scale is missing or stale
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vgg16", help="VGG-16 .caffemodel (e.g. VGG_ILSVRC_16_layers.caffemodel)")
    p.add_argument("-o", "--output", required=True, help=".caffemodel to write")
    p.add_argument("--source-prototxt", help="the VGG-16 deploy prototxt to read it with "
                   "(default: one made here with the released model's layer names)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from attention_scale.errors import LayerConfigError
    from attention_scale.nets.vgg16_init import init_from_vgg16

    try:
        shapes = init_from_vgg16(args.vgg16, args.output, args.source_prototxt)
    except LayerConfigError as exc:
        print(f"init_from_vgg16.py: {exc}", file=sys.stderr)
        return 1
    for name, blob_shapes in shapes.items():
        print(f"  {name:8s} " + "  ".join("x".join(map(str, s)) for s in blob_shapes))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
