"""Running test nets over a list: predictions against references built here from the CONTRACT's
protocol (plain-loop padding, a net forward, crop, arg-max), the Python-layer form, test-time
scales and mirroring, resume after a kill, and clear errors for bad predictions."""

import json
import math
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import evalnets
from attention_scale.data.images import read_image, read_label
from attention_scale.data.lists import read_list
from attention_scale.errors import DataError
from attention_scale.evaluation.inference import NetPredictor, InferenceOptions
from attention_scale.evaluation.outputs import PredictionFolder
from attention_scale.evaluation.runner import Evaluation, evaluate_list
from attention_scale.evaluation.segments import Bins
from pyhelpers import default_sigint, import_caffe, ref_confusion, ref_interp_forward

REPO = Path(__file__).resolve().parents[1]
MEAN = (104.008, 116.669, 122.675)
NAMES = ["bg", "a", "b", "c"]
SIZES = [(20, 25), (33, 33), (40, 30), (12, 50), (7, 9)]  # (40, 30), (12, 50) grow the input


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    att = evalnets.write_net(root / "att", evalnets.attention_net(), seed=1)
    single = evalnets.write_net(root / "single", evalnets.single_scale_net(), seed=2)
    list_path = evalnets.write_dataset(root / "data", SIZES)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return {"root": root, "att": att, "single": single, "list": list_path,
            "data": root / "data", "entries": read_list(list_path, root / "data")}


def reference_forward(prototxt, weights, image, base=33):
    """Scores and attention for one image, following the CONTRACT step by step with plain loops."""
    caffe = import_caffe()
    h, w = image.shape[:2]
    # the input: 513-style base size, grown to 8k + 1 when the image is larger
    size = [base if n <= base else 8 * math.ceil((n - 1) / 8) + 1 for n in (h, w)]
    data = np.zeros((3, *size), np.float32)
    for c in range(3):
        for y in range(h):
            for x in range(w):
                data[c, y, x] = float(image[y, x, c]) - MEAN[c]
    net = caffe.Net(str(prototxt), str(weights), caffe.TEST)
    net.blobs["data"].reshape(1, 3, *size)
    net.reshape()
    net.blobs["data"].data[0] = data
    net.forward()
    score = net.blobs["score"].data[0, :, :h, :w].astype(np.float64)
    attention = None
    if "attention" in net.blobs:
        full = ref_interp_forward(net.blobs["attention"].data.astype(np.float64), size)[0]
        attention = full[:, :h, :w]
    branches = {}
    for name, blob in (("1", "fc8"), ("0.5", "fc8_res05_interp")):
        if blob in net.blobs and "fc8_res05_interp" in net.blobs:
            branches[name] = ref_interp_forward(
                net.blobs[blob].data.astype(np.float64), size)[0][:, :h, :w]
    return score, attention, branches


def ref_softmax_channels(score):
    e = np.exp(score - score.max(axis=0))
    return e / e.sum(axis=0)


def run_eval(setup, out, net="att", layer_form="cpp", options=None, progress=False):
    prototxt, weights = setup[net]
    predictor = NetPredictor(prototxt, weights, options or InferenceOptions(), layer_form)
    evaluation = Evaluation(NAMES, Bins((16, 64)), Bins((2, 4)))
    folder = PredictionFolder.under(out)
    counts = evaluate_list(setup["entries"], evaluation, folder, predictor, progress=progress)
    return evaluation, folder, counts, predictor


@pytest.mark.parametrize("net", ["att", "single"])
def test_predictions_follow_the_contract(setup, tmp_path, net):
    evaluation, folder, counts, predictor = run_eval(setup, tmp_path, net)
    assert counts.computed == len(SIZES) and counts.reused == 0
    assert predictor.has_attention == (net == "att")
    expected = np.zeros((4, 4), np.int64)
    for entry in setup["entries"]:
        score, attention, _ = reference_forward(*setup[net], read_image(entry.image))
        pred = read_label(folder.prediction_path(entry.name))
        np.testing.assert_array_equal(pred, score.argmax(axis=0))
        gt = read_label(entry.label)
        expected += ref_confusion(gt, pred, 4)
        if net == "att":
            with np.load(folder.attention_path(entry.name)) as archive:
                stored = archive["attention"] / 255.0
                assert list(archive["scales"]) == ["1", "0.5"]
            np.testing.assert_allclose(stored, attention, atol=0.5 / 255 + 1e-5)
        else:
            assert not folder.attention_path(entry.name).exists()
    np.testing.assert_array_equal(evaluation.confusion.matrix, expected)
    summary = evaluation.summary()
    assert summary["images"] == len(SIZES)
    assert (summary["attention"] is not None) == (net == "att")
    assert set(summary["metrics"]["per_class"]) == set(NAMES)


def test_each_scale_branch_is_evaluated_and_resumed(setup, tmp_path):
    options = InferenceOptions(branches=True)
    evaluation, folder, counts, predictor = run_eval(setup, tmp_path, "att", options=options)
    assert predictor.branch_names == ["1", "0.5"]
    expected = {"1": np.zeros((4, 4), np.int64), "0.5": np.zeros((4, 4), np.int64)}
    for entry in setup["entries"]:
        _, _, branches = reference_forward(*setup["att"], read_image(entry.image))
        gt = read_label(entry.label)
        for name, scores in branches.items():
            stored = read_label(folder.branch_path(name, entry.name))
            np.testing.assert_array_equal(stored, scores.argmax(axis=0))
            expected[name] += ref_confusion(gt, stored, 4)
    for name in expected:
        np.testing.assert_array_equal(evaluation.branches[name].matrix, expected[name])
    summary = evaluation.summary()
    assert list(summary["branches"]) == ["1", "0.5"]
    again, _, counts, _ = run_eval(setup, tmp_path, "att", options=options)
    assert counts.reused == len(SIZES)
    assert again.summary()["branches"] == summary["branches"]
    with pytest.raises(ValueError, match="no `fc8` and `fc8_res..._interp` blobs"):
        NetPredictor(*setup["single"], InferenceOptions(branches=True))


def test_python_layer_form_gives_the_same_result(setup, tmp_path):
    cpp = NetPredictor(*setup["att"], layer_form="cpp")
    python = NetPredictor(*setup["att"], layer_form="python")
    assert python.scale_names == cpp.scale_names == ["1", "0.5"]
    for entry in setup["entries"][:3]:
        image = read_image(entry.image)
        a, b = cpp.predict(image), python.predict(image)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
    # The prototxt on disk is left in its C++ form.
    assert 'type: "ScaleInterp"' in Path(setup["att"][0]).read_text()


def test_test_time_scales_and_flip_average_probabilities(setup):
    options = InferenceOptions(scales=(0.75, 1.0), flip=True)
    predictor = NetPredictor(*setup["att"], options)
    image = read_image(setup["entries"][0].image)
    h, w = image.shape[:2]
    got = predictor.predict(image)
    prob_sum, att_sum = 0, 0
    for scale in (0.75, 1.0):
        size = (math.floor((h - 1) * scale) + 1, math.floor((w - 1) * scale) + 1)
        scaled = image.astype(np.float64)
        if scale != 1:
            scaled = ref_interp_forward(scaled.transpose(2, 0, 1)[None], size)[0].transpose(1, 2, 0)
        for mirror in (False, True):
            source = scaled[:, ::-1] if mirror else scaled
            score, attention, _ = reference_forward(*setup["att"],
                                                    np.ascontiguousarray(source))
            prob = ref_softmax_channels(score)
            if mirror:
                prob, attention = prob[:, :, ::-1], attention[:, :, ::-1]
            prob_sum = prob_sum + ref_interp_forward(prob[None], (h, w))[0]
            att_sum = att_sum + ref_interp_forward(attention[None], (h, w))[0]
    np.testing.assert_allclose(got.probabilities, prob_sum / 4, atol=2e-5)
    np.testing.assert_allclose(got.attention, att_sum / 4, atol=2e-5)
    np.testing.assert_allclose(got.probabilities.sum(axis=0), 1, atol=1e-5)


def _tool(*args, **kwargs):
    return subprocess.run([sys.executable, str(REPO / "tools/test_voc.py"), *map(str, args)],
                          capture_output=True, text=True, env=evalnets.tool_env(), **kwargs)


def _count_pngs(folder):
    return len(list(folder.glob("*.png"))) if folder.is_dir() else 0


def test_killed_run_resumes_to_the_same_json(tmp_path):
    """A slower net over 32 images; the run is killed (SIGKILL) after a few predictions, started
    again, and must reuse them (not rewrite) and end with the JSON of an uninterrupted run."""
    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(size=97, width=24), seed=3)
    list_path = evalnets.write_dataset(tmp_path / "data", [(97, 97)] * 32, seed=5)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(NAMES) + "\n")
    common = ["--net", net[0], "--weights", net[1], "--list", list_path, "--root",
              tmp_path / "data", "--classes", classes, "--area-bins", "16,64,256",
              "--distance-bins", "2,4", "--quiet"]
    whole = tmp_path / "whole"
    done = _tool(*common, "--output", whole)
    assert done.returncode == 0, done.stderr

    resumed = tmp_path / "resumed"
    child = subprocess.Popen([sys.executable, str(REPO / "tools/test_voc.py"), *map(str, common),
                              "--output", str(resumed)], env=evalnets.tool_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count_pngs(resumed / "predictions") < 3 and child.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (resumed / "predictions").glob("*.png")}
    assert 3 <= len(first) < 32, f"the run was not stopped part-way ({len(first)} of 32 done)"
    assert not (resumed / "metrics.json").exists()

    again = _tool(*common, "--output", resumed)
    assert again.returncode == 0, again.stderr
    assert f"{32 - len(first)} predicted, {len(first)} reused" in again.stdout
    for name, mtime in first.items():  # reused, not recomputed
        assert (resumed / "predictions" / name).stat().st_mtime_ns == mtime
    assert not [p for p in (resumed / "predictions").iterdir() if p.name.startswith(".")]
    assert json.loads((resumed / "metrics.json").read_text()) == \
        json.loads((whole / "metrics.json").read_text())
    assert (resumed / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()


def test_tool_prints_table_and_refuses_other_settings(setup, tmp_path):
    common = ["--net", setup["att"][0], "--weights", setup["att"][1], "--list", setup["list"],
              "--root", setup["data"], "--classes", setup["root"] / "classes.txt", "--quiet",
              "--output", tmp_path]
    result = _tool(*common, "--limit", 2)
    assert result.returncode == 0, result.stderr
    assert "mean IoU" in result.stdout and "2 images: 2 predicted, 0 reused" in result.stdout
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["images"] == 2 and summary["settings"]["layer_form"] == "cpp"
    assert 0 <= summary["metrics"]["mean_iou"] <= 1
    assert summary["attention"]["scales"] == ["1", "0.5"]
    # what compare_results reads: the net's own scales, the limit, the list as an absolute path
    assert summary["settings"]["net_scales"] == ["1", "0.5"]
    assert summary["settings"]["limit"] == 2
    assert summary["settings"]["list"] == str(Path(setup["list"]).resolve())
    assert "## IoU by object size" in (tmp_path / "metrics.md").read_text()
    other = _tool(*common, "--flip")
    assert other.returncode != 0
    assert "other settings" in other.stderr and "flip" in other.stderr


def test_folder_of_predictions_and_its_errors(setup, tmp_path):
    evaluation, folder, _, _ = run_eval(setup, tmp_path / "run")
    again = Evaluation(NAMES, Bins((16, 64)), Bins((2, 4)))
    counts = evaluate_list(setup["entries"], again, PredictionFolder(folder.predictions),
                           progress=False)
    assert counts.reused == len(SIZES) and counts.computed == 0
    np.testing.assert_array_equal(again.confusion.matrix, evaluation.confusion.matrix)
    assert again.summary()["attention"] is None

    entries = setup["entries"]
    victim = folder.prediction_path(entries[1].name)

    def evaluate():
        evaluate_list(entries, Evaluation(NAMES), PredictionFolder(folder.predictions),
                      progress=False)

    victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=f"prediction {re.escape(str(victim))} .*line 2.*not a readable image"):
        evaluate()
    from attention_scale.data.palette import write_label_png
    write_label_png(victim, np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match=f"prediction {re.escape(str(victim))} is 5x5 but its ground truth is 33x33"):
        evaluate()
    victim.unlink()
    with pytest.raises(DataError, match=f"prediction {re.escape(str(victim))} .*: no such file"):
        evaluate()
    write_label_png(victim, np.full((33, 33), 9, np.uint8))
    with pytest.raises(DataError, match=f"{re.escape(str(victim))}.*value 9 .* is not a class id"):
        evaluate()

    result = _tool("--predictions", folder.predictions, "--list", setup["list"], "--root",
                   setup["data"], "--classes", setup["root"] / "classes.txt", "--output",
                   tmp_path / "eval", "--quiet")
    assert result.returncode == 1
    assert "test_voc:" in result.stderr and str(victim) in result.stderr


def test_missing_image_and_size_mismatch_are_named(setup, tmp_path):
    data = tmp_path / "data"
    list_path = evalnets.write_dataset(data, [(20, 20), (20, 20)])
    entries = read_list(list_path, data)
    predictor = NetPredictor(*setup["att"])
    (data / "images" / "img001.png").unlink()
    with pytest.raises(DataError, match=r"image .*img001.png .*line 2\): no such file"):
        evaluate_list(entries, Evaluation(NAMES), PredictionFolder.under(tmp_path / "o1"),
                      predictor, progress=False)
    from attention_scale.data.palette import write_label_png
    write_label_png(data / "labels" / "img000.png", np.zeros((21, 20), np.uint8))
    with pytest.raises(DataError, match=r"label .*img000.png .*line 1\) is 21x20 but its image .* is 20x20"):
        evaluate_list(entries, Evaluation(NAMES), PredictionFolder.under(tmp_path / "o2"),
                      predictor, progress=False)


def test_duplicate_names_and_class_count_mismatch(setup, tmp_path):
    lst = tmp_path / "dup.txt"
    lst.write_text("/images/img000.png /labels/img000.png\n/images/img000.png /labels/img001.png\n")
    entries = read_list(lst, setup["data"])
    with pytest.raises(DataError, match="line 2 and .* line 1: two images named 'img000'"):
        evaluate_list(entries, Evaluation(NAMES), PredictionFolder.under(tmp_path), progress=False)
    predictor = NetPredictor(*setup["single"])
    with pytest.raises(ValueError, match="4 classes but the evaluation has 21 class names; give "
                                         "the net.s class names, one per line, with --classes FILE"):
        evaluate_list(setup["entries"], Evaluation([str(i) for i in range(21)]),
                      PredictionFolder.under(tmp_path), predictor, progress=False)


def test_net_without_score_blob_is_named(setup, tmp_path):
    text = evalnets.single_scale_net().replace('name: "score"', 'name: "scores"').replace(
        'top: "score"', 'top: "scores"')
    prototxt, weights = evalnets.write_net(tmp_path, text)
    with pytest.raises(ValueError, match="no blob 'score'"):
        NetPredictor(prototxt, weights)
    with pytest.raises(FileNotFoundError, match="weights .*nothing.caffemodel"):
        NetPredictor(prototxt, tmp_path / "nothing.caffemodel")


@pytest.mark.parametrize("layer_form", ["cpp", "python"])
def test_a_pycaffe_without_the_input_layer_gets_the_nets_input_fields(setup, monkeypatch,
                                                                       layer_form):
    """A Caffe from before the Input layer (DeepLab-v2): the predictor declares the test net's
    inputs by the net's input/input_shape fields instead, and predicts the same (BVLC Caffe
    reads those fields too, so its pycaffe stands in for the older one here)."""
    from attention_scale.pycaffe import import_caffe

    normal = NetPredictor(*setup["att"], layer_form=layer_form)
    caffe = import_caffe()
    known = [t for t in caffe.layer_type_list() if t != "Input"]
    monkeypatch.setattr(caffe, "layer_type_list", lambda: known)
    older = NetPredictor(*setup["att"], layer_form=layer_form)
    # BVLC Caffe turns the net's input fields back into an Input layer, named "input".
    assert list(normal.net._layer_names)[0] == "data"
    assert list(older.net._layer_names)[0] == "input"
    assert older.base_hw == normal.base_hw
    for entry in setup["entries"][:2]:
        image = read_image(entry.image)
        a, b = normal.predict(image), older.predict(image)
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        np.testing.assert_array_equal(a.attention, b.attention)


# -- the output folder's claim (run.json) --------------------------------------------------------

def _common(setup, out, net="att", weights=None):
    prototxt, saved = setup[net]
    return ["--net", prototxt, "--weights", weights or saved, "--list", setup["list"], "--root",
            setup["data"], "--classes", setup["root"] / "classes.txt", "--quiet", "--output", out]


def test_new_weights_at_the_same_path_are_not_mixed_with_the_old_predictions(setup, tmp_path):
    """A retrained net overwrites train_iter_N.caffemodel: the same paths, other content."""
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(Path(setup["att"][1]).read_bytes())
    first = _tool(*_common(setup, tmp_path / "out", weights=weights), "--limit", 2)
    assert first.returncode == 0, first.stderr
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())
    assert len(recorded["weights_sha256"]) == len(recorded["net_sha256"]) == 64
    again = _tool(*_common(setup, tmp_path / "out", weights=weights))
    assert again.returncode == 0 and "3 predicted, 2 reused" in again.stdout, again.stderr

    other = evalnets.write_net(tmp_path / "other", evalnets.attention_net(), seed=7)
    weights.write_bytes(Path(other[1]).read_bytes())
    stale = _tool(*_common(setup, tmp_path / "out", weights=weights))
    assert stale.returncode == 1
    assert re.search(rf"test_voc: .*out holds predictions made with other settings \(weights: "
                     rf"{re.escape(str(weights))} has other content now, sha256 "
                     rf"{recorded['weights_sha256'][:12]}\.\.\. there, [0-9a-f]{{12}}\.\.\. now\); "
                     rf"use another --output or delete that folder", stale.stderr), stale.stderr
    # the net's text counts as parsed: a comment is not a change, a field is
    net = tmp_path / "net.prototxt"
    net.write_text("# a comment\n" + Path(setup["att"][0]).read_text())
    weights.write_bytes(Path(setup["att"][1]).read_bytes())
    common = _common(setup, tmp_path / "net-out", weights=weights)
    common[1] = net
    assert _tool(*common, "--limit", 1).returncode == 0
    net.write_text("# another comment\n" + Path(setup["att"][0]).read_text())
    assert _tool(*common, "--limit", 1).returncode == 0
    net.write_text(Path(setup["att"][0]).read_text().replace("dropout_ratio: 0.5",
                                                             "dropout_ratio: 0.25"))
    changed = _tool(*common, "--limit", 1)
    assert changed.returncode == 1 and f"net: {net} has other content now" in changed.stderr


def test_a_run_json_without_content_hashes_is_refused_while_it_holds_results(setup, tmp_path):
    """Folders of earlier versions: their run.json has the paths only, and a modification time
    proves nothing (`cp -p` keeps an old one), so the predictions beside it are not reused;
    without results beside it, the folder is free."""
    from attention_scale.evaluation.outputs import claim_output

    predictor = NetPredictor(*setup["att"])
    settings = predictor.settings()
    out = tmp_path / "old"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "img000.png").write_bytes(b"")
    old = {k: v for k, v in settings.items() if not k.endswith("_sha256")}
    old["crf"] = None
    (out / "run.json").write_text(json.dumps(old))
    with pytest.raises(DataError, match=r"its run.json was written by an earlier version without "
                                        r"the content hashes .*; use another --output or delete "
                                        r"that folder"):
        claim_output(out, settings)
    (out / "predictions" / "img000.png").unlink()
    claim = claim_output(out, settings)
    claim.record()
    assert json.loads((out / "run.json").read_text())["weights_sha256"] == \
        predictor.weights_sha256


def test_predictions_evaluated_into_a_nets_folder_do_not_replace_its_metrics(setup, tmp_path):
    made = _tool(*_common(setup, tmp_path / "net"))
    assert made.returncode == 0, made.stderr
    metrics = (tmp_path / "net" / "metrics.json").read_bytes()
    other = tmp_path / "other"
    run_eval(setup, other, "single")
    data = ["--list", setup["list"], "--root", setup["data"], "--classes",
            setup["root"] / "classes.txt", "--quiet"]
    refused = _tool("--predictions", other / "predictions", *data, "--output", tmp_path / "net")
    assert refused.returncode == 1
    assert f"{tmp_path / 'net'} holds the predictions of {setup['att'][0]}" in refused.stderr
    assert "use another --output" in refused.stderr
    assert (tmp_path / "net" / "metrics.json").read_bytes() == metrics
    # its own predictions may be evaluated again there
    own = _tool("--predictions", tmp_path / "net" / "predictions", *data, "--output",
                tmp_path / "net")
    assert own.returncode == 0, own.stderr
    # a folder of evaluated predictions is claimed as well
    assert _tool("--predictions", other / "predictions", *data, "--output",
                 tmp_path / "eval").returncode == 0
    second = _tool("--predictions", tmp_path / "net" / "predictions", *data, "--output",
                   tmp_path / "eval")
    assert second.returncode == 1
    assert f"holds the metrics of the predictions in {other / 'predictions'}" in second.stderr


def test_a_failed_run_leaves_nothing_and_a_lone_run_json_does_not_block(setup, tmp_path):
    out = tmp_path / "out"
    common = _common(setup, out)
    without_classes = common[:common.index("--classes")] + common[common.index("--quiet"):]
    failed = _tool(*without_classes)
    assert failed.returncode == 1
    assert "4 classes but the evaluation has 21 class names; give the net's class names, one " \
           "per line, with --classes FILE" in failed.stderr
    assert not out.exists()
    # earlier versions wrote run.json before checking: such a lone run.json does not block
    out.mkdir()
    (out / "predictions").mkdir()
    (out / "run.json").write_text(json.dumps({"net": "x.prototxt", "weights": "y.caffemodel"}))
    fixed = _tool(*common, "--flip")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads((out / "run.json").read_text())["flip"] is True


# -- what Caffe would end the process on, refused first ------------------------------------------

def test_nets_caffe_would_abort_on_are_named_by_the_tool(setup, tmp_path):
    text = Path(setup["att"][0]).read_text()
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "test.prototxt"\nbase_lr: 0.01\nmax_iter: 10\n')
    typo = tmp_path / "typo.prototxt"
    typo.write_text(text.replace("kernel_size", "kernal_size", 1))
    bottom = tmp_path / "bottom.prototxt"
    concat = 'type: "Concat" bottom: "fc7" '
    assert concat in text
    bottom.write_text(text.replace(concat, 'type: "Concat" bottom: "fc_7" '))
    later = tmp_path / "later.prototxt"
    later.write_text(text.replace(concat, 'type: "Concat" bottom: "att_conv2" '))
    train = tmp_path / "train" / "train.prototxt"
    train.parent.mkdir()
    train.write_text((REPO / "prototxt/baseline/train.prototxt").read_text())
    (train.parent / "test.prototxt").write_text(text)
    cases = [
        (setup["att"][1], r"--net \S*test\.caffemodel is a \.caffemodel \(trained weights\), "
                          r"not a network definition: give it as --weights, and the variant's "
                          r"test\.prototxt as --net"),
        (solver, r"solver\.prototxt: 1:1 .* has no field named \"net\"\. This looks like a "
                 r"solver prototxt"),
        (typo, r"cannot parse .*typo\.prototxt: 3:\d+ : .* has no field named \"kernal_size\""),
        (bottom, r"bottom\.prototxt: layer 'fc7_concat' \(Concat\) takes bottom 'fc_7', which no "
                 r"layer before it makes and which is not an input of the net; did you mean "
                 r"'fc7'.*\? Caffe would end the process on this \(Unknown bottom blob\)"),
        (later, r"layer 'fc7_concat' \(Concat\) takes bottom 'att_conv2', .* \(layer 'att_conv2' "
                r"makes it further down: Caffe builds the layers in file order\)"),
        (train, r"train\.prototxt is a train net: its layer 'data' \(Python: SegmentationData\) "
                r"reads the data, .*; give its test form, .*train/test\.prototxt$"),
    ]
    for net, pattern in cases:
        common = _common(setup, tmp_path / "out")
        common[1] = net
        result = _tool(*common)
        assert result.returncode == 1, (net, result.returncode, result.stderr[-2000:])
        assert re.search(f"test_voc: .*{pattern}", result.stderr.strip()), result.stderr
        assert "Traceback" not in result.stderr and "Check failed" not in result.stderr
        assert not (tmp_path / "out").exists()


def test_scales_are_checked_before_caffe_sees_them(setup, tmp_path):
    for value in ("nan", "inf", "0"):
        result = _tool(*_common(setup, tmp_path / "out"), "--scales", "1", value)
        assert result.returncode == 2
        assert f"argument --scales: '{value}': a scale is a finite number > 0" in result.stderr
    # 33 x 33 input at scale 1000: 8 x 32001 x 32001 values in conv1_1, over INT_MAX
    big = _tool(*_common(setup, tmp_path / "out"), "--scales", "1000")
    assert big.returncode == 1, big.stderr[-2000:]
    assert re.search(r"test_voc: --scales 1000: an image of the net's input size \(33x33\) needs "
                     r"a 32001x32001 input .* blob '\w+' .* over Caffe's limit of 2\^31 - 1 per "
                     r"blob .*; use scales up to 5\d\d(\.\d+)? for it", big.stderr), big.stderr
    assert not (tmp_path / "out").exists()
    # an image larger than the net's input, at a scale that fits the input size itself
    predictor = NetPredictor(*setup["att"], InferenceOptions(scales=(400,)))
    with pytest.raises(ValueError, match=r"--scales 400: this 200x200 image needs a 79601x79601 "
                                         r"input"):
        predictor.predict(np.zeros((200, 200, 3), np.uint8))


@pytest.mark.parametrize("output,problem", [
    ("/sys/out", "cannot write in /sys"),
    ("{file}", "a file, not a folder"),
    ("{file}/out", "{file} is a file, not a folder"),
])
def test_an_output_that_cannot_be_written_is_named(setup, tmp_path, output, problem):
    file = tmp_path / "file.txt"
    file.write_text("x")
    output, problem = output.format(file=file), problem.format(file=file)
    result = _tool(*_common(setup, output))
    assert result.returncode == 1
    assert result.stderr.strip() == f"test_voc: --output {output}: {problem}" or \
        result.stderr.strip().startswith(f"test_voc: --output {output}: {problem} ("), \
        result.stderr
    assert file.read_text() == "x"


def test_ctrl_c_stops_with_one_line_and_the_run_continues(tmp_path):
    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(size=97, width=24), seed=3)
    list_path = evalnets.write_dataset(tmp_path / "data", [(97, 97)] * 24, seed=5)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(NAMES) + "\n")
    common = ["--net", net[0], "--weights", net[1], "--list", list_path, "--root",
              tmp_path / "data", "--classes", classes, "--quiet", "--output", tmp_path / "out"]
    child = subprocess.Popen([sys.executable, str(REPO / "tools/test_voc.py"), *map(str, common)],
                             env=evalnets.tool_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while _count_pngs(tmp_path / "out" / "predictions") < 2 and child.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    done = _count_pngs(tmp_path / "out" / "predictions")
    assert done < 24, "the run ended before the Ctrl-C"
    assert child.returncode == 130, stderr
    assert stderr.strip() == "test_voc: stopped; run the same command again to continue"
    again = _tool(*common)
    assert again.returncode == 0 and f"{24 - done} predicted, {done} reused" in again.stdout


@pytest.mark.parametrize("error, resumable, messages, status, line", [
    (KeyboardInterrupt(), True, None, 130,
     "tool: stopped; run the same command again to continue"),
    (KeyboardInterrupt(), False, None, 130, "tool: stopped"),
    (DataError("list.txt line 2: bad"), True, None, 1, "tool: list.txt line 2: bad"),
    (FileNotFoundError("weights w.caffemodel: no such file"), True, None, 1,
     "tool: weights w.caffemodel: no such file"),
    (ImportError("install pydensecrf2"), True, None, 1, "tool: install pydensecrf2"),
    # A system error: its file and reason, or the tool's folder when it names no file.
    (PermissionError(13, "Permission denied", "out/x.png"), True, None, 1,
     "tool: out/x.png: Permission denied"),
    (OSError("disk gone"), True, None, 1, "tool: out: disk gone"),
    # A narrower set of messages (compare_results): FileNotFoundError is a system error there.
    (FileNotFoundError(2, "No such file or directory", "a/metrics.json"), True,
     (DataError, ValueError), 1, "tool: a/metrics.json: No such file or directory"),
])
def test_the_tools_errors_end_in_one_line(capsys, error, resumable, messages, status, line):
    from attention_scale.evaluation.cli import MESSAGE_ERRORS, errors_end_in_one_line

    with pytest.raises(SystemExit) as ended:
        with errors_end_in_one_line("tool", Path("out"), resumable, messages or MESSAGE_ERRORS):
            raise error
    code = ended.value.code
    if status == 130:
        assert code == 130 and capsys.readouterr().err.strip() == line
    else:  # sys.exit(message): Python prints it on stderr, exit status 1
        assert code == line


def test_other_exceptions_pass_the_tools_error_handling():
    """A bug keeps its traceback; so does an ImportError where it is not one of the messages."""
    from attention_scale.evaluation.cli import errors_end_in_one_line

    with pytest.raises(KeyError):
        with errors_end_in_one_line("tool", "out"):
            raise KeyError("x")
    with pytest.raises(ImportError):
        with errors_end_in_one_line("tool", "out", messages=(DataError, ValueError)):
            raise ImportError("matplotlib")


def test_a_refused_folder_is_named_by_the_tools_own_option(setup, tmp_path):
    """visualize_attention's folder is --results, test_voc's --output."""
    from attention_scale.evaluation.outputs import claim_output

    predictor = NetPredictor(*setup["att"])
    out = tmp_path / "r"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "img000.png").write_bytes(b"")
    (out / "run.json").write_text(json.dumps(dict(predictor.settings(), flip=True)))
    with pytest.raises(DataError, match=r"use another --results or delete that folder"):
        claim_output(out, predictor.settings(), option="--results")
    with pytest.raises(DataError, match=r"use another --output or delete that folder"):
        claim_output(out, predictor.settings())


def test_the_same_weights_under_another_path_reuse_the_folder(setup, tmp_path):
    """The content decides: the weights copied elsewhere (or the same file spelt another way)
    reuse the predictions; other content at the recorded path does not (tested above)."""
    import shutil

    from attention_scale.evaluation.outputs import claim_output

    predictor = NetPredictor(*setup["att"])
    out = tmp_path / "r"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "img000.png").write_bytes(b"")
    (out / "run.json").write_text(json.dumps(predictor.settings()))
    copy = tmp_path / "copy.caffemodel"
    shutil.copy(setup["att"][1], copy)
    moved = NetPredictor(setup["att"][0], copy)
    assert moved.settings()["weights"] != predictor.settings()["weights"]
    claim_output(out, moved.settings())  # not refused
    with pytest.raises(DataError, match=r"flip: False there, True now"):
        claim_output(out, dict(moved.settings(), flip=True))
