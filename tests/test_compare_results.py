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
    # the shares add up; a net against itself ties in every resample (not "P(better) 0")
    assert got["rows"][1]["p_worse"] == 1.0 and got["rows"][1]["p_tie"] == 0.0
    assert (got["rows"][0]["p_better"], got["rows"][0]["p_tie"], got["rows"][0]["p_worse"]) == \
        (0.0, 1.0, 0.0)


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
    assert ("| net | mIOU % | difference | 95% interval | P(better / tie / worse) | pixel acc. % "
            "| mean class acc. % | net's scales | test-time input scales |") in proc.stdout
    assert " | 0.000 / 0.000 / 1.000 | " in report


def test_folders_may_follow_the_options(data, tmp_path):
    """`compare_results.py A --output o B`: a folder after an option is a folder, not an
    unrecognized argument."""
    good, worse = data["folders"]["good"], data["folders"]["worse"]
    proc = _tool(good, "--output", tmp_path / "cmp", worse)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "cmp" / cmp.COMPARISON_JSON).read_text())["rows"]
    assert [r["name"] for r in rows] == ["good", "worse"]


def test_identical_nets_tie_and_the_chart_draws_the_paired_interval(data, tmp_path):
    good = data["folders"]["good"]
    out = tmp_path / "cmp"
    proc = _tool(good, good, data["folders"]["worse"], "--names", "a", "b", "w", "--output", out,
                 "--list", data["list"], "--root", data["root"] / "data", "--bootstrap", 100)
    assert proc.returncode == 0, proc.stderr
    report = (out / cmp.COMPARISON_MD).read_text()
    assert "| b | " in report and " | +0.00 to +0.00 | 0.000 / 1.000 / 0.000 | " in report
    table = json.loads((out / cmp.COMPARISON_JSON).read_text())
    figure = cmp.chart(table)
    bars, diffs = figure.axes
    # the bars carry no interval (each net's own one would overlap where the paired one does not)
    assert not bars.collections
    # the second panel: each net's difference to the first with the table's paired interval
    segments = [seg for coll in diffs.collections for seg in coll.get_segments()]
    assert len(segments) == 2
    for seg, row in zip(segments, table["rows"][1:]):
        assert [seg[0][1], seg[1][1]] == pytest.approx(
            [100 * v for v in row["bootstrap"]["difference_interval"]])
    assert "paired" in diffs.get_title()
    assert len(cmp.chart(dict(table, bootstrap_resamples=None)).axes) == 1


def test_scales_columns_name_the_nets_own_scales(data):
    good = cmp.load(data["folders"]["good"], "g")
    multi = cmp.load(data["folders"]["worse"], "m")
    multi.summary = dict(multi.summary, settings={"net": "n.prototxt", "test_scales": [1.0],
                                                  "net_scales": ["1", "0.75", "0.5"]})
    old = cmp.load(data["folders"]["worse"], "o")  # no net_scales: its attention maps' scales
    old.summary = dict(old.summary, settings={"net": "n.prototxt", "test_scales": [1.0, 0.5]},
                       attention={"scales": ["1", "0.5"], "by_size": [],
                                  "background": {"pixel_mean": [0.5, 0.5]}})
    text = cmp.markdown(cmp.compare([good, multi, old]))
    assert "| net's scales | test-time input scales |" in text
    assert "| 1 / 0.75 / 0.5 | 1 |" in text and "| 1 / 0.5 | 1, 0.5 |" in text
    assert "| n/a | predictions folder |" in text and "scales 1" not in text


def test_limit_and_other_working_directory(data, tmp_path):
    """test_voc.py records --limit and absolute paths: compare_results --bootstrap reads the
    first N entries of the full list, from another working directory, with the same list
    spelled differently and no warning."""
    good_png = data["root"] / "good-png"
    worse_png = data["root"] / "worse-png"
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(NAMES) + "\n")
    folders = {}
    for name, preds in (("good", good_png), ("worse", worse_png)):
        folders[name] = tmp_path / f"{name}-lim"
        proc = subprocess.run(
            [sys.executable, str(REPO / "tools/test_voc.py"), "--predictions",
             preds.relative_to(data["root"]), "--list", data["list"].relative_to(data["root"]),
             "--root", "data", "--limit", "5", "--classes", classes,
             "--output", folders[name], "--quiet"],
            capture_output=True, text=True, env=evalnets.tool_env(), cwd=data["root"])
        assert proc.returncode == 0, proc.stderr
        settings = json.loads((folders[name] / "metrics.json").read_text())["settings"]
        assert settings["limit"] == 5 and settings["predictions"] == str(preds.resolve())
        assert settings["list"] == str(data["list"].resolve())
        assert settings["root"] == str((data["root"] / "data").resolve())
    out = tmp_path / "cmp"
    proc = _tool(folders["good"], folders["worse"], "--output", out, "--list", data["list"],
                 "--root", data["root"] / "data", "--bootstrap", 100)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert json.loads((out / cmp.COMPARISON_JSON).read_text())["images"] == 5
    # a folder of an earlier version (no limit recorded, a relative --predictions path)
    summary = json.loads((folders["worse"] / "metrics.json").read_text())
    del summary["settings"]["limit"]
    summary["settings"]["predictions"] = "worse-png"
    (folders["worse"] / "metrics.json").write_text(json.dumps(summary))
    proc = _tool(folders["good"], folders["worse"], "--output", out, "--list", data["list"],
                 "--root", data["root"] / "data", "--bootstrap", 100)
    assert proc.returncode == 1
    assert "was evaluated on 5 images but the list has 8" in proc.stderr
    assert "head -n 5 LIST > FILE" in proc.stderr
    short = tmp_path / "five.txt"
    short.write_text("".join(data["list"].read_text().splitlines(True)[:5]))
    proc = _tool(folders["good"], folders["worse"], "--output", out, "--list", short,
                 "--root", data["root"] / "data", "--bootstrap", 100)
    assert proc.returncode == 1
    assert "names the --predictions folder worse-png, relative to the directory test_voc.py " \
        "ran in" in proc.stderr


def test_one_list_spelled_two_ways_is_not_two_lists(data, monkeypatch):
    good = cmp.load(data["folders"]["good"])
    worse = cmp.load(data["folders"]["worse"])
    monkeypatch.chdir(data["list"].parent)
    worse.summary = dict(worse.summary, settings=dict(worse.summary["settings"],
                                                      list=data["list"].name))
    assert cmp.check_comparable([good, worse]) == []
    worse.summary["settings"]["list"] = "other.txt"
    assert "different list files" in cmp.check_comparable([good, worse])[0]


def test_the_bootstrap_settles_the_different_list_files_warning(data, tmp_path):
    """Two list files of the same images: warned about without --bootstrap; with it, every
    folder's predictions were scored again on the given list's labels and matched its
    metrics.json, so the images are the same and the warning goes."""
    copy = tmp_path / "worse"
    subprocess.run(["cp", "-r", str(data["folders"]["worse"]), str(copy)], check=True)
    other_list = tmp_path / "same-images.txt"
    other_list.write_text(data["list"].read_text())
    summary = json.loads((copy / "metrics.json").read_text())
    summary["settings"]["list"] = str(other_list)
    (copy / "metrics.json").write_text(json.dumps(summary))
    proc = _tool(data["folders"]["good"], copy, "--output", tmp_path / "a")
    assert proc.returncode == 0 and "different list files" in proc.stderr, proc.stderr
    proc = _tool(data["folders"]["good"], copy, "--output", tmp_path / "b", "--list",
                 data["list"], "--root", data["root"] / "data", "--bootstrap", 100)
    assert proc.returncode == 0, proc.stderr
    assert "different list files" not in proc.stderr + (tmp_path / "b" / cmp.COMPARISON_MD
                                                        ).read_text()


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
