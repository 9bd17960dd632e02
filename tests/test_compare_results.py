"""tools/compare_results.py: evaluations side by side, and the paired bootstrap over images,
against references written here with plain loops (per-image confusion, mIOU, resample sums)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evalnets
from attention_scale.data.images import read_label
from attention_scale.data.lists import read_list
from attention_scale.data.palette import write_label_png
from attention_scale.errors import DataError
from attention_scale.evaluation import comparison as cmp
from attention_scale.evaluation.runner import Evaluation, evaluate_into
from pyhelpers import ref_confusion

REPO = Path(__file__).resolve().parents[1]
NAMES = ["bg", "a", "b", "c"]
SIZES = [(20, 25), (33, 33), (40, 30), (12, 50), (7, 9), (16, 16), (24, 18), (30, 30)]


def ref_mean_iou(conf):
    """Plain loop: IoU of every class present in ground truth or prediction, averaged."""
    values = []
    for c in range(len(conf)):
        tp = conf[c][c]
        union = sum(conf[c]) + sum(conf[r][c] for r in range(len(conf))) - tp
        if union > 0:
            values.append(tp / union)
    return sum(values) / len(values) if values else float("nan")


def _noisy(label, rate, rng, num_classes=4):
    """The label with a share `rate` of its pixels set to random classes (a 'prediction')."""
    pred = np.where(label == 255, 0, label).astype(np.uint8)
    flip = rng.random(pred.shape) < rate
    pred[flip] = rng.integers(0, num_classes, flip.sum())
    return pred


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data set and three evaluated prediction folders: good, worse, and a copy of good."""
    root = tmp_path_factory.mktemp("cmp")
    list_path = evalnets.write_dataset(root / "data", SIZES)
    entries = read_list(list_path, root / "data")
    rng = np.random.default_rng(5)
    folders = {}
    for name, rate in (("good", 0.1), ("worse", 0.3)):
        preds = root / f"{name}-png"
        preds.mkdir()
        for entry in entries:
            write_label_png(preds / f"{entry.name}.png", _noisy(read_label(entry.label), rate, rng))
        folders[name] = root / name
        evaluate_into(folders[name], entries, Evaluation(NAMES), predictions=preds,
                      settings={"list": str(list_path)}, progress=False)
    return {"root": root, "list": list_path, "entries": entries, "folders": folders}


def _tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools/compare_results.py"),
                           *map(str, args)], capture_output=True, text=True,
                          env=evalnets.tool_env())


def test_mean_iou_matches_a_plain_loop_and_the_confusion_matrix_class():
    rng = np.random.default_rng(0)
    for _ in range(20):
        conf = rng.integers(0, 50, (5, 5))
        absent = rng.integers(0, 5)
        conf[absent, :] = 0
        conf[:, absent] = 0  # a class in neither ground truth nor prediction is left out
        assert cmp.mean_iou(conf) == pytest.approx(ref_mean_iou(conf.tolist()), abs=1e-12)
    stack = rng.integers(0, 9, (3, 4, 4, 4))
    got = cmp.mean_iou(stack)
    assert got.shape == (3, 4)
    assert got[2, 1] == pytest.approx(ref_mean_iou(stack[2, 1].tolist()))
    assert np.isnan(cmp.mean_iou(np.zeros((3, 3))))


def test_per_image_confusions_add_up_and_match_a_plain_loop(data):
    result = cmp.load(data["folders"]["good"])
    matrices = cmp.per_image_confusions(result, data["entries"], progress=False)
    for i, entry in enumerate(data["entries"]):
        pred = read_label(data["root"] / "good-png" / f"{entry.name}.png")
        np.testing.assert_array_equal(matrices[i], ref_confusion(read_label(entry.label), pred, 4))
    assert cmp.mean_iou(matrices.sum(0)) == pytest.approx(
        result.summary["metrics"]["mean_iou"], abs=1e-12)


def test_resample_counts_are_draws_with_replacement():
    counts = cmp.resample_counts(7, 300, seed=3)
    assert counts.shape == (300, 7) and (counts.sum(1) == 7).all()
    assert (counts.max(1) > 1).any()  # with replacement: some image drawn twice
    np.testing.assert_array_equal(counts, cmp.resample_counts(7, 300, seed=3))
    assert not np.array_equal(counts, cmp.resample_counts(7, 300, seed=4))


def test_paired_bootstrap_against_a_plain_loop(data):
    confusions = [cmp.per_image_confusions(cmp.load(data["folders"][n]), data["entries"],
                                           progress=False) for n in ("good", "worse")]
    counts = cmp.resample_counts(len(data["entries"]), 200, seed=1)
    got = cmp.paired_bootstrap(confusions, counts)
    # the reference: each resample's images listed one by one and their matrices summed
    ref = {0: [], 1: []}
    for row in counts:
        drawn = [i for i, n in enumerate(row) for _ in range(n)]
        for k in (0, 1):
            total = np.zeros((4, 4), np.int64)
            for i in drawn:
                total += confusions[k][i]
            ref[k].append(ref_mean_iou(total.tolist()))
    diff = np.array(ref[1]) - np.array(ref[0])
    assert got["resamples"] == 200
    assert got["rows"][1]["difference_interval"] == pytest.approx(
        [np.percentile(diff, 2.5), np.percentile(diff, 97.5)], abs=1e-12)
    assert got["rows"][1]["p_better"] == pytest.approx(np.mean(diff > 0))
    assert got["rows"][0]["miou_interval"] == pytest.approx(
        [np.percentile(ref[0], 2.5), np.percentile(ref[0], 97.5)], abs=1e-12)
    # the worse predictions are worse in every resample of this set; the baseline against itself
    assert got["rows"][1]["p_better"] == 0.0 and got["rows"][1]["difference_interval"][1] < 0
    assert got["rows"][0]["difference_interval"] == [0.0, 0.0]


def test_tool_writes_the_table_chart_and_json(data, tmp_path):
    good, worse = data["folders"]["good"], data["folders"]["worse"]
    out = tmp_path / "cmp"
    proc = _tool(good, worse, "--names", "good net", "worse net", "--output", out,
                 "--list", data["list"], "--root", data["root"] / "data", "--bootstrap", 200)
    assert proc.returncode == 0, proc.stderr
    table = json.loads((out / cmp.COMPARISON_JSON).read_text())
    metrics = {n: json.loads((f / "metrics.json").read_text())
               for n, f in (("g", good), ("w", worse))}
    rows = table["rows"]
    assert [r["name"] for r in rows] == ["good net", "worse net"]
    assert rows[1]["mean_iou"] == metrics["w"]["metrics"]["mean_iou"]
    assert rows[1]["difference"] == pytest.approx(metrics["w"]["metrics"]["mean_iou"]
                                                  - metrics["g"]["metrics"]["mean_iou"])
    assert rows[0]["per_class_iou"]["b"] == metrics["g"]["metrics"]["per_class"]["b"]["iou"]
    assert table["size_bins"] == [b["bin"] for b in metrics["g"]["by_object_size"]["bins"]]
    assert table["bootstrap_resamples"] == 200 and rows[1]["bootstrap"]["p_better"] == 0.0
    report = (out / cmp.COMPARISON_MD).read_text()
    assert f"| worse net | {100 * rows[1]['mean_iou']:.2f} |" in report
    assert "## IoU % per class" in report and "| b |" in report
    assert (out / cmp.COMPARISON_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| net | mIOU % | difference | 95% interval | P(better)" in proc.stdout


def test_changed_predictions_are_refused_and_nothing_is_written(data, tmp_path):
    # a copy laid out as a net's folder (predictions/ inside), then one prediction changed
    good = data["folders"]["good"]
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(good), str(copy)], check=True)
    subprocess.run(["cp", "-r", str(data["root"] / "good-png"), str(copy / "predictions")],
                   check=True)
    summary = json.loads((copy / "metrics.json").read_text())
    summary["settings"] = {"list": summary["settings"]["list"], "net": "net.prototxt"}
    (copy / "metrics.json").write_text(json.dumps(summary))
    args = ["--list", data["list"], "--root", data["root"] / "data", "--bootstrap", 100]
    assert _tool(good, copy, "--output", tmp_path / "same", *args).returncode == 0
    first = data["entries"][0].name
    pred = read_label(copy / "predictions" / f"{first}.png")
    write_label_png(copy / "predictions" / f"{first}.png", (pred + 1) % 4)
    out = tmp_path / "cmp"
    # without the bootstrap the tables come from metrics.json alone: accepted
    assert _tool(good, copy, "--output", tmp_path / "plain").returncode == 0
    proc = _tool(good, copy, "--output", out, *args)
    assert proc.returncode == 1
    assert f"{copy}: its predictions against these labels do not give the confusion matrix" \
        in proc.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", ["classes", "images", "missing", "names", "too_few"])
def test_evaluations_that_cannot_be_compared_are_named(data, tmp_path, case):
    good = cmp.load(data["folders"]["good"])
    other = cmp.load(data["folders"]["worse"])
    if case == "classes":
        other.summary = dict(other.summary, classes=["bg", "a", "b", "d"])
        message = "other class names"
    elif case == "images":
        other.summary = dict(other.summary, images=3)
        message = "evaluated on 3 images"
    elif case == "names":
        other.name = good.name
        message = "give --names"
    elif case == "too_few":
        with pytest.raises(DataError, match="at least two"):
            cmp.check_comparable([good])
        return
    else:
        with pytest.raises(DataError, match="no metrics.json; evaluate first"):
            cmp.load(tmp_path)
        return
    with pytest.raises(DataError, match=message):
        cmp.check_comparable([good, other])


def test_argument_errors(data, tmp_path):
    good, worse = data["folders"]["good"], data["folders"]["worse"]
    proc = _tool(good, worse, "--names", "x", "--output", tmp_path / "o")
    assert proc.returncode == 2 and "--names gives 1 names for 2 folders" in proc.stderr
    proc = _tool(good, worse, "--bootstrap", 500, "--output", tmp_path / "o")
    assert proc.returncode == 2 and "needs --list and --root" in proc.stderr
    proc = _tool(good, worse, "--bootstrap", 10, "--list", data["list"], "--root", tmp_path,
                 "--output", tmp_path / "o")
    assert proc.returncode == 2 and "at least 100" in proc.stderr
    proc = _tool(good, tmp_path / "nothing", "--output", tmp_path / "o")
    assert proc.returncode == 1 and "nothing: no such folder" in proc.stderr
