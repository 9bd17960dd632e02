"""IoU by object size: one confusion matrix per bin of ground-truth segment area.

Every pixel is given to one object: the segment it lies on, or, for background and ignored
pixels, the nearest segment. Bin b's matrix counts the pixels of the objects whose area falls in
bin b, so the bins partition each image (their matrices add up to the whole-image matrix, less the
images without any object, which are kept apart) and a false positive around a small object
counts against the small objects' bin. A bin's mIOU is the mean IoU over the classes present in
that bin's ground truth: a class absent there but predicted on a few of its pixels would add an
IoU of 0 and swing the mean by 1/(number of classes) (those pixels still count as misses of the
classes they belong to). Alongside the IoU, `object_accuracy` is the fraction of the bin's
object pixels labelled with their own class (recall, free of that assignment rule).
"""

import numpy as np

from .metrics import IGNORE_LABEL, ConfusionMatrix, _json_float
from .segments import DEFAULT_AREA_BINS, Bins, find_segments, nearest_segment, segment_bins


class SizeBinnedConfusion:
    """Accumulates per-bin confusion matrices over a list of images."""

    def __init__(self, num_classes, bins: Bins = DEFAULT_AREA_BINS, ignore_label=IGNORE_LABEL):
        self.bins = bins
        self.ignore_label = ignore_label
        self.matrices = [ConfusionMatrix(num_classes, ignore_label) for _ in range(len(bins))]
        self.no_object = ConfusionMatrix(num_classes, ignore_label)  # images without segments
        self.segment_counts = np.zeros(len(bins), np.int64)
        self.object_pixels = np.zeros(len(bins), np.int64)
        self.object_correct = np.zeros(len(bins), np.int64)

    @property
    def num_classes(self):
        return self.no_object.num_classes

    def update(self, gt, pred, segments=None):
        """Add one image: H x W ground truth and prediction (segments: find_segments(gt))."""
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape or gt.ndim != 2:
            raise ValueError(f"gt {gt.shape} and pred {pred.shape} must be H x W of one size")
        if segments is None:
            segments = find_segments(gt, ignore_label=self.ignore_label)
        if segments.count == 0:
            self.no_object.update(gt, pred)
            return self
        bin_of_segment = segment_bins(segments, self.bins)
        self.segment_counts += np.bincount(bin_of_segment[1:], minlength=len(self.bins))
        pixel_bin = bin_of_segment[nearest_segment(segments)]
        on_object = segments.ids > 0
        for b, matrix in enumerate(self.matrices):
            region = pixel_bin == b
            if region.any():
                matrix.update(gt[region], pred[region])
                objects = region & on_object
                self.object_pixels[b] += int(objects.sum())
                self.object_correct[b] += int((gt[objects] == pred[objects]).sum())
        return self

    def merge(self, other):
        for mine, theirs in zip(self.matrices, other.matrices):
            mine.merge(theirs)
        self.no_object.merge(other.no_object)
        self.segment_counts += other.segment_counts
        self.object_pixels += other.object_pixels
        self.object_correct += other.object_correct
        return self

    def summary(self, class_names=None):
        """JSON-ready: one entry per bin (range, segments, pixels, mIOU, per-class IoU, object
        accuracy); bins without objects have null metrics."""
        names = class_names or [str(i) for i in range(self.num_classes)]
        rows = []
        for b, (label, (low, high)) in enumerate(zip(self.bins.labels(), self.bins.ranges())):
            matrix = self.matrices[b]
            iou = matrix.iou()
            present = matrix.matrix.sum(1) > 0   # classes in this bin's ground truth
            pixels = int(self.object_pixels[b])
            rows.append({
                "bin": label, "area_min": low, "area_max": high,
                "segments": int(self.segment_counts[b]),
                "object_pixels": pixels,
                "pixels": int(matrix.matrix.sum()),
                "mean_iou": _json_float(float(iou[present].mean())) if present.any() else None,
                "object_accuracy": float(self.object_correct[b] / pixels) if pixels else None,
                "per_class_iou": {names[i]: _json_float(iou[i]) for i in range(len(names))
                                  if present[i]},
            })
        return {"rule": "pixels belong to the ground-truth segment they lie on or, off objects, "
                        "the nearest one; bins by that segment's area",
                "bins": rows,
                "images_without_objects_pixels": int(self.no_object.matrix.sum())}
