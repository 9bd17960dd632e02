"""Multiply-accumulates of a network: the cost its convolutions and inner products predict.

Forward: a convolution does N * C_out * H_out * W_out * (C_in / group) * k_h * k_w; an inner
product N * out * in. Everything else (pooling, ReLU, our resize and merge layers, softmax) is
counted as nothing: that is the claim the timing benchmark tests.
Training: backward computes the weight gradient (as many MACs as forward) and, where the bottom
needs a gradient (some layer before it has weights), the bottom gradient (as many again); a
first layer reading the data does only the former.
"""

from dataclasses import dataclass
from typing import Dict


@dataclass
class MacCount:
    forward: int
    backward: int
    per_layer: Dict[str, int]  # forward MACs of each counted layer

    @property
    def training(self) -> int:
        return self.forward + self.backward


def count_macs(net) -> MacCount:
    """MACs of a pycaffe Net at its current blob shapes."""
    needs_grad = set()
    forward = backward = 0
    per_layer = {}
    for name, layer, bottoms, tops in zip(net._layer_names, net.layers, net.bottom_names.values(),
                                          net.top_names.values()):
        has_weights = len(layer.blobs) > 0
        macs = 0
        if layer.type in ("Convolution", "InnerProduct"):
            weights = tuple(layer.blobs[0].shape)
            top = tuple(net.blobs[tops[0]].shape)
            if layer.type == "Convolution":
                macs = top[0] * top[1] * top[2] * top[3] * _prod(weights[1:])
            else:
                macs = top[0] * _prod(weights)
            per_layer[name] = macs
            forward += macs
            backward += macs  # weight gradient
            if any(b in needs_grad for b in bottoms):
                backward += macs  # bottom gradient
        if has_weights or any(b in needs_grad for b in bottoms):
            needs_grad.update(tops)
    return MacCount(forward, backward, per_layer)


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out
