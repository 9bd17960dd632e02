"""SoftmaxOverScales numerics in numpy: equation (2), a softmax over the scale axis (axis 1)."""

import numpy as np


def forward(h, out=None):
    """Softmax of h (N x S x H x W) over S; the max is subtracted so +/-1e30 and -inf stay finite.

    Infinite and NaN logits as in the C++ layer (caffe/util/softmax_over_scales.hpp): the scales
    at a maximum of +inf share the weight (the limit of the softmax); all -inf gives 1/S each
    (equal logits); a NaN makes every weight of its pixel NaN, and only of its pixel."""
    peak = h.max(axis=1, keepdims=True)  # NaN where the pixel has a NaN
    with np.errstate(invalid="ignore"):  # inf - inf: replaced below
        out = np.subtract(h, peak, out=out)
    np.exp(out, out=out)
    infinite = np.isinf(peak)
    if infinite.any():  # exp(inf - inf) is NaN: a logit equal to the maximum gets exp(0) = 1
        np.copyto(out, 1, where=infinite & (h == peak))
    out /= out.sum(axis=1, keepdims=True)
    return out


def backward(y, dy, out=None):
    """dh = y * (dy - sum_s y dy), from the forward output y."""
    inner = np.einsum("nshw,nshw->nhw", y, dy)[:, None]
    out = np.subtract(dy, inner, out=out)
    out *= y
    return out
