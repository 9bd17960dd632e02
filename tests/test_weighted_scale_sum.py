"""WeightedScaleSum numpy core against plain loops, by hand and by finite differences."""

import numpy as np
import pytest

from attention_scale.layers import weighted_scale_sum
from pyhelpers import numeric_gradient, ref_merge, ref_merge_backward


def _data(shape, num, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scores = [rng.standard_normal(shape).astype(dtype) for _ in range(num)]
    raw = rng.random((shape[0], num) + shape[2:])
    weights = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    dg = rng.standard_normal(shape).astype(dtype)
    return scores, weights, dg


def test_hand_worked():
    f1 = np.array([1.0, 5.0, 2.0]).reshape(1, 3, 1, 1)
    f2 = np.array([3.0, 5.0, 0.0]).reshape(1, 3, 1, 1)
    w = np.array([0.25, 0.75]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(weighted_scale_sum.attention_forward([f1, f2], w).ravel(), [2.5, 5, 0.5])
    np.testing.assert_allclose(weighted_scale_sum.average_forward([f1, f2]).ravel(), [2, 5, 1])
    g, argmax = weighted_scale_sum.max_forward([f1, f2])
    np.testing.assert_array_equal(g.ravel(), [3, 5, 2])
    np.testing.assert_array_equal(argmax.ravel(), [1, 0, 0])  # the tie (5, 5) goes to scale 0
    dg = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(weighted_scale_sum.max_backward(dg, argmax, 0).ravel(), [0, 2, 3])
    np.testing.assert_array_equal(weighted_scale_sum.max_backward(dg, argmax, 1).ravel(), [1, 0, 0])
    # dw^s = sum_c f^s_c dg_c: 1 + 10 + 6 and 3 + 10 + 0
    np.testing.assert_allclose(weighted_scale_sum.attention_backward_weights([f1, f2], dg).ravel(), [17, 13])


SHAPES = [((2, 3, 4, 5), 3), ((1, 1, 2, 2), 2), ((3, 2, 1, 3), 1), ((1, 4, 3, 2), 4)]


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape, num", SHAPES)
@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE", "MAX"])
def test_matches_loops(merge, shape, num, dtype, tol):
    scores, weights, dg = _data(shape, num, seed=num + sum(shape), dtype=dtype)
    g_ref, argmax_ref = ref_merge(scores, weights, merge)
    df_ref, dw_ref = ref_merge_backward(scores, weights, dg, merge)
    if merge == "ATTENTION":
        g = weighted_scale_sum.attention_forward(scores, weights)
        df = [weighted_scale_sum.attention_backward_scores(weights, dg, s) for s in range(num)]
        np.testing.assert_allclose(weighted_scale_sum.attention_backward_weights(scores, dg), dw_ref,
                                   atol=tol)
    elif merge == "AVERAGE":
        g = weighted_scale_sum.average_forward(scores)
        df = [weighted_scale_sum.average_backward(dg, num)] * num
    else:
        g, argmax = weighted_scale_sum.max_forward(scores)
        np.testing.assert_array_equal(argmax, argmax_ref)
        df = [weighted_scale_sum.max_backward(dg, argmax, s) for s in range(num)]
    assert g.dtype == dtype
    np.testing.assert_allclose(g, g_ref, atol=tol)
    for s in range(num):
        np.testing.assert_allclose(df[s], df_ref[s], atol=tol)


def test_max_ties_go_to_the_first_scale():
    same = np.ones((1, 2, 2, 2))
    g, argmax = weighted_scale_sum.max_forward([same, same.copy(), same.copy()])
    assert (argmax == 0).all()
    mixed = [np.zeros((1, 1, 1, 3)), np.array([0, 1, 1.0]).reshape(1, 1, 1, 3),
             np.array([0, 1, 2.0]).reshape(1, 1, 1, 3)]
    np.testing.assert_array_equal(weighted_scale_sum.max_forward(mixed)[1].ravel(), [0, 1, 2])


def test_attention_finite_differences():
    scores, weights, _ = _data((1, 2, 2, 3), 3, seed=11)
    probe = np.random.default_rng(12).standard_normal(scores[0].shape)
    for s in range(3):
        def loss_f(v, s=s):
            return weighted_scale_sum.attention_forward(scores[:s] + [v] + scores[s + 1:], weights) * probe
        numeric = numeric_gradient(loss_f, scores[s].copy())
        np.testing.assert_allclose(weighted_scale_sum.attention_backward_scores(weights, probe, s),
                                   numeric, atol=1e-8)
    numeric_w = numeric_gradient(lambda v: weighted_scale_sum.attention_forward(scores, v) * probe,
                                 weights.copy())
    np.testing.assert_allclose(weighted_scale_sum.attention_backward_weights(scores, probe), numeric_w,
                               atol=1e-8)


def test_average_and_max_finite_differences():
    scores, _, _ = _data((1, 2, 2, 2), 3, seed=21)
    probe = np.random.default_rng(22).standard_normal(scores[0].shape)
    _, argmax = weighted_scale_sum.max_forward(scores)
    for s in range(3):
        def loss_avg(v, s=s):
            return weighted_scale_sum.average_forward(scores[:s] + [v] + scores[s + 1:]) * probe

        def loss_max(v, s=s):
            return weighted_scale_sum.max_forward(scores[:s] + [v] + scores[s + 1:])[0] * probe

        np.testing.assert_allclose(weighted_scale_sum.average_backward(probe, 3),
                                   numeric_gradient(loss_avg, scores[s].copy()), atol=1e-8)
        np.testing.assert_allclose(weighted_scale_sum.max_backward(probe, argmax, s),
                                   numeric_gradient(loss_max, scores[s].copy()), atol=1e-8)


def test_max_nan_goes_to_the_first_nan_scale_whatever_the_order():
    # Issue 9, item 6 (the same table as the C++ test): NaN wins, the first NaN gets the gradient.
    nan, inf = np.nan, np.inf
    values = np.array([[nan, 1, 2], [1, nan, 2], [1, 2, nan], [nan, nan, 2], [3, nan, nan],
                       [inf, nan, 1], [-inf, inf, 1], [-inf, -inf, -inf]])
    winner = np.array([0, 1, 2, 0, 1, 1, 1, 0])
    for dtype in (np.float32, np.float64):
        scores = [values[:, s].astype(dtype).reshape(1, 1, 1, -1) for s in range(3)]
        g, argmax = weighted_scale_sum.max_forward(scores)
        np.testing.assert_array_equal(argmax.ravel(), winner)
        np.testing.assert_array_equal(g.ravel(), values[np.arange(8), winner])  # NaN == NaN here
        dg = np.arange(1, 9, dtype=dtype).reshape(g.shape)
        for s in range(3):
            np.testing.assert_array_equal(weighted_scale_sum.max_backward(dg, argmax, s).ravel(),
                                          np.where(winner == s, np.arange(1, 9), 0))
        ref_g, ref_argmax = ref_merge(scores, None, "MAX")
        np.testing.assert_array_equal(ref_argmax.ravel(), winner)


def test_attention_and_average_follow_ieee():
    # A NaN or inf score reaches its output element; a zero weight times inf is NaN.
    nan, inf = np.nan, np.inf
    f1 = np.array([nan, 1, inf, 1, 1, 1]).reshape(1, 2, 1, 3)
    f2 = np.array([1, 2, 3, 4, -inf, 6]).reshape(1, 2, 1, 3)
    w = np.array([0.5, 0.5, 0, 0.5, 0.5, 1]).reshape(1, 2, 1, 3)
    np.testing.assert_array_equal(weighted_scale_sum.attention_forward([f1, f2], w).ravel(),
                                  [nan, 1.5, nan, 2.5, -inf, 6])
    np.testing.assert_array_equal(weighted_scale_sum.average_forward([f1, f2]).ravel(),
                                  [nan, 1.5, inf, 2.5, -inf, 3.5])


def test_max_backward_keeps_a_nan_gradient_to_the_winner():
    # A NaN or inf top diff goes to the winning scale only (0 * NaN would reach the others).
    scores = [np.array([1.0, 5.0]).reshape(1, 1, 1, 2), np.array([2.0, 3.0]).reshape(1, 1, 1, 2)]
    _, argmax = weighted_scale_sum.max_forward(scores)
    dg = np.array([np.nan, np.inf]).reshape(1, 1, 1, 2)
    np.testing.assert_array_equal(weighted_scale_sum.max_backward(dg, argmax, 0).ravel(), [0, np.inf])
    out = np.empty_like(dg)
    np.testing.assert_array_equal(weighted_scale_sum.max_backward(dg, argmax, 1, out=out).ravel(),
                                  [np.nan, 0])
