"""Small test-form nets with the CONTRACT's blob names, their weights, and tiny data sets on disk.

The nets are made here (the real ones come from attention_scale.nets): an Input `data`, a shared
two-conv backbone run at scale 1 and 0.5, the attention head, WeightedScaleSum and `score`
resized to the input; or a single-scale net with `fc8` -> `score`.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from attention_scale.data.palette import write_label_png


def _conv(name, bottom, top, num_output, kernel=3, pad=1, shared=None):
    params = "".join(f'param {{ name: "{shared}_{k}" }} ' for k in ("w", "b")) if shared else ""
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" {params}'
            f'convolution_param {{ num_output: {num_output} kernel_size: {kernel} pad: {pad} }} }}\n')


def _relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def _backbone(suffix, num_classes, width):
    d = f"data{suffix}" if suffix else "data"
    return (_conv(f"conv1_1{suffix}", d, f"conv1_1{suffix}", width, shared="conv1_1")
            + _relu(f"relu1_1{suffix}", f"conv1_1{suffix}")
            + f'layer {{ name: "pool1{suffix}" type: "Pooling" bottom: "conv1_1{suffix}" '
              f'top: "pool1{suffix}" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 pad: 1 }} }}\n'
            + _conv(f"fc7{suffix}", f"pool1{suffix}", f"fc7{suffix}", width, shared="fc7")
            + _relu(f"relu7{suffix}", f"fc7{suffix}")
            + _conv(f"fc8{suffix}", f"fc7{suffix}", f"fc8{suffix}", num_classes, kernel=1, pad=0,
                    shared="fc8"))


def interp(name, bottoms, param=""):
    tops = "".join(f'bottom: "{b}" ' for b in bottoms)
    return (f'layer {{ name: "{name}" type: "ScaleInterp" {tops}top: "{name}" '
            f'scale_interp_param {{ {param} }} }}\n')


def attention_net(num_classes=4, size=33, width=8, merge="ATTENTION"):
    """Scales (1, 0.5); merge ATTENTION (with the attention head), AVERAGE or MAX."""
    text = (f'name: "eval_test"\nlayer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }} }} }}\n')
    text += _backbone("", num_classes, width)
    text += interp("data_res05", ["data"], "scale: 0.5")
    text += _backbone("_res05", num_classes, width)
    text += interp("fc8_res05_interp", ["fc8_res05", "fc8"])
    bottoms = ["fc8", "fc8_res05_interp"]
    if merge == "ATTENTION":
        text += interp("fc7_res05_interp", ["fc7_res05", "fc7"])
        text += ('layer { name: "fc7_concat" type: "Concat" bottom: "fc7" '
                 'bottom: "fc7_res05_interp" top: "fc7_concat" }\n')
        text += _conv("att_conv1", "fc7_concat", "att_conv1", width) + _relu("att_relu", "att_conv1")
        text += ('layer { name: "att_drop" type: "Dropout" bottom: "att_conv1" top: "att_conv1" '
                 'dropout_param { dropout_ratio: 0.5 } }\n')
        text += _conv("att_conv2", "att_conv1", "att_conv2", 2, kernel=1, pad=0)
        text += ('layer { name: "attention" type: "SoftmaxOverScales" bottom: "att_conv2" '
                 'top: "attention" }\n')
        bottoms.append("attention")
    text += ('layer { name: "fc8_fusion" type: "WeightedScaleSum" '
             + "".join(f'bottom: "{b}" ' for b in bottoms)
             + f'top: "fc8_fusion" weighted_scale_sum_param {{ merge: {merge} }} }}\n')
    text += interp("score", ["fc8_fusion", "data"])
    return text


def single_scale_net(num_classes=4, size=33, width=8):
    text = (f'name: "eval_single"\nlayer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }} }} }}\n')
    return text + _backbone("", num_classes, width) + interp("score", ["fc8", "data"])


def write_net(folder, text, seed=0, scale=0.3):
    """(prototxt path, caffemodel path): the net with random weights drawn from `seed`."""
    from pyhelpers import import_caffe
    caffe = import_caffe()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prototxt, weights = folder / "test.prototxt", folder / "test.caffemodel"
    prototxt.write_text(text)
    net = caffe.Net(str(prototxt), caffe.TEST)
    rng = np.random.default_rng(seed)
    for name in net.params:
        for blob in net.params[name]:
            blob.data[...] = rng.normal(0, scale, blob.data.shape)
    net.save(str(weights))
    return prototxt, weights


def write_dataset(root, sizes, num_classes=4, seed=0, ignore_border=True):
    """Images (PNG, lossless) and labels under root with a DeepLab list; returns the list path.
    Labels: a few rectangles of random classes on background, a 255 band around the first."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i, (h, w) in enumerate(sizes):
        name = f"img{i:03d}"
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = np.zeros((h, w), np.uint8)
        for k in range(3):
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
            y1, x1 = y0 + rng.integers(2, h // 2 + 2), x0 + rng.integers(2, w // 2 + 2)
            label[y0:y1, x0:x1] = rng.integers(1, num_classes)
            image[y0:y1, x0:x1] //= 2 + k  # something for the net to see
        if ignore_border:
            label[0, :] = 255
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        write_label_png(root / "labels" / f"{name}.png", label)
        lines.append(f"/images/{name}.png /labels/{name}.png")
    list_path = root / "list.txt"
    list_path.write_text("\n".join(lines) + "\n")
    return list_path


def tool_env():
    """Environment for running tools/*.py in a child: the installed package, quiet glog."""
    env = dict(os.environ)
    env["GLOG_minloglevel"] = "2"
    return env
