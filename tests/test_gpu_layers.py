"""The C++ layers' CUDA kernels against their CPU loops, through pycaffe: one net, run on the same
inputs in CPU mode and then in GPU mode; outputs and bottom diffs agree to float tolerance (the
GPU may contract a product and a sum into one FMA, so bit equality is not expected). Random
shapes, every merge method, the scale counts around the GPU kernels' launch size (8 scales a
launch) and NaN/inf inputs. Skipped, with the reason, where pycaffe has no GPU to run on (a
CPU_ONLY build, or no device); the C++ tests' GPU variants check the same kernels' gradients."""

import numpy as np
import pytest

from attention_scale.layers.params import FIELDS
from pyhelpers import cpp_layer, import_caffe, input_layers, make_net, run_net


def _gpu_reason():
    import_caffe()
    from attention_scale.caffe_runtime import gpu_unavailable_reason
    return gpu_unavailable_reason(0)


@pytest.fixture(scope="module")
def caffe_gpu():
    reason = _gpu_reason()
    if reason is not None:
        pytest.skip(f"no GPU for pycaffe: {reason}")
    caffe = import_caffe()
    caffe.set_device(0)
    yield caffe
    caffe.set_mode_cpu()


def _inputs(rng, shapes, nonfinite=0.0, integers=False):
    inputs = {}
    for name, shape in shapes.items():
        value = (rng.integers(-2, 3, shape) if integers else rng.standard_normal(shape))
        value = value.astype(np.float32)
        if nonfinite:
            special = rng.random(shape) < nonfinite
            value[special] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32),
                                        int(special.sum()))
        inputs[name] = value
    return inputs


def _cpu_and_gpu(caffe, layer_type, shapes, param_text, seed, nonfinite=0.0, integers=False):
    """Run one net of `layer_type` in CPU mode and in GPU mode; assert they agree."""
    text = input_layers(shapes) + cpp_layer(layer_type, list(shapes),
                                            param_field=FIELDS[layer_type], param_text=param_text)
    net = make_net(text)
    rng = np.random.default_rng(seed)
    inputs = _inputs(rng, shapes, nonfinite, integers)
    dy = rng.standard_normal(net.blobs["out"].data.shape).astype(np.float32)
    caffe.set_mode_cpu()
    out_cpu, diffs_cpu = run_net(net, inputs, dy)
    caffe.set_mode_gpu()
    try:
        out_gpu, diffs_gpu = run_net(net, inputs, dy)
    finally:
        caffe.set_mode_cpu()
    where = f"{layer_type} {param_text!r} {shapes}"
    np.testing.assert_allclose(out_gpu, out_cpu, rtol=2e-5, atol=2e-6, err_msg=where)
    for name in inputs:
        np.testing.assert_allclose(diffs_gpu[name], diffs_cpu[name], rtol=2e-5, atol=2e-6,
                                   err_msg=f"{where}: diff of {name}")
    assert np.isfinite(out_cpu).all() or nonfinite, where


@pytest.mark.parametrize("seed", range(8))
def test_scale_interp(caffe_gpu, seed):
    rng = np.random.default_rng(500 + seed)
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    h, w = (int(v) for v in rng.integers(4, 40, 2))
    params = ["zoom_factor: 3", "shrink_factor: 2", "scale: 0.75", "height: 17 width: 29",
              "scale: 0.5 pad_beg: -1 pad_end: -1", "zoom_factor: 2 interpolation: NEAREST",
              "height: 7 width: 45", "shrink_factor: 3 interpolation: NEAREST"]
    _cpu_and_gpu(caffe_gpu, "ScaleInterp", {"x": (n, c, h, w)}, params[seed], seed)


@pytest.mark.parametrize("param_text, in_hw", [
    ("zoom_factor: 8", (41, 41)), ("scale: 0.75", (321, 321)), ("height: 513 width: 513", (65, 65)),
    ("shrink_factor: 8 interpolation: NEAREST", (321, 321))])
def test_scale_interp_network_sizes(caffe_gpu, param_text, in_hw):
    _cpu_and_gpu(caffe_gpu, "ScaleInterp", {"x": (1, 21) + in_hw}, param_text, seed=2)


@pytest.mark.parametrize("num_scales", [1, 2, 3, 8, 9, 12])
@pytest.mark.parametrize("split", [False, True])
def test_softmax_over_scales(caffe_gpu, num_scales, split):
    shape = (2, num_scales, 7, 37)
    shapes = ({f"h{k}": (2, 1, 7, 37) for k in range(num_scales)} if split else {"h": shape})
    _cpu_and_gpu(caffe_gpu, "SoftmaxOverScales", shapes, "", seed=num_scales)


# 1-8 scales take one launch (one ATTENTION forward kernel per count), 9 and 12 a second one.
@pytest.mark.parametrize("num_scales", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12])
@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE", "MAX"])
def test_weighted_scale_sum(caffe_gpu, merge, num_scales):
    shape = (2, 5, 9, 31)
    shapes = {f"f{s}": shape for s in range(num_scales)}
    if merge == "ATTENTION":
        shapes["w"] = (2, num_scales, 9, 31)
    _cpu_and_gpu(caffe_gpu, "WeightedScaleSum", shapes, f"merge: {merge}", seed=num_scales,
                 integers=merge == "MAX")


def test_weighted_scale_sum_full_resolution(caffe_gpu):
    shapes = {f"f{s}": (1, 21, 65, 513) for s in range(3)}
    shapes["w"] = (1, 3, 65, 513)
    _cpu_and_gpu(caffe_gpu, "WeightedScaleSum", shapes, "merge: ATTENTION", seed=3)


@pytest.mark.parametrize("layer_type, shapes, param_text", [
    ("ScaleInterp", {"x": (2, 3, 9, 9)}, "zoom_factor: 2"),
    ("ScaleInterp", {"x": (1, 2, 17, 17)}, "shrink_factor: 4"),
    ("SoftmaxOverScales", {"h": (2, 3, 5, 7)}, ""),
    ("WeightedScaleSum", {"f0": (2, 3, 4, 5), "f1": (2, 3, 4, 5), "w": (2, 2, 4, 5)},
     "merge: ATTENTION"),
    ("WeightedScaleSum", {"f0": (2, 3, 4, 5), "f1": (2, 3, 4, 5)}, "merge: MAX"),
    ("WeightedScaleSum", {"f0": (2, 3, 4, 5), "f1": (2, 3, 4, 5)}, "merge: AVERAGE")])
def test_nonfinite(caffe_gpu, layer_type, shapes, param_text):
    _cpu_and_gpu(caffe_gpu, layer_type, shapes, param_text, seed=9, nonfinite=0.1)

