"""A DeepLab `Interp` block, converted to ScaleInterp, gives in the C++ layer the output worked out
by hand from SPEC section 2.1: corner-aligned grid, source = dst * (H_eff - 1) / (H_out - 1) plus the
crop offset -pad_beg. Inputs are linear in (y, x), which bilinear interpolation reproduces exactly,
so the expected output is the same linear function at the source coordinates."""

import numpy as np
import pytest

from attention_scale.nets import convert
from pyhelpers import import_caffe, input_layers, make_net, run_net


def _linear(y, x):
    return 0.5 + 0.25 * y - 0.125 * x


def _deeplab_net(in_shape, interp_fields):
    text = input_layers({"x": in_shape}) + (
        f'layer {{ name: "interp" type: "Interp" bottom: "x" top: "out" '
        f'interp_param {{ {interp_fields} }} }}\n')
    import_caffe()
    converted, count = convert.convert_text(text, "cpp", convert.load_protos())
    assert count == 1
    assert 'type: "ScaleInterp"' in converted and "interp_param" not in converted.replace(
        "scale_interp_param", "")
    return make_net(converted)


def _run(in_hw, interp_fields):
    ys, xs = np.meshgrid(np.arange(in_hw[0]), np.arange(in_hw[1]), indexing="ij")
    x = np.stack([_linear(ys, xs), 2 * _linear(ys, xs) - 1])[None].astype(np.float32)
    net = _deeplab_net(x.shape, interp_fields)
    out, _ = run_net(net, {"x": x}, np.zeros(net.blobs["out"].data.shape, np.float32))
    return out


@pytest.mark.parametrize("fields, in_hw, out_hw, step, offset", [
    # shrink 8: (41 - 1) / 8 + 1 = 6 rows; source = dst * 40 / 5 = 8 dst
    ("shrink_factor: 8", (41, 41), (6, 6), 8.0, 0),
    # zoom 8: 41 + 40 * 7 = 321; source = dst * 40 / 320 = dst / 8
    ("zoom_factor: 8", (41, 41), (321, 321), 1 / 8, 0),
    # shrink 4 then zoom 3: (40 / 4 + 1) = 11, 11 + 10 * 2 = 31; source = dst * 40 / 30
    ("shrink_factor: 4 zoom_factor: 3", (41, 41), (31, 31), 4 / 3, 0),
    # crop 2 at the start and 3 at the end: 21 - 5 = 16, zoom 2 -> 31; source = dst / 2 + 2
    ("zoom_factor: 2 pad_beg: -2 pad_end: -3", (21, 21), (31, 31), 1 / 2, 2),
    # crop only at the end, shrink 8 of 329 - 8 = 321 -> 41; source = 8 dst
    ("shrink_factor: 8 pad_end: -8", (329, 329), (41, 41), 8.0, 0),
])
def test_linear_input_by_hand(fields, in_hw, out_hw, step, offset):
    out = _run(in_hw, fields)
    assert out.shape == (1, 2) + out_hw
    src = offset + step * np.arange(out_hw[0])
    oy, ox = np.meshgrid(src, src, indexing="ij")
    np.testing.assert_allclose(out[0, 0], _linear(oy, ox), atol=1e-4)
    np.testing.assert_allclose(out[0, 1], 2 * _linear(oy, ox) - 1, atol=1e-4)


def test_numbers_written_out():
    x = np.array([[0, 1, 2], [3, 4, 5]], np.float32)[None, None]
    net = _deeplab_net(x.shape, "zoom_factor: 2")
    out, _ = run_net(net, {"x": x}, np.zeros((1, 1, 3, 5), np.float32))
    np.testing.assert_allclose(out[0, 0], [[0.0, 0.5, 1.0, 1.5, 2.0],
                                           [1.5, 2.0, 2.5, 3.0, 3.5],
                                           [3.0, 3.5, 4.0, 4.5, 5.0]], atol=1e-6)
    # Cropping one row/column at each side of a 4 x 4 ramp keeps the middle 2 x 2; height/width 3
    # puts the midpoints between them.
    ramp = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    net = _deeplab_net(ramp.shape, "height: 3 width: 3 pad_beg: -1 pad_end: -1")
    out, _ = run_net(net, {"x": ramp}, np.zeros((1, 1, 3, 3), np.float32))
    np.testing.assert_allclose(out[0, 0], [[5.0, 5.5, 6.0], [7.0, 7.5, 8.0], [9.0, 9.5, 10.0]],
                               atol=1e-6)
