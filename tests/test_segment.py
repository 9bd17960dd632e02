"""tools/segment.py (images without ground truth) and what reads its folders: predictions equal to
tools/test_voc.py's for the same images, the VOC server's layout, resume, refusals of other
weights and other images under a name done, bad input in one line; visualize_attention on images
without labels; test_voc's refusal of a list without labels."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import evalnets
from attention_scale.data.palette import voc_palette
from attention_scale.evaluation import figures
from pyhelpers import default_sigint

REPO = Path(__file__).resolve().parents[1]
NAMES = ["bg", "a", "b", "c"]
SIZES = [(20, 25), (33, 33), (40, 30), (12, 50), (7, 9)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    att = evalnets.write_net(root / "att", evalnets.attention_net(), seed=1)
    list_path = evalnets.write_dataset(root / "data", SIZES)
    unlabelled = root / "data" / "unlabelled.txt"
    unlabelled.write_text("".join(line.split()[0] + "\n"
                                  for line in list_path.read_text().splitlines()))
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    names = [f"img{i:03d}" for i in range(len(SIZES))]
    return {"root": root, "att": att, "list": list_path, "unlabelled": unlabelled,
            "data": root / "data", "images": root / "data" / "images", "names": names,
            "classes": root / "classes.txt"}


def _run(tool, *args, **kwargs):
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *map(str, args)],
                          capture_output=True, text=True, env=evalnets.tool_env(), **kwargs)


def _segment(setup, *args, weights=None):
    return _run("segment.py", *args, "--net", setup["att"][0], "--weights",
                weights or setup["att"][1], "--quiet")


def _attention(folder, name):
    with np.load(folder / "attention" / f"{name}.npz") as archive:
        return archive["attention"], list(archive["scales"])


def test_predictions_equal_test_voc_for_a_folder_and_a_list_without_labels(setup, tmp_path):
    evaluated = _run("test_voc.py", "--net", setup["att"][0], "--weights", setup["att"][1],
                     "--list", setup["list"], "--root", setup["data"], "--classes",
                     setup["classes"], "--output", tmp_path / "tv", "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    folder = _segment(setup, setup["images"], "--output", tmp_path / "folder")
    assert folder.returncode == 0, folder.stderr
    assert f"{len(SIZES)} images: {len(SIZES)} predicted, 0 reused" in folder.stdout
    listed = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"],
                      "--output", tmp_path / "list")
    assert listed.returncode == 0, listed.stderr
    # a labelled list is read for its images only: label files that do not exist do not matter
    missing_labels = tmp_path / "missing-labels.txt"
    missing_labels.write_text("".join(f"/images/{n}.png /nowhere/{n}.png\n"
                                      for n in setup["names"]))
    labelled = _segment(setup, "--list", missing_labels, "--root", setup["data"],
                        "--output", tmp_path / "labelled")
    assert labelled.returncode == 0, labelled.stderr

    for out in ("folder", "list", "labelled"):
        made = tmp_path / out
        assert sorted(p.stem for p in (made / "predictions").iterdir()) == setup["names"]
        for name in setup["names"]:
            assert (made / "predictions" / f"{name}.png").read_bytes() == \
                (tmp_path / "tv" / "predictions" / f"{name}.png").read_bytes(), (out, name)
            weights, scales = _attention(made, name)
            expected, expected_scales = _attention(tmp_path / "tv", name)
            assert scales == expected_scales == ["1", "0.5"]
            np.testing.assert_array_equal(weights, expected)
    # which file each name came from, by content
    records = [json.loads(line) for line in
               (tmp_path / "folder" / "sources.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == setup["names"]
    for record in records:
        image = setup["images"] / f"{record['name']}.png"
        assert record["image"] == str(image)
        assert record["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()


def test_crf_predictions_equal_test_voc_and_are_part_of_the_claim(setup, tmp_path):
    pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf2 is not installed")
    crf = ["--crf", "--crf-iterations", 3]
    evaluated = _run("test_voc.py", "--net", setup["att"][0], "--weights", setup["att"][1],
                     "--list", setup["list"], "--root", setup["data"], "--classes",
                     setup["classes"], "--output", tmp_path / "tv", "--quiet", "--limit", 3, *crf)
    assert evaluated.returncode == 0, evaluated.stderr
    made = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                    tmp_path / "seg", "--limit", 3, *crf)
    assert made.returncode == 0, made.stderr
    plain = tmp_path / "plain"
    assert _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                    plain, "--limit", 3).returncode == 0
    refined = 0
    for name in setup["names"][:3]:
        ours = (tmp_path / "seg" / "predictions" / f"{name}.png").read_bytes()
        assert ours == (tmp_path / "tv" / "predictions" / f"{name}.png").read_bytes(), name
        refined += ours != (plain / "predictions" / f"{name}.png").read_bytes()
    assert refined, "the CRF changed no prediction: the test cannot tell it was applied"
    assert json.loads((tmp_path / "seg" / "run.json").read_text())["crf"]["iterations"] == 3
    other = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                     tmp_path / "seg", "--crf")
    assert other.returncode == 1 and "other settings (crf: " in other.stderr, other.stderr


def test_voc_server_layout(setup, tmp_path):
    out = tmp_path / "out"
    made = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                    out, "--voc-server")
    assert made.returncode == 0, made.stderr
    comp6 = out / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert f"VOC server layout in {comp6}; to upload: cd {out} && tar czf results.tgz " \
           f"results/VOC2012/Segmentation/comp6_test_cls\n" in made.stdout
    assert sorted(p.name for p in comp6.iterdir()) == [f"{n}.png" for n in setup["names"]]
    for name, (h, w) in zip(setup["names"], SIZES):
        with Image.open(comp6 / f"{name}.png") as png:
            assert png.mode == "P" and png.size == (w, h)
            assert png.getpalette()[:768] == voc_palette().ravel().tolist()
            values = np.array(png)
        with Image.open(out / "predictions" / f"{name}.png") as png:
            np.testing.assert_array_equal(values, np.array(png))
        assert values.max() < len(NAMES)
    # comp5 (VOC data only) from the same predictions: nothing predicted again
    again = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                     out, "--voc-server", "--voc-comp", "comp5")
    assert again.returncode == 0, again.stderr
    assert f"0 predicted, {len(SIZES)} reused" in again.stdout
    comp5 = comp6.parent / "comp5_test_cls"
    for name in setup["names"]:
        assert (comp5 / f"{name}.png").read_bytes() == (comp6 / f"{name}.png").read_bytes()
    assert "tar czf results.tgz results/VOC2012/Segmentation/comp5_test_cls\n" in again.stdout
    # a run over fewer images: the files of the others are left, and said to be there
    fewer = _segment(setup, "--list", setup["unlabelled"], "--root", setup["data"], "--output",
                     out, "--voc-server", "--limit", 3)
    assert fewer.returncode == 0
    assert fewer.stderr.strip() == (
        f"segment: warning: {comp6} also holds 2 file(s) of images not in this run (img003.png, "
        f"img004.png); the server takes the test set's images only: delete them before packing")
    alone = _segment(setup, setup["images"], "--output", out, "--voc-comp", "comp5")
    assert alone.returncode == 2 and "--voc-comp names the competition" in alone.stderr


def test_a_stopped_run_continues_where_it_stopped(tmp_path):
    """Ctrl-C part-way: one line, exit 130; the same command again reuses what was done."""
    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(size=97, width=24), seed=3)
    evalnets.write_dataset(tmp_path / "data", [(97, 97)] * 16, seed=5)
    common = [REPO / "tools/segment.py", tmp_path / "data" / "images", "--net", net[0],
              "--weights", net[1], "--quiet", "--output", tmp_path / "out"]
    child = subprocess.Popen([sys.executable, *map(str, common)], env=evalnets.tool_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    predictions = tmp_path / "out" / "predictions"
    deadline = time.monotonic() + 120
    while (not predictions.is_dir() or len(list(predictions.glob("*.png"))) < 2) \
            and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    first = {p.name: p.stat().st_mtime_ns for p in predictions.glob("*.png")}
    assert 2 <= len(first) < 16, f"the run was not stopped part-way ({len(first)} of 16 done)"
    assert child.returncode == 130, stderr
    assert stderr.strip() == "segment: stopped; run the same command again to continue"
    again = subprocess.run([sys.executable, *map(str, common)], capture_output=True, text=True,
                           env=evalnets.tool_env())
    assert again.returncode == 0, again.stderr
    assert f"16 images: {16 - len(first)} predicted, {len(first)} reused" in again.stdout
    for name, mtime in first.items():
        assert (predictions / name).stat().st_mtime_ns == mtime
    assert len(list(predictions.glob("*.png"))) == len(list((tmp_path / "out" / "attention")
                                                            .glob("*.npz"))) == 16


def test_other_weights_and_another_image_under_a_name_done_are_refused(setup, tmp_path):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(Path(setup["att"][1]).read_bytes())
    out = tmp_path / "out"
    first = _segment(setup, setup["images"], "--output", out, "--limit", 2, weights=weights)
    assert first.returncode == 0, first.stderr
    recorded = json.loads((out / "run.json").read_text())
    other = evalnets.write_net(tmp_path / "other", evalnets.attention_net(), seed=7)
    weights.write_bytes(Path(other[1]).read_bytes())
    stale = _segment(setup, setup["images"], "--output", out, weights=weights)
    assert stale.returncode == 1
    assert stale.stderr.strip() == (
        f"segment: {out} holds predictions made with other settings (weights: {weights} has "
        f"other content now, sha256 {recorded['weights_sha256'][:12]}... there, "
        f"{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}... now); use another "
        f"--output or delete that folder")
    assert len(list((out / "predictions").iterdir())) == 2

    # the same name from another picture: not answered with the first one's prediction
    weights.write_bytes(Path(setup["att"][1]).read_bytes())
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "img000.jpg"), np.full((20, 20, 3), 90, np.uint8))
    clash = _segment(setup, photos, "--output", out, weights=weights)
    assert clash.returncode == 1
    assert clash.stderr.startswith(
        f"segment: {out / 'predictions' / 'img000.png'} was made from "
        f"{setup['images'] / 'img000.png'}, other content than {photos / 'img000.jpg'} ")
    assert clash.stderr.strip().endswith("use another --output, or delete that prediction to "
                                         "make it again")
    (out / "predictions" / "img000.png").unlink()
    redone = _segment(setup, photos, "--output", out, weights=weights)
    assert redone.returncode == 0 and "1 predicted, 0 reused" in redone.stdout, redone.stderr
    with Image.open(out / "predictions" / "img000.png") as png:
        assert png.size == (20, 20)


def test_test_voc_does_not_evaluate_a_prediction_segment_made_from_another_image(setup,
                                                                                 tmp_path):
    # A photo named like a list image, of the same size (so the size check cannot tell).
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "img000.jpg"), np.full((*SIZES[0], 3), 200, np.uint8))
    out = tmp_path / "out"
    assert _segment(setup, photos, "--output", out).returncode == 0
    evaluated = _run("test_voc.py", "--net", setup["att"][0], "--weights", setup["att"][1],
                     "--list", setup["list"], "--root", setup["data"], "--classes",
                     setup["classes"], "--output", out, "--quiet")
    assert evaluated.returncode == 1
    assert evaluated.stderr.startswith(
        f"test_voc: {out / 'predictions' / 'img000.png'} was made from {photos / 'img000.jpg'}, "
        f"other content than {setup['images'] / 'img000.png'} ({setup['list']} line 1)")
    assert not (out / "metrics.json").exists()


def test_every_reader_of_a_segment_folder_refuses_a_prediction_of_another_image(
        setup, tmp_path):
    """sources.jsonl is checked without a net too: test_voc --predictions, visualize_attention
    with a labelled list and with image files."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "img000.png"), np.full((*SIZES[0], 3), 200, np.uint8))
    cv2.imwrite(str(photos / "img001.png"), np.full((10, 12, 3), 50, np.uint8))
    out = tmp_path / "out"
    assert _segment(setup, photos, "--output", out).returncode == 0
    made = f"{out / 'predictions' / 'img000.png'} was made from {photos / 'img000.png'}, " \
           f"other content than {setup['images'] / 'img000.png'}"
    common = ["--classes", setup["classes"], "--quiet"]
    scored = _run("test_voc.py", "--predictions", out / "predictions", "--list", setup["list"],
                  "--root", setup["data"], "--output", tmp_path / "eval", "--limit", 1, *common)
    assert scored.returncode == 1
    assert scored.stderr.startswith(f"test_voc: {made} ({setup['list']} line 1)"), scored.stderr
    assert not (tmp_path / "eval" / "metrics.json").exists()
    labelled = _run("visualize_attention.py", "--results", out, "--list", setup["list"], "--root",
                    setup["data"], "--limit", 1, *common)
    assert labelled.returncode == 1
    assert labelled.stderr.startswith(f"visualize_attention: {made} ({setup['list']} line 1)")
    drawn = _run("visualize_attention.py", "--results", out, setup["images"] / "img000.png",
                 *common)
    assert drawn.returncode == 1
    assert drawn.stderr.startswith(f"visualize_attention: {made} (sha256 "), drawn.stderr
    assert not (out / "figures").exists()

    # without a record (a test_voc.py folder), another size says so without "ground truth"
    (out / "sources.jsonl").unlink()
    other = _run("visualize_attention.py", "--results", out, setup["images"] / "img001.png",
                 *common)
    height, width = SIZES[1]
    assert other.returncode == 1
    assert other.stderr.strip() == (
        f"visualize_attention: prediction {out / 'predictions' / 'img001.png'} is 10x12 but its "
        f"image {setup['images'] / 'img001.png'} is {height}x{width}: it was made from another "
        f"image of that name; delete it to predict this one")


def test_segment_checks_the_images_of_a_test_voc_folder_and_warns_where_it_cannot(setup,
                                                                                  tmp_path):
    out = tmp_path / "out"
    evaluated = _run("test_voc.py", "--net", setup["att"][0], "--weights", setup["att"][1],
                     "--list", setup["list"], "--root", setup["data"], "--classes",
                     setup["classes"], "--output", out, "--quiet", "--limit", 2)
    assert evaluated.returncode == 0, evaluated.stderr
    recorded = [json.loads(line)["name"] for line in
                (out / "sources.jsonl").read_text().splitlines()]
    assert recorded == ["img000", "img001"]
    same = _segment(setup, setup["images"] / "img000.png", "--output", out)
    assert same.returncode == 0 and "0 predicted, 1 reused" in same.stdout, same.stderr
    assert same.stderr == ""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "img000.png"), np.full((*SIZES[0], 3), 200, np.uint8))
    other = _segment(setup, photos, "--output", out)
    assert other.returncode == 1
    assert other.stderr.startswith(f"segment: {out / 'predictions' / 'img000.png'} was made from "
                                   f"{setup['images'] / 'img000.png'}, other content than "
                                   f"{photos / 'img000.png'} "), other.stderr
    # a folder of an earlier test_voc.py, without the record: reused, with a warning
    (out / "sources.jsonl").unlink()
    older = _segment(setup, photos, "--output", out)
    assert older.returncode == 0 and "0 predicted, 1 reused" in older.stdout, older.stderr
    assert older.stderr.strip() == (
        f"segment: warning: 1 predictions reused without a source record "
        f"({out / 'sources.jsonl'} does not name their image files: made by an earlier "
        f"test_voc.py?), so whether they came from these images cannot be checked; delete them "
        f"from {out / 'predictions'} to predict them again")


def test_a_damaged_prediction_or_attention_map_is_named_with_how_to_redo_it(setup, tmp_path):
    out = tmp_path / "out"
    assert _segment(setup, setup["images"], "--output", out, "--limit", 2).returncode == 0
    for damaged, what in ((out / "attention" / "img001.npz", "attention maps"),
                          (out / "predictions" / "img000.png", "prediction")):
        damaged.write_bytes(damaged.read_bytes()[:100])
        again = _segment(setup, setup["images"], "--output", out, "--limit", 2)
        assert again.returncode == 1
        message = again.stderr.strip()
        assert message.startswith(f"segment: {what} {damaged}: not a readable "), message
        assert message.endswith("; delete it and the next run predicts that image again")
        damaged.unlink()
        redone = _segment(setup, setup["images"], "--output", out, "--limit", 2)
        assert redone.returncode == 0 and "1 predicted, 1 reused" in redone.stdout, redone.stderr


def test_bad_input_is_named_in_one_line(setup, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((9, 9, 3), np.uint8))
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (tmp_path / "cut").mkdir()
    whole = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))[1].tobytes()
    (tmp_path / "cut" / "half.jpg").write_bytes(whole[:len(whole) // 2])
    file = tmp_path / "file.txt"
    file.write_text("x")
    cases = [
        ((tmp_path / "a", tmp_path / "b", "--output", out),
         f"segment: two images named 'x': {tmp_path / 'a' / 'x.png'} and "
         f"{tmp_path / 'b' / 'x.png'}; an image's outputs are named after its file name without "
         f"the extension (x.png), so they would share them: rename one, or segment them into "
         f"different output folders"),
        ((tmp_path / "nowhere.jpg", "--output", out),
         f"segment: {tmp_path / 'nowhere.jpg'}: no such image file or folder"),
        ((tmp_path / "empty", "--output", out),
         f"segment: {tmp_path / 'empty'}: a folder without images (.jpg, "),
        ((tmp_path / "bad.jpg", "--output", out),
         f"segment: image {tmp_path / 'bad.jpg'}: not a readable image"),
        ((setup["unlabelled"], "--output", out),
         f"segment: {setup['unlabelled']}: a text file, not an image; a list of images is given "
         f"as --list {setup['unlabelled']} --root ROOT"),
        ((tmp_path / "cut", "--output", out),  # libjpeg would fill the rest with grey
         f"segment: image {tmp_path / 'cut' / 'half.jpg'}: a truncated JPEG (its data ends "
         f"before the end-of-image marker, a part of the picture is missing)"),
        ((tmp_path / "a", "--output", "/sys/out"), "segment: --output /sys/out: cannot write in "
                                                   "/sys ("),
        ((tmp_path / "a", "--output", file / "out"),
         f"segment: --output {file / 'out'}: {file} is a file, not a folder"),
    ]
    for args, message in cases:
        result = _segment(setup, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.strip().startswith(message), result.stderr
        assert "\n" not in result.stderr.strip(), result.stderr
    assert not out.exists() or not list((out / "predictions").glob("*.png"))
    # the same file named twice (and in its folder) is taken once
    twice = _segment(setup, tmp_path / "a", "--output", out, tmp_path / "a" / "x.png")
    assert twice.returncode == 0 and "1 images: 1 predicted" in twice.stdout, twice.stderr
    nothing = _segment(setup, "--output", out)
    assert nothing.returncode == 2 and "name the images" in nothing.stderr
    without_root = _segment(setup, "--list", setup["unlabelled"], "--output", out)
    assert without_root.returncode == 2 and "--list and --root go together" in \
        without_root.stderr
    help_text = _run("segment.py", "--help")
    assert help_text.returncode == 0
    for needed in ("--voc-server", "--voc-comp",
                   "tar czf results.tgz results/VOC2012/Segmentation/comp6_test_cls",
                   "tools/visualize_attention.py --results results/photos", "--scales",
                   "--layer-form", "--crf-iterations"):
        assert needed in help_text.stdout
    # segment.py has no labels: its --branches predicts, it does not evaluate (test_voc's words)
    options = " ".join(help_text.stdout.split("network:")[1].split())
    assert "--branches also predict with each scale's own scores" in options
    assert "evaluate" not in options


def test_skip_unreadable_leaves_out_bad_photos_and_names_them(setup, tmp_path):
    """A folder of photos with a damaged one, a cut-short JPEG and a file that is no image:
    without --skip-unreadable the run stops at the first; with it the good images are predicted
    (as without the bad ones), the bad ones named on the terminal and in skipped.txt, and a later
    run without bad images removes the stale skipped.txt."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in setup["names"][:3]:
        (photos / f"{name}.png").write_bytes((setup["images"] / f"{name}.png").read_bytes())
    (photos / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    ok, jpeg = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))
    (photos / "cut.jpg").write_bytes(jpeg.tobytes()[:len(jpeg) // 2])
    stopped = _segment(setup, photos, "--output", tmp_path / "stop")
    assert stopped.returncode == 1 and "cut.jpg" in stopped.stderr, stopped.stderr

    out = tmp_path / "skip"
    done = _segment(setup, photos, "--output", out, "--skip-unreadable")
    assert done.returncode == 0, done.stderr
    assert "5 images: 3 predicted, 0 reused, 2 skipped" in done.stdout
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == sorted(
        str(photos / n) for n in ("cut.jpg", "damaged.png"))
    assert "a truncated JPEG" in done.stderr and "damaged.png" in done.stderr
    assert f"2 image(s) skipped, listed with the reasons in {out / 'skipped.txt'}" in done.stderr
    assert sorted(p.stem for p in (out / "predictions").glob("*.png")) == setup["names"][:3]
    alone = _segment(setup, *(photos / f"{n}.png" for n in setup["names"][:3]),
                     "--output", tmp_path / "alone")
    for name in setup["names"][:3]:
        assert (out / "predictions" / f"{name}.png").read_bytes() == \
            (tmp_path / "alone" / "predictions" / f"{name}.png").read_bytes()
    assert alone.returncode == 0

    (photos / "cut.jpg").unlink()
    (photos / "damaged.png").unlink()
    again = _segment(setup, photos, "--output", out, "--skip-unreadable")
    assert again.returncode == 0 and "3 reused" in again.stdout, again.stderr
    assert not (out / "skipped.txt").exists()


def test_attention_figure_without_ground_truth_has_no_ground_truth_panel():
    gt = np.zeros((20, 20), np.uint8)
    attention = np.random.default_rng(1).random((3, 20, 20))
    image = np.zeros((20, 20, 3), np.uint8)
    fig = figures.attention_figure(image, None, gt, attention, ["1", "0.75", "0.5"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == [
        "input", "prediction", "attention, scale 1", "attention, scale 0.75",
        "attention, scale 0.5"]
    assert len(fig.axes) == len(panels) + 1
    figures.plt.close(fig)


def test_visualize_attention_on_images_without_labels(setup, tmp_path):
    seg = tmp_path / "seg"
    made = _segment(setup, setup["images"], "--output", seg)
    assert made.returncode == 0, made.stderr
    common = ["--classes", setup["classes"], "--quiet", "--images", "img001", "img003"]
    drawn = _run("visualize_attention.py", "--results", seg, setup["images"] / "img001.png",
                 "--quiet", setup["images"] / "img003.png", *common)  # images after options too
    assert drawn.returncode == 0, drawn.stderr
    assert "attention by object size: skipped, it needs ground-truth labels and these images " \
           "have none" in drawn.stdout
    assert sorted(p.name for p in (seg / "figures").iterdir()) == ["img001.png", "img003.png"]

    # the same image from a labelled list has one panel more: the ground truth
    labelled = _run("visualize_attention.py", "--results", tmp_path / "labelled", "--list",
                    setup["list"], "--root", setup["data"], "--net", setup["att"][0],
                    "--weights", setup["att"][1], *common)
    assert labelled.returncode == 0, labelled.stderr
    assert (tmp_path / "labelled" / "figures" / "attention_by_size.json").is_file()
    without = cv2.imread(str(seg / "figures" / "img001.png"))
    with_gt = cv2.imread(str(tmp_path / "labelled" / "figures" / "img001.png"))
    assert without.shape[0] == with_gt.shape[0]
    assert 150 <= with_gt.shape[1] - without.shape[1] <= 300, (without.shape, with_gt.shape)

    # a list without labels and --net: only the images drawn are predicted
    fresh = tmp_path / "fresh"
    listed = _run("visualize_attention.py", "--results", fresh, "--list", setup["unlabelled"],
                  "--root", setup["data"], "--net", setup["att"][0], "--weights",
                  setup["att"][1], *common)
    assert listed.returncode == 0, listed.stderr
    assert sorted(p.name for p in (fresh / "predictions").iterdir()) == [
        "img001.png", "img003.png"]
    assert cv2.imread(str(fresh / "figures" / "img003.png")).shape == \
        cv2.imread(str(seg / "figures" / "img003.png")).shape

    # a labelled list whose label file is missing is a data error, named
    broken = tmp_path / "broken.txt"
    lines = setup["list"].read_text().splitlines()
    lines[2] = lines[2].replace("/labels/img002.png", "/labels/gone.png")
    broken.write_text("\n".join(lines) + "\n")
    refused = _run("visualize_attention.py", "--results", tmp_path / "tv", "--list", broken,
                   "--root", setup["data"], "--net", setup["att"][0], "--weights",
                   setup["att"][1], *common)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"visualize_attention: label {setup['data'] / 'labels'}"
                                      f"/gone.png ({broken} line 3): no such file")
    # a list mixing lines with and without labels
    lines[2] = "/images/img002.png"
    broken.write_text("\n".join(lines) + "\n")
    mixed = _run("visualize_attention.py", "--results", seg, "--list", broken, "--root",
                 setup["data"], *common)
    assert mixed.returncode == 1
    assert mixed.stderr.strip() == (f"visualize_attention: {broken} line 3: no label path, while "
                                    f"other lines of {broken} have one; a list has labels on "
                                    f"every line or on none")


def test_visualize_attention_small_mistakes_are_named_with_the_fix(setup, tmp_path):
    seg = tmp_path / "seg"
    assert _segment(setup, setup["images"], "--output", seg).returncode == 0
    common = ["--classes", setup["classes"], "--quiet"]
    nowhere = _run("visualize_attention.py", "--results", tmp_path / "nowhere", setup["images"],
                   *common)
    assert nowhere.returncode == 1
    assert nowhere.stderr.strip() == (
        f"visualize_attention: --results {tmp_path / 'nowhere'}: no predictions/ there; make it "
        f"first with tools/segment.py (or tools/test_voc.py) --output {tmp_path / 'nowhere'}, or "
        f"give --net and --weights to predict the images drawn")
    suffixed = _run("visualize_attention.py", "--results", seg, setup["images"], *common,
                    "--images", "img001.png")
    assert suffixed.returncode == 1
    assert suffixed.stderr.strip() == (
        "visualize_attention: not in the images given: img001.png; --images takes names "
        "without the extension, e.g. img001")
    limited = _run("visualize_attention.py", "--results", seg, "--list", setup["list"], "--root",
                   setup["data"], "--limit", 2, *common, "--images", "img003")
    assert limited.stderr.strip() == (f"visualize_attention: not in {setup['list']} (its first 2 "
                                      f"entries, --limit): img003")
    for count in ("0", "-1"):
        none = _run("visualize_attention.py", "--results", seg, setup["images"], *common,
                    "--num-images", count)
        assert none.returncode == 2
        assert f"--num-images must be at least 1, got {count}" in none.stderr
    assert not (seg / "figures").exists()


def test_weights_of_another_net_are_refused_without_training_advice(setup, tmp_path):
    five = evalnets.write_net(tmp_path / "five", evalnets.attention_net(num_classes=5), seed=2)
    refused = _segment(setup, setup["images"], "--output", tmp_path / "out", weights=five[1])
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert message.startswith(f"segment: {five[1]} does not fit {setup['att'][0]}: "), message
    assert message.endswith("Caffe would stop the process on this. Are they the weights of "
                            "this net (its number of classes, its variant)? Give the weights "
                            "trained with this prototxt, or the prototxt they were trained "
                            "with"), message
    assert "rename" not in message


def test_test_voc_refuses_a_list_without_labels_and_points_to_segment(setup, tmp_path):
    out = tmp_path / "out"
    result = _run("test_voc.py", "--net", setup["att"][0], "--weights", setup["att"][1],
                  "--list", setup["unlabelled"], "--root", setup["data"], "--classes",
                  setup["classes"], "--output", out, "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"test_voc: {setup['unlabelled']} line 1: no label path after the image "
        f"{setup['images'] / 'img000.png'}: metrics need ground-truth labels; to segment images "
        f"without them (e.g. the VOC 2012 test set for the evaluation server) use "
        f"tools/segment.py")
    assert not out.exists()


def test_segment_tool_is_executable():
    assert os.access(REPO / "tools" / "segment.py", os.X_OK)
