"""SegmentationData: what its batches hold, that they do not depend on the workers, that every
bad input stops with a message naming the file and the list line, and that its worker processes
never outlive it.

The geometry checks decode the batches instead of recomputing them: every test image stores its
own pixel coordinates (B = row, G = column, R = image id) in a lossless PNG, so a crop, a flip,
padding and the image/label pairing can be read back from the output alone.
"""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from attention_scale.data import data_params, palette
from attention_scale.errors import DataError, LayerConfigError
from attention_scale.pycaffe import net_from_text
from pyhelpers import import_caffe

caffe = import_caffe()
REPO = Path(__file__).resolve().parents[1]
CAFFE_TOOL = REPO / ".venv" / "bin" / "caffe"
MEAN = (104.008, 116.669, 122.675)
CLASSES = 5


def coordinate_image(height, width, image_id):
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows, cols, np.full_like(rows, image_id)], axis=-1).astype(np.uint8)
    label = ((rows + cols + image_id) % CLASSES).astype(np.uint8)
    return image, label


def write_dataset(root, sizes, name="train"):
    """PNG images of coordinates and their labels; returns the list file."""
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    lines = []
    for image_id, (h, w) in enumerate(sizes):
        image, label = coordinate_image(h, w, image_id)
        cv2.imwrite(str(root / "JPEGImages" / f"im{image_id}.png"), image)
        palette.write_label_png(root / "SegmentationClassAug" / f"im{image_id}.png", label)
        lines.append(f"/JPEGImages/im{image_id}.png /SegmentationClassAug/im{image_id}.png")
    list_path = root / "lists" / f"{name}.txt"
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("\n".join(lines) + "\n")
    return list_path


SIZES = [(20, 30), (40, 26), (16, 16), (33, 45), (28, 28), (50, 18), (24, 37), (31, 22)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("coords")
    return root, write_dataset(root, SIZES)


def data_net(param_str, phase="TRAIN"):
    escaped = param_str.replace("\\", "\\\\").replace('"', '\\"')
    text = (f'layer {{ name: "data" type: "Python" top: "data" top: "label" python_param {{ '
            f'module: "attention_scale.data" layer: "SegmentationData" '
            f'param_str: "{escaped}" }} }}\n')
    return net_from_text(caffe, text, getattr(caffe, phase))


def params(dataset, **fields):
    root, list_path = dataset
    base = dict(source=str(list_path), root=str(root), batch_size=4, crop_size=24,
                num_classes=CLASSES, workers=0)
    base.update(fields)
    return data_params.to_text(data_params.make(**base))


def batches(net, count):
    out = []
    for _ in range(count):
        net.forward()
        out.append((net.blobs["data"].data.copy(), net.blobs["label"].data.copy()))
    return out


def decode(data, label, crop):
    """(image id, rows, cols, flipped, visible shape) of one training sample, checking on the way
    that it is a contiguous (possibly mirrored) crop of its image paired with its own label."""
    pixels = np.rint(data.transpose(1, 2, 0) + np.array(MEAN, np.float32)).astype(int)
    visible = label != 255  # the test labels hold no 255: it marks padding only
    assert np.all(data[:, ~visible] == 0), "padding must be the mean colour (0 after subtraction)"
    rows_any, cols_any = np.where(visible.any(1))[0], np.where(visible.any(0))[0]
    block = (slice(rows_any[0], rows_any[-1] + 1), slice(cols_any[0], cols_any[-1] + 1))
    assert visible[block].all(), "the image part of a crop is one rectangle"
    assert rows_any[0] == 0, "padding goes below the image"
    rows, cols, ids = (pixels[block][..., k] for k in range(3))
    image_id = int(ids[0, 0])
    assert np.all(ids == image_id)
    assert np.all(rows == rows[:, :1]) and np.all(np.diff(rows[:, 0]) == 1)
    steps = np.diff(cols[0])
    flipped = bool(steps.size and steps[0] == -1)
    assert np.all(cols == cols[:1]) and np.all(steps == (-1 if flipped else 1))
    assert (cols_any[-1] == crop - 1) if flipped else (cols_any[0] == 0), \
        "a mirrored crop's padding is on the left"
    h, w = SIZES[image_id]
    assert rows.shape == (min(h, crop), min(w, crop))
    np.testing.assert_array_equal(label[block], (rows + cols + image_id) % CLASSES)
    return image_id, flipped


# ---------------------------------------------------------------------------------------------
# What the batches hold
# ---------------------------------------------------------------------------------------------

def test_training_batches_are_crops_of_their_own_images_mirrored_or_not(dataset):
    net = data_net(params(dataset, seed=5))
    assert net.blobs["data"].data.shape == (4, 3, 24, 24)
    assert net.blobs["label"].data.shape == (4, 1, 24, 24)
    seen, flips = [], set()
    for data, label in batches(net, 6):  # 24 samples = 3 epochs of 8
        for i in range(4):
            image_id, flipped = decode(data[i], label[i, 0], 24)
            seen.append(image_id)
            flips.add(flipped)
    assert flips == {True, False}
    epochs = [seen[k:k + 8] for k in range(0, 24, 8)]
    for epoch in epochs:  # shuffled, but every image once per epoch
        assert sorted(epoch) == list(range(8))
    assert epochs[0] != list(range(8)) and epochs[0] != epochs[1]


def test_batches_do_not_depend_on_the_number_of_workers(dataset):
    reference = batches(data_net(params(dataset, seed=3, scale_min=0.5, scale_max=1.5)), 5)
    for workers in (1, 3):
        net = data_net(params(dataset, seed=3, scale_min=0.5, scale_max=1.5, workers=workers,
                              prefetch=2))
        for (d0, l0), (d1, l1) in zip(reference, batches(net, 5)):
            np.testing.assert_array_equal(d0, d1)
            np.testing.assert_array_equal(l0, l1)
    other = batches(data_net(params(dataset, seed=4, scale_min=0.5, scale_max=1.5)), 1)
    assert not np.array_equal(other[0][0], reference[0][0])


def test_a_resumed_layer_goes_on_at_the_batch_the_environment_names(dataset, monkeypatch):
    """tools/train.py resumes with ATTENTION_SCALE_DATA_START_BATCH = iteration x iter_size: the
    layer then gives the batches an uninterrupted run would have given from there on."""
    fields = dict(seed=3, scale_min=0.5, scale_max=1.5)
    reference = batches(data_net(params(dataset, **fields)), 6)
    monkeypatch.setenv(data_params.START_BATCH_ENV, "3")
    for workers in (0, 2):
        resumed = batches(data_net(params(dataset, workers=workers, prefetch=2, **fields)), 3)
        for (d0, l0), (d1, l1) in zip(reference[3:], resumed):
            np.testing.assert_array_equal(d0, d1)
            np.testing.assert_array_equal(l0, l1)
    # a test-mode layer reads the list from the start whatever the environment says
    test_ref = batches(data_net(params(dataset), phase="TEST"), 1)
    monkeypatch.delenv(data_params.START_BATCH_ENV)
    np.testing.assert_array_equal(test_ref[0][0],
                                  batches(data_net(params(dataset), phase="TEST"), 1)[0][0])
    monkeypatch.setenv(data_params.START_BATCH_ENV, "three")
    with pytest.raises(LayerConfigError, match=r"ATTENTION_SCALE_DATA_START_BATCH='three' is "
                                               r"not a batch index"):
        data_net(params(dataset))


def test_random_scaling_never_mixes_label_values(dataset):
    net = data_net(params(dataset, seed=1, scale_min=0.5, scale_max=2.0, crop_size=40))
    visible_sizes = set()
    for _, label in batches(net, 4):
        for i in range(4):
            values = set(np.unique(label[i, 0]).tolist())
            assert values <= set(range(CLASSES)) | {255}
            visible_sizes.add(int((label[i, 0] != 255).sum()))
    assert len(visible_sizes) > 4  # the scale really varies


def test_test_mode_pads_to_crop_size_in_list_order_without_randomness(dataset):
    net = data_net(params(dataset, crop_size=48, batch_size=3, mode="TEST"))
    (data, label), (data2, _) = batches(net, 2)
    for i in range(3):
        h, w = SIZES[i]
        image, lab = coordinate_image(h, w, i)
        expected = np.zeros((3, 48, 48), np.float32)
        expected[:, :h, :w] = (image.astype(np.float32) - np.float32(MEAN)).transpose(2, 0, 1)
        expected_label = np.full((48, 48), 255, np.float32)
        expected_label[:h, :w] = lab
        np.testing.assert_array_equal(data[i], expected)
        np.testing.assert_array_equal(label[i, 0], expected_label)
    assert np.rint(data2[0, 2, 0, 0] + MEAN[2]) == 3  # the next batch starts at image 3
    # A TEST-phase net (AUTO mode) behaves the same; an image larger than the crop keeps its
    # top-left corner.
    small = data_net(params(dataset, crop_size=16, batch_size=8), phase="TEST")
    data, label = batches(small, 1)[0]
    image, _ = coordinate_image(*SIZES[5], 5)
    np.testing.assert_array_equal(data[5], (image[:16, :16].astype(np.float32)
                                            - np.float32(MEAN)).transpose(2, 0, 1))


def test_json_param_str_is_the_same_message(dataset):
    root, list_path = dataset
    text = params(dataset, seed=2, mirror=False)
    as_json = json.dumps({"source": str(list_path), "root": str(root), "batchSize": 4,
                          "cropSize": 24, "numClasses": CLASSES, "workers": 0, "seed": 2,
                          "mirror": False})
    assert data_params.parse(as_json) == data_params.parse(text)
    a, b = batches(data_net(text), 1), batches(data_net(as_json), 1)
    np.testing.assert_array_equal(a[0][0], b[0][0])


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,pattern", [
    (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
    (dict(scale_min=1.5, scale_max=0.5), r"scale_min <= scale_max"),
    (dict(ignore_label=3), r"ignore_label must lie in num_classes..255"),
    (dict(mean_bgr=[1.0, 2.0]), r"mean_bgr needs 3 values"),
    (dict(source=""), r"source \(the list file\) is required"),
])
def test_bad_parameters_are_named_at_setup(dataset, fields, pattern):
    with pytest.raises(LayerConfigError, match=pattern):
        data_net(params(dataset, **fields))


@pytest.mark.parametrize("param_str,pattern", [
    ("batchsize: 4", r"SegmentationData.*batchsize"),
    ('{"batchSize": "four"}', r"SegmentationData.*JSON"),
])
def test_unreadable_param_str_is_named(param_str, pattern):
    with pytest.raises(LayerConfigError, match=pattern):
        data_net(param_str)


LONG = ('source: "l.txt" root: "r" batch_size: 2 crop_size: 33 mean_bgr: 104.008 '
        'mean_bgr: 116.669 mean_bgr: 122.675 ')


@pytest.mark.parametrize("param_str,expected", [
    (LONG.replace("source", "sourse"), "field 'sourse' (column 1): Message type "
     "\"attention_scale.data.SegmentationDataParameter\" has no field named \"sourse\". "
     "Did you mean 'source'?"),
    (LONG + "mirror: yes shuffle: true", f"field 'mirror' (column {len(LONG) + 9}): Expected "
     "\"true\" or \"false\""),
    (LONG + "mode: TRIAN", f"field 'mode' (column {len(LONG) + 7}): Enum type "
     "\"attention_scale.data.SegmentationDataParameter.Mode\" has no value named TRIAN. Its "
     "values: AUTO, TRAIN, TEST. Did you mean TRAIN?"),
    ('root: "r"\nbatch_size: -3', "field 'batch_size' (line 2, column 13): Value out of "
     "range: -3"),
    ('{"sourse": "l.txt"}', 'Message type "attention_scale.data.SegmentationDataParameter" has '
     'no field named "sourse" at "SegmentationDataParameter". Available Fields'),
])
def test_a_misspelt_field_or_bad_value_in_param_str_is_named(param_str, expected):
    """The field protobuf was reading, not only a column in a long one-line param_str (which
    protobuf's message repeats whole), and the likely name (prototxt.misspelling_hint)."""
    with pytest.raises(LayerConfigError) as info:
        data_params.parse(param_str)
    kind = "JSON" if param_str.startswith("{") else "protobuf text"
    head = (f"SegmentationData (Python layer, param_str {param_str!r}): cannot read it as "
            f"{kind} of attention_scale.data.SegmentationDataParameter: ")
    message = str(info.value)
    assert message.startswith(head + expected), message
    assert message.count("mean_bgr: 122.675") <= 1 and "\n" not in message, message


def test_a_misspelt_param_str_field_is_named_under_caffe_train(tmp_path):
    """Under the real `caffe train` the message comes from the embedded Python: one line,
    before Caffe's abort, which train.py's summary of a failed run (the log's fatal lines)
    shows."""
    from attention_scale.training.caffe_log import LogParser

    model = tmp_path / "net.prototxt"
    escaped = LONG.replace("source", "sourse").replace('"', '\\"')
    model.write_text(f'layer {{ name: "data" type: "Python" top: "data" top: "label" python_param '
                     f'{{ module: "attention_scale.data" layer: "SegmentationData" '
                     f'param_str: "{escaped}" }} }}\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{model}"\nmax_iter: 1\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    res = subprocess.run([str(CAFFE_TOOL), "train", "-solver", str(solver)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode != 0
    line = ("Python layer SegmentationData.setup failed: LayerConfigError: SegmentationData "
            "(Python layer, param_str ")
    (said,) = [text for text in res.stderr.splitlines() if text.startswith(line)]
    assert said.endswith("has no field named \"sourse\". Did you mean 'source'?"), said
    parser = LogParser()
    for text in res.stderr.splitlines(keepends=True):
        parser.feed(text)
    assert said in parser.log.fatal, parser.log.fatal


def broken_dataset(root, case):
    """A 3-line list whose second line is broken as `case` says; returns (list, bad file)."""
    list_path = write_dataset(root, [(20, 20), (20, 20), (20, 20)], name=case)
    image = root / "JPEGImages" / "im1.png"
    label = root / "SegmentationClassAug" / "im1.png"
    if case == "missing-image":
        image.unlink()
        return list_path, image
    if case == "missing-label":
        label.unlink()
        return list_path, label
    if case == "unreadable-image":
        image.write_bytes(b"this is not a PNG")
        return list_path, image
    if case == "size-mismatch":
        palette.write_label_png(label, np.zeros((20, 21), np.uint8))
        return list_path, label
    if case == "bad-label-value":
        bad = np.zeros((20, 20), np.uint8)
        bad[3, 4] = 30
        palette.write_label_png(label, bad)
        return list_path, label
    raise ValueError(case)


BAD_DATA = [
    ("missing-image", r"no such file"),
    ("missing-label", r"no such file"),
    ("unreadable-image", r"not a readable image"),
    ("size-mismatch", r"is 20x21 but its image .* is 20x20"),
    ("bad-label-value", r"value 30 at row 3, column 4 is not a class id \(0\.\.4\)"),
]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("case,pattern", BAD_DATA, ids=[c for c, _ in BAD_DATA])
def test_bad_data_names_the_file_and_the_list_line(tmp_path, case, pattern, workers):
    list_path, bad_file = broken_dataset(tmp_path, case)
    text = params((tmp_path, list_path), batch_size=3, workers=workers, check_files=False,
                  mode="TEST")
    with pytest.raises(DataError) as info:
        net = data_net(text)
        net.forward()
    message = str(info.value)
    assert re.search(pattern, message), message
    assert str(bad_file) in message
    assert f"{list_path} line 2" in message


def test_missing_files_are_found_at_setup(tmp_path):
    list_path, bad_file = broken_dataset(tmp_path, "missing-label")
    with pytest.raises(DataError,
                       match=re.escape(f"{bad_file} ({list_path} line 2): no such file")):
        data_net(params((tmp_path, list_path), batch_size=3))  # check_files defaults to true


def test_empty_list_and_line_without_label(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(DataError, match=f"list file {re.escape(str(empty))} holds no samples"):
        data_net(params((tmp_path, empty)))
    no_label = tmp_path / "nolabel.txt"
    no_label.write_text("/JPEGImages/a.jpg\n")
    with pytest.raises(DataError, match=f"{re.escape(str(no_label))} line 1: no label path"):
        data_net(params((tmp_path, no_label)))


def test_bad_data_message_reaches_the_terminal_under_the_caffe_tool(tmp_path):
    list_path, bad_file = broken_dataset(tmp_path, "bad-label-value")
    param = params((tmp_path, list_path), batch_size=3, workers=1, check_files=False)
    model = tmp_path / "net.prototxt"
    escaped = param.replace('"', '\\"')
    model.write_text(f'layer {{ name: "data" type: "Python" top: "data" top: "label" python_param '
                     f'{{ module: "attention_scale.data" layer: "SegmentationData" '
                     f'param_str: "{escaped}" }} }}\n')
    res = subprocess.run([str(CAFFE_TOOL), "time", "-model", str(model), "-iterations", "1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert re.search(r"SegmentationData\.forward failed: DataError: label .*im1\.png .* line 2\): "
                     r"value 30", res.stderr), res.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------

def process_gone(pid):
    """True when pid has exited (gone, or a zombie waiting for whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pids, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(process_gone(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_workers_stop_when_the_net_is_freed(dataset):
    # pycaffe never frees a Python layer object; the layer's watcher sees the Net let go of it.
    import gc
    net = data_net(params(dataset, workers=2))
    layer = net.layers[0]
    pids = list(layer.pool.pids)
    assert not any(process_gone(pid) for pid in pids)
    batches(net, 2)
    del layer, net
    gc.collect()
    assert wait_gone(pids, 10)


def test_closed_workers_restart_where_the_stream_was(dataset):
    reference = batches(data_net(params(dataset, seed=7)), 4)
    net = data_net(params(dataset, seed=7, workers=2))
    got = batches(net, 2)
    layer = net.layers[0]
    old = list(layer.pool.pids)
    layer.close()
    assert wait_gone(old, 10)
    got += batches(net, 2)  # forward() starts new workers at batch 2
    assert set(layer.pool.pids).isdisjoint(old)
    for (d0, l0), (d1, l1) in zip(reference, got):
        np.testing.assert_array_equal(d0, d1)
        np.testing.assert_array_equal(l0, l1)
    layer.close()


SCRIPT = """
import os, sys, tempfile, time
os.environ["GLOG_minloglevel"] = "2"
import caffe
text = '''layer { name: "data" type: "Python" top: "data" top: "label" python_param {
  module: "attention_scale.data" layer: "SegmentationData" param_str: "%s" } }'''
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(text)
net = caffe.Net(f.name, caffe.TRAIN)
net.forward()
print(" ".join(map(str, net.layers[0].pool.pids)), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_workers_exit_when_their_parent_is_killed(dataset, how):
    script = SCRIPT % params(dataset, workers=2).replace('"', '\\\\"')
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and not any(process_gone(p) for p in pids)
        proc.send_signal(getattr(signal, how))
        proc.wait(timeout=30)
        assert wait_gone(pids, 15), f"workers {pids} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_phase_comes_from_the_mode_where_caffe_does_not_tell_it():
    """A Caffe from before 2016 (DeepLab-v2) gives Python layers no `phase`: mode TRAIN/TEST
    decides there, and AUTO is refused with what to write instead of guessing."""
    from attention_scale.data.segmentation_data import _train_phase

    caffe = import_caffe()
    auto = data_params.make(source="l.txt", root=".", num_classes=2)
    assert auto.mode == data_params.AUTO
    assert _train_phase(auto, caffe.TRAIN) and not _train_phase(auto, caffe.TEST)
    for mode, train in ((data_params.TRAIN, True), (data_params.TEST, False)):
        explicit = data_params.make(source="l.txt", root=".", num_classes=2, mode=mode)
        assert _train_phase(explicit, None) is train
    with pytest.raises(LayerConfigError, match=r"mode is AUTO .* does not tell Python layers "
                                               r"their phase .*add `mode: TRAIN` or `mode: TEST`"):
        _train_phase(auto, None)


def test_generated_train_nets_say_their_data_mode():
    """So they train on a Caffe whose Python layers have no phase (DeepLab-v2)."""
    repo = Path(__file__).resolve().parents[1]
    nets = sorted((repo / "prototxt").glob("*/**/train.prototxt"))
    assert len(nets) == 13
    for path in nets:
        text = path.read_text()
        assert text.count('layer: "SegmentationData"') == 1, path
        assert re.search(r'param_str: "[^\n]* mode: TRAIN"', text), path
