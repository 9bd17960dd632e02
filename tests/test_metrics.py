"""Confusion matrix: the cython and numpy paths against a plain loop; the metrics by hand."""

import json

import numpy as np
import pytest

from attention_scale.evaluation import metrics
from pyhelpers import ref_confusion

BACKENDS = ["numpy", "cython"]


def test_cython_extension_is_built():
    assert metrics._confusion is not None
    assert metrics.default_backend() == "cython"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gt_dtype, pred_dtype", [
    (np.uint8, np.uint8), (np.uint8, np.int64), (np.int32, np.int64), (np.int64, np.uint16),
    (np.int16, np.int8)])  # the last pair is converted before the cython call
def test_matches_plain_loop(backend, gt_dtype, pred_dtype):
    rng = np.random.default_rng(0)
    conf = metrics.ConfusionMatrix(21, backend=backend)
    expected = np.zeros((21, 21), np.int64)
    for _ in range(3):
        gt = rng.integers(0, 21, (17, 23))
        gt[rng.random(gt.shape) < 0.2] = 255
        pred = rng.integers(0, 21, gt.shape)
        gt, pred = gt.astype(gt_dtype), pred.astype(pred_dtype)
        conf.update(gt, pred)
        expected += ref_confusion(gt, pred, 21)
    np.testing.assert_array_equal(conf.matrix, expected)
    assert conf.matrix.sum() == expected.sum() < 3 * 17 * 23  # ignored pixels not counted


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_ignore_label_and_batch_shapes(backend):
    gt = np.array([[0, 1, 2], [3, 3, 0]])
    pred = np.array([[0, 2, 2], [0, 3, 1]])
    conf = metrics.ConfusionMatrix(4, ignore_label=3, backend=backend).update(gt, pred)
    np.testing.assert_array_equal(conf.matrix, ref_confusion(gt, pred, 4, ignore_label=3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_labels_raise_and_leave_counts(backend):
    conf = metrics.ConfusionMatrix(3, backend=backend)
    conf.update(np.array([0, 1]), np.array([0, 1]))
    before = conf.matrix.copy()
    with pytest.raises(ValueError, match="out of range"):
        conf.update(np.array([0, 1, 2, 7]), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="out of range"):
        conf.update(np.array([0, 1, 2]), np.array([0, 3, 1]))
    np.testing.assert_array_equal(conf.matrix, before)
    with pytest.raises(ValueError, match="shape"):
        conf.update(np.zeros((2, 2), int), np.zeros((4,), int))
    with pytest.raises(TypeError, match="integer"):
        conf.update(np.zeros(3), np.zeros(3))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        metrics.ConfusionMatrix(3, backend="fortran")


def test_metrics_by_hand(tmp_path):
    conf = metrics.ConfusionMatrix(3)
    conf.matrix[...] = [[5, 1, 0],
                        [2, 3, 0],
                        [0, 0, 0]]  # class 2 never occurs: NaN, left out of the means
    iou = conf.iou()
    np.testing.assert_allclose(iou[:2], [5 / 8, 3 / 6])
    assert np.isnan(iou[2])
    assert conf.mean_iou() == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert conf.pixel_accuracy() == pytest.approx(8 / 11)
    assert conf.mean_class_accuracy() == pytest.approx((5 / 6 + 3 / 5) / 2)
    table = conf.format_table(["bg", "cat", "dog"])
    assert "62.50" in table and "n/a" in table
    conf.save_json(tmp_path / "m.json", ["bg", "cat", "dog"])
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["per_class"]["dog"]["iou"] is None
    assert saved["mean_iou"] == pytest.approx(0.5625)
    assert saved["confusion_matrix"][1] == [2, 3, 0]


def test_one_matrix_over_the_split_not_a_mean_of_images():
    conf = metrics.ConfusionMatrix(2)
    conf.update(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))  # image 1: class 1 missed
    conf.update(np.array([1, 1]), np.array([1, 1]))  # image 2: perfect
    np.testing.assert_allclose(conf.iou(), [3 / 4, 2 / 3])
