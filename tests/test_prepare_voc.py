"""VOC + SBD preparation on a generated layout (.mat labels written with scipy.io)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from attention_scale.data import voc
from attention_scale.data.images import read_label
from attention_scale.data.lists import read_list
from attention_scale.data.palette import write_label_png
from attention_scale.errors import DataError
from attention_scale.evaluation.segment_images import list_inputs

REPO = Path(__file__).resolve().parents[1]


def _label(rng, h, w, void=False):
    label = np.zeros((h, w), np.uint8)
    label[2:h - 2, 3:w - 3] = rng.integers(1, 21)
    if void:
        label[1, :] = 255
    return label


@pytest.fixture
def layout(tmp_path):
    """VOC: train [a], val [b], labels for a and b. SBD: train [a, c, e, f], val [b, d, g]:
    e's .mat is damaged, f has no image, g's label has another size than its image, h is only
    in VOC train and has no label anywhere."""
    rng = np.random.default_rng(0)
    vocdir = tmp_path / "VOCdevkit" / "VOC2012"
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    for folder in (vocdir / "JPEGImages", vocdir / "SegmentationClass",
                   vocdir / "ImageSets" / "Segmentation", sbd / "cls"):
        folder.mkdir(parents=True)
    sizes = {"a": (20, 30), "b": (24, 18), "c": (16, 16), "d": (30, 22), "e": (20, 20),
             "g": (20, 20), "h": (10, 12)}
    for name, (h, w) in sizes.items():
        cv2.imwrite(str(vocdir / "JPEGImages" / f"{name}.jpg"),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    labels = {}
    for name in ("a", "b"):
        labels[name] = _label(rng, *sizes[name], void=True)
        write_label_png(vocdir / "SegmentationClass" / f"{name}.png", labels[name])
    for name in ("a", "b", "c", "d", "f"):
        h, w = sizes.get(name, (12, 12))
        labels.setdefault(name, _label(rng, h, w))
        sbd_label = _label(rng, h, w) if name in ("a", "b") else labels[name]
        scipy.io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {
            "Segmentation": sbd_label, "Boundaries": np.zeros(1), "CategoriesPresent": 1}})
    (sbd / "cls" / "e.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    scipy.io.savemat(sbd / "cls" / "g.mat", {"GTcls": {"Segmentation": _label(rng, 21, 20)}})
    (vocdir / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nh\n")
    (vocdir / "ImageSets" / "Segmentation" / "val.txt").write_text("b\n")
    (sbd / "train.txt").write_text("a\nc\ne\nf\n")
    (sbd / "val.txt").write_text("b\nd\ng\n")
    return tmp_path, vocdir, sbd, labels


def test_prepare_writes_lists_labels_and_names_problems(layout):
    root, vocdir, sbd, labels = layout
    out = root / "out"
    report = voc.prepare(root / "VOCdevkit", root / "benchmark_RELEASE", out, progress=False)
    assert (out / "JPEGImages").is_symlink()
    assert (out / "JPEGImages").resolve() == (vocdir / "JPEGImages").resolve()
    train_aug = [e.name for e in read_list(out / "lists" / "train_aug.txt", out)]
    assert train_aug == ["a", "c", "d"]           # b is VOC val; e, f, g, h have problems
    assert [e.name for e in read_list(out / "lists" / "val.txt", out)] == ["b"]
    assert [e.name for e in read_list(out / "lists" / "train.txt", out)] == ["a"]
    for entry in read_list(out / "lists" / "train_aug.txt", out):
        assert entry.image.is_file()
        # VOC's own label (with its void band) wins over SBD's for a
        np.testing.assert_array_equal(read_label(entry.label), labels[entry.name])
    assert (report.labels_written_from_voc, report.labels_written_from_sbd,
            report.labels_kept) == (2, 2, 0)
    problems = dict(report.problems)
    assert sorted(problems) == ["e", "f", "g", "h"]
    assert "e.mat" in problems["e"] and "not a readable .mat" in problems["e"]
    assert "f.jpg: no such file" in problems["f"]
    assert "g.mat is 21x20 but the image is 20x20" in problems["g"]
    assert "no label" in problems["h"]
    saved = json.loads((out / "prepare_report.json").read_text())
    assert saved["lists"] == {"train_aug": 3, "val": 1, "train": 1}
    assert len(saved["problems"]) == 4

    # A second run keeps what is there and writes nothing new.
    times = {p.name: p.stat().st_mtime_ns for p in (out / "SegmentationClassAug").iterdir()}
    again = voc.prepare(vocdir, sbd, out, progress=False)
    assert again.labels_kept == 4 and again.labels_written_from_sbd == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "SegmentationClassAug").iterdir()} == times


def test_sbd_label_reading(layout, tmp_path):
    _, _, sbd, labels = layout
    np.testing.assert_array_equal(voc.read_sbd_label(sbd / "cls" / "c.mat"), labels["c"])
    scipy.io.savemat(tmp_path / "x.mat", {"other": np.zeros(3)})
    with pytest.raises(DataError, match="x.mat: no GTcls.Segmentation in it .*other"):
        voc.read_sbd_label(tmp_path / "x.mat")
    with pytest.raises(DataError, match="nothing.mat: no such file"):
        voc.read_sbd_label(tmp_path / "nothing.mat")


def test_wrong_folders_are_named(tmp_path):
    with pytest.raises(DataError, match="is not PASCAL VOC 2012"):
        voc.find_voc(tmp_path)
    with pytest.raises(DataError, match="is not SBD"):
        voc.find_sbd(tmp_path)


def test_tool_summary_and_exit_status(layout):
    root, vocdir, sbd, _ = layout
    command = [sys.executable, str(REPO / "tools/prepare_voc.py"), "--voc", str(vocdir),
               "--sbd", str(root / "benchmark_RELEASE"), "--out", str(root / "o"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert "labels: 2 written from VOC, 2 from SBD, 0 already there" in result.stdout
    assert "lists/train_aug.txt: 3 images" in result.stdout
    assert "4 sample(s) left out of the lists" in result.stdout and "e.mat" in result.stdout
    # No test set in the layout: said, with where it was looked for, and not a problem.
    assert (f"lists/test.txt: not written: no VOC 2012 test set: "
            f"{vocdir / 'ImageSets' / 'Segmentation' / 'test.txt'} does not exist") in result.stdout
    assert "--voc-test" in result.stdout and not (root / "o" / "lists" / "test.txt").exists()
    assert "no VOC 2012 test set" in json.loads(
        (root / "o" / "prepare_report.json").read_text())["no_test_list"]
    allowed = subprocess.run(command + ["--allow-problems"], capture_output=True, text=True)
    assert allowed.returncode == 0 and "0 written from VOC, 0 from SBD, 4 already" in allowed.stdout


def _test_set(folder, ids, missing=()):
    """What VOC2012test.tar holds under VOCdevkit/VOC2012: JPEGImages/<id>.jpg (but the ids in
    missing) and ImageSets/Segmentation/test.txt listing every id."""
    rng = np.random.default_rng(1)
    (folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (folder / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        if image_id not in missing:
            cv2.imwrite(str(folder / "JPEGImages" / f"{image_id}.jpg"),
                        rng.integers(0, 256, (14, 18, 3), dtype=np.uint8))
    (folder / "ImageSets" / "Segmentation" / "test.txt").write_text(
        "".join(f"{image_id}\n" for image_id in ids))


def test_a_test_set_unpacked_over_voc_gets_a_list_without_labels(layout):
    root, vocdir, sbd, _ = layout
    _test_set(vocdir, ["t1", "t2", "t3"], missing=["t3"])
    out = root / "out"
    report = voc.prepare(vocdir, sbd, out, progress=False)
    assert (out / "lists" / "test.txt").read_text() == \
        "/JPEGImagesTest/t1.jpg\n/JPEGImagesTest/t2.jpg\n"
    entries = read_list(out / "lists" / "test.txt", out, require_labels=False)
    assert [(e.name, e.label) for e in entries] == [("t1", None), ("t2", None)]
    assert all(e.image.is_file() for e in entries)
    # What tools/segment.py --list reads.
    assert [i.name for i in list_inputs(out / "lists" / "test.txt", out)] == ["t1", "t2"]
    assert report.lists["test"] == 2 and report.no_test_list is None
    assert "t3.jpg: no such file" in dict(report.problems)["t3"]
    assert "lists/test.txt: 2 images (no labels: for tools/segment.py)" in report.format()
    assert "not written" not in report.format()


def test_a_test_set_unpacked_apart_is_given_with_voc_test(layout):
    root, vocdir, sbd, _ = layout
    test = root / "VOC2012test" / "VOCdevkit" / "VOC2012"
    _test_set(test, ["t1", "t2"])
    out = root / "o"
    command = [sys.executable, str(REPO / "tools/prepare_voc.py"), "--voc", str(vocdir),
               "--sbd", str(sbd), "--out", str(out), "--quiet", "--allow-problems"]
    result = subprocess.run(command + ["--voc-test", str(root / "VOC2012test")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "lists/test.txt: 2 images (no labels: for tools/segment.py)" in result.stdout
    assert (out / "JPEGImagesTest").resolve() == (test / "JPEGImages").resolve()
    assert [i.image.resolve() for i in list_inputs(out / "lists" / "test.txt", out)] == \
        [(test / "JPEGImages" / f"{i}.jpg").resolve() for i in ("t1", "t2")]
    # The training lists are the same as without a test set.
    assert [e.name for e in read_list(out / "lists" / "val.txt", out)] == ["b"]

    wrong = subprocess.run(command[:6] + ["--out", str(root / "w"), "--voc-test", str(vocdir)],
                           capture_output=True, text=True)
    assert wrong.returncode == 1
    assert f"prepare_voc: {vocdir} is not the PASCAL VOC 2012 test set" in wrong.stderr
    assert "ImageSets/Segmentation/test.txt" in wrong.stderr
    assert not (root / "w").exists()  # refused before any work
