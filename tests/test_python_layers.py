"""The Python layers through pycaffe: values, gradients and setup errors."""

import re

import numpy as np
import pytest

from attention_scale.errors import LayerConfigError
from pyhelpers import (build_in_child, input_layers, make_net, python_layer, ref_interp_backward,
                       ref_interp_forward, ref_merge, ref_merge_backward, ref_softmax,
                       ref_softmax_backward, run_net)

TOL = dict(rtol=1e-5, atol=1e-5)


def _random(shapes, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _net(layer_type, shapes, param_str=""):
    return make_net(input_layers(shapes) + python_layer(layer_type, list(shapes), param_str=param_str))


# ----------------------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("param_str, in_hw, pad_beg, pad_end, nearest", [
    ("zoom_factor: 3", (4, 5), 0, 0, False),
    ("shrink_factor: 2 pad_beg: -1 pad_end: -1", (9, 8), -1, -1, False),
    ("shrink_factor: 2 zoom_factor: 3", (7, 7), 0, 0, False),
    ("height: 6 width: 2 interpolation: NEAREST", (4, 5), 0, 0, True),
    ("scale: 0.75 pad_end: -2", (11, 13), 0, -2, False),
])
def test_scale_interp(param_str, in_hw, pad_beg, pad_end, nearest):
    from attention_scale.attention_scale_pb2 import ScaleInterpParameter
    from attention_scale.layers.scale_interp import spec_from_param
    from google.protobuf import text_format
    spec = spec_from_param(text_format.Parse(param_str, ScaleInterpParameter()), 1)
    out_hw = spec.output_hw(in_hw)
    inputs = _random({"x": (2, 3) + in_hw}, seed=len(param_str))
    dy = np.random.default_rng(1).standard_normal((2, 3) + out_hw).astype(np.float32)
    net = _net("ScaleInterp", {"x": inputs["x"].shape}, param_str)
    out, diffs = run_net(net, inputs, dy)
    np.testing.assert_allclose(out, ref_interp_forward(inputs["x"], out_hw, pad_beg, pad_end, nearest),
                               **TOL)
    np.testing.assert_allclose(diffs["x"], ref_interp_backward(dy, in_hw, pad_beg, pad_end, nearest),
                               **TOL)


def test_scale_interp_reference_bottom_gets_zero_gradient():
    shapes = {"x": (1, 2, 5, 4), "ref": (3, 1, 9, 7)}
    inputs = _random(shapes, seed=2)
    dy = np.ones((1, 2, 9, 7), np.float32)
    net = _net("ScaleInterp", shapes)
    net.blobs["ref"].diff[...] = 7
    out, diffs = run_net(net, inputs, dy)
    assert out.shape == (1, 2, 9, 7)
    np.testing.assert_allclose(out, ref_interp_forward(inputs["x"], (9, 7)), **TOL)
    assert not diffs["ref"].any()


def test_scale_interp_follows_input_reshape():
    net = _net("ScaleInterp", {"x": (1, 1, 5, 5)}, "zoom_factor: 2")
    net.blobs["x"].reshape(2, 3, 7, 4)
    net.reshape()
    assert net.blobs["out"].data.shape == (2, 3, 13, 7)
    x = _random({"x": (2, 3, 7, 4)}, 3)["x"]
    out, _ = run_net(net, {"x": x}, np.zeros((2, 3, 13, 7), np.float32))
    np.testing.assert_allclose(out, ref_interp_forward(x, (13, 7)), **TOL)


@pytest.mark.parametrize("split", [False, True])
def test_softmax_over_scales(split):
    n, s, h, w = 2, 3, 4, 5
    stacked = _random({"h": (n, s, h, w)}, seed=4)["h"] * 4
    dy = np.random.default_rng(5).standard_normal((n, s, h, w)).astype(np.float32)
    if split:
        inputs = {f"h{k}": stacked[:, k:k + 1].copy() for k in range(s)}
    else:
        inputs = {"h": stacked}
    net = _net("SoftmaxOverScales", {name: v.shape for name, v in inputs.items()})
    out, diffs = run_net(net, inputs, dy)
    y_ref = ref_softmax(stacked)
    np.testing.assert_allclose(out, y_ref, **TOL)
    dx_ref = ref_softmax_backward(y_ref, dy)
    got = np.concatenate([diffs[f"h{k}"] for k in range(s)], axis=1) if split else diffs["h"]
    np.testing.assert_allclose(got, dx_ref, **TOL)


@pytest.mark.parametrize("merge, num", [("ATTENTION", 3), ("ATTENTION", 1), ("AVERAGE", 3),
                                        ("MAX", 3), ("MAX", 2), ("AVERAGE", 1)])
def test_weighted_scale_sum(merge, num):
    shape = (2, 4, 3, 5)
    shapes = {f"f{s}": shape for s in range(num)}
    if merge == "ATTENTION":
        shapes["w"] = (2, num, 3, 5)
    inputs = _random(shapes, seed=num)
    dg = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    param = "" if merge == "ATTENTION" else f"merge: {merge}"
    out, diffs = run_net(_net("WeightedScaleSum", shapes, param), inputs, dg)
    scores = [inputs[f"f{s}"] for s in range(num)]
    g_ref, _ = ref_merge(scores, inputs.get("w"), merge)
    np.testing.assert_allclose(out, g_ref, **TOL)
    df_ref, dw_ref = ref_merge_backward(scores, inputs.get("w"), dg, merge)
    for s in range(num):
        np.testing.assert_allclose(diffs[f"f{s}"], df_ref[s], **TOL)
    if merge == "ATTENTION":
        np.testing.assert_allclose(diffs["w"], dw_ref, **TOL)


def _finite_difference_check(net, inputs, probe, eps, tol, picks=6, seed=0):
    """Compare a few entries of each input's diff with central differences of sum(out * probe)."""
    _, diffs = run_net(net, inputs, probe)
    rng = np.random.default_rng(seed)
    for name, value in inputs.items():
        for _ in range(picks):
            idx = tuple(int(rng.integers(0, d)) for d in value.shape)
            losses = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in inputs.items()}
                moved[name][idx] += sign * eps
                for k, v in moved.items():
                    net.blobs[k].data[...] = v
                net.forward()
                losses.append(float(np.sum(net.blobs["out"].data.astype(np.float64) * probe)))
            numeric = (losses[0] - losses[1]) / (2 * eps)
            assert diffs[name][idx] == pytest.approx(numeric, abs=tol), (name, idx)


@pytest.mark.parametrize("layer_type, shapes, param_str, eps, tol", [
    ("ScaleInterp", {"x": (1, 2, 5, 6)}, "zoom_factor: 2 pad_beg: -1", 1e-2, 2e-3),
    ("SoftmaxOverScales", {"h": (1, 3, 3, 4)}, "", 1e-2, 2e-3),
    ("SoftmaxOverScales", {"a": (1, 1, 3, 3), "b": (1, 1, 3, 3)}, "", 1e-2, 2e-3),
    ("WeightedScaleSum", {"f0": (1, 3, 2, 3), "f1": (1, 3, 2, 3), "w": (1, 2, 2, 3)}, "", 1e-2, 2e-3),
    ("WeightedScaleSum", {"f0": (1, 3, 2, 3), "f1": (1, 3, 2, 3)}, "merge: AVERAGE", 1e-2, 2e-3),
    ("WeightedScaleSum", {"f0": (1, 3, 2, 3), "f1": (1, 3, 2, 3)}, "merge: MAX", 1e-3, 2e-3),
])
def test_finite_differences_through_pycaffe(layer_type, shapes, param_str, eps, tol):
    inputs = _random(shapes, seed=31)
    net = _net(layer_type, shapes, param_str)
    net.forward(**{k: v for k, v in inputs.items()})
    probe = np.random.default_rng(32).standard_normal(net.blobs["out"].data.shape)
    _finite_difference_check(net, inputs, probe.astype(np.float32), eps, tol)


# ----------------------------------------------------------------------------- errors at setup

ERRORS = [
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "zoom: 2", 'param_str .*no field named "zoom"'),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "scale: big", "param_str 'scale: big'.*parse float"),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "interpolation: CUBIC", "no value named CUBIC"),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "", "exactly one of .*got none"),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "scale: -0.5", "scale must be a finite number > 0"),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "zoom_factor: 2 pad_beg: 1", "pad_beg must be <= 0"),
    ("ScaleInterp", {"x": (1, 1, 4, 4), "r": (1, 1, 2, 2)}, "scale: 0.5",
     "scale and a second bottom"),
    ("ScaleInterp", {"x": (1, 1, 4, 4), "r": (1, 1, 2, 2), "q": (1, 1, 2, 2)}, "",
     "takes 1 bottom .*got 3"),
    ("ScaleInterp", {"x": (1, 4, 4)}, "zoom_factor: 2", r"bottom\[0\] must be 4-D.*\(1, 4, 4\)"),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "zoom_factor: 2 pad_beg: -2 pad_end: -2",
     r"bottom\[0\] has shape 1 1 4 4 \(16\), too small for pad_beg -2 and pad_end -2 "
     r"\(cropped size 0 x 0\)"),
    ("ScaleInterp", {"x": (1, 1, 3, 3)}, "zoom_factor: 2 pad_beg: -2147483648 pad_end: -2147483648",
     r"bottom\[0\] has shape 1 1 3 3 \(9\), too small for pad_beg -2147483648 and pad_end "
     r"-2147483648 \(cropped size -4294967293 x -4294967293\)"),
    ("SoftmaxOverScales", {"h": (1, 2, 3, 3)}, "axis: 1", 'no field named "axis"'),
    ("SoftmaxOverScales", {"a": (1, 1, 3, 3), "b": (1, 2, 3, 3)}, "",
     r"expected \(1, 1, 3, 3\), bottom\[1\] has \(1, 2, 3, 3\)"),
    ("SoftmaxOverScales", {"a": (1, 1, 3, 3), "b": (2, 1, 3, 3)}, "", r"bottom\[1\] has \(2, 1, 3, 3\)"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3)}, "", "takes at least 2 bottoms, got 1"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3)}, "merge: MEDIAN", "no value named MEDIAN"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3), "f1": (1, 2, 3, 4), "w": (1, 2, 3, 3)}, "",
     r"bottom\[0\] is \(1, 2, 3, 3\), bottom\[1\] is \(1, 2, 3, 4\)"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3), "f1": (1, 2, 3, 3), "w": (1, 3, 3, 3)}, "",
     r"weights .*bottom\[2\].*\(1, 2, 3, 3\).*got \(1, 3, 3, 3\)"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3), "f1": (2, 2, 3, 3)}, "merge: MAX",
     r"bottom\[1\] is \(2, 2, 3, 3\)"),
]


@pytest.mark.parametrize("layer_type, shapes, param_str, match", ERRORS)
def test_errors_at_setup_name_layer_and_problem(layer_type, shapes, param_str, match):
    with pytest.raises(LayerConfigError, match=f"{layer_type} .*{match}"):
        _net(layer_type, shapes, param_str)


def test_error_on_reshape_to_a_bad_shape():
    net = _net("WeightedScaleSum", {"f0": (1, 2, 3, 3), "f1": (1, 2, 3, 3)}, "merge: AVERAGE")
    net.blobs["f1"].reshape(1, 2, 3, 5)
    with pytest.raises(LayerConfigError, match=r"WeightedScaleSum .*bottom\[1\] is \(1, 2, 3, 5\)"):
        net.reshape()


def test_wrong_top_count_and_in_place():
    text = input_layers({"x": (1, 2, 3, 3)}) + (
        'layer { name: "s" type: "Python" bottom: "x" top: "a" top: "b" python_param { '
        'module: "attention_scale.layers" layer: "SoftmaxOverScales" } }')
    with pytest.raises(LayerConfigError, match="SoftmaxOverScales .*exactly 1 top, got 2"):
        make_net(text)
    in_place = input_layers({"x": (1, 2, 3, 3)}) + python_layer("SoftmaxOverScales", ["x"], top="x")
    with pytest.raises(LayerConfigError, match=r"cannot run in place \(top\[0\] is bottom\[0\]\)"):
        make_net(in_place)


# ----------------------------------------------------------------------------- issue 9: limits, empty
# Before these checks existed, such nets aborted the interpreter inside Caffe (or raised a bare
# OverflowError), so they are built in a child process, one after the other, each reporting
# its error on a line: a regression fails the tests, not the run.

LIMIT = ("is out of range: each output side must be >= 1 and 5 x output side \\+ 2 x cropped "
         "input side <= 2147483647")
CHILD_ERRORS = [
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "zoom_factor: 2000000000",
     r"output size 6000000001 x 6000000001 for bottom\[0\] of shape 1 1 4 4 \(16\) \(cropped "
     r"4 x 4\) " + LIMIT),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "scale: 1e30", r"output size 2147483648 x 2147483648 .*"
     + LIMIT),
    ("ScaleInterp", {"x": (1, 1, 4, 4)}, "height: 1 width: 2000000000",
     r"output size 1 x 2000000000 .*" + LIMIT),
    ("ScaleInterp", {"x": (3, 1000, 4, 4)}, "height: 1000 width: 1000",
     r"the top would have shape 3 1000 1000 1000, more than a blob holds \(2147483647 elements\)"),
    ("ScaleInterp", {"x": (0, 2, 4, 4)}, "zoom_factor: 2",
     r"bottom\[0\] has shape 0 2 4 4 \(0\), expected every axis >= 1 \(N x C x H x W; empty "
     r"blobs are not supported\)"),
    ("ScaleInterp", {"x": (1, 2, 4, 4), "r": (1, 2, 0, 5)}, "",
     r"bottom\[1\] has shape 1 2 0 5 \(0\), expected every axis >= 1"),
    ("SoftmaxOverScales", {"h": (2, 0, 3, 3)}, "",
     r"bottom\[0\] has shape 2 0 3 3 \(0\), expected every axis >= 1 \(N x S x H x W; empty"),
    ("SoftmaxOverScales", {"a": (1, 1, 3, 3), "b": (1, 1, 3, 0)}, "",
     r"bottom\[1\] has shape 1 1 3 0 \(0\), expected every axis >= 1"),
    # bottoms that fit in a blob (never allocated), a top that does not
    ("SoftmaxOverScales", {"a": (1, 1, 40000, 40000), "b": (1, 1, 40000, 40000)}, "",
     r"the top would have shape 1 2 40000 40000 \(3200000000\) for 2 bottoms of shape 1 1 40000 "
     r"40000 \(1600000000\) \(bottom\[0\] and the others\), more than a blob holds "
     r"\(2147483647 elements\)$"),
    ("WeightedScaleSum", {"f0": (1, 2, 3, 3), "f1": (1, 2, 3, 3), "w": (1, 2, 0, 3)}, "",
     r"bottom\[2\] has shape 1 2 0 3 \(0\), expected every axis >= 1 \(N x S x H x W; empty"),
    ("WeightedScaleSum", {"f0": (0, 2, 3, 3)}, "merge: MAX",
     r"bottom\[0\] has shape 0 2 3 3 \(0\), expected every axis >= 1 \(N x C x H x W; empty"),
]


@pytest.fixture(scope="module")
def child_errors(tmp_path_factory):
    nets = {f"case{k}": input_layers(shapes) + python_layer(layer_type, list(shapes),
                                                            param_str=param_str)
            for k, (layer_type, shapes, param_str, _) in enumerate(CHILD_ERRORS)}
    return build_in_child(tmp_path_factory.mktemp("child"), nets)


@pytest.mark.parametrize("case", range(len(CHILD_ERRORS)))
def test_limits_and_empty_bottoms_raise_a_named_error(child_errors, case):
    layer_type, _, _, match = CHILD_ERRORS[case]
    line = child_errors.get(f"case{case}")
    assert line is not None, "the child died before this net:\n" + child_errors["output"][-3000:]
    assert re.match(f"LayerConfigError: {layer_type} \\(Python layer, param_str .*\\): {match}",
                        line), line


@pytest.mark.parametrize("merge", ["ATTENTION", "MAX"])
def test_nonfinite_values_through_pycaffe(merge):
    # The three layers in one net of Python layers: a NaN in a score map stays at its pixel.
    shapes = {"x": (1, 2, 5, 5), "h": (1, 2, 9, 9)}
    text = input_layers(shapes) + python_layer("ScaleInterp", ["x", "h"], top="up", name="up") \
        + python_layer("SoftmaxOverScales", ["h"], top="w", name="w") \
        + python_layer("WeightedScaleSum", ["up", "up"] + (["w"] if merge == "ATTENTION" else []),
                       param_str=f"merge: {merge}", name="merge")
    net = make_net(text)
    x = np.ones(shapes["x"], np.float32)
    x[0, 1, 2, 2] = np.nan  # read by outputs 3..5 along each axis of the 9 x 9 map
    h = np.zeros(shapes["h"], np.float32)
    h[0, 0, 0, 0] = np.inf
    net.forward(x=x, h=h)
    out = net.blobs["out"].data
    nan_at = np.argwhere(np.isnan(out))
    assert {tuple(p) for p in nan_at} == {(0, 1, y, x) for y in (3, 4, 5) for x in (3, 4, 5)}
    if merge == "ATTENTION":
        np.testing.assert_allclose(net.blobs["w"].data[0, :, 0, 0], [1, 0])
