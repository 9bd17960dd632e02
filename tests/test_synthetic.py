"""The synthetic set: labels against the generator's own geometry, scale structure (a 0.5x resize
flattens the small classes' texture and keeps the large classes' rim), determinism, layout."""

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from attention_scale.data import synthetic
from attention_scale.data.images import read_image, read_label
from attention_scale.data.lists import read_list
from attention_scale.data.palette import voc_palette
from attention_scale.errors import DataError
from pyhelpers import ref_interp_forward

REPO = Path(__file__).resolve().parents[1]
SPEC = synthetic.SyntheticSpec()
CUE_OF = {k + 1: cue for k, cue in enumerate(c for g in SPEC.groups for c in g.cues)}


@pytest.fixture(scope="module")
def samples():
    data = synthetic.SyntheticDataset(SPEC, seed=7)
    return data, [data.sample("train", i) for i in range(60)]


def test_labels_match_the_objects(samples):
    data, items = samples
    num_classes = len(data.class_names)
    assert data.class_names[0] == "background" and num_classes == 7
    sizes = []
    for sample in items:
        assert sample.image.shape == (97, 97, 3) and sample.image.dtype == np.uint8
        assert sample.label.shape == (97, 97)
        assert set(np.unique(sample.label).tolist()) <= set(range(num_classes))
        # one 8-connected component per object, with its area, class and box
        found = []
        for cls in range(1, num_classes):
            components, count = ndimage.label(sample.label == cls, structure=np.ones((3, 3)))
            for k in range(1, count + 1):
                rows, cols = np.nonzero(components == k)
                found.append((cls, len(rows), [int(cols.min()), int(rows.min()),
                                               int(cols.max()) + 1, int(rows.max()) + 1]))
        expected = [(o["class"], o["area"], o["bbox"]) for o in sample.objects]
        assert sorted(map(str, found)) == sorted(map(str, expected))
        assert (sample.label > 0).sum() == sum(o["area"] for o in sample.objects)
        for o in sample.objects:
            assert data.class_names[o["class"]] == o["name"] and CUE_OF[o["class"]] == o["cue"]
            r = o["size"] / 2
            if o["truncated"]:
                continue
            if o["shape"] == "disc":   # pixel centres inside the circle: pi r^2 up to the rim
                assert abs(o["area"] - math.pi * r * r) <= 2 * math.pi * r + 4
            else:                      # a square of side s, turned or not
                assert (o["size"] - 2) ** 2 <= o["area"] <= (o["size"] + 2) ** 2
            sizes.append(o["size"])
    assert max(sizes) / min(sizes) >= 8


def test_deterministic_and_order_free():
    a = synthetic.SyntheticDataset(SPEC, seed=3)
    b = synthetic.SyntheticDataset(SPEC, seed=3)
    later = b.sample("val", 5)
    b.sample("val", 4)
    again = a.sample("val", 5)
    np.testing.assert_array_equal(later.image, again.image)
    np.testing.assert_array_equal(later.label, again.label)
    other = synthetic.SyntheticDataset(SPEC, seed=4).sample("val", 5)
    assert not np.array_equal(other.image, again.image)
    assert not np.array_equal(a.sample("train", 5).image, again.image)


def _interior_diffs(gray, mask):
    """Mean |horizontal| and |vertical| neighbour differences inside the eroded mask."""
    inner = ndimage.binary_erosion(mask)
    h = inner[:, :-1] & inner[:, 1:]
    v = inner[:-1, :] & inner[1:, :]
    dx = np.abs(np.diff(gray, axis=1))[h]
    dy = np.abs(np.diff(gray, axis=0))[v]
    return dx, dy


def _half(sample):
    """The 0.5x images a net sees: ScaleInterp's corner-aligned grid (plain-loop reference),
    bilinear for the image and nearest for the label."""
    size = (49, 49)
    image = ref_interp_forward(sample.image.astype(np.float64).transpose(2, 0, 1)[None], size)[0]
    label = ref_interp_forward(sample.label[None, None].astype(np.float64), size, nearest=True)
    return image.mean(axis=0), label[0, 0].astype(np.uint8)


def test_half_scale_destroys_small_textures_and_keeps_large_rims(samples):
    _, items = samples
    full = {c: ([], []) for c in (1, 2, 3)}
    half = {c: ([], []) for c in (1, 2, 3)}
    rims = {c: [] for c in (4, 5, 6)}
    for sample in items[:30]:
        gray = sample.image.astype(np.float64).mean(axis=2)
        small_gray, small_label = _half(sample)
        for cls in (1, 2, 3):
            for store, g, lab in ((full, gray, sample.label), (half, small_gray, small_label)):
                dx, dy = _interior_diffs(g, lab == cls)
                store[cls][0].extend(dx)
                store[cls][1].extend(dy)
        for cls in (4, 5, 6):
            mask = small_label == cls
            if mask.sum() < 100:
                continue
            depth = ndimage.distance_transform_edt(mask)
            rim = small_gray[mask & (depth <= 2)].mean()
            inside = small_gray[mask & (depth > 4)].mean()
            rims[cls].append(rim - inside)
    means = {c: (np.mean(full[c][0]), np.mean(full[c][1])) for c in full}
    # full resolution: stripes across rows (class 1) change vertically, across columns (2)
    # horizontally, the checkerboard (3) both ways: 2 x 40 grey levels against noise
    assert means[1][1] > 60 and means[1][0] < 15
    assert means[2][0] > 60 and means[2][1] < 15
    assert means[3][0] > 60 and means[3][1] > 60
    # half resolution: every small class is a flat patch with noise only
    halves = np.array([[np.mean(half[c][0]), np.mean(half[c][1])] for c in half])
    assert len(half[1][0]) > 50 and (halves < 12).all()
    assert halves.max() - halves.min() < 4
    # large classes: the rim is still there at half resolution, bright, dark or absent
    assert all(len(r) >= 3 for r in rims.values())
    assert min(rims[4]) > 30 and max(rims[5]) < -30 and max(abs(v) for v in rims[6]) < 8


def test_spec_from_json_and_bad_specs():
    spec = synthetic.SyntheticSpec.from_json({"image_size": 65, "groups": [
        {"classes": ["x", "y"], "cues": ["checker", "dark_rim"], "size": [4, 8],
         "count": [1, 2]}]})
    assert spec.class_names == ["background", "x", "y"] and spec.image_size == 65
    assert synthetic.SyntheticSpec.from_json(json.loads(json.dumps(SPEC.to_json()))) == SPEC
    with pytest.raises(ValueError, match="unknown synthetic spec field"):
        synthetic.SyntheticSpec.from_json({"imagesize": 3})
    with pytest.raises(ValueError, match="unknown cue"):
        synthetic.SyntheticSpec.from_json({"groups": [
            {"classes": ["x"], "cues": ["zigzag"], "size": [4, 8], "count": [1, 1]}]})
    with pytest.raises(ValueError, match="size range"):
        synthetic.SyntheticSpec.from_json({"image_size": 20, "groups": [
            {"classes": ["x"], "cues": ["checker"], "size": [4, 30], "count": [1, 1]}]})


def test_written_layout(tmp_path):
    root = tmp_path / "syn"
    result = synthetic.write_dataset(root, SPEC, seed=2, num_train=6, num_val=3,
                                     num_samples=3, progress=False)
    assert not result["reused"] and not (tmp_path / "syn.partial").exists()
    objects = json.loads((root / "objects.json").read_text())
    names = (root / "classes.txt").read_text().split()
    assert names == SPEC.class_names
    data = synthetic.SyntheticDataset(SPEC, seed=2)
    for split, count in (("train", 6), ("val", 3)):
        entries = read_list(root / "lists" / f"{split}.txt", root)
        assert len(entries) == count
        for i, entry in enumerate(entries):
            assert entry.image.suffix == ".png" and entry.image.parent.name == "JPEGImages"
            sample = data.sample(split, i)
            np.testing.assert_array_equal(read_image(entry.image), sample.image)  # lossless
            np.testing.assert_array_equal(read_label(entry.label, num_classes=7), sample.label)
            assert objects[entry.name] == json.loads(json.dumps(sample.objects))
    with __import__("PIL.Image").Image.open(root / "SegmentationClass" / "val_00000.png") as img:
        assert img.mode == "P"
        assert img.getpalette()[:21] == voc_palette(7).ravel().tolist()
    assert cv2.imread(str(root / "samples.png")) is not None

    assert synthetic.write_dataset(root, SPEC, seed=2, num_train=6, num_val=3, num_samples=3,
                                   progress=False)["reused"]
    with pytest.raises(DataError, match="other settings"):
        synthetic.write_dataset(root, SPEC, seed=3, num_train=6, num_val=3, progress=False)
    replaced = synthetic.write_dataset(root, SPEC, seed=3, num_train=2, num_val=1,
                                       num_samples=0, progress=False, force=True)
    assert replaced["seed"] == 3 and len(list((root / "JPEGImages").iterdir())) == 3
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not a synthetic set"):
        synthetic.write_dataset(foreign, SPEC, force=True, progress=False)
    assert (foreign / "keep.txt").exists()


def test_tool(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "tools/make_synthetic.py"), "--root",
                          str(tmp_path / "s"), "--train", "4", "--val", "2", "--samples", "2",
                          "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "4 train + 2 val images, 7 classes" in run.stdout and "samples.png" in run.stdout


def test_background_texture_survives_half_scale_and_stays_off_objects():
    """The background's smooth pattern is there at full and at half resolution (so either scale
    can tell background from an object's flat inside); inside large objects only the noise is."""
    textured = SPEC if SPEC.background_texture > 0 else synthetic.SyntheticSpec(
        background_texture=18.0)
    flat = synthetic.SyntheticSpec(**{**textured.__dict__, "background_texture": 0.0})
    measured = {}
    for name, spec in (("textured", textured), ("flat", flat)):
        data = synthetic.SyntheticDataset(spec, seed=5)
        back_full, back_half, inside_full, inside_half = [], [], [], []
        for i in range(20):
            sample = data.sample("val", i)
            gray = sample.image.astype(np.float64).mean(axis=2)
            half_gray, half_label = _half(sample)
            for g, lab, back, inside in ((gray, sample.label, back_full, inside_full),
                                         (half_gray, half_label, back_half, inside_half)):
                # away from every object (3 px), and deep inside large objects
                far = ~ndimage.binary_dilation(lab > 0, iterations=3)
                back.extend(np.concatenate(_interior_diffs(g, far)))
                deep = ndimage.distance_transform_edt(lab >= 4) > SPEC.rim_width + 3
                inside.extend(np.concatenate(_interior_diffs(g, deep)))
        measured[name] = [np.mean(v) for v in (back_full, back_half, inside_full, inside_half)]
    noise = measured["flat"]
    # a flat background differs between neighbours by the noise only (about 2 / sqrt(pi) x 6
    # grey levels x (gradient is negligible)); the texture adds clearly more, at both scales
    assert noise[0] < 5 and noise[1] < 5
    assert measured["textured"][0] > noise[0] + 2 and measured["textured"][1] > noise[1] + 4
    # inside objects nothing changes: noise only, with or without the background's texture
    for got in (measured["textured"][2:], noise[2:]):
        assert max(got) < 5


def test_background_contrasts_with_the_fill_range():
    spec = synthetic.SyntheticSpec(fill_range=(110.0, 150.0), background_range=(30.0, 225.0),
                                   min_contrast=40.0)
    data = synthetic.SyntheticDataset(spec, seed=1)
    for i in range(40):
        sample = data.sample("train", i)
        background = sample.image[sample.label == 0].astype(np.float64).mean()
        # the base colour's mean keeps 40 from 130; texture, ramp and noise average out mostly
        assert abs(background - 130) > 40 - 8
    with pytest.raises(ValueError, match="background_range"):
        synthetic.SyntheticDataset(synthetic.SyntheticSpec(
            fill_range=(100.0, 140.0), background_range=(110.0, 130.0), min_contrast=40.0),
            seed=0).sample("train", 0)
    with pytest.raises(ValueError, match="background_texture"):
        synthetic.SyntheticSpec(background_texture=-1.0).validate()


def test_small_objects_stay_visible_objects_at_half_scale(samples):
    """The design's point for the 0.5x branch: a small object loses its class (the texture) but
    not its presence. Every untruncated small object keeps label pixels after the 0.5x nearest
    resize, and its flat patch there stands out from the background around it by well over the
    noise, so scale 0.5 can say "an object, class unknown" rather than "background"."""
    _, items = samples
    contrasts = []
    for sample in items[:30]:
        gray, half_label = _half(sample)
        for o in sample.objects:
            if o["class"] > 3 or o["truncated"]:
                continue
            # the object's own pixels at half scale: its full-scale mask read on the half grid
            mask = np.zeros_like(sample.label, bool)
            x0, y0, x1, y1 = o["bbox"]
            mask[y0:y1, x0:x1] = sample.label[y0:y1, x0:x1] == o["class"]
            inside = mask[::2, ::2]
            assert inside.sum() >= 4, o
            assert (half_label[inside] == o["class"]).all()
            ring = ndimage.binary_dilation(inside, iterations=3) & \
                ~ndimage.binary_dilation(inside, iterations=1) & (half_label == 0)
            if ring.sum() < 10:
                continue
            contrasts.append(abs(gray[inside].mean() - gray[ring].mean()))
    assert len(contrasts) > 50
    # fills keep >= 40 grey levels from the background's base colour; its texture (std 18),
    # ramp and noise blur that by a few levels on a ring this thin
    assert np.median(contrasts) > 30 and np.percentile(contrasts, 10) > 15
