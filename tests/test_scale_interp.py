"""ScaleInterp numpy core (attention_scale.layers.scale_interp) against plain-loop references
and by hand."""

import ctypes
import tracemalloc
from fractions import Fraction

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


def test_out_argument_is_written_in_place():
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    out = np.empty((2, 2, 9, 9), np.float32)
    assert scale_interp.forward(x, (9, 9), out=out) is out
    with pytest.raises(ValueError, match="C-contiguous"):
        scale_interp.forward(x, (9, 9), out=np.empty((2, 2, 9, 18), np.float32)[..., ::2])


# ----------------------------------------------------------------------------- scale: exact sizes

DECIMAL_SCALES = ["0.7", "0.75", "0.5", "0.333", "1.3", "2.5", "0.123456", "0.05", "3", "0.125",
                  "0.1", "0.9", "0.999999"]


@pytest.mark.parametrize("text", DECIMAL_SCALES)
def test_scaled_size_is_exact_up_to_1e5(text):
    # floor((H - 1) * scale) + 1 for the decimal as written, against exact rational arithmetic;
    # the float product (0.7f * 8400 = 5879.9999) or an absolute 1e-4 goes wrong at large H.
    scale = Fraction(text)
    sizes = np.arange(1, 100002)
    expected = (sizes - 1) * scale.numerator // scale.denominator + 1
    got = np.array([scale_interp.scaled_size(int(n), float(text)) for n in sizes])
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, f"scale {text}: H = {sizes[wrong[:5]]} give {got[wrong[:5]]}, " \
                            f"expected {expected[wrong[:5]]}"


def test_scaled_size_issue_case_and_extremes():
    assert scale_interp.scaled_size(8401, 0.7) == 5881  # issue 9, item 5
    assert scale_interp.scaled_size(5, 1e30) == 2**31  # INT_MAX + 1: beyond an int
    assert scale_interp.scaled_size(2, 3e38) == 2**31
    assert scale_interp.scaled_size(10**6, 1e-30) == 1
    assert scale_interp.scaled_size(3, 1e9) == 2000000001


@pytest.mark.parametrize("value, mantissa, exponent", [
    (0.7, 7, -1), (0.75, 75, -2), (2.0, 2, 0), (0.333, 333, -3), (1e30, 1, 30),
    (0.123456, 123456, -6), (123456.0, 123456, 0), (0.33333334, 33333334, -8),
    (16777216.0, 16777216, 0), (1e-45, 1, -45)])
def test_shortest_decimal(value, mantissa, exponent):
    # The same cases as the C++ test (ScaleInterpScaleTest.TestShortestDecimal).
    assert scale_interp.shortest_decimal(np.float32(value)) == (mantissa, exponent)


def _strtof():
    """libc's strtof (correctly rounded), which the C++ layer uses to read a decimal back."""
    libc = ctypes.CDLL(None)
    libc.strtof.restype = ctypes.c_float
    libc.strtof.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return lambda text: np.float32(libc.strtof(text.encode(), None))


def test_shortest_decimal_reads_back_and_is_shortest():
    strtof = _strtof()
    rng = np.random.default_rng(0)
    bits = rng.integers(1, 0x7f800000, 3000, dtype=np.uint32)  # positive finite floats
    for value in bits.view(np.float32):
        mantissa, exponent = scale_interp.shortest_decimal(value)
        assert strtof(f"{mantissa}e{exponent}") == value, (value, mantissa, exponent)
        digits = len(str(mantissa))
        if digits > 1:  # no decimal with one digit fewer reads back (the nearest one does not)
            assert strtof(f"{float(value):.{digits - 2}e}") != value, (value, mantissa)


# ----------------------------------------------------------------------------- limits

LIMIT_MESSAGE = ("is out of range: each output side must be >= 1 and 5 x output side "
                 "\\+ 2 x cropped input side <= 2147483647")


@pytest.mark.parametrize("fields, bottom_shape, match", [
    ({"zoom_factor": 2000000000}, (2, 3, 5, 6),
     "output size 8000000001 x 10000000001 for bottom\\[0\\] of shape 2 3 5 6 \\(180\\) "
     "\\(cropped 5 x 6\\) " + LIMIT_MESSAGE),
    ({"scale": 1e30}, (2, 3, 5, 6), "output size 2147483648 x 2147483648 for bottom\\[0\\] "
     ".* " + LIMIT_MESSAGE),
    ({"height": 1, "width": 2000000000}, (1, 1, 4, 4), "output size 1 x 2000000000 " ".*"
     + LIMIT_MESSAGE),
    ({"height": 429496730, "width": 1}, (1, 1, 20000, 2), "output size 429496730 x 1 for "
     "bottom\\[0\\] of shape 1 1 20000 2 \\(40000\\) \\(cropped 20000 x 2\\) " + LIMIT_MESSAGE),
    ({"height": 50000, "width": 50000}, (1, 1000, 4, 4), "the top would have shape 1 1000 50000 "
     "50000, more than a blob holds \\(2147483647 elements\\)"),
])
def test_output_limits_are_the_cpp_layers(fields, bottom_shape, match):
    spec = scale_interp.spec_from_param(_param(**fields), 1)
    with pytest.raises(LayerConfigError, match=f"^ScaleInterp: {match}$"):
        spec.top_shape(bottom_shape)


def test_output_within_limits():
    # 5 x 429496728 + 2 x 2 <= INT_MAX < 5 x 429496729 + 2 x 2
    spec = scale_interp.spec_from_param(_param(height=429496728, width=1), 1)
    assert spec.top_shape((1, 1, 2, 2)) == (1, 1, 429496728, 1)
    with pytest.raises(LayerConfigError, match="output size 429496729 x 1 .* out of range"):
        scale_interp.spec_from_param(_param(height=429496729, width=1), 1).top_shape((1, 1, 2, 2))
    assert scale_interp.spec_from_param(_param(scale=0.7), 1).top_shape((2, 3, 8401, 11)) == \
        (2, 3, 5881, 8)


def test_pads_near_int_min_are_refused_as_in_cpp():
    # The C++ layer summed the cropped size in int, where 3 + INT_MIN + INT_MIN wraps to 3; both
    # forms now refuse it with the same message (test_cpp_python_agree compares them).
    spec = scale_interp.spec_from_param(
        _param(zoom_factor=2, pad_beg=-2**31, pad_end=-2**31), 1)
    with pytest.raises(LayerConfigError, match=(
            r"^ScaleInterp: bottom\[0\] has shape 1 1 3 3 \(9\), too small for pad_beg "
            r"-2147483648 and pad_end -2147483648 \(cropped size -4294967293 x -4294967293\)$")):
        spec.top_shape((1, 1, 3, 3))
    spec = scale_interp.spec_from_param(_param(zoom_factor=2, pad_beg=-4, pad_end=-2**31), 1)
    with pytest.raises(LayerConfigError, match=r"\(cropped size -2147483649 x -2147483649\)$"):
        spec.top_shape((1, 1, 3, 3))


# ----------------------------------------------------------------------------- NaN and inf

NONFINITE_CASES = [  # (in_hw, out_hw, pad_beg, pad_end, nearest)
    ((8, 8), (15, 15), 0, 0, False), ((8, 8), (15, 15), 0, 0, True), ((9, 9), (5, 5), 0, 0, False),
    ((9, 9), (3, 3), 0, 0, True), ((5, 7), (13, 4), 0, 0, False), ((6, 6), (9, 9), -1, -1, False),
    ((7, 5), (7, 5), 0, 0, False), ((4, 4), (1, 1), 0, 0, False), ((3, 40), (7, 100), 0, 0, False),
    ((70, 3), (200, 2), 0, 0, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_hw, out_hw, pad_beg, pad_end, nearest", NONFINITE_CASES)
def test_nonfinite_inputs_reach_only_their_readers(in_hw, out_hw, pad_beg, pad_end, nearest, dtype):
    rng = np.random.default_rng(sum(in_hw + out_hw))
    x = rng.standard_normal((2, 2) + in_hw).astype(dtype)
    h, w = in_hw
    x[0, 0, h // 2, w // 2] = np.nan
    x[0, 1, 1, w - 1] = np.inf
    x[1, 0, h - 1, 0] = -np.inf
    x[1, 1, 1, 1], x[1, 1, 1, min(2, w - 1)] = np.inf, -np.inf
    y = scale_interp.forward(x, out_hw, pad_beg, pad_end, nearest)
    np.testing.assert_allclose(y, ref_interp_forward(x, out_hw, pad_beg, pad_end, nearest),
                               rtol=1e-5, atol=1e-5)  # NaN where NaN, inf where inf
    dy = rng.standard_normal((2, 2) + out_hw).astype(dtype)
    dy[0, 0, out_hw[0] // 2, out_hw[1] // 3] = np.nan
    dy[1, 1, out_hw[0] - 1, 0] = np.inf
    dx = scale_interp.backward(dy, in_hw, pad_beg, pad_end, nearest)
    np.testing.assert_allclose(dx, ref_interp_backward(dy, in_hw, pad_beg, pad_end, nearest),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nearest, expected", [(False, 9), (True, 4)])
def test_nonfinite_spread_counts(nearest, expected):
    # Issue 9: one NaN in an 8 x 8 map zoomed 2x reached 63 of 64 (bilinear) or 221 of 225
    # (NEAREST) outputs; it is read with a non-zero weight by 3 x 3 outputs, copied to 2 x 2.
    x = np.ones((1, 1, 8, 8), np.float32)
    x[0, 0, 3, 3] = np.nan
    y = scale_interp.forward(x, (15, 15), nearest=nearest)
    assert np.isnan(y).sum() == expected
    np.testing.assert_allclose(y[~np.isnan(y)], 1, atol=1e-6)
    x[0, 0, 3, 3] = np.inf  # a copied inf stays inf
    assert scale_interp.forward(x, (15, 15), nearest=nearest)[0, 0, 6, 6] == np.inf


# ----------------------------------------------------------------------------- memory and caches

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_in, n_out", [(2, 2**24 + 2), (2, 2**25 + 1), (3, 2**25 + 2),
                                         (5, 2**26 + 3)])
def test_long_axis_weights_stay_below_one(n_in, n_out, dtype):
    # Sides above 2**24 + 1: float32(rem) / float32(den) rounds to 1 for some outputs (2**24 /
    # (2**24 + 1) does), which gave the first tap the weight 0 though its exact weight is not:
    # an inf there then reached the output as NaN in the C++ layer (0 * inf) and not at all
    # here. The weights of the last outputs of the axis against exact fractions (the tables of
    # such an axis take about 1 GB; the C++ tests also run the layer at the first size).
    den = n_out - 1
    dst = np.arange(den - 80, n_out, dtype=np.int64)
    rem = dst * (n_in - 1) % den
    lam = scale_interp.fraction(rem, den, dtype)
    assert lam.dtype == dtype
    exact = np.array([Fraction(int(r), den) for r in rem])
    assert all(abs(Fraction(float(v)) - e) <= Fraction(1, 2**23) for v, e in zip(lam, exact))
    # Every weight that is exactly non-zero stays non-zero: 1 - lam of the first tap, lam of
    # the second.
    np.testing.assert_array_equal(dtype(1) - lam > 0, [e < 1 for e in exact])
    np.testing.assert_array_equal(lam > 0, [e > 0 for e in exact])
    with np.errstate(invalid="ignore"):
        blend = (dtype(1) - lam) * dtype(np.inf) + lam * dtype(5)
    assert np.isposinf(blend).all()  # an inf in the first tap reaches every output as inf
    if dtype == np.float32:  # the case is in the range
        assert (rem.astype(np.float32) / np.float32(den) == 1).any()


def test_memory_grows_with_the_output():
    # Issue 9, item 7: 32000 -> 32001 rows built dense 32001 x 32000 matrices (4 GB). Here
    # 8000 -> 8001 (dense: 256 MB per matrix): the peak of numpy allocations stays a small
    # multiple of the data.
    scale_interp.clear_caches()
    x = np.random.default_rng(0).standard_normal((1, 1, 8000, 3)).astype(np.float32)
    tracemalloc.start()
    try:
        y = scale_interp.forward(x, (8001, 4))
        dx = scale_interp.backward(y, (8000, 3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dx.shape == x.shape
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    # Column 0 is a corner: it resamples input column 0 at rows dst * 7999 / 8000.
    expected = np.interp(np.arange(8001) * 7999 / 8000, np.arange(8000), x[0, 0, :, 0])
    np.testing.assert_allclose(y[0, 0, :, 0], expected, atol=1e-5)


def _resize_many_sizes():
    rng = np.random.default_rng(1)
    for k in range(200):  # 200 distinct image sizes, as a data layer without cropping gives
        h = 200 + 7 * k
        x = rng.standard_normal((1, 1, h, 3)).astype(np.float32)
        y = scale_interp.forward(x, ((h - 1) * 3 // 4 + 1, 5))
        scale_interp.backward(y, (h, 3))
        yield


def test_caches_are_bounded(monkeypatch):
    # Issue 9: the caches held about 1 GB after 200 distinct sizes. Here with a bound of 1 MiB,
    # which the same sizes exceed severalfold when nothing is dropped.
    scale_interp.clear_caches()
    monkeypatch.setattr(scale_interp._CACHE, "max_bytes", 2**40)
    for _ in _resize_many_sizes():
        pass
    unbounded = scale_interp.cache_bytes()
    assert unbounded > 4 * 2**20
    scale_interp.clear_caches()
    monkeypatch.setattr(scale_interp._CACHE, "max_bytes", 2**20)
    for _ in _resize_many_sizes():
        assert 0 < scale_interp.cache_bytes() <= 2**20
    assert scale_interp.CACHE_BYTES == 64 * 2**20  # the default bound


def test_huge_finite_values_take_the_fast_result():
    # 1e30 squared overflows the finite check: the exact path must then keep the products.
    x = np.full((1, 1, 4, 5), 1e30, np.float32)
    x[0, 0, 1, 2] = -3e30
    y = scale_interp.forward(x, (7, 9))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref_interp_forward(x, (7, 9)), rtol=1e-5)


def test_all_finite():
    from attention_scale.layers.numerics import all_finite
    a = np.zeros((3, 4), np.float32)
    assert all_finite(a)
    for bad in (np.nan, np.inf, -np.inf):
        a[1, 2] = bad
        assert not all_finite(a)
    assert not all_finite(np.full(4, 1e30, np.float32))  # conservative: squares overflow
