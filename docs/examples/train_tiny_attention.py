#!/usr/bin/env python3
"""Train a tiny attention net on the synthetic set, for the README's sample evaluation output.

NOT the project's training (that is attention_scale.nets / the training tools and the demo): a
self-contained stand-in that writes a small CONTRACT-style attention net (scales 1 and 0.5,
E-Supv, DEMO-FACTS.md's backbone) and trains it with pycaffe from batches made on the fly, so
that tools/test_voc.py and tools/visualize_attention.py have a trained net to show.

  .venv/bin/python docs/examples/train_tiny_attention.py --out /tmp/tiny --iterations 1500
  # then: tools/test_voc.py --net /tmp/tiny/test.prototxt --weights /tmp/tiny/tiny.caffemodel ...
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from attention_scale.data.synthetic import SyntheticDataset, SyntheticSpec
from attention_scale.evaluation.inference import DEEPLAB_MEAN_BGR

NUM_CLASSES = 7


def conv(name, bottom, num_output, kernel=3, pad=1, shared=True, relu=True, filler='type: "msra"'):
    params = (f'param {{ name: "{name}_w" }} param {{ name: "{name}_b" }} ' if shared else "")
    text = (f'layer {{ name: "{{n}}" type: "Convolution" bottom: "{bottom}" top: "{{n}}" {params}'
            f'convolution_param {{ num_output: {num_output} kernel_size: {kernel} pad: {pad} '
            f'weight_filler {{ {filler} }} bias_filler {{ type: "constant" }} }} }}\n')
    return text, relu


def branch(suffix):
    """conv 16, pool, conv 32, pool, three conv 32 (the last one is fc7), 1x1 scores (fc8)."""
    data = f"data{suffix}" if suffix else "data_scaled"
    layers, previous = [], data
    plan = [("conv1_1", 16), ("pool1", None), ("conv2_1", 32), ("pool2", None),
            ("conv3_1", 32), ("conv3_2", 32), ("fc7", 32)]
    for base, width in plan:
        name = base + suffix
        if width is None:
            layers.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{previous}" '
                          f'top: "{name}" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 '
                          f'pad: 1 }} }}\n')
        else:
            text, _ = conv(base, previous, width)
            layers.append(text.replace("{n}", name))
            layers.append(f'layer {{ name: "relu_{name}" type: "ReLU" bottom: "{name}" '
                          f'top: "{name}" }}\n')
        previous = name
    text, _ = conv("fc8", f"fc7{suffix}", NUM_CLASSES, kernel=1, pad=0,
                   filler='type: "gaussian" std: 0.01')
    layers.append(text.replace("{n}", f"fc8{suffix}"))
    return "".join(layers)


def interp(name, bottoms, param=""):
    return (f'layer {{ name: "{name}" type: "ScaleInterp" '
            + "".join(f'bottom: "{b}" ' for b in bottoms)
            + f'top: "{name}" scale_interp_param {{ {param} }} }}\n')


def net(train, batch, size):
    text = 'name: "tiny_attention"\n'
    text += (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ '
             f'dim: {batch} dim: 3 dim: {size} dim: {size} }} }} }}\n')
    if train:
        text += (f'layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ '
                 f'dim: {batch} dim: 1 dim: {size} dim: {size} }} }} }}\n')
    # The mean-subtracted input spans about +-128: brought to about +-2 so that no unit
    # saturates at the start (the attention softmax did, and stayed at one scale).
    text += ('layer { name: "data_scaled" type: "Power" bottom: "data" top: "data_scaled" '
             'power_param { scale: 0.015625 } }\n')
    text += branch("")
    text += interp("data_res05", ["data_scaled"], "scale: 0.5")
    text += branch("_res05")
    text += interp("fc8_res05_interp", ["fc8_res05", "fc8"])
    text += interp("fc7_res05_interp", ["fc7_res05", "fc7"])
    text += ('layer { name: "fc7_concat" type: "Concat" bottom: "fc7" bottom: "fc7_res05_interp" '
             'top: "fc7_concat" }\n')
    for name, bottom, width, kernel, pad in (("att_conv1", "fc7_concat", 32, 3, 1),
                                             ("att_conv2", "att_conv1", 2, 1, 0)):
        t, _ = conv(name, bottom, width, kernel, pad, shared=False,
                    filler='type: "msra"' if name == "att_conv1" else 'type: "gaussian" std: 0.01')
        text += t.replace("{n}", name)
        if name == "att_conv1":
            text += ('layer { name: "att_relu" type: "ReLU" bottom: "att_conv1" '
                     'top: "att_conv1" }\n')
    text += 'layer { name: "attention" type: "SoftmaxOverScales" bottom: "att_conv2" top: "attention" }\n'
    text += ('layer { name: "fc8_fusion" type: "WeightedScaleSum" bottom: "fc8" '
             'bottom: "fc8_res05_interp" bottom: "attention" top: "fc8_fusion" '
             'weighted_scale_sum_param { merge: ATTENTION } }\n')
    if train:  # the label resized to fc8 (reference bottom: no gradient flows to the label)
        text += interp("label_shrink", ["label", "fc8"], "interpolation: NEAREST")
        for loss, scores in (("loss", "fc8_fusion"), ("loss_res1", "fc8"),
                             ("loss_res05", "fc8_res05_interp")):
            text += (f'layer {{ name: "{loss}" type: "SoftmaxWithLoss" bottom: "{scores}" '
                     f'bottom: "label_shrink" top: "{loss}" propagate_down: true propagate_down: false '
                     f'loss_param {{ ignore_label: 255 }} }}\n')
    else:
        text += interp("score", ["fc8_fusion", "data"])
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the synthetic set's seed")
    args = parser.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = SyntheticSpec().image_size
    (out / "train.prototxt").write_text(net(True, args.batch, size))
    (out / "test.prototxt").write_text(net(False, 1, size))
    (out / "solver.prototxt").write_text(
        f'net: "{out / "train.prototxt"}"\ntype: "Adam"\nbase_lr: 0.002\nlr_policy: "poly"\n'
        f'power: 0.9\nmax_iter: {args.iterations}\nmomentum: 0.9\nmomentum2: 0.999\n'
        f'weight_decay: 0.0005\ndisplay: 0\nsnapshot: 0\nsolver_mode: CPU\n')
    solver = caffe.get_solver(str(out / "solver.prototxt"))
    dataset = SyntheticDataset(SyntheticSpec(), seed=args.seed)
    mean = np.float32(DEEPLAB_MEAN_BGR)
    start, order = time.monotonic(), np.random.default_rng(0)
    for it in range(args.iterations):
        for b in range(args.batch):
            sample = dataset.sample("train", int(order.integers(2000)))
            solver.net.blobs["data"].data[b] = (sample.image.astype(np.float32) - mean).transpose(2, 0, 1)
            solver.net.blobs["label"].data[b, 0] = sample.label
        solver.step(1)
        if it % 100 == 0 or it == args.iterations - 1:
            losses = {k: float(solver.net.blobs[k].data) for k in ("loss", "loss_res1", "loss_res05")}
            print(f"iteration {it}: " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
                  + f" ({time.monotonic() - start:.0f} s)", flush=True)
    solver.net.save(str(out / "tiny.caffemodel"))
    print(f"wrote {out / 'test.prototxt'} and {out / 'tiny.caffemodel'}")


if __name__ == "__main__":
    main()
