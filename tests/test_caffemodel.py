"""Weights that do not fit the net (attention_scale.nets.caffemodel): a saved blob of another shape
(Caffe would abort), layers the .caffemodel does not reach (they would keep their fillers in
silence), blob sharing across the scale branches, legacy 4-D shapes, files that are no weights."""

import subprocess
import sys

import pytest

import evalnets
from attention_scale.nets import caffemodel
from attention_scale.nets.caffemodel import NetParams, SavedShape, WeightsMismatch


def test_fit_by_hand():
    params = NetParams(
        shapes={"conv": [(8, 3, 3, 3), (8,)], "conv_res05": [(8, 3, 3, 3), (8,)],
                "fc8": [(4, 8, 1, 1), (4,)], "upsample": [(4, 1, 4, 4)], "head": [(2, 8, 1, 1)]},
        shared={("conv", 0): "conv_w", ("conv", 1): "conv_b",
                ("conv_res05", 0): "conv_w", ("conv_res05", 1): "conv_b"},
        fixed={("upsample", 0): True})
    saved = {"conv": [SavedShape((8, 3, 3, 3)), SavedShape((8,))],
             "fc8_voc12": [SavedShape((4, 8, 1, 1)), SavedShape((4,))],
             "head": [SavedShape((2, 8, 1, 1))]}
    result = caffemodel.fit(params, saved)
    assert result.mismatched == []
    assert result.unfilled == {"fc8": [0, 1]}  # conv_res05 is filled through conv's blobs
    assert result.unfilled_fixed == {"upsample": [0]}
    assert result.unused == ["fc8_voc12"]

    saved["head"] = [SavedShape((3, 8, 1, 1))]
    saved["conv"] = [SavedShape((8, 3, 3, 3))]
    assert caffemodel.fit(params, saved).mismatched == [
        "layer 'conv': 1 blob(s) saved, 2 in the net (a bias_term that differs?)",
        "layer 'head' blob 0: 3 x 8 x 1 x 1 saved, 2 x 8 x 1 x 1 in the net"]


def test_only_fixed_blobs_left_unfilled_give_warnings():
    params = NetParams({"fc8": [(4, 8, 1, 1)], "up": [(4, 1, 4, 4)]}, {}, {("up", 0): True})
    notes = caffemodel.check_weights_fit(params, {"fc8": [SavedShape((4, 8, 1, 1))]}, "w", "n")
    assert notes == ["n: layer 'up' blob(s) 0 are not in w; they keep the values the prototxt "
                     "gives them (lr_mult: 0)"]


def test_legacy_shapes_compare_padded_to_four_axes():
    assert SavedShape((1, 1, 1, 21), legacy=True).fits((21,))  # an old bias
    assert SavedShape((21, 1024, 1, 1), legacy=True).fits((21, 1024, 1, 1))
    assert not SavedShape((21, 1024, 1, 1), legacy=True).fits((21, 1024))
    assert not SavedShape((1, 1, 1, 21), legacy=True).fits((1, 1, 1, 1, 21))
    assert SavedShape((21,)).fits((21,)) and not SavedShape((21,)).fits((1, 21))
    assert str(SavedShape((21, 1024, 1, 1))) == "21 x 1024 x 1 x 1"
    assert str(SavedShape(())) == "scalar"


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    single = evalnets.single_scale_net()
    return {
        "single": evalnets.write_net(root / "single", single, seed=1),
        # the same net with its classifier named as in DeepLab's models
        "voc12": evalnets.write_net(root / "voc12", single.replace('name: "fc8"',
                                                                   'name: "fc8_voc12"'), seed=2),
        "five": evalnets.write_net(root / "five", evalnets.single_scale_net(num_classes=5), seed=3),
        "att": evalnets.write_net(root / "att", evalnets.attention_net(), seed=4),
    }


def _predictor(prototxt, weights, layer_form="cpp"):
    from attention_scale.evaluation.inference import NetPredictor
    return NetPredictor(prototxt, weights, layer_form=layer_form)


def test_a_renamed_classifier_is_named_on_both_sides(nets):
    prototxt, _ = nets["single"]
    _, weights = nets["voc12"]
    with pytest.raises(WeightsMismatch) as error:
        _predictor(prototxt, weights)
    message = str(error.value)
    assert message.startswith(f"{weights} has no weights for 1 layer(s) of {prototxt}: 'fc8' "
                              "(4 x 8 x 1 x 1, 4). They would keep their initial values")
    assert "The saved layers the net does not use: 'fc8_voc12' (4 x 8 x 1 x 1, 4)" in message


def test_shared_branch_blobs_count_as_filled(nets):
    """A single-scale model in the two-scale attention net: the 0.5 branch shares the backbone's
    blobs and is filled; only the attention head, which the model lacks, is named."""
    prototxt, _ = nets["att"]
    _, weights = nets["single"]
    for form in ("cpp", "python"):
        with pytest.raises(WeightsMismatch) as error:
            _predictor(prototxt, weights, form)
        message = str(error.value)
        assert "2 layer(s)" in message and "'att_conv1' (8 x 16 x 3 x 3, 8)" in message
        assert "'att_conv2'" in message and "_res05" not in message


def test_weights_of_the_net_itself_pass(nets):
    for name in ("single", "att"):
        predictor = _predictor(*nets[name])
        assert predictor.num_classes == 4


def test_other_class_count_ends_with_a_message_where_caffe_aborts(nets, tmp_path):
    prototxt, _ = nets["single"]
    _, weights = nets["five"]
    with pytest.raises(WeightsMismatch, match=r"layer 'fc8' blob 0: 5 x 8 x 1 x 1 saved, "
                                              r"4 x 8 x 1 x 1 in the net; layer 'fc8' blob 1: "
                                              r"5 saved, 4 in the net\. Caffe would stop"):
        _predictor(prototxt, weights)
    # what the check saves the user from: Caffe's own copy ends the process
    code = (f"import caffe; caffe.Net({str(prototxt)!r}, {str(weights)!r}, caffe.TEST); "
            "print('built')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=evalnets.tool_env(), timeout=120)
    assert proc.returncode < 0 and "built" not in proc.stdout, proc
    assert "shape mismatch" in proc.stderr


def test_files_that_are_not_weights(nets, tmp_path):
    from attention_scale.nets.caffe_proto import load_protos
    net_parameter = load_protos().net_parameter
    prototxt, _ = nets["single"]
    with pytest.raises(WeightsMismatch, match=r"not a \.caffemodel|holds no weights"):
        caffemodel.read_saved_shapes(prototxt, net_parameter)  # text given as weights
    garbage = tmp_path / "x.caffemodel"
    garbage.write_bytes(b"\xff\xff\xff\xff")
    with pytest.raises(WeightsMismatch, match=r"is not a \.caffemodel"):
        caffemodel.read_saved_shapes(garbage, net_parameter)
    with pytest.raises(WeightsMismatch, match=r"cannot read the weights"):
        caffemodel.read_saved_shapes(tmp_path / "missing.caffemodel", net_parameter)


def test_learned_layers_the_net_lacks_are_refused_for_evaluation(nets):
    """An attention model's weights in a single-scale (or max-merge) net fill every layer of it
    and run: the results would be another net's. Refused, naming the layers left out."""
    prototxt, _ = nets["single"]
    _, weights = nets["att"]
    with pytest.raises(WeightsMismatch) as error:
        _predictor(prototxt, weights)
    message = str(error.value)
    assert message.startswith(f"{weights} holds learned layers that {prototxt} does not have: ")
    assert "'att_conv1'" in message and "use the test prototxt of the variant" in message
    # Layers without blobs (ReLU, pooling, the data layer) are no reason.
    from attention_scale.nets.caffemodel import check_weights_fit
    params = NetParams({"fc8": [(4, 8, 1, 1)]}, {}, {})
    saved = {"fc8": [SavedShape((4, 8, 1, 1))], "relu": [], "att": [SavedShape((2, 8, 1, 1))]}
    assert check_weights_fit(params, saved, "w", "n") == []  # training-side checks: allowed
    with pytest.raises(WeightsMismatch, match=r"holds learned layers that n does not have: 'att'\."):
        check_weights_fit(params, saved, "w", "n", refuse_unused=True)
    del saved["att"]
    assert check_weights_fit(params, saved, "w", "n", refuse_unused=True) == []
