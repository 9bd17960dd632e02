"""ScaleInterp against DeepLab's `Interp`, re-implemented here from its published formulas.

DeepLab's Interp (caffe_cpu_interp2 in DeepLab-v2's src/caffe/util/interp.cpp) places output index
d of an axis at the float32 source coordinate

    r = float(in - 1) / (out - 1)   (0 when out == 1)     src = float(r * d)
    i0 = (int) src,  i1 = i0 + 1 (i0 when i0 == in - 1),  lambda = src - i0

and mixes out = h0 * (w0 * p00 + w1 * p01) + h1 * (w0 * p10 + w1 * p11) in float32; equal input and
output sizes are copied. Its backward scatters dy with the same four weights. ScaleInterp uses
the same corner-aligned grid but computes it exactly (integer arithmetic: i0 = d (in - 1) div
(out - 1), lambda = remainder / (out - 1)). So the two agree to float rounding wherever DeepLab's
float coordinate equals the exact one (zoom 8 from 41 to 321, any ratio with a short binary
fraction), and elsewhere differ by exactly what the float grid's misplacement of the sample
makes: (its coordinate error) x (the local slope of the input), which these tests check.

Run as a script, this file prints the measured differences for docs/layers.md (DeepLab's Interp and ScaleInterp).
"""

import sys
from fractions import Fraction

import numpy as np
import pytest

from attention_scale.nets import convert
from pyhelpers import import_caffe, input_layers, make_net, run_net

# ---------------------------------------------------------------------------------------------
# The two grids, per axis: (i0, i1, lambda) for every output index
# ---------------------------------------------------------------------------------------------


def deeplab_axis(n_in, n_out):
    """DeepLab's float32 grid: int arrays i0, i1 and the float32 weights lambda of i1."""
    f32 = np.float32
    ratio = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
    i0, i1, lam = [], [], []
    for dst in range(n_out):
        src = f32(ratio * f32(dst))  # one float32 product, as in C
        lo = int(src)  # truncation; src >= 0
        i0.append(lo)
        i1.append(lo + 1 if lo < n_in - 1 else lo)
        lam.append(f32(src - f32(lo)))
    return np.array(i0), np.array(i1), np.array(lam, np.float32)


def exact_axis(n_in, n_out):
    """The exact grid: source dst * (n_in - 1) / (n_out - 1) as a fraction; lambda in float64."""
    i0, i1, lam = [], [], []
    for dst in range(n_out):
        src = Fraction(0) if n_out == 1 else Fraction(dst * (n_in - 1), n_out - 1)
        lo = src.numerator // src.denominator
        i0.append(lo)
        i1.append(min(lo + 1, n_in - 1))
        lam.append(float(src - lo))
    return np.array(i0), np.array(i1), np.array(lam, np.float64)


def effective_coordinate(axis, n_in):
    """Where each output samples the input: i0 + lambda, except that taps that coincide at the
    last cell read that cell whatever lambda says."""
    i0, i1, lam = axis
    return np.where(i0 == i1, i0, i0 + lam.astype(np.float64))


def axis_matrix(axis, n_in):
    """(n_out x n_in) float64 matrix of an axis' weights."""
    i0, i1, lam = axis
    matrix = np.zeros((len(i0), n_in))
    rows = np.arange(len(i0))
    np.add.at(matrix, (rows, i0), 1.0 - lam.astype(np.float64))
    np.add.at(matrix, (rows, i1), lam.astype(np.float64))
    return matrix


# ---------------------------------------------------------------------------------------------
# DeepLab's Interp, forward and backward, on N x C x H x W with cropping (pad_beg/pad_end <= 0)
# ---------------------------------------------------------------------------------------------


def _crop(x, pad_beg, pad_end):
    h, w = x.shape[2:]
    return x[:, :, -pad_beg:h + pad_end, -pad_beg:w + pad_end]


def deeplab_forward(x, out_hw, pad_beg=0, pad_end=0):
    """float32, in DeepLab's order of operations."""
    x = _crop(x.astype(np.float32), pad_beg, pad_end)
    h_in, w_in = x.shape[2:]
    if (h_in, w_in) == tuple(out_hw):
        return x.copy()
    y0, y1, ly = deeplab_axis(h_in, out_hw[0])
    x0, x1, lx = deeplab_axis(w_in, out_hw[1])
    one = np.float32(1)
    h1, h0 = ly[:, None], one - ly[:, None]
    w1, w0 = lx[None, :], one - lx[None, :]
    p00 = x[:, :, y0[:, None], x0[None, :]]
    p01 = x[:, :, y0[:, None], x1[None, :]]
    p10 = x[:, :, y1[:, None], x0[None, :]]
    p11 = x[:, :, y1[:, None], x1[None, :]]
    return h0 * (w0 * p00 + w1 * p01) + h1 * (w0 * p10 + w1 * p11)


def deeplab_backward(dy, in_hw, pad_beg=0, pad_end=0):
    """The scatter of dy with the forward's four weights (accumulated in float64)."""
    h_eff, w_eff = (n + pad_beg + pad_end for n in in_hw)
    dx = np.zeros(dy.shape[:2] + tuple(in_hw))
    window = dx[:, :, -pad_beg:-pad_beg + h_eff, -pad_beg:-pad_beg + w_eff]
    if (h_eff, w_eff) == dy.shape[2:]:
        window += dy
        return dx
    y0, y1, ly = deeplab_axis(h_eff, dy.shape[2])
    x0, x1, lx = deeplab_axis(w_eff, dy.shape[3])
    ly, lx = ly.astype(np.float64), lx.astype(np.float64)
    g = dy.astype(np.float64).reshape((-1,) + dy.shape[2:])
    scattered = np.zeros((g.shape[0], h_eff * w_eff))
    for ys, wy in ((y0, 1 - ly), (y1, ly)):
        for xs, wx in ((x0, 1 - lx), (x1, lx)):
            target = (ys[:, None] * w_eff + xs[None, :]).ravel()  # where each output's tap goes
            weight = wy[:, None] * wx[None, :]
            for plane in range(g.shape[0]):
                scattered[plane] += np.bincount(target, (g[plane] * weight).ravel(),
                                                minlength=h_eff * w_eff)
    window += scattered.reshape(dy.shape[:2] + (h_eff, w_eff))
    return dx


def separable(x, y_axis, x_axis, pad_beg=0, pad_end=0):
    """float64 resize with the given grids: Wy @ plane @ Wx^T (any grid, no float32 rounding)."""
    x = _crop(x.astype(np.float64), pad_beg, pad_end)
    wy, wx = axis_matrix(y_axis, x.shape[2]), axis_matrix(x_axis, x.shape[3])
    return wy @ x @ wx.T


def separable_backward(dy, in_hw, y_axis, x_axis, pad_beg=0, pad_end=0):
    h_eff, w_eff = (n + pad_beg + pad_end for n in in_hw)
    wy, wx = axis_matrix(y_axis, h_eff), axis_matrix(x_axis, w_eff)
    dx = np.zeros(dy.shape[:2] + tuple(in_hw))
    dx[:, :, -pad_beg:-pad_beg + h_eff, -pad_beg:-pad_beg + w_eff] = \
        wy.T @ dy.astype(np.float64) @ wx
    return dx


# ---------------------------------------------------------------------------------------------
# ScaleInterp, from a DeepLab prototxt through the converter, in both forms
# ---------------------------------------------------------------------------------------------

FORMS = ("cpp", "python")


def scale_interp_net(in_shape, interp_fields, form):
    text = input_layers({"x": in_shape}) + (
        f'layer {{ name: "interp" type: "Interp" bottom: "x" top: "out" '
        f'interp_param {{ {interp_fields} }} }}\n')
    import_caffe()
    converted, count = convert.convert_text(text, form, convert.load_protos())
    assert count == 1
    return make_net(converted)


def run_scale_interp(x, interp_fields, form, dy_seed=7):
    net = scale_interp_net(x.shape, interp_fields, form)
    out_shape = net.blobs["out"].data.shape
    dy = np.random.default_rng(dy_seed).uniform(-1, 1, out_shape).astype(np.float32)
    out, diffs = run_net(net, {"x": x}, dy)
    return out, diffs["x"], dy


def pads_of(fields):
    """(pad_beg, pad_end) of an interp_param text such as "zoom_factor: 2 pad_beg: -2"."""
    words = fields.replace(":", " ").split()
    values = dict(zip(words[::2], words[1::2]))
    return int(values.get("pad_beg", 0)), int(values.get("pad_end", 0))


def grids(in_hw, out_hw, pad_beg, pad_end):
    h_eff, w_eff = (n + pad_beg + pad_end for n in in_hw)
    return ((deeplab_axis(h_eff, out_hw[0]), exact_axis(h_eff, out_hw[0]), h_eff),
            (deeplab_axis(w_eff, out_hw[1]), exact_axis(w_eff, out_hw[1]), w_eff))


def coordinate_errors(deeplab, exact, n_in):
    return np.abs(effective_coordinate(deeplab, n_in) - effective_coordinate(exact, n_in))


def random_input(shape, seed, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


# DeepLab prototxt blocks (fields, input H x W) whose float grid is exact: every output's float32
# coordinate equals the exact one (checked below, not assumed).
COINCIDING = [
    ("zoom_factor: 8", (41, 41)),                      # DeepLab-LargeFOV's fc8 upsampling
    ("zoom_factor: 8", (65, 65)),                      # its 513 x 513 test input
    ("shrink_factor: 8", (321, 321)),                  # labels 321 -> 41
    ("shrink_factor: 2", (321, 321)),                  # DeepLab-v2's data_res05
    ("zoom_factor: 2", (81, 41)),
    ("zoom_factor: 4 shrink_factor: 3", (31, 31)),     # DeepLab-v2 ResNet's fc1_res075 upsampling
    ("height: 9 width: 9", (9, 9)),                    # same size: DeepLab copies
    ("zoom_factor: 2 pad_beg: -2 pad_end: -3", (21, 21)),
]
# And blocks whose float grid is not exact.
DIFFERING = [
    ("shrink_factor: 4 zoom_factor: 3", (41, 41)),     # 41 -> 31: ratio 4/3
    ("shrink_factor: 4 zoom_factor: 3", (321, 321)),   # DeepLab-v2's data_res075: 321 -> 241
    ("zoom_factor: 3", (41, 41)),                      # ratio 1/3
    ("height: 50 width: 70", (41, 41)),
]

# float32 rounding of values of magnitude ~1: a few ulp of 1.
FLOAT_TOL = 1e-6


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fields, in_hw", COINCIDING)
def test_agreement_where_the_grids_coincide(fields, in_hw, form):
    x = random_input((2, 3) + in_hw, seed=sum(in_hw))
    out, dx, dy = run_scale_interp(x, fields, form)
    pad_beg, pad_end = pads_of(fields)
    for deeplab, exact, n_in in grids(in_hw, out.shape[2:], pad_beg, pad_end):
        np.testing.assert_array_equal(deeplab[0], exact[0])
        np.testing.assert_array_equal(deeplab[1], exact[1])
        np.testing.assert_array_equal(deeplab[2].astype(np.float64), exact[2])
    np.testing.assert_allclose(out, deeplab_forward(x, out.shape[2:], pad_beg, pad_end),
                               rtol=0, atol=FLOAT_TOL)
    np.testing.assert_allclose(dx, deeplab_backward(dy, in_hw, pad_beg, pad_end),
                               rtol=0, atol=4 * FLOAT_TOL)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fields, in_hw", DIFFERING)
def test_where_the_grids_differ_the_difference_is_the_float_grids_misplacement(fields, in_hw,
                                                                             form):
    # An input whose neighbours differ by ~2 makes a coordinate error e show as ~2e in the output,
    # well above the float32 rounding of values of magnitude ~1.
    rng = np.random.default_rng(sum(in_hw))
    signs = np.indices(in_hw).sum(axis=0) % 2 * 2 - 1
    x = (signs * rng.uniform(0.5, 1.0, (2, 3) + in_hw)).astype(np.float32)
    out, dx, dy = run_scale_interp(x, fields, form)
    pad_beg, pad_end = pads_of(fields)
    (dl_y, ex_y, h_eff), (dl_x, ex_x, w_eff) = grids(in_hw, out.shape[2:], pad_beg, pad_end)
    errors = np.concatenate([coordinate_errors(dl_y, ex_y, h_eff),
                             coordinate_errors(dl_x, ex_x, w_eff)])
    assert errors.max() > 1e-6  # the grids really differ here

    # The reference is DeepLab's formula in float32 ...
    deeplab = deeplab_forward(x, out.shape[2:], pad_beg, pad_end)
    # ... which is its own grid applied exactly, up to float rounding,
    np.testing.assert_allclose(deeplab, separable(x, dl_y, dl_x, pad_beg, pad_end),
                               rtol=0, atol=FLOAT_TOL)
    # ... and ScaleInterp is the exact grid applied, up to float rounding.
    exact = separable(x, ex_y, ex_x, pad_beg, pad_end)
    np.testing.assert_allclose(out, exact, rtol=0, atol=FLOAT_TOL)
    # So ScaleInterp - DeepLab is the grid difference alone: it is what the float grid's
    # misplacement predicts, to float rounding, and it is larger than that rounding.
    predicted = exact - separable(x, dl_y, dl_x, pad_beg, pad_end)
    np.testing.assert_allclose(out - deeplab, predicted, rtol=0, atol=2 * FLOAT_TOL)
    assert np.abs(predicted).max() > 2 * FLOAT_TOL
    # The size of that difference: at most the coordinate error times the largest step
    # between neighbouring inputs, per axis.
    step = max(np.abs(np.diff(x, axis=2)).max(), np.abs(np.diff(x, axis=3)).max())
    bound = step * (coordinate_errors(dl_y, ex_y, h_eff).max()
                    + coordinate_errors(dl_x, ex_x, w_eff).max())
    assert np.abs(out - deeplab).max() <= bound + 2 * FLOAT_TOL
    # Outputs whose row and column coordinates both coincide agree to float rounding.
    same_y = coordinate_errors(dl_y, ex_y, h_eff) == 0
    same_x = coordinate_errors(dl_x, ex_x, w_eff) == 0
    assert same_y.any() and same_x.any()
    np.testing.assert_allclose(out[:, :, same_y][:, :, :, same_x],
                               deeplab[:, :, same_y][:, :, :, same_x], rtol=0, atol=FLOAT_TOL)
    # Backward: the transposes of the two grids, the same way.
    deeplab_dx = deeplab_backward(dy, in_hw, pad_beg, pad_end)
    predicted_dx = (separable_backward(dy, in_hw, ex_y, ex_x, pad_beg, pad_end)
                    - separable_backward(dy, in_hw, dl_y, dl_x, pad_beg, pad_end))
    np.testing.assert_allclose(dx - deeplab_dx, predicted_dx, rtol=0, atol=8 * FLOAT_TOL)


def test_a_linear_ramp_shows_the_coordinate_error_itself():
    # Bilinear interpolation reproduces a linear function exactly, so on v(y, x) = y the two
    # layers return their own source coordinates: ScaleInterp the exact ones, DeepLab the float
    # ones. 41 -> 31 keeps values small, so float32 holds the coordinates to ~4e-6 / 2^20.
    in_hw, fields = (41, 41), "shrink_factor: 4 zoom_factor: 3"
    ramp = np.broadcast_to(np.arange(41, dtype=np.float32)[:, None], in_hw)[None, None].copy()
    out, _, _ = run_scale_interp(ramp, fields, "cpp")
    deeplab_y = effective_coordinate(deeplab_axis(41, 31), 41)
    exact_y = effective_coordinate(exact_axis(41, 31), 41)
    np.testing.assert_allclose(out[0, 0, :, 0], exact_y, rtol=0, atol=4e-6)
    np.testing.assert_allclose(deeplab_forward(ramp, (31, 31))[0, 0, :, 0], deeplab_y, rtol=0,
                               atol=4e-6)
    assert np.abs(deeplab_y - exact_y).max() > 2e-6


# ---------------------------------------------------------------------------------------------
# Measurements for the README
# ---------------------------------------------------------------------------------------------

MEASURED = [
    ("zoom_factor: 8", (41, 41), "fc8 41 -> 321"),
    ("shrink_factor: 4 zoom_factor: 3", (321, 321), "data_res075 321 -> 241"),
    ("shrink_factor: 4 zoom_factor: 3", (41, 41), "41 -> 31"),
    ("zoom_factor: 4 shrink_factor: 3", (31, 31), "fc1_res075 31 -> 41"),
    ("zoom_factor: 3", (41, 41), "41 -> 121"),
    ("height: 50 width: 70", (41, 41), "41 -> 50 x 70"),
]


def measure():
    """Rows of (case, differing coordinates, max coordinate error, max |forward difference| for
    inputs in [0, 1) and in [0, 255), max |backward difference| for dy in [-1, 1))."""
    rows = []
    for fields, in_hw, name in MEASURED:
        x = random_input((1, 3) + in_hw, seed=1, low=0.0, high=1.0)
        out, dx, dy = run_scale_interp(x, fields, "cpp")
        pad_beg, pad_end = pads_of(fields)
        (dl_y, ex_y, h_eff), (dl_x, ex_x, w_eff) = grids(in_hw, out.shape[2:], pad_beg, pad_end)
        errors_y, errors_x = (coordinate_errors(dl_y, ex_y, h_eff),
                              coordinate_errors(dl_x, ex_x, w_eff))
        image = (x * 255).astype(np.float32)
        out_image, _, _ = run_scale_interp(image, fields, "cpp")
        rows.append((
            f"`{fields}` {name}",
            f"{int((errors_y > 0).sum())}/{len(errors_y)} x {int((errors_x > 0).sum())}"
            f"/{len(errors_x)}",
            max(errors_y.max(), errors_x.max()),
            np.abs(out - deeplab_forward(x, out.shape[2:])).max(),
            np.abs(out_image - deeplab_forward(image, out.shape[2:])).max(),
            np.abs(dx - deeplab_backward(dy, in_hw)).max()))
    return rows


if __name__ == "__main__":
    print("| DeepLab `interp_param` | coordinates off (rows x cols) | max coordinate error (px) "
          "| max diff, input in [0,1) | max diff, input in [0,255) | max diff, backward |")
    print("|---|---|---|---|---|---|")
    for row in measure():
        print(f"| {row[0]} | {row[1]} | {row[2]:.2g} | {row[3]:.2g} | {row[4]:.2g} | "
              f"{row[5]:.2g} |")
    sys.exit(0)
