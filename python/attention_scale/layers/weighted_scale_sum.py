"""WeightedScaleSum numerics in numpy: equation (1) and its average / max special cases.

`scores` is a sequence of S arrays of one shape N x C x H x W; `weights` is N x S x H x W.
"""

import numpy as np

from ..attention_scale_pb2 import WeightedScaleSumParameter
from .numerics import all_finite

ATTENTION = WeightedScaleSumParameter.ATTENTION
AVERAGE = WeightedScaleSumParameter.AVERAGE
MAX = WeightedScaleSumParameter.MAX


def attention_forward(scores, weights, out=None):
    """g = sum_s w^s f^s, the weights broadcast over C."""
    out = np.multiply(scores[0], weights[:, 0:1], out=out)
    for s in range(1, len(scores)):
        out += scores[s] * weights[:, s:s + 1]
    return out


def attention_backward_scores(weights, dg, scale, out=None):
    """df^scale = w^scale dg."""
    return np.multiply(dg, weights[:, scale:scale + 1], out=out)


def attention_backward_weights(scores, dg, out=None):
    """dw^s = sum_c f^s_c dg_c, as N x S x H x W."""
    if out is None:
        out = np.empty((dg.shape[0], len(scores)) + dg.shape[2:], dg.dtype)
    for s in range(len(scores)):
        np.einsum("nchw,nchw->nhw", scores[s], dg, out=out[:, s])
    return out


def average_forward(scores, out=None):
    """g = (1/S) sum_s f^s."""
    if out is None:
        out = scores[0].copy()
    else:
        np.copyto(out, scores[0])
    for s in range(1, len(scores)):
        out += scores[s]
    out *= out.dtype.type(1.0 / len(scores))
    return out


def average_backward(dg, num_scales, out=None):
    """df^s = dg / S (one array, the same for every s)."""
    return np.multiply(dg, dg.dtype.type(1.0 / num_scales), out=out)


def max_forward(scores, out=None):
    """(g, argmax): the element-wise max over scales and which scale gave it (first on ties).

    NaN as in the C++ layer: a NaN wins against any number and loses against an earlier NaN, so
    g is NaN wherever a scale is, whatever the order, and the gradient goes to the first NaN
    scale. Branch-free on purpose: masked assignments with a random mask cost ~10x more. The
    loop compares with `>`, which is false for a NaN, and np.maximum propagates NaN; so g is
    already right, and where g holds a NaN (rare; all_finite finds out) argmax is set afterwards.
    """
    if out is None:
        out = scores[0].copy()
    else:
        np.copyto(out, scores[0])
    index_type = np.uint8 if len(scores) < 256 else np.int32
    argmax = np.zeros(out.shape, index_type)
    better = np.empty(out.shape, bool)
    step = np.empty(out.shape, index_type)
    for s in range(1, len(scores)):
        np.greater(scores[s], out, out=better)  # strict, so the earlier scale keeps ties
        np.subtract(index_type(s), argmax, out=step)  # argmax < s, so no wrap-around
        step *= better
        argmax += step
        np.maximum(out, scores[s], out=out)  # NaN where either is NaN
    if not all_finite(out):
        _argmax_to_first_nan(scores, out, argmax)
    return out, argmax


def _argmax_to_first_nan(scores, g, argmax):
    """Where g is NaN, argmax = the first scale that is NaN there."""
    at = np.flatnonzero(np.isnan(g))
    if at.size:
        first = np.empty(at.size, argmax.dtype)
        for s in reversed(range(len(scores))):
            first[np.isnan(scores[s].ravel()[at])] = s
        argmax.ravel()[at] = first


def max_backward(dg, argmax, scale, out=None):
    """df^scale: dg where this scale gave the max, 0 elsewhere: a select, as in the C++ layer. It is
    computed as dg * mask (fast), and where that holds a NaN or inf (rare) redone as a select,
    since 0 * NaN and 0 * inf would reach the scales that lost."""
    won = argmax == scale
    with np.errstate(invalid="ignore"):  # 0 * inf: redone below
        out = np.multiply(dg, won, out=out)
    if not all_finite(out):
        out[...] = np.where(won, dg, dg.dtype.type(0))
    return out
