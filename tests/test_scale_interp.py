"""ScaleInterp numpy core (attention_scale.layers.scale_interp) against plain-loop references
and by hand."""

import numpy as np
import pytest

from attention_scale.layers import scale_interp
from attention_scale.attention_scale_pb2 import ScaleInterpParameter
from attention_scale.errors import LayerConfigError
from pyhelpers import numeric_gradient, ref_interp_backward, ref_interp_forward


# ----------------------------------------------------------------------------- output sizes

@pytest.mark.parametrize("n_eff, zoom, shrink, expected", [
    (321, None, 8, 41), (41, 8, None, 321), (41, 3, 4, 31), (513, None, 8, 65), (65, 8, None, 513),
    (7, None, 1, 7), (7, 1, None, 7), (1, 5, None, 1), (10, None, 4, 3)])
def test_factor_size_matches_deeplab(n_eff, zoom, shrink, expected):
    assert scale_interp.factor_size(n_eff, zoom, shrink) == expected


@pytest.mark.parametrize("n_eff, scale, expected", [
    (321, 0.75, 241), (321, 0.5, 161), (41, 0.75, 31), (41, 0.5, 21), (11, 0.7, 8), (5, 1.0, 5),
    (5, 2.0, 9), (1, 0.5, 1), (2, 0.4, 1)])
def test_scaled_size(n_eff, scale, expected):
    # 11 at 0.7: (11 - 1) * 0.7f = 6.99999988, which the 1e-4 lifts to 7.
    assert scale_interp.scaled_size(n_eff, scale) == expected


def test_scale_sizes_match_shrink_zoom_where_both_exist():
    for n in (41, 81, 321, 513):
        assert scale_interp.scaled_size(n, 0.125) == scale_interp.factor_size(n, shrink_factor=8)
        assert scale_interp.scaled_size(n, 4.0) == scale_interp.factor_size(n, zoom_factor=4)


def _param(**fields):
    return ScaleInterpParameter(**fields)


def test_spec_modes_and_output_hw():
    assert scale_interp.spec_from_param(_param(zoom_factor=8), 1).output_hw((41, 33)) == (321, 257)
    assert scale_interp.spec_from_param(_param(height=7, width=9), 1).output_hw((41, 33)) == (7, 9)
    assert scale_interp.spec_from_param(_param(scale=0.5), 1).output_hw((321, 41)) == (161, 21)
    assert scale_interp.spec_from_param(_param(), 2).output_hw((5, 5), (17, 3)) == (17, 3)
    cropped = scale_interp.spec_from_param(_param(shrink_factor=2, pad_beg=-1, pad_end=-2), 1)
    assert cropped.output_hw((12, 20)) == (5, 9)  # 9 -> 5, 17 -> 9
    nearest = _param(scale=1.0, interpolation=ScaleInterpParameter.NEAREST)
    assert scale_interp.spec_from_param(nearest, 1).nearest


@pytest.mark.parametrize("fields, bottoms, match", [
    ({}, 1, "exactly one.*got none"),
    ({"zoom_factor": 2, "scale": 0.5}, 1, "zoom_factor/shrink_factor and scale"),
    ({"height": 5, "width": 5}, 2, "height\\+width and a second bottom"),
    ({"height": 5}, 1, "height and width must be given together"),
    ({"height": 0, "width": 3}, 1, "height and width must be >= 1"),
    ({"zoom_factor": 0}, 1, "zoom_factor must be >= 1"),
    ({"shrink_factor": -2}, 1, "shrink_factor must be >= 1"),
    ({"scale": 0.0}, 1, "scale must be a finite number > 0"),
    ({"scale": -1.0}, 1, "scale must be a finite number > 0"),
    ({"scale": float("nan")}, 1, "scale must be a finite number > 0"),
    ({"scale": 0.5, "pad_beg": 1}, 1, "pad_beg must be <= 0"),
    ({"scale": 0.5, "pad_end": 2}, 1, "pad_end must be <= 0"),
    ({"scale": 0.5}, 3, "takes 1 bottom.*got 3"),
])
def test_spec_rejects_bad_parameters(fields, bottoms, match):
    with pytest.raises(LayerConfigError, match=f"ScaleInterp: .*{match}"):
        scale_interp.spec_from_param(_param(**fields), bottoms)


def test_cropping_everything_is_an_error():
    spec = scale_interp.spec_from_param(_param(zoom_factor=2, pad_beg=-3, pad_end=-2), 1)
    with pytest.raises(LayerConfigError, match="crop the whole 5x9 input"):
        spec.output_hw((5, 9))


# ----------------------------------------------------------------------------- by hand

def test_hand_worked_bilinear():
    x = np.array([[[[0.0, 10.0], [20.0, 30.0]]]], np.float32)
    y = scale_interp.forward(x, (3, 3))
    np.testing.assert_array_equal(y[0, 0], [[0, 5, 10], [10, 15, 20], [20, 25, 30]])
    # 3 -> 2 keeps the corners; 3 -> 1 reads source 0 only.
    row = np.array([[[[1.0, 2.0, 4.0]]]])
    np.testing.assert_array_equal(scale_interp.forward(row, (1, 2))[0, 0], [[1, 4]])
    np.testing.assert_array_equal(scale_interp.forward(row, (1, 1))[0, 0], [[1]])
    # 3 -> 5: sources 0, 0.5, 1, 1.5, 2.
    np.testing.assert_allclose(scale_interp.forward(row, (1, 5))[0, 0], [[1, 1.5, 2, 3, 4]])


def test_hand_worked_nearest_halves_go_up():
    row = np.array([[[[1.0, 2.0, 4.0]]]])
    # 3 -> 5: sources 0, 0.5, 1, 1.5, 2 -> indices 0, 1, 1, 2, 2.
    np.testing.assert_array_equal(scale_interp.forward(row, (1, 5), nearest=True)[0, 0], [[1, 2, 2, 4, 4]])
    # 3 -> 4: sources 0, 2/3, 4/3, 2 -> 0, 1, 1, 2.
    np.testing.assert_array_equal(scale_interp.forward(row, (1, 4), nearest=True)[0, 0], [[1, 2, 2, 4]])
    labels = np.arange(12.0).reshape(1, 1, 3, 4)
    out = scale_interp.forward(labels, (7, 9), nearest=True)
    assert set(np.unique(out)) <= set(labels.ravel())  # never mixes values


def test_hand_worked_crop():
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    # pad_beg -1, pad_end -2 keep rows/cols 1..3; height/width 3 reproduces them exactly.
    np.testing.assert_array_equal(scale_interp.forward(x, (3, 3), -1, -2)[0, 0], x[0, 0, 1:4, 1:4])


def test_linear_function_is_reproduced_exactly():
    n_in, n_out = 9, 33
    ys, xs = np.meshgrid(np.arange(n_in), np.arange(n_in), indexing="ij")
    x = (3.0 + 2.0 * ys - 0.5 * xs)[None, None]
    out = scale_interp.forward(x, (n_out, n_out))
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    oy, ox = np.meshgrid(src, src, indexing="ij")
    np.testing.assert_allclose(out[0, 0], 3.0 + 2.0 * oy - 0.5 * ox, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- vs references

CASES = [  # (in_hw, out_hw, pad_beg, pad_end)
    ((5, 7), (9, 13), 0, 0), ((9, 13), (5, 7), 0, 0), ((6, 4), (6, 4), 0, 0), ((4, 5), (1, 1), 0, 0),
    ((1, 1), (3, 4), 0, 0), ((8, 9), (11, 3), -1, -2), ((7, 7), (4, 10), -2, 0), ((5, 6), (2, 2), 0, -3),
    ((3, 8), (7, 1), 0, 0), ((2, 2), (5, 5), 0, 0)]


@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_hw, out_hw, pad_beg, pad_end", CASES)
def test_forward_backward_match_loops(in_hw, out_hw, pad_beg, pad_end, nearest, dtype):
    rng = np.random.default_rng(sum(in_hw + out_hw) - pad_beg)
    x = rng.standard_normal((2, 3) + in_hw).astype(dtype)
    dy = rng.standard_normal((2, 3) + out_hw).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    y = scale_interp.forward(x, out_hw, pad_beg, pad_end, nearest)
    assert y.dtype == dtype and y.shape == (2, 3) + out_hw
    np.testing.assert_allclose(y, ref_interp_forward(x, out_hw, pad_beg, pad_end, nearest), atol=tol)
    dx = scale_interp.backward(dy, in_hw, pad_beg, pad_end, nearest)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_interp_backward(dy, in_hw, pad_beg, pad_end, nearest),
                               atol=tol)


def test_random_shapes_match_loops():
    rng = np.random.default_rng(7)
    for _ in range(12):
        in_hw = tuple(rng.integers(1, 12, 2))
        pad_beg, pad_end = (-int(rng.integers(0, 2)), -int(rng.integers(0, 2)))
        in_hw = (in_hw[0] + 2, in_hw[1] + 2)
        out_hw = tuple(int(v) for v in rng.integers(1, 20, 2))
        nearest = bool(rng.integers(0, 2))
        x = rng.standard_normal((1, 2) + in_hw)
        dy = rng.standard_normal((1, 2) + out_hw)
        np.testing.assert_allclose(scale_interp.forward(x, out_hw, pad_beg, pad_end, nearest),
                                   ref_interp_forward(x, out_hw, pad_beg, pad_end, nearest),
                                   atol=1e-12)
        np.testing.assert_allclose(scale_interp.backward(dy, in_hw, pad_beg, pad_end, nearest),
                                   ref_interp_backward(dy, in_hw, pad_beg, pad_end, nearest),
                                   atol=1e-12)


@pytest.mark.parametrize("in_hw, out_hw, pad_beg, pad_end", [
    ((4, 5), (7, 3), 0, 0), ((6, 6), (4, 9), -1, -1), ((3, 3), (1, 5), 0, 0)])
def test_finite_difference_gradient(in_hw, out_hw, pad_beg, pad_end):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2) + in_hw)
    weights = rng.standard_normal((1, 2) + out_hw)

    def loss(v):
        return scale_interp.forward(v, out_hw, pad_beg, pad_end) * weights

    numeric = numeric_gradient(loss, x)
    analytic = scale_interp.backward(weights, in_hw, pad_beg, pad_end)
    np.testing.assert_allclose(analytic, numeric, atol=1e-7)


def test_interp_matrices_are_cached_and_read_only():
    first = scale_interp.interp_matrix(41, 321, False, "float32")
    assert scale_interp.interp_matrix(41, 321, False, "float32") is first
    assert not first.flags.writeable
    np.testing.assert_allclose(first.sum(axis=1), 1, atol=1e-6)  # rows are convex combinations


def test_out_argument_is_written_in_place():
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    out = np.empty((2, 2, 9, 9), np.float32)
    assert scale_interp.forward(x, (9, 9), out=out) is out
    with pytest.raises(ValueError, match="C-contiguous"):
        scale_interp.forward(x, (9, 9), out=np.empty((2, 2, 9, 18), np.float32)[..., ::2])


@pytest.mark.parametrize("n_in, n_out, nearest", [
    (321, 241, False), (65, 513, False), (41, 41, False), (321, 41, True), (7, 1, False),
    (1, 9, True), (100, 33, True)])
@pytest.mark.parametrize("transpose", [False, True])
def test_band_blocks_rebuild_the_matrix(n_in, n_out, nearest, transpose):
    # The blocks plus the zeros they leave out must be exactly the interpolation matrix.
    dense = scale_interp.interp_matrix(n_in, n_out, nearest, "float64")
    want = dense.T if transpose else dense
    rebuilt = np.zeros_like(want)
    covered = 0
    for r0, r1, c0, c1, block in scale_interp.band_blocks(n_in, n_out, nearest, "float64", transpose):
        assert r0 == covered and block.shape == (r1 - r0, c1 - c0)
        rebuilt[r0:r1, c0:c1] = block
        covered = r1
    assert covered == want.shape[0]
    np.testing.assert_array_equal(rebuilt, want)
