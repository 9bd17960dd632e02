"""SoftmaxOverScales numpy core against plain loops, by hand, at extremes and by finite differences."""

import numpy as np
import pytest

from attention_scale.layers import softmax_over_scales
from pyhelpers import numeric_gradient, ref_softmax, ref_softmax_backward


def test_hand_worked():
    h = np.zeros((1, 2, 1, 2))
    h[0, 1, 0, 0] = np.log(3.0)  # pixel 0: [0, ln 3] -> [1/4, 3/4]; pixel 1: equal -> [1/2, 1/2]
    y = softmax_over_scales.forward(h)
    np.testing.assert_allclose(y[0, :, 0, 0], [0.25, 0.75])
    np.testing.assert_allclose(y[0, :, 0, 1], [0.5, 0.5])


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 3), (3, 2, 1, 7), (1, 5, 2, 2)])
def test_matches_loops(shape, dtype, tol):
    rng = np.random.default_rng(sum(shape))
    h = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y = softmax_over_scales.forward(h)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_softmax(h), atol=tol)
    np.testing.assert_allclose(y.sum(axis=1), 1, atol=10 * tol)
    np.testing.assert_allclose(softmax_over_scales.backward(y, dy), ref_softmax_backward(y, dy),
                               atol=10 * tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_stay_finite(dtype):
    h = np.array([[[[1e30, -1e30, 0.0, -np.inf, 5.0]],
                   [[0.0, 1e30, -np.inf, 2.0, -np.inf]],
                   [[-1e30, 0.0, 1.0, -np.inf, -np.inf]]]], dtype)
    y = softmax_over_scales.forward(h)
    assert np.isfinite(y).all()
    expected = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0]], np.float64)
    expected[:, 2] = [np.exp(-1.0), 0, 1] / (1 + np.exp(-1.0))
    np.testing.assert_allclose(y[0, :, 0], expected, atol=1e-6)
    dx = softmax_over_scales.backward(y, np.ones_like(y))
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx, 0, atol=1e-6)  # a constant dy has no effect through a softmax


def test_finite_difference_gradient():
    rng = np.random.default_rng(5)
    h = rng.standard_normal((2, 3, 2, 3))
    weights = rng.standard_normal(h.shape)
    numeric = numeric_gradient(lambda v: softmax_over_scales.forward(v) * weights, h)
    analytic = softmax_over_scales.backward(softmax_over_scales.forward(h), weights)
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


def test_out_argument():
    h = np.random.default_rng(1).standard_normal((1, 3, 2, 2)).astype(np.float32)
    out = np.empty_like(h)
    assert softmax_over_scales.forward(h, out=out) is out
    np.testing.assert_allclose(out, ref_softmax(h), atol=1e-6)


INF = np.inf
NONFINITE_PIXELS = [  # logits of 3 scales -> weights (the same table as the C++ test)
    ([INF, 0, INF], [0.5, 0, 0.5]), ([INF, -INF, 5], [1, 0, 0]),
    ([-INF, -INF, -INF], [1 / 3] * 3), ([INF, INF, INF], [1 / 3] * 3), ([1e30, INF, -INF], [0, 1, 0]),
    ([np.nan, 0, 1], [np.nan] * 3), ([0, np.nan, 1], [np.nan] * 3), ([-INF, -INF, 2], [0, 0, 1]),
    ([0, 0, 0], [1 / 3] * 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_and_nan_logits(dtype):
    # Issue 9, item 6: +inf logits give the limit of the softmax (the +inf scales share the
    # weight), all -inf the weights of equal logits, a NaN only its own pixel's weights.
    h = np.array([p for p, _ in NONFINITE_PIXELS], dtype).T.reshape(1, 3, 3, 3)
    expected = np.array([w for _, w in NONFINITE_PIXELS], np.float64).T.reshape(1, 3, 3, 3)
    y = softmax_over_scales.forward(h)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(y, ref_softmax(h), atol=1e-6)
    dx = softmax_over_scales.backward(y, np.full_like(y, 0.5))
    finite_pixel = ~np.isnan(expected)
    assert np.isfinite(dx[finite_pixel]).all() and np.isnan(dx[~finite_pixel]).all()
