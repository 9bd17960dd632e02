"""tools/init_from_vgg16.py: every copied and decimated tensor checked by value.

No VGG-16 file exists here, so the tests make VGG-16-shaped models: one with VGG-16's real
shapes (written by pycaffe, V2 format) through the command-line tool, and a narrow one in the
V1 format of the released VGG_ILSVRC_16_layers.caffemodel through the module. The expected
tensors are DeepLab's decimation written out here with numpy slicing: fc6 filters 0, 4, 8, ...
and taps 0, 3, 6 of the 7 x 7 grid; fc7 every 4th output and input.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from attention_scale import pycaffe
from attention_scale.errors import LayerConfigError
from attention_scale.nets import backbones, builder, vgg16_init
from pyhelpers import import_caffe

caffe = import_caffe()
REPO = Path(__file__).resolve().parents[1]
CONVS = [f"conv{s}_{i}" for s, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]


def pattern(shape, salt):
    """Distinct-looking exact float32 values: a multiplicative hash of the position."""
    n = int(np.prod(shape))
    index = np.arange(n, dtype=np.uint32) + np.uint32(salt * 7919)
    hashed = (index * np.uint32(2654435761)) >> np.uint32(8)  # wraps mod 2^32: a bijection
    return (hashed.astype(np.float32) / np.float32(1 << 24) - np.float32(0.5)).reshape(shape)


def net_from_text(text, weights=None):
    return pycaffe.net_from_text(caffe, text, weights=weights)


def expected_init(source, fc6_side=7):
    out = {name: [w.copy(), b.copy()] for name, (w, b) in source.items() if name in CONVS}
    w6, b6 = source["fc6"]
    w6 = w6.reshape(w6.shape[0], -1, fc6_side, fc6_side)
    out["fc6"] = [w6[0::4][:, :, 0::3, :][:, :, :, 0::3], b6[0::4]]
    w7, b7 = source["fc7"]
    out["fc7"] = [w7[0::4, 0::4].reshape(w7.shape[0] // 4, w7.shape[1] // 4, 1, 1), b7[0::4]]
    return out


def check_written(path, expected, backbone):
    net = net_from_text(text_format.MessageToString(builder.backbone_net(backbone)), path)
    assert sorted(net.params) == sorted(expected)
    for name, blobs in expected.items():
        for k, value in enumerate(blobs):
            np.testing.assert_array_equal(net.params[name][k].data, value, err_msg=f"{name}[{k}]")


def test_full_size_vgg16_through_the_tool(tmp_path):
    source_net = net_from_text(vgg16_init.vgg16_classifier_text())
    source = {}
    for salt, (name, blobs) in enumerate(source_net.params.items()):
        for k, blob in enumerate(blobs):
            blob.data[...] = pattern(blob.data.shape, 2 * salt + k)
        source[name] = [blobs[0].data, blobs[1].data]
    assert source["fc6"][0].shape == (4096, 25088) and source["fc7"][0].shape == (4096, 4096)
    model = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    source_net.save(str(model))
    expected = expected_init(source)
    del source_net, source
    out = tmp_path / "init.caffemodel"
    res = subprocess.run([sys.executable, str(REPO / "tools/init_from_vgg16.py"), str(model),
                          "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fc6      1024x512x3x3  1024" in res.stdout
    check_written(out, expected, backbones.VGG16)
    # The train nets load it by layer name; every branch shares the scale-1 weights.
    options = builder.NetOptions(scales=(1, 0.5), merge="MAX", batch_size=1)
    train = net_from_text(builder.to_text(options, "train"), out)
    np.testing.assert_array_equal(train.params["fc6_res05"][0].data, expected["fc6"][0])
    np.testing.assert_array_equal(train.params["conv1_1"][0].data, expected["conv1_1"][0])
    assert np.abs(train.params["fc8"][0].data).max() < 0.2  # fresh: the gaussian(0.01) filler


def narrow_vgg():
    stages = ((4, 4), (8, 8), (8, 8, 8), (16, 16, 16), (16, 16, 16))
    return backbones.Backbone(name="narrow-vgg", stages=stages, pool_strides=(2, 2, 2, 1, 1),
                              stage_dilations=(1, 1, 1, 1, 2), fc6_channels=16, fc6_kernel=3,
                              fc6_dilation=12, fc7_channels=16)


def write_v1_model(path, params):
    """The old `layers { type: CONVOLUTION blobs { num: .. channels: .. } }` format."""
    caffe_pb2 = caffe.proto.caffe_pb2
    net = caffe_pb2.NetParameter(name="VGG_ILSVRC_16_layers")
    for name, blobs in params.items():
        layer = net.layers.add(name=name)
        layer.type = (caffe_pb2.V1LayerParameter.INNER_PRODUCT if name.startswith("fc")
                      else caffe_pb2.V1LayerParameter.CONVOLUTION)
        for value in blobs:
            blob = layer.blobs.add()
            dims = (1,) * (4 - value.ndim) + value.shape
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.data.extend(value.ravel().tolist())
    Path(path).write_bytes(net.SerializeToString())


def test_narrow_vgg16_in_the_v1_format(tmp_path):
    backbone = narrow_vgg()
    widths = [w for stage in backbone.stages for w in stage]
    source, previous = {}, 3
    for salt, (name, width) in enumerate(zip(CONVS, widths)):
        source[name] = [pattern((width, previous, 3, 3), 2 * salt),
                        pattern((width,), 2 * salt + 1)]
        previous = width
    source["fc6"] = [pattern((64, 16 * 7 * 7), 100), pattern((64,), 101)]
    source["fc7"] = [pattern((64, 64), 102), pattern((64,), 103)]
    source["fc8"] = [pattern((10, 64), 104), pattern((10,), 105)]  # ignored, as VGG's 1000-way
    model = tmp_path / "vgg_v1.caffemodel"
    write_v1_model(model, source)
    written = caffe.proto.caffe_pb2.NetParameter.FromString(model.read_bytes())
    assert len(written.layers) == 16 and len(written.layer) == 0  # really the old format
    shapes = vgg16_init.init_from_vgg16(model, tmp_path / "init.caffemodel", backbone=backbone,
                                        fc_channels=64)
    assert shapes["fc6"] == ((16, 16, 3, 3), (16,)) and "fc8" not in shapes
    check_written(tmp_path / "init.caffemodel", expected_init(source), backbone)

    # its output (DeepLab-LargeFOV's shapes) given back as the ImageNet model: refused by name,
    # where Caffe would abort on fc6's shape
    with pytest.raises(LayerConfigError, match=r"does not fit the VGG-16 classifier net: layer "
                                               r"'fc6' blob 0: 16 x 16 x 3 x 3 saved, 64 x 784 in "
                                               r"the net; .*Its fc6 is a 16 x 16 x 3 x 3 "
                                               r"convolution, .* already converted"):
        vgg16_init.init_from_vgg16(tmp_path / "init.caffemodel", tmp_path / "again.caffemodel",
                                   backbone=backbone, fc_channels=64)
    assert not (tmp_path / "again.caffemodel").exists()
    # a model without fc7 (cut short): the layer is named
    del source["fc7"], source["fc8"]
    write_v1_model(tmp_path / "short.caffemodel", source)
    with pytest.raises(LayerConfigError, match=r"no weights for 1 layer\(s\) of the VGG-16 "
                                               r"classifier net: 'fc7' \(64 x 64, 64\)"):
        vgg16_init.init_from_vgg16(tmp_path / "short.caffemodel", tmp_path / "again.caffemodel",
                                   backbone=backbone, fc_channels=64)


def test_missing_layer_is_named(tmp_path):
    backbone = narrow_vgg()
    params = {"conv1_1": [np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)]}
    with pytest.raises(Exception, match="conv1_2"):
        vgg16_init.convert_params(params, backbone)
    with pytest.raises(Exception, match="no such file"):
        vgg16_init.init_from_vgg16(tmp_path / "absent.caffemodel", tmp_path / "x.caffemodel")


# --- audit s9b: wrong outputs, inputs and advice -----------------------------------------------

def test_output_folder_is_refused_in_one_line_before_reading(tmp_path):
    """-o an existing folder gave an IsADirectoryError traceback naming a temporary file (TB-4);
    a missing folder was made silently (DOC-5). Both refused before the model is read."""
    model = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    model.write_bytes(b"not read")
    for output, says in ((tmp_path, f"-o {tmp_path}: a folder; give the .caffemodel file"),
                         (tmp_path / "no" / "init.caffemodel",
                          f"-o {tmp_path / 'no' / 'init.caffemodel'}: no folder "
                          f"{tmp_path / 'no'} to write into; create it first")):
        res = subprocess.run([sys.executable, str(REPO / "tools/init_from_vgg16.py"), str(model),
                              "-o", str(output)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"init_from_vgg16.py: {says}"), lines
    assert not (tmp_path / "no").exists()


def test_a_source_prototxt_whose_fc6_sees_1x1_is_refused(tmp_path):
    """A VGG made for a 32 x 32 input: fc6 sees 1 x 1, and the 3 x 3 taps divided by zero (TB-5)."""
    backbone = narrow_vgg()
    text = vgg16_init.vgg16_classifier_text(backbone, fc_channels=64, side=32)
    (tmp_path / "vgg32.prototxt").write_text(text)
    net = net_from_text(text)
    assert net.params["fc6"][0].data.shape == (64, 16)
    net.save(str(tmp_path / "vgg32.caffemodel"))
    with pytest.raises(LayerConfigError, match=r"fc6 sees a 1x1 map of conv5_3's output, and its "
                                               r"3 x 3 taps .*--source-prototxt's input"):
        vgg16_init.init_from_vgg16(tmp_path / "vgg32.caffemodel", tmp_path / "init.caffemodel",
                                   tmp_path / "vgg32.prototxt", backbone=backbone, fc_channels=64)
    with pytest.raises(LayerConfigError, match="cannot take 3 of 1"):
        vgg16_init.decimation(1, 3)
    assert not (tmp_path / "init.caffemodel").exists()


def test_another_nets_fc6_convolution_is_not_called_converted(tmp_path):
    """The small backbone's 32 x 32 x 3 x 3 fc6 was called DeepLab-LargeFOV's, "already converted;
    give it as --weights" (MSG-7); only the converted shape of this backbone is."""
    backbone = narrow_vgg()
    other = backbones.Backbone(**{**backbone.__dict__, "name": "other", "fc6_channels": 8})
    net = net_from_text(text_format.MessageToString(builder.backbone_net(other)))
    net.save(str(tmp_path / "other.caffemodel"))
    with pytest.raises(LayerConfigError) as err:
        vgg16_init.init_from_vgg16(tmp_path / "other.caffemodel", tmp_path / "init.caffemodel",
                                   backbone=backbone, fc_channels=64)
    assert "8 x 16 x 3 x 3 saved" in str(err.value)
    assert "already converted" not in str(err.value)
    assert "Is it the ImageNet VGG-16" in str(err.value)


def test_a_model_of_other_layer_names_points_to_source_prototxt(tmp_path):
    """One's own net (conv1, fc8_voc12) got "rename it in the prototxt", but no prototxt was given
    (MSG-7): the advice is --source-prototxt."""
    write_v1_model(tmp_path / "own.caffemodel", {
        "conv1": [pattern((4, 3, 3, 3), 1), pattern((4,), 2)],
        "fc8_voc12": [pattern((21, 4), 3), pattern((21,), 4)]})
    with pytest.raises(LayerConfigError) as err:
        vgg16_init.init_from_vgg16(tmp_path / "own.caffemodel", tmp_path / "init.caffemodel",
                                   backbone=narrow_vgg(), fc_channels=64)
    message = str(err.value)
    assert "has no layer(s) conv1_1, conv1_2," in message
    assert "(it holds conv1, fc8_voc12)" in message
    assert "--source-prototxt" in message and "rename it in the prototxt" not in message
