"""The C++ CPU loops run an AVX2 copy where the CPU has AVX2 (ATS_CPU_LOOP: function
multiversioning) and the baseline copy elsewhere; both must give the same bits. They do if every
element takes the same float operations in the same order and none is fused (no FMA): then the
result equals float32 arithmetic done step by step, which numpy does here. So the merge's
ATTENTION forward and backward must match numpy's float32 sequence exactly, at sizes past the
loops' blocks (8192 pixels) and with a plane size that is no multiple of the vector width."""

import numpy as np
import pytest

from pyhelpers import cpp_layer, import_caffe, input_layers, make_net, run_net


@pytest.mark.parametrize("num_scales", [1, 3, 5])
def test_attention_merge_is_float32_step_by_step(num_scales):
    import_caffe()
    n, c, h, w = 2, 3, 7, 1301  # 9107 pixels per plane: past one block of 8192, odd
    shapes = {f"f{s}": (n, c, h, w) for s in range(num_scales)}
    shapes["w"] = (n, num_scales, h, w)
    net = make_net(input_layers(shapes) + cpp_layer("WeightedScaleSum", list(shapes)))
    rng = np.random.default_rng(num_scales)
    inputs = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    dg = rng.standard_normal((n, c, h, w)).astype(np.float32)
    out, diffs = run_net(net, inputs, dg)

    f = [inputs[f"f{s}"] for s in range(num_scales)]
    wt = inputs["w"]
    want = wt[:, 0:1] * f[0]  # float32 products and sums, one at a time, in scale order
    for s in range(1, num_scales):
        want = want + wt[:, s:s + 1] * f[s]
    assert out.dtype == np.float32 and np.array_equal(out, want)
    for s in range(num_scales):
        assert np.array_equal(diffs[f"f{s}"], wt[:, s:s + 1] * dg)
        dw = f[s][:, 0] * dg[:, 0]  # summed over the classes in order
        for k in range(1, c):
            dw = dw + f[s][:, k] * dg[:, k]
        assert np.array_equal(diffs["w"][:, s], dw), f"scale {s}"
