"""Object segments, edge distances, bins, IoU by object size and attention statistics: small label
maps worked out by hand."""

import math

import numpy as np
import pytest

from attention_scale.evaluation import segments as seg
from attention_scale.evaluation.attention_stats import AttentionStatistics
from attention_scale.evaluation.size_metrics import SizeBinnedConfusion


def test_segments_are_eight_connected_regions_of_one_class():
    label = np.array([[0, 0, 0, 0, 0, 0, 0],
                      [0, 1, 1, 0, 0, 2, 0],
                      [0, 1, 1, 0, 0, 0, 2],   # the two 2s touch at a corner: one segment
                      [0, 0, 0, 1, 0, 0, 0],   # touches the block of 1s at a corner: joins it
                      [255, 255, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 1, 1]], np.uint8)
    found = seg.find_segments(label)
    assert found.count == 3
    assert sorted(zip(found.classes[1:].tolist(), found.areas[1:].tolist())) == \
        [(1, 2), (1, 5), (2, 2)]
    assert (found.ids[label == 0] == 0).all() and (found.ids[label == 255] == 0).all()
    assert found.ids[1, 1] == found.ids[3, 3] != found.ids[5, 5]
    for k in range(1, 4):  # ids and areas agree
        assert (found.ids == k).sum() == found.areas[k]


def test_no_segments():
    found = seg.find_segments(np.array([[0, 255], [0, 0]], np.uint8))
    assert found.count == 0
    assert (seg.nearest_segment(found) == 0).all()


def test_edge_distance_by_hand():
    label = np.zeros((9, 9), np.uint8)
    label[2:7, 2:7] = 1          # a 5 x 5 square in the middle
    label[0:3, 7:9] = 2          # a block against the image border
    d = seg.edge_distance(seg.find_segments(label))
    assert d[2, 2] == d[2, 4] == d[6, 6] == 1   # rim
    assert d[3, 3] == d[3, 5] == 2
    assert d[4, 4] == 3                          # centre
    assert d[0, 0] == 0                          # background
    # The image border is no edge: (0, 8) is two columns from (0, 6), the nearest pixel outside
    # (it would be 1 if the border counted).
    assert d[0, 8] == 2 and d[1, 8] == 2 and d[2, 8] == 1 and d[0, 7] == 1


def test_segment_filling_the_image_has_no_edge():
    d = seg.edge_distance(seg.find_segments(np.ones((3, 4), np.uint8)))
    assert np.isinf(d).all()


def test_nearest_segment():
    label = np.array([[1, 0, 0, 0, 0, 2, 2, 2, 2, 2]], np.uint8)
    found = seg.find_segments(label)
    owner = seg.nearest_segment(found)
    a, b = found.ids[0, 0], found.ids[0, 5]
    assert owner[0].tolist() == [a, a, a, b, b, b, b, b, b, b]


def test_bins():
    bins = seg.Bins((2, 8, 32), " px")
    assert len(bins) == 4
    assert bins.index([0, 1, 2, 7.9, 8, 31, 32, 1e9]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert bins.labels() == ["< 2 px", "2-8 px", "8-32 px", ">= 32 px"]
    assert bins.ranges() == [(None, 2.0), (2.0, 8.0), (8.0, 32.0), (32.0, None)]
    assert seg.log_bins(32, 131072, 4).edges == (32, 128, 512, 2048, 8192, 32768, 131072)
    assert seg.parse_edges("1, 3,9").edges == (1.0, 3.0, 9.0)
    with pytest.raises(ValueError, match="increasing"):
        seg.Bins((4, 2))
    with pytest.raises(ValueError, match="numbers"):
        seg.parse_edges("1,x")


def test_iou_by_object_size_by_hand():
    # Segment A (class 1, area 1) at column 0, B (class 2, area 5) at columns 5-9. Background
    # pixels go to the nearer segment: columns 1-2 to A, 3-4 to B. Bins: area < 2, area >= 2.
    gt = np.array([[1, 0, 0, 0, 0, 2, 2, 2, 2, 2]], np.uint8)
    pred = np.array([[1, 1, 0, 2, 0, 2, 2, 0, 2, 2]], np.uint8)
    sized = SizeBinnedConfusion(3, seg.Bins((2,))).update(gt, pred)
    small, large = sized.summary(["bg", "one", "two"])["bins"]
    # small: gt [1 0 0], pred [1 1 0]. one: TP 1, FP 1 -> 1/2; bg: TP 1, FN 1 -> 1/2.
    assert small["per_class_iou"] == {"bg": 0.5, "one": 0.5}
    assert small["mean_iou"] == pytest.approx(0.5)
    assert small["segments"] == 1 and small["object_pixels"] == 1 and small["pixels"] == 3
    assert small["object_accuracy"] == 1.0
    # large: gt [0 0 2 2 2 2 2], pred [2 0 2 2 0 2 2]. bg: TP 1, FN 1, FP 1 -> 1/3;
    # two: TP 4, FN 1, FP 1 -> 4/6.
    assert large["per_class_iou"]["bg"] == pytest.approx(1 / 3)
    assert large["per_class_iou"]["two"] == pytest.approx(4 / 6)
    assert large["object_accuracy"] == pytest.approx(4 / 5)
    # The bins partition the image: their matrices add up to the whole-image matrix.
    total = sum(m.matrix for m in sized.matrices)
    whole = np.zeros((3, 3), int)
    np.add.at(whole, (gt.ravel(), pred.ravel()), 1)
    np.testing.assert_array_equal(total, whole)


def test_bin_miou_is_over_the_classes_in_the_bins_ground_truth():
    # One segment (class 2, area 3, bin < 10) and one background pixel; one object pixel
    # predicted as class 1, which this bin's ground truth does not hold. bg: 1/1; two: TP 2, FN 1 -> 2/3;
    # one: TP 0, FP 1 -> 0, left out of the bin's mean (the miss still costs class two).
    gt = np.array([[2, 2, 2, 0]], np.uint8)
    pred = np.array([[2, 2, 1, 0]], np.uint8)
    only, _ = SizeBinnedConfusion(3, seg.Bins((10,))).update(gt, pred).summary(
        ["bg", "one", "two"])["bins"]
    assert only["per_class_iou"] == {"bg": 1.0, "two": pytest.approx(2 / 3)}
    assert only["mean_iou"] == pytest.approx((1 + 2 / 3) / 2)


def test_iou_by_size_keeps_images_without_objects_apart():
    sized = SizeBinnedConfusion(3, seg.Bins((2,)))
    sized.update(np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8))
    assert all(m.matrix.sum() == 0 for m in sized.matrices)
    assert sized.summary()["images_without_objects_pixels"] == 4


def test_attention_statistics_by_hand():
    # Image 1: A (class 1, area 1) at column 0; B (class 2, area 5) at columns 5-9, whose edge
    # distances are 1, 2, 3 and then 4, 5 (the image border is no edge).
    gt1 = np.array([[1, 0, 0, 0, 0, 2, 2, 2, 2, 2]], np.uint8)
    w1 = np.array([[0.9, 0.5, 0.5, 0.3, 0.7, 0.8, 0.6, 0.4, 0.2, 0.0]])
    # Image 2: one segment (class 2, area 2) at columns 0-1, both weights 1; column 0 is 2 from
    # the edge (column 2), column 1 is 1.
    gt2 = np.array([[2, 2, 0, 0]], np.uint8)
    w2 = np.array([[1.0, 1.0, 0.25, 0.25]])
    stats = AttentionStatistics(["1", "0.5"], seg.Bins((2,)), seg.Bins((2, 4)))
    stats.update(np.stack([w1, 1 - w1]), gt1)
    stats.update(np.stack([w2, 1 - w2]), gt2)
    small, large = stats.by_size()
    assert small["segments"] == 1 and small["pixels"] == 1
    assert small["pixel_mean"] == pytest.approx([0.9, 0.1])
    assert large["segments"] == 2 and large["pixels"] == 7
    assert large["pixel_mean"][0] == pytest.approx((0.8 + 0.6 + 0.4 + 0.2 + 0 + 1 + 1) / 7)
    assert large["segment_mean"][0] == pytest.approx((0.4 + 1.0) / 2)
    near, middle, deep = stats.by_distance()
    # distance < 2: columns 0 and 5 of image 1, column 1 of image 2
    assert near["pixels"] == 3
    assert near["pixel_mean"][0] == pytest.approx((0.9 + 0.8 + 1) / 3)
    assert middle["pixel_mean"][0] == pytest.approx((0.6 + 0.4 + 1) / 3)
    assert deep["pixel_mean"][0] == pytest.approx((0.2 + 0.0) / 2)
    assert stats.by_distance(area_bins=[0])[0]["pixel_mean"] == pytest.approx([0.9, 0.1])
    grid = stats.by_size_and_distance()
    assert grid[0][1] is None and grid[1][2] == pytest.approx([0.1, 0.9])
    background = stats.summary()["background"]
    assert background["pixels"] == 6
    assert background["pixel_mean"][0] == pytest.approx((0.5 + 0.5 + 0.3 + 0.7 + 0.25 + 0.25) / 6)


def test_attention_statistics_check_shapes():
    stats = AttentionStatistics(["1", "0.5"])
    with pytest.raises(ValueError, match="2 \\(scales\\)"):
        stats.update(np.zeros((3, 4, 4)), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="ground truth is 5x4"):
        stats.update(np.zeros((2, 4, 4)), np.zeros((5, 4), np.uint8))
    assert math.isclose(sum(stats.pixel_counts.ravel()), 0)
