"""nets.multiscale / tools/make_multiscale.py: a single-scale net -> the multi-scale attention net.

On the project's own baseline the result must be the generator's multi-scale net; on a
hand-written DeepLab-like net (BatchNorm + Scale, a residual sum, fc8_voc12) it must load in
pycaffe, share every learnable blob across the scales, and take the single-scale weights.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from attention_scale.nets import builder, convert, multiscale, variants
from attention_scale.nets.caffe_proto import ConversionError
from pyhelpers import import_caffe

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "make_multiscale.py"
PROTOS = convert.load_protos()
MULTI = [v for v in variants.paper_variants() if v.merge is not None]


def parse(text):
    net = PROTOS.net_parameter()
    text_format.Parse(text, net)
    return net


def converted(text, **options):
    net, _ = multiscale.make_multiscale(parse(text), protos=PROTOS, **options)
    return net


def variant_options(variant):
    return dict(scales=variant.scales, merge=variant.merge, esupv=variant.esupv)


# ---------------------------------------------------------------------------------------------
# The project's own nets: the converter gives what the generator writes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", builder.STAGES)
@pytest.mark.parametrize("variant", MULTI, ids=lambda v: v.folder)
def test_vgg16_baseline_becomes_the_generated_variant(variant, stage):
    baseline = (REPO / "prototxt" / "baseline" / f"{stage}.prototxt").read_text()
    expected = parse((REPO / "prototxt" / variant.folder / f"{stage}.prototxt").read_text())
    got = converted(baseline, scores="fc8", features="fc7", **variant_options(variant))
    # Layer for layer, names, param names, multipliers and fillers included.
    assert [layer.name for layer in got.layer] == [layer.name for layer in expected.layer]
    assert got == expected


@pytest.mark.parametrize("stage", builder.STAGES)
@pytest.mark.parametrize("variant", [variants.find("scales-1-0.5/attention"),
                                     variants.find("scales-1-0.75-0.5/attention-esupv"),
                                     variants.find("scales-1-0.75-0.5/max-esupv")],
                         ids=lambda v: v.folder)
def test_small_backbone_baseline_becomes_the_generated_variant(variant, stage):
    single = builder.to_text(builder.NetOptions(backbone="small"), stage, protos=PROTOS)
    options = builder.NetOptions(backbone="small", **variant_options(variant))
    expected = parse(builder.to_text(options, stage, protos=PROTOS))
    assert converted(single, scores="fc8", **variant_options(variant)) == expected


def test_python_form_matches_the_python_form_generator():
    single = builder.to_text(builder.NetOptions(backbone="small", form="python"), "test")
    options = builder.NetOptions(backbone="small", form="python", scales=(1, 0.5),
                                 merge="ATTENTION")
    expected = parse(builder.to_text(options, "test"))
    got = converted(single, scores="fc8", scales=(1, 0.5), merge="ATTENTION", form="python")
    assert got == expected


def test_python_form_of_a_cpp_net_has_no_cpp_layers_left():
    """--form python on a net with a C++ ScaleInterp of its own (the project's baseline test net,
    `score`) or DeepLab's Interp: the result is for a Caffe without the C++ layers, so it is the
    Python-form generator's net, and an Interp (also the copies in the branch) becomes a Python
    ScaleInterp."""
    single = builder.to_text(builder.NetOptions(backbone="small"), "test", protos=PROTOS)
    assert 'type: "ScaleInterp"' in single
    options = builder.NetOptions(backbone="small", form="python", scales=(1, 0.5),
                                 merge="ATTENTION")
    expected = parse(builder.to_text(options, "test"))
    got = converted(single, scores="fc8", scales=(1, 0.5), merge="ATTENTION", form="python")
    assert got == expected
    cpp = 'type: "ScaleInterp"\n  bottom: "fc8"\n  bottom: "data"\n'
    assert cpp in single
    deeplab = single.replace(cpp, 'type: "Interp"\n  bottom: "fc8"\n'
                                  '  interp_param { zoom_factor: 8 }\n').replace(
        'top: "pool1"\n', 'top: "pool1x"\n', 1)
    deeplab = deeplab.replace('bottom: "pool1"\n', 'bottom: "pool1y"\n', 1).replace(
        'layer {\n  name: "conv2_1"', 'layer {\n  name: "pool1_up"\n  type: "Interp"\n'
        '  bottom: "pool1x"\n  top: "pool1y"\n  interp_param { zoom_factor: 1 }\n}\n'
        'layer {\n  name: "conv2_1"', 1)
    got = converted(deeplab, scores="fc8", scales=(1, 0.5), merge="ATTENTION", form="python")
    types = [(layer.name, layer.type) for layer in got.layer]
    assert ("pool1_up", "Python") in types and ("pool1_up_res05", "Python") in types, types
    assert not {t for _, t in types} & {"Interp", *convert.LAYER_TYPES}, types
    assert ("score", "Python") in types


def test_the_input_net_is_left_unchanged():
    net = parse(builder.to_text(builder.NetOptions(backbone="small"), "train", protos=PROTOS))
    before = net.SerializeToString()
    multiscale.make_multiscale(net, scales=(1, 0.5), protos=PROTOS)
    assert net.SerializeToString() == before


# ---------------------------------------------------------------------------------------------
# A user's own DeepLab-like net: BatchNorm + Scale, a residual sum, fc8_voc12
# ---------------------------------------------------------------------------------------------

NUM_CLASSES = 4


def _conv(name, bottom, num_output, kernel=3, dilation=1, bias=True, params=""):
    pad = dilation * (kernel - 1) // 2
    extra = "" if bias else " bias_term: false"
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'{params}convolution_param {{ num_output: {num_output} kernel_size: {kernel} '
            f'pad: {pad} dilation: {dilation}{extra} }} }}\n')


def _inplace(name, kind, blob, extra=""):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" {extra}}}\n'


def user_body():
    """data -> conv1 (no bias) + BatchNorm + Scale + ReLU -> pool1 -> a residual unit -> fc6
    (dilated) -> fc7 -> fc8_voc12 (the user's 10x/20x multipliers)."""
    return (_conv("conv1", "data", 8, bias=False)
            + _inplace("bn1", "BatchNorm", "conv1", 'param { lr_mult: 0 } ' * 3)
            + _inplace("scale1", "Scale", "conv1", "scale_param { bias_term: true } ")
            + _inplace("relu1", "ReLU", "conv1")
            + 'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
              'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
            + _conv("res2a", "pool1", 8, bias=False)
            + _inplace("bn2a", "BatchNorm", "res2a")  # no param blocks: the converter adds them
            + _inplace("scale2a", "Scale", "res2a", "scale_param { bias_term: true } ")
            + 'layer { name: "res2" type: "Eltwise" bottom: "pool1" bottom: "res2a" top: "res2" }\n'
            + _inplace("res2_relu", "ReLU", "res2")
            + _conv("fc6", "res2", 16, dilation=2)
            + _inplace("relu6", "ReLU", "fc6")
            + _inplace("drop6", "Dropout", "fc6", "dropout_param { dropout_ratio: 0.5 } ")
            + _conv("fc7", "fc6", 16, kernel=1)
            + _inplace("relu7", "ReLU", "fc7")
            + _inplace("drop7", "Dropout", "fc7", "dropout_param { dropout_ratio: 0.5 } ")
            + _conv("fc8_voc12", "fc7", NUM_CLASSES, kernel=1,
                    params="param { lr_mult: 10 decay_mult: 1 } "
                           "param { lr_mult: 20 decay_mult: 0 } "))


def user_deploy(size=33):
    return (f'name: "my-resnet"\nlayer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }} }} }}\n'
            + user_body()
            + 'layer { name: "score" type: "ScaleInterp" bottom: "fc8_voc12" bottom: "data" '
              'top: "score" }\n')


def user_train(size=33, batch=2):
    return (f'name: "my-resnet"\nlayer {{ name: "data" type: "Input" top: "data" top: "label" '
            f'input_param {{ shape {{ dim: {batch} dim: 3 dim: {size} dim: {size} }} '
            f'shape {{ dim: {batch} dim: 1 dim: {size} dim: {size} }} }} }}\n'
            + user_body()
            + 'layer { name: "label_shrink" type: "ScaleInterp" bottom: "label" '
              'bottom: "fc8_voc12" top: "label_shrink" '
              'scale_interp_param { interpolation: NEAREST } }\n'
              'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc8_voc12" '
              'bottom: "label_shrink" top: "loss" propagate_down: true propagate_down: false '
              'loss_param { ignore_label: 255 } }\n'
              'layer { name: "accuracy" type: "Accuracy" bottom: "fc8_voc12" '
              'bottom: "label_shrink" top: "accuracy" }\n')


USER_LEARNABLE = ["conv1", "bn1", "scale1", "res2a", "bn2a", "scale2a", "fc6", "fc7", "fc8_voc12"]


def _layers(net):
    return {layer.name: layer for layer in net.layer}


def test_user_net_branches_share_every_learnable_blob_by_name():
    net = converted(user_train(), scores="fc8_voc12", scales=(1, 0.75, 0.5), esupv=True)
    layers = _layers(net)
    for name in USER_LEARNABLE:
        names = [spec.name for spec in layers[name].param]
        assert all(names) and len(set(names)) == len(names), name
        for t in ("_res075", "_res05"):
            copy = layers[name + t]
            # same blobs (names), same multipliers: Caffe refuses mismatched lr_mult
            assert list(copy.param) == list(layers[name].param), name + t
    assert [s.name for s in layers["bn2a"].param] == ["bn2a_mean", "bn2a_var", "bn2a_count"]
    assert [s.lr_mult for s in layers["bn2a"].param] == [0, 0, 0]
    assert [s.name for s in layers["scale1"].param] == ["scale1_w", "scale1_b"]
    assert [s.name for s in layers["conv1"].param] == ["conv1_w"]  # bias_term: false
    assert [(s.lr_mult, s.decay_mult) for s in layers["fc8_voc12"].param] == [(10, 1), (20, 0)]
    # Branch wiring: the copies read their own scale's blobs; the residual sum too.
    assert list(layers["conv1_res05"].bottom) == ["data_res05"]
    assert list(layers["res2_res05"].bottom) == ["pool1_res05", "res2a_res05"]
    assert layers["data_res05"].scale_interp_param.scale == 0.5
    # The head and the merge, named after the user's blobs.
    assert list(layers["fc8_voc12_res05_interp"].bottom) == ["fc8_voc12_res05", "fc8_voc12"]
    assert list(layers["fc7_concat"].bottom) == ["fc7", "fc7_res075_interp", "fc7_res05_interp"]
    assert layers["att_conv2"].convolution_param.num_output == 3
    assert list(layers["fc8_voc12_fusion"].bottom) == [
        "fc8_voc12", "fc8_voc12_res075_interp", "fc8_voc12_res05_interp", "attention"]
    # After the branches: the size reference stays, the loss/accuracy read the merged scores,
    # and E-Supv adds a loss per scale.
    assert list(layers["label_shrink"].bottom) == ["label", "fc8_voc12"]
    assert list(layers["loss"].bottom) == ["fc8_voc12_fusion", "label_shrink"]
    assert list(layers["accuracy"].bottom) == ["fc8_voc12_fusion", "label_shrink"]
    assert {n: list(layers[n].bottom)[0] for n in ("loss_res1", "loss_res075", "loss_res05")} == {
        "loss_res1": "fc8_voc12", "loss_res075": "fc8_voc12_res075_interp",
        "loss_res05": "fc8_voc12_res05_interp"}
    assert sum(layer.type == "Input" for layer in net.layer) == 1  # the data layer stays single


def _random_weights(net, rng):
    for name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            if name.startswith("bn"):  # mean, variance (> 0), moving-average factor
                blob.data[...] = [rng.normal(0, 0.1, blob.data.shape),
                                  rng.uniform(0.5, 2, blob.data.shape), 1.0][i]
            else:
                blob.data[...] = rng.normal(0, 0.3, blob.data.shape)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("merge", ["ATTENTION", "AVERAGE"])
def test_user_net_loads_in_pycaffe_with_shared_blobs_and_the_single_scale_weights(
        tmp_path, merge):
    caffe = import_caffe()
    single = caffe.Net(_write(tmp_path, "single.prototxt", user_deploy()), caffe.TEST)
    _random_weights(single, np.random.default_rng(0))
    weights = str(tmp_path / "single.caffemodel")
    single.save(weights)

    text = text_format.MessageToString(
        converted(user_deploy(), scores="fc8_voc12", scales=(1, 0.5), merge=merge))
    multi = caffe.Net(_write(tmp_path, "multi.prototxt", text), caffe.TEST)
    multi.copy_from(weights)  # the DeepLab fine-tuning path: by layer name
    # Shared, not copied: the other branch sees the scale-1 weights and any later change.
    for name in USER_LEARNABLE:
        for a, b in zip(multi.params[name], multi.params[name + "_res05"]):
            np.testing.assert_array_equal(a.data, b.data)
        multi.params[name][0].data[...] += 1
        np.testing.assert_array_equal(multi.params[name][0].data,
                                      multi.params[name + "_res05"][0].data)
        multi.params[name][0].data[...] -= 1
    if merge == "ATTENTION":  # the head is new: no blob of the single net
        assert multi.params["att_conv2"][0].data.shape[0] == 2

    image = np.random.default_rng(1).normal(0, 1, (1, 3, 33, 33)).astype(np.float32)
    multi.blobs["data"].data[...] = image
    multi.forward()
    single.blobs["data"].data[...] = image
    single.forward()
    # Scale 1 is the single-scale net, exactly.
    np.testing.assert_allclose(multi.blobs["fc8_voc12"].data, single.blobs["fc8_voc12"].data,
                               rtol=1e-5, atol=1e-5)
    # Scale 0.5 is the same single-scale net run on the downscaled image.
    small = multi.blobs["data_res05"].data.copy()
    single.blobs["data"].reshape(*small.shape)
    single.reshape()
    single.blobs["data"].data[...] = small
    single.forward()
    np.testing.assert_allclose(multi.blobs["fc8_voc12_res05"].data,
                               single.blobs["fc8_voc12"].data, rtol=1e-5, atol=1e-5)
    fused = multi.blobs["fc8_voc12_fusion"].data
    assert fused.shape == multi.blobs["fc8_voc12"].data.shape
    if merge == "AVERAGE":
        np.testing.assert_allclose(
            fused, (multi.blobs["fc8_voc12"].data + multi.blobs["fc8_voc12_res05_interp"].data) / 2,
            rtol=1e-5, atol=1e-5)
    assert multi.blobs["score"].data.shape == (1, NUM_CLASSES, 33, 33)


def test_user_train_net_with_esupv_runs_forward_and_backward_in_pycaffe(tmp_path):
    caffe = import_caffe()
    text = text_format.MessageToString(
        converted(user_train(), scores="fc8_voc12", scales=(1, 0.75, 0.5), esupv=True))
    net = caffe.Net(_write(tmp_path, "train.prototxt", text), caffe.TRAIN)
    rng = np.random.default_rng(2)
    _random_weights(net, rng)
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, NUM_CLASSES, net.blobs["label"].data.shape)
    out = net.forward()
    for loss in ("loss", "loss_res1", "loss_res075", "loss_res05"):
        assert np.isfinite(out[loss]) and out[loss] > 0, loss
    net.backward()
    # Every scale's gradient reaches the shared weights: fc8_voc12's diff is one blob.
    diff = net.params["fc8_voc12"][0].diff
    assert np.abs(diff).sum() > 0
    np.testing.assert_array_equal(diff, net.params["fc8_voc12_res05"][0].diff)


# ---------------------------------------------------------------------------------------------
# What it refuses, by name
# ---------------------------------------------------------------------------------------------

def _refused(text, match, **options):
    options.setdefault("scores", "fc8_voc12")
    with pytest.raises(ConversionError, match=match):
        converted(text, **options)


def test_missing_blobs_are_named_with_a_close_match():
    _refused(user_deploy(), r"score blob 'fc8_voc' \(--scores\).*did you mean 'fc8_voc12'",
             scores="fc8_voc")
    _refused(user_deploy(), r"data blob 'image'", data="image")
    _refused(user_deploy(), r"feature blob 'fc77'", features="fc77")


def test_features_outside_the_branch_are_refused():
    _refused(user_deploy(), r"feature blob 'score' is not computed between", features="score")


def test_a_param_shared_with_a_layer_outside_the_branch_is_refused():
    text = user_deploy().replace(
        'layer { name: "score"',
        'layer { name: "aux" type: "Convolution" bottom: "data" top: "aux" param { name: "w6" } '
        'convolution_param { num_output: 1 kernel_size: 1 bias_term: false } }\n'
        'layer { name: "score"')
    text = text.replace('top: "fc6" convolution_param', 'top: "fc6" param { name: "w6" } '
                        'convolution_param')
    _refused(text, r"layer 'fc6' shares param 'w6' with layer\(s\) 'aux' outside the branch")


def test_a_layer_of_unknown_blobs_in_the_branch_is_refused():
    text = user_deploy().replace('type: "ReLU" bottom: "fc7"', 'type: "MyAct" bottom: "fc7"')
    _refused(text, r"layer 'relu7' \(type 'MyAct'\)")
    text = user_deploy().replace(
        'name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" ',
        'name: "relu7" type: "Python" bottom: "fc7" top: "fc7" '
        'python_param { module: "mine" layer: "Act" } ')
    _refused(text, r"layer 'relu7' \(Python layer mine.Act\)")


def test_data_changed_in_place_and_taken_names_are_refused():
    text = user_deploy().replace(
        'layer { name: "conv1"',
        'layer { name: "prescale" type: "Power" bottom: "data" top: "data" '
        'power_param { scale: 0.1 } }\nlayer { name: "conv1"')
    _refused(text, r"layer 'prescale' \(Power\) writes the data blob 'data' in place")
    text = user_deploy().replace(
        'layer { name: "res2" type: "Eltwise" bottom: "pool1" bottom: "res2a" top: "res2" }',
        'layer { name: "bias" type: "DummyData" top: "res2" dummy_data_param { '
        'shape { dim: 1 dim: 8 dim: 17 dim: 17 } } }\n'
        'layer { name: "res2_sum" type: "Eltwise" bottom: "res2" bottom: "res2a" top: "res2" }')
    _refused(text, r"layer 'res2_sum' \(Eltwise\) writes blob 'res2' in place, which layer "
                   r"'bias' outside")
    text = user_deploy().replace('name: "score" type', 'name: "att_conv1" type')
    _refused(text, r"needs the name of layer 'att_conv1'")


def test_a_net_that_merges_scales_already_is_refused():
    text = (REPO / "prototxt" / "scales-1-0.5" / "max" / "test.prototxt").read_text()
    _refused(text, r"layer 'fc8_fusion' \(WeightedScaleSum\) merges scales already", scores="fc8")


def test_bad_options_are_refused():
    _refused(user_deploy(), r"merge must be one of", merge="sum")
    with pytest.raises(ValueError, match=r"first scale must be 1"):
        converted(user_deploy(), scores="fc8_voc12", scales=(0.5, 1))
    _refused(user_deploy(), r"at least two scales", scales=(1,))


# ---------------------------------------------------------------------------------------------
# The tool
# ---------------------------------------------------------------------------------------------

def _tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_tool_writes_the_net_and_errors_end_in_one_line(tmp_path):
    assert _tool("--help").returncode == 0
    src = tmp_path / "train.prototxt"
    src.write_text(user_train())
    out = tmp_path / "train_ms.prototxt"
    done = _tool(src, "-o", out, "--scores", "fc8_voc12", "--features", "fc7", "--scales", 1,
                 0.75, 0.5, "--merge", "attention", "--esupv")
    assert done.returncode == 0, done.stderr
    assert parse(out.read_text()) == converted(user_train(), scores="fc8_voc12", esupv=True)

    test = tmp_path / "test.prototxt"
    test.write_text(user_deploy())
    noted = _tool(test, "-o", tmp_path / "t.prototxt", "--scores", "fc8_voc12", "--esupv")
    assert noted.returncode == 0 and "no loss layer reads 'fc8_voc12'" in noted.stderr

    bad = tmp_path / "bad.prototxt"
    failed = _tool(src, "-o", bad, "--scores", "fc9")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("make_multiscale: ")
    assert "'fc9'" in failed.stderr and not bad.exists()
    missing = _tool(tmp_path / "nope.prototxt", "-o", bad, "--scores", "fc8")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "nope.prototxt" in missing.stderr


def test_a_net_with_input_fields_keeps_them_and_rescales_the_input(tmp_path):
    """DeepLab-v2 deploy nets declare `input: "data"` instead of an Input layer."""
    text = user_deploy().replace(
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 dim: 33 dim: 33 } } }',
        'input: "data" input_shape { dim: 1 dim: 3 dim: 33 dim: 33 }')
    assert 'type: "Input"' not in text
    net = converted(text, scores="fc8_voc12", scales=(1, 0.5), merge="MAX")
    assert list(net.input) == ["data"]
    layers = _layers(net)
    assert list(layers["data_res05"].bottom) == ["data"]
    assert list(layers["score"].bottom) == ["fc8_voc12_fusion", "data"]
    caffe = import_caffe()
    loaded = caffe.Net(_write(tmp_path, "m.prototxt", text_format.MessageToString(net)),
                       caffe.TEST)
    assert loaded.blobs["fc8_voc12_res05"].data.shape[2] < loaded.blobs["fc8_voc12"].data.shape[2]
