"""The C++ layers and their Python fallbacks in pycaffe: one net written with the C++ layers,
converted by attention_scale.nets.convert, run on the same inputs; outputs and bottom diffs agree."""

import numpy as np
import pytest

from attention_scale.nets import convert
from attention_scale.layers.params import FIELDS
from pyhelpers import build_in_child, cpp_layer, import_caffe, input_layers, make_net, run_net

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


# ----------------------------------------------------------------------------- issue 9

def _agree_nonfinite(layer_type, shapes, param_text, seed, fraction=0.05):
    """_agree with NaN, +inf and -inf at random places of every input (assert_allclose treats
    NaN as equal to NaN, and needs every NaN and inf in the same place in both forms)."""
    import_caffe()
    text = input_layers(shapes) + cpp_layer(layer_type, list(shapes), param_field=FIELDS[layer_type],
                                            param_text=param_text)
    python_text, _ = convert.convert_text(text, "python", convert.load_protos())
    cpp_net, python_net = make_net(text), make_net(python_text)
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, shape in shapes.items():
        value = rng.standard_normal(shape).astype(np.float32)
        special = rng.random(shape) < fraction
        value[special] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32),
                                    int(special.sum()))
        inputs[name] = value
    top_shape = cpp_net.blobs["out"].data.shape
    dy = rng.standard_normal(top_shape).astype(np.float32)
    dy[rng.random(top_shape) < fraction] = np.nan
    out_cpp, diffs_cpp = run_net(cpp_net, inputs, dy)
    out_py, diffs_py = run_net(python_net, inputs, dy)
    assert np.isnan(out_cpp).any() or layer_type == "SoftmaxOverScales"
    np.testing.assert_allclose(out_py, out_cpp, rtol=1e-5, atol=1e-5, err_msg=param_text)
    for name in inputs:
        np.testing.assert_allclose(diffs_py[name], diffs_cpp[name], rtol=1e-5, atol=1e-5,
                                   err_msg=f"{param_text}: diff of {name}")


@pytest.mark.parametrize("shapes, param_text", [
    ({"x": (2, 3, 8, 8)}, "zoom_factor: 2"), ({"x": (2, 3, 8, 8)}, "zoom_factor: 2 interpolation: NEAREST"),
    ({"x": (1, 2, 17, 17)}, "shrink_factor: 4"), ({"x": (1, 2, 9, 13)}, "height: 21 width: 5"),
    ({"x": (1, 2, 41, 41)}, "scale: 0.75 pad_beg: -1"),
    ({"x": (1, 2, 20, 20)}, "height: 7 width: 33 interpolation: NEAREST")])
def test_scale_interp_nonfinite(shapes, param_text):
    _agree_nonfinite("ScaleInterp", shapes, param_text, seed=len(param_text))


@pytest.mark.parametrize("shapes", [{"h": (2, 3, 5, 7)}, {"a": (2, 1, 5, 7), "b": (2, 1, 5, 7)}])
def test_softmax_over_scales_nonfinite(shapes):
    _agree_nonfinite("SoftmaxOverScales", shapes, "", seed=5, fraction=0.3)


@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE", "MAX"])
def test_weighted_scale_sum_nonfinite(merge):
    shapes = {f"f{s}": (2, 3, 4, 5) for s in range(5)}
    if merge == "ATTENTION":
        shapes["w"] = (2, 5, 4, 5)
    _agree_nonfinite("WeightedScaleSum", shapes, f"merge: {merge}", seed=7, fraction=0.1)


# Sizes around the CPU loops' blocks (softmax: 512 pixels; merges: 4 scales per pass, 4096
# pixels in the ATTENTION backward) and up to 8 scales.
@pytest.mark.parametrize("shape", [(2, 8, 1, 511), (1, 5, 1, 512), (2, 3, 1, 513), (1, 7, 3, 343),
                                   (1, 8, 33, 33)])
@pytest.mark.parametrize("split", [False, True])
def test_softmax_over_scales_block_boundaries(shape, split):
    n, s, h, w = shape
    shapes = {f"h{k}": (n, 1, h, w) for k in range(s)} if split else {"h": shape}
    _agree("SoftmaxOverScales", shapes, "", seed=sum(shape))


@pytest.mark.parametrize("num", [1, 4, 5, 8])
@pytest.mark.parametrize("shape", [(1, 2, 1, 4095), (2, 2, 1, 4096), (1, 2, 1, 4097), (1, 1, 65, 65)])
@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE", "MAX"])
def test_weighted_scale_sum_block_boundaries(merge, shape, num):
    shapes = {f"f{s}": shape for s in range(num)}
    if merge == "ATTENTION":
        shapes["w"] = (shape[0], num) + shape[2:]
    _agree("WeightedScaleSum", shapes, f"merge: {merge}", seed=num + shape[3],
           integer_inputs=merge == "MAX")


def test_scale_sizes_agree_up_to_1e5():
    """Both forms take the same output size for `scale` at every size tried (random float32
    scales, random sizes up to 10^5): the C++ layer through pycaffe, the Python rule directly."""
    from attention_scale.layers import scale_interp
    rng = np.random.default_rng(11)
    scales = np.concatenate([rng.uniform(0.01, 4, 40), [0.7, 0.75, 0.5, 0.333, 1.3, 0.9]])
    for scale in scales.astype(np.float32):  # str(): the shortest decimal of the float32
        text = input_layers({"x": (1, 1, 1, 1)}) + cpp_layer(
            "ScaleInterp", ["x"], param_field="scale_interp_param", param_text=f"scale: {scale}")
        net = make_net(text)
        for h in np.concatenate([rng.integers(1, 100001, 8), [8401, 100001]]):
            net.blobs["x"].reshape(1, 1, int(h), 1)
            net.reshape()
            assert net.blobs["out"].data.shape[2] == scale_interp.scaled_size(int(h), scale), \
                (scale, h)


SCALE_INTERP_MESSAGE_CASES = [  # (bottom shape, scale_interp_param)
    ((2, 3, 5, 6), "zoom_factor: 2000000000"), ((2, 3, 5, 6), "scale: 1e30"),
    ((1, 1, 4, 4), "height: 1 width: 2000000000"), ((1, 1, 20000, 2), "height: 429496730 width: 1"),
    ((1, 1000, 4, 4), "height: 50000 width: 50000"), ((0, 3, 5, 6), "zoom_factor: 2"),
    ((1, 1, 4, 4), "zoom_factor: 2 pad_beg: -2 pad_end: -2"), ((2, 3, 5, 0), "scale: 0.5"),
    # an int sum would wrap the cropped size to 3 (the C++ layer then read out of bounds)
    ((1, 1, 3, 3), "zoom_factor: 2 pad_beg: -2147483648 pad_end: -2147483648")]
# (layer type, bottom shapes, param text): each stops at setup in both forms
MESSAGE_CASES = [("ScaleInterp", (shape,), text) for shape, text in SCALE_INTERP_MESSAGE_CASES] + [
    # two bottoms that fit in a blob, a 1 x 2 x 40000 x 40000 top that does not (never allocated)
    ("SoftmaxOverScales", ((1, 1, 40000, 40000),) * 2, "")]
PARAM_FIELDS = {"ScaleInterp": "scale_interp_param", "SoftmaxOverScales": None}


def _message_net(layer_type, shapes, param_text):
    names = [f"x{i}" for i in range(len(shapes))]
    return input_layers(dict(zip(names, shapes))) + cpp_layer(
        layer_type, names, param_field=PARAM_FIELDS[layer_type], param_text=param_text)


@pytest.fixture(scope="module")
def python_messages(tmp_path_factory):
    """The Python layer's message for every case, the nets built in one child process."""
    import_caffe()
    nets = {f"case{k}": convert.convert_text(_message_net(*case), "python",
                                             convert.load_protos())[0]
            for k, case in enumerate(MESSAGE_CASES)}
    return build_in_child(tmp_path_factory.mktemp("messages"), nets)


@pytest.mark.parametrize("case", range(len(MESSAGE_CASES)))
def test_both_forms_stop_with_the_same_message(tmp_path, python_messages, case):
    """The C++ layer's CHECK message (through the caffe tool, as glog aborts) and the Python
    layer's exception say the same after the layer's label; the C++ one adds the blob's name."""
    import re
    import subprocess
    from pathlib import Path
    model = tmp_path / "net.prototxt"
    model.write_text(_message_net(*MESSAGE_CASES[case]))
    caffe_tool = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "caffe"
    res = subprocess.run([str(caffe_tool), "time", "-model", str(model), "-iterations", "1"],
                         capture_output=True, text=True, timeout=120)
    layer_type = MESSAGE_CASES[case][0]
    cpp = re.search(f"Check failed: .*? {layer_type} layer 'layer': (.*)", res.stderr)
    assert res.returncode != 0 and cpp, res.stderr[-3000:]
    line = python_messages.get(f"case{case}")
    assert line is not None, python_messages["output"][-3000:]
    python = re.fullmatch(f"LayerConfigError: {layer_type} \\(Python layer, param_str .*?\\): (.*)",
                          line)
    assert python, line
    assert python.group(1) == re.sub(r"(bottom\[\d+\]) 'x\d+'", r"\1", cpp.group(1))
