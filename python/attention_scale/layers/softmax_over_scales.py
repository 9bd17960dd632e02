"""SoftmaxOverScales numerics in numpy: equation (2), a softmax over the scale axis (axis 1)."""

import numpy as np


def forward(h, out=None):
    """Softmax of h (N x S x H x W) over S; the max is subtracted so +/-1e30 and -inf stay finite."""
    peak = h.max(axis=1, keepdims=True)
    out = np.subtract(h, peak, out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def backward(y, dy, out=None):
    """dh = y * (dy - sum_s y dy), from the forward output y."""
    inner = np.einsum("nshw,nshw->nhw", y, dy)[:, None]
    out = np.subtract(dy, inner, out=out)
    out *= y
    return out
