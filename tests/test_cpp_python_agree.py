"""The C++ layers and their Python fallbacks in pycaffe: one net written with the C++ layers,
converted by attention_scale.nets.convert, run on the same inputs; outputs and bottom diffs agree."""

import numpy as np
import pytest

from attention_scale.nets import convert
from attention_scale.layers.params import FIELDS
from pyhelpers import cpp_layer, import_caffe, input_layers, make_net, run_net

CASES_PER_LAYER = 12


def _agree(layer_type, shapes, param_text, seed, integer_inputs=False):
    """Build both forms of one layer, run them, compare; returns the C++ output."""
    import_caffe()
    text = input_layers(shapes) + cpp_layer(layer_type, list(shapes), param_field=FIELDS[layer_type],
                                            param_text=param_text)
    python_text, count = convert.convert_text(text, "python", convert.load_protos())
    assert count == 1 and 'type: "Python"' in python_text
    cpp_net, python_net = make_net(text), make_net(python_text)
    rng = np.random.default_rng(seed)
    if integer_inputs:  # many exact ties, for MAX's first-scale rule
        inputs = {k: rng.integers(-2, 3, v).astype(np.float32) for k, v in shapes.items()}
    else:
        inputs = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    top_shape = cpp_net.blobs["out"].data.shape
    assert python_net.blobs["out"].data.shape == top_shape, param_text
    dy = rng.standard_normal(top_shape).astype(np.float32)
    out_cpp, diffs_cpp = run_net(cpp_net, inputs, dy)
    out_py, diffs_py = run_net(python_net, inputs, dy)
    np.testing.assert_allclose(out_py, out_cpp, rtol=1e-5, atol=1e-5, err_msg=param_text)
    for name in inputs:
        np.testing.assert_allclose(diffs_py[name], diffs_cpp[name], rtol=1e-5, atol=1e-5,
                                   err_msg=f"{param_text}: diff of {name}")
    return out_cpp


def _random_interp_case(rng):
    h, w = (int(v) for v in rng.integers(1, 24, 2))
    pad_beg, pad_end = (-int(v) for v in rng.integers(0, 3, 2))
    h, w = h - pad_beg - pad_end, w - pad_beg - pad_end  # keep the cropped size >= 1
    shapes = {"x": (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w)}
    mode = rng.choice(["factors", "size", "scale", "reference"])
    fields = []
    if mode == "factors":
        if rng.random() < 0.7:
            fields.append(f"zoom_factor: {rng.integers(1, 5)}")
        if rng.random() < 0.6 or not fields:
            fields.append(f"shrink_factor: {rng.integers(1, 5)}")
    elif mode == "size":
        fields += [f"height: {rng.integers(1, 30)}", f"width: {rng.integers(1, 30)}"]
    elif mode == "scale":
        fields.append(f"scale: {rng.choice([0.5, 0.75, 0.7, 1.0, 1.5, 2.0, 0.333])}")
    else:
        shapes["ref"] = (1, 1, int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    if pad_beg:
        fields.append(f"pad_beg: {pad_beg}")
    if pad_end:
        fields.append(f"pad_end: {pad_end}")
    if rng.random() < 0.3:
        fields.append("interpolation: NEAREST")
    return shapes, " ".join(fields)


@pytest.mark.parametrize("seed", range(CASES_PER_LAYER))
def test_scale_interp_random(seed):
    shapes, param_text = _random_interp_case(np.random.default_rng(100 + seed))
    _agree("ScaleInterp", shapes, param_text, seed)


@pytest.mark.parametrize("param_text, in_hw", [
    ("zoom_factor: 8", (41, 41)), ("shrink_factor: 8", (321, 321)), ("scale: 0.75", (321, 321)),
    ("scale: 0.5", (321, 321)), ("height: 513 width: 513", (65, 65)),
    ("shrink_factor: 8 interpolation: NEAREST", (321, 321)),
    ("height: 41 width: 41 pad_beg: -3 pad_end: -2 interpolation: NEAREST", (326, 326)),
    ("zoom_factor: 8 interpolation: NEAREST", (41, 41))])
def test_scale_interp_network_sizes(param_text, in_hw):
    _agree("ScaleInterp", {"x": (1, 2) + in_hw}, param_text, seed=1)


@pytest.mark.parametrize("seed", range(CASES_PER_LAYER))
def test_softmax_over_scales_random(seed):
    rng = np.random.default_rng(200 + seed)
    n, s, h, w = (int(v) for v in rng.integers(1, 5, 4))
    if seed % 2:
        shapes = {f"h{k}": (n, 1, h, w) for k in range(s)}
    else:
        shapes = {"h": (n, s, h, w)}
    _agree("SoftmaxOverScales", shapes, "", seed)


@pytest.mark.parametrize("seed", range(CASES_PER_LAYER))
@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE", "MAX"])
def test_weighted_scale_sum_random(merge, seed):
    rng = np.random.default_rng(300 + seed)
    num = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 6, 4))
    shapes = {f"f{s}": shape for s in range(num)}
    if merge == "ATTENTION":
        shapes["w"] = (shape[0], num) + shape[2:]
    param = "" if merge == "ATTENTION" and seed % 2 else f"merge: {merge}"
    _agree("WeightedScaleSum", shapes, param, seed, integer_inputs=merge == "MAX" and seed % 2)
