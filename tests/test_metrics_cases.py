"""Evaluation metrics on confusion matrices worked out by hand: the ignore label, classes absent
from the ground truth, predictions with no object, and images with no counted pixel."""

import math

import numpy as np
import pytest

from attention_scale.evaluation.metrics import ConfusionMatrix

BACKENDS = ["numpy", "cython"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ignore_label_and_a_class_absent_everywhere(backend):
    gt = np.array([[0, 0, 1, 1], [255, 1, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 1, 0, 2]], np.uint8)  # the 0 under 255 is not counted
    conf = ConfusionMatrix(4, backend=backend).update(gt, pred)
    np.testing.assert_array_equal(conf.matrix, [[1, 1, 0, 0],
                                                [0, 3, 0, 0],
                                                [1, 0, 1, 0],
                                                [0, 0, 0, 0]])
    iou = conf.iou()
    np.testing.assert_allclose(iou[:3], [1 / 3, 3 / 4, 1 / 2])
    assert math.isnan(iou[3])
    assert conf.mean_iou() == pytest.approx(19 / 36)
    assert conf.pixel_accuracy() == pytest.approx(5 / 7)
    assert conf.mean_class_accuracy() == pytest.approx(2 / 3)
    summary = conf.summary(["bg", "a", "b", "c"])
    assert summary["num_pixels"] == 7
    assert summary["per_class"]["c"] == {"iou": None, "accuracy": None, "pixels": 0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_predicted_but_absent_from_ground_truth(backend):
    conf = ConfusionMatrix(4, backend=backend).update(np.array([[0, 0]]), np.array([[0, 3]]))
    assert conf.iou()[3] == 0.0                     # a false positive class counts as IoU 0
    assert conf.mean_iou() == pytest.approx((1 / 2 + 0) / 2)
    assert math.isnan(conf.class_accuracy()[3])     # no pixel of it to be accurate on
    assert conf.mean_class_accuracy() == pytest.approx(1 / 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prediction_without_objects(backend):
    conf = ConfusionMatrix(3, backend=backend).update(np.array([[1, 1, 0]]),
                                                      np.zeros((1, 3), np.uint8))
    np.testing.assert_allclose(conf.iou()[:2], [1 / 3, 0])
    assert conf.mean_iou() == pytest.approx(1 / 6)
    assert conf.pixel_accuracy() == pytest.approx(1 / 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_counted(backend):
    conf = ConfusionMatrix(3, backend=backend)
    conf.update(np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8))
    conf.update(np.full((2, 2), 255, np.uint8), np.ones((2, 2), np.uint8))
    assert conf.matrix.sum() == 0
    assert math.isnan(conf.mean_iou()) and math.isnan(conf.pixel_accuracy())
    summary = conf.summary()
    assert summary["mean_iou"] is None and summary["pixel_accuracy"] is None
