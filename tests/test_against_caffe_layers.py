"""The fused layers against compositions of Caffe's own layers, in one net, forward and backward.

    SoftmaxOverScales             Softmax (axis 1); with S bottoms, Concat (axis 1) -> Softmax
    WeightedScaleSum AVERAGE      Eltwise SUM with coefficients 1/S
    WeightedScaleSum MAX          Eltwise MAX
    WeightedScaleSum ATTENTION    Slice (axis 1) -> Tile (C times) -> Eltwise PROD -> Eltwise SUM,
                                  after Softmax (axis 1) of the logits

Both compositions read the same input blobs of one net; backward is run once from each top (the
other top's diff zero), so each input's diff is that path's gradient alone. Every case runs with
the C++ layers and with their Python form (the net converted by the converter); Caffe's layers are
the reference in both. Caffe's stock layers are independent of this project's code, so agreement
here is agreement with Caffe's own conventions.

Ties in MAX: SPEC 2.3 routes the gradient to the first of the tied scales. Caffe's Eltwise MAX
(CPU, src/caffe/layers/eltwise_layer.cpp) compares bottom 0 with bottom 1 by `a > b`, so a tie
between them goes to bottom 1, and later bottoms replace the running maximum only when strictly
greater. The two therefore route differently exactly where scales 0 and 1 tie for the maximum;
the test checks both rules on data full of ties. (Caffe's GPU kernel, eltwise_layer.cu, replaces
the running maximum on ties with every later bottom, i.e. the last tied scale wins; there is no GPU
here to run it.)
"""

import numpy as np
import pytest

from attention_scale.nets import convert
from pyhelpers import import_caffe, input_layers, make_net

FORMS = ("cpp", "python")
TOL = dict(rtol=1e-5, atol=1e-6)


def _net(cpp_text, form):
    import_caffe()
    if form == "python":
        cpp_text, count = convert.convert_text(cpp_text, "python", convert.load_protos())
        assert count >= 1
    return make_net(cpp_text)


def _forward_backward(net, inputs, tops, top_diff):
    """Forward once; for each top, backward with dg on it (zeros on the other tops). Returns
    ({top: data}, {top: {input: diff}})."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    net.forward()
    data = {top: net.blobs[top].data.copy() for top in tops}
    diffs = {}
    for top in tops:
        for other in tops:
            net.blobs[other].diff[...] = top_diff if other == top else 0
        for name in inputs:
            net.blobs[name].diff[...] = np.nan  # every input's diff must be written
        net.backward()
        diffs[top] = {name: net.blobs[name].diff.copy() for name in inputs}
    return data, diffs


def _layer(name, layer_type, bottoms, tops, params=""):
    bottoms = " ".join(f'bottom: "{b}"' for b in bottoms)
    tops = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{layer_type}" {bottoms} {tops} {params} }}\n'


def _coeff(num_scales):
    # The float32 value of 1/S written so that Caffe parses exactly it.
    return repr(float(np.float32(1.0 / num_scales)))


def _assert_same(ours, stock, what):
    np.testing.assert_allclose(ours, stock, err_msg=what, **TOL)


CASES = [  # (N, C, H, W, S): small, and H*W / N*C*H*W past the CPU loops' blocks (512, 4096)
    (2, 3, 5, 7, 3),
    (1, 4, 40, 41, 2),
    (2, 2, 6, 5, 5),
]


# ---------------------------------------------------------------------------------------------
# SoftmaxOverScales
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n, c, h, w, s", CASES)
def test_softmax_over_scales_is_softmax_over_axis_1(n, c, h, w, s, form):
    rng = np.random.default_rng(s * 100 + h)
    logits = rng.normal(0, 3, (n, s, h, w)).astype(np.float32)
    logits[0, :, 0, 0] = [1e4 * (k + 1) for k in range(s)]  # large values stay finite in both
    text = (input_layers({"h": (n, s, h, w)})
            + _layer("ours", "SoftmaxOverScales", ["h"], ["w_ours"])
            + _layer("stock", "Softmax", ["h"], ["w_stock"], "softmax_param { axis: 1 }"))
    dy = rng.normal(0, 1, (n, s, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), {"h": logits}, ["w_ours", "w_stock"], dy)
    _assert_same(data["w_ours"], data["w_stock"], "forward")
    _assert_same(diffs["w_ours"]["h"], diffs["w_stock"]["h"], "backward")


@pytest.mark.parametrize("form", FORMS)
def test_softmax_over_scales_of_separate_bottoms_is_concat_then_softmax(form):
    n, h, w, s = 2, 6, 9, 3
    rng = np.random.default_rng(3)
    names = [f"h{k}" for k in range(s)]
    text = (input_layers({name: (n, 1, h, w) for name in names})
            + _layer("ours", "SoftmaxOverScales", names, ["w_ours"])
            + _layer("concat", "Concat", names, ["h_all"], "concat_param { axis: 1 }")
            + _layer("stock", "Softmax", ["h_all"], ["w_stock"], "softmax_param { axis: 1 }"))
    inputs = {name: rng.normal(0, 2, (n, 1, h, w)).astype(np.float32) for name in names}
    dy = rng.normal(0, 1, (n, s, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), inputs, ["w_ours", "w_stock"], dy)
    _assert_same(data["w_ours"], data["w_stock"], "forward")
    for name in names:
        _assert_same(diffs["w_ours"][name], diffs["w_stock"][name], f"backward to {name}")


# ---------------------------------------------------------------------------------------------
# WeightedScaleSum AVERAGE and MAX
# ---------------------------------------------------------------------------------------------

def _merge_net(shape, num_scales, merge, stock_params):
    names = [f"f{k}" for k in range(num_scales)]
    text = (input_layers({name: shape for name in names})
            + _layer("ours", "WeightedScaleSum", names, ["g_ours"],
                     f"weighted_scale_sum_param {{ merge: {merge} }}")
            + _layer("stock", "Eltwise", names, ["g_stock"], f"eltwise_param {{ {stock_params} }}"))
    return text, names


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n, c, h, w, s", CASES)
def test_average_is_eltwise_sum_with_coefficients_one_over_s(n, c, h, w, s, form):
    rng = np.random.default_rng(s * 10 + w)
    coeffs = " ".join(f"coeff: {_coeff(s)}" for _ in range(s))
    text, names = _merge_net((n, c, h, w), s, "AVERAGE", f"operation: SUM {coeffs}")
    inputs = {name: rng.normal(0, 1, (n, c, h, w)).astype(np.float32) for name in names}
    dg = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), inputs, ["g_ours", "g_stock"], dg)
    _assert_same(data["g_ours"], data["g_stock"], "forward")
    for name in names:
        _assert_same(diffs["g_ours"][name], diffs["g_stock"][name], f"backward to {name}")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n, c, h, w, s", CASES)
def test_max_is_eltwise_max_without_ties(n, c, h, w, s, form):
    rng = np.random.default_rng(s + h * w)
    text, names = _merge_net((n, c, h, w), s, "MAX", "operation: MAX")
    inputs = {name: rng.normal(0, 1, (n, c, h, w)).astype(np.float32) for name in names}
    stacked = np.stack(list(inputs.values()))
    assert ((stacked == stacked.max(axis=0)).sum(axis=0) == 1).all()  # no ties in this data
    dg = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), inputs, ["g_ours", "g_stock"], dg)
    np.testing.assert_array_equal(data["g_ours"], data["g_stock"])
    for name in names:
        np.testing.assert_array_equal(diffs["g_ours"][name], diffs["g_stock"][name])


def _first_max(values):
    """SPEC 2.3: the first scale holding the maximum."""
    best = 0
    for s in range(1, len(values)):
        if values[s] > values[best]:
            best = s
    return best


def _caffe_cpu_max(values):
    """Caffe's Eltwise MAX on the CPU: bottom 0 only if strictly above bottom 1, then a later
    bottom only if strictly above the running maximum."""
    best = 0 if values[0] > values[1] else 1
    for s in range(2, len(values)):
        if values[s] > values[best]:
            best = s
    return best


def _routes(diffs, names):
    """Index of the input that received the gradient, per element (-1: none, -2: several)."""
    received = np.stack([diffs[name] != 0 for name in names])
    route = np.argmax(received, axis=0)
    route[received.sum(axis=0) == 0] = -1
    route[received.sum(axis=0) > 1] = -2
    return route


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("num_scales", [2, 3, 4])
def test_max_ties_route_the_gradient_as_each_layer_documents(num_scales, form):
    shape = (2, 3, 8, 9)
    rng = np.random.default_rng(num_scales)
    text, names = _merge_net(shape, num_scales, "MAX", "operation: MAX")
    # Three integer levels: most positions have ties, of every pattern.
    inputs = {name: rng.integers(0, 3, shape).astype(np.float32) for name in names}
    dg = rng.uniform(1, 2, shape).astype(np.float32)  # never zero, so routes are visible
    data, diffs = _forward_backward(_net(text, form), inputs, ["g_ours", "g_stock"], dg)
    np.testing.assert_array_equal(data["g_ours"], data["g_stock"])
    ours, stock = _routes(diffs["g_ours"], names), _routes(diffs["g_stock"], names)
    expected_ours, expected_stock = np.empty(shape, int), np.empty(shape, int)
    for idx in np.ndindex(*shape):
        values = [inputs[name][idx] for name in names]
        expected_ours[idx], expected_stock[idx] = _first_max(values), _caffe_cpu_max(values)
    np.testing.assert_array_equal(ours, expected_ours)
    np.testing.assert_array_equal(stock, expected_stock)
    # Each sends all of dg to one input; they differ exactly where scales 0 and 1 tie for the max.
    for route, taken in ((ours, diffs["g_ours"]), (stock, diffs["g_stock"])):
        np.testing.assert_array_equal(sum(taken[name] for name in names), dg)
    stacked = np.stack(list(inputs.values()))
    tie_01 = (stacked[0] == stacked[1]) & (stacked[0] == stacked.max(axis=0))
    assert tie_01.sum() > 10
    np.testing.assert_array_equal(ours != stock, tie_01)


# ---------------------------------------------------------------------------------------------
# WeightedScaleSum ATTENTION
# ---------------------------------------------------------------------------------------------

def _stock_attention(names, weights, channels, top):
    """Slice the N x S x H x W weights, tile each over C, multiply with f^s, sum."""
    s = len(names)
    slices = [f"{weights}_{k}" for k in range(s)]
    text = _layer(f"{top}_slice", "Slice", [weights], slices, "slice_param { axis: 1 }")
    for k, name in enumerate(names):
        text += _layer(f"{top}_tile{k}", "Tile", [slices[k]], [f"{top}_t{k}"],
                       f"tile_param {{ axis: 1 tiles: {channels} }}")
        text += _layer(f"{top}_prod{k}", "Eltwise", [name, f"{top}_t{k}"], [f"{top}_p{k}"],
                       "eltwise_param { operation: PROD }")
    text += _layer(f"{top}_sum", "Eltwise", [f"{top}_p{k}" for k in range(s)], [top],
                   "eltwise_param { operation: SUM }")
    return text


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n, c, h, w, s", CASES)
def test_attention_from_logits_is_softmax_slice_tile_prod_sum(n, c, h, w, s, form):
    rng = np.random.default_rng(s * 7 + c)
    names = [f"f{k}" for k in range(s)]
    text = (input_layers({**{name: (n, c, h, w) for name in names}, "h": (n, s, h, w)})
            + _layer("att", "SoftmaxOverScales", ["h"], ["w_ours"])
            + _layer("ours", "WeightedScaleSum", names + ["w_ours"], ["g_ours"])
            + _layer("softmax", "Softmax", ["h"], ["w_stock"], "softmax_param { axis: 1 }")
            + _stock_attention(names, "w_stock", c, "g_stock"))
    inputs = {name: rng.normal(0, 1, (n, c, h, w)).astype(np.float32) for name in names}
    inputs["h"] = rng.normal(0, 2, (n, s, h, w)).astype(np.float32)
    dg = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), inputs, ["g_ours", "g_stock"], dg)
    _assert_same(data["g_ours"], data["g_stock"], "forward")
    for name in inputs:
        _assert_same(diffs["g_ours"][name], diffs["g_stock"][name], f"backward to {name}")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n, c, h, w, s", CASES)
def test_attention_with_given_weights_is_slice_tile_prod_sum(n, c, h, w, s, form):
    # Weights as an input (not a softmax), so the gradient to them is compared directly; they
    # need not sum to 1 for equation (1).
    rng = np.random.default_rng(s * 11 + h)
    names = [f"f{k}" for k in range(s)]
    text = (input_layers({**{name: (n, c, h, w) for name in names}, "w": (n, s, h, w)})
            + _layer("ours", "WeightedScaleSum", names + ["w"], ["g_ours"],
                     "weighted_scale_sum_param { merge: ATTENTION }")
            + _stock_attention(names, "w", c, "g_stock"))
    inputs = {name: rng.normal(0, 1, (n, c, h, w)).astype(np.float32) for name in names}
    inputs["w"] = rng.uniform(-1, 1, (n, s, h, w)).astype(np.float32)
    dg = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    data, diffs = _forward_backward(_net(text, form), inputs, ["g_ours", "g_stock"], dg)
    _assert_same(data["g_ours"], data["g_stock"], "forward")
    for name in inputs:
        _assert_same(diffs["g_ours"][name], diffs["g_stock"][name], f"backward to {name}")
