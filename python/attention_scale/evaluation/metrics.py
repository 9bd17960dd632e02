"""Segmentation metrics from one confusion matrix accumulated over a whole split (SPEC section 4).

mIOU is the mean over classes of TP / (TP + FP + FN) computed from the summed matrix, not a mean
of per-image IoUs. Accumulation has a cython path (`attention_scale.evaluation._confusion`) and a numpy one.
"""

import json

import numpy as np

try:
    from . import _confusion
except ImportError:  # a source tree without the built extension
    _confusion = None

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
IGNORE_LABEL = 255
BACKENDS = ("numpy", "cython")
_CYTHON_DTYPES = (np.uint8, np.uint16, np.int32, np.int64)


def _flat_labels(labels, name):
    flat = np.ascontiguousarray(np.asarray(labels)).ravel()
    if flat.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integer labels, got dtype {flat.dtype}")
    return flat


def accumulate_numpy(conf, gt, pred, ignore_label=IGNORE_LABEL):
    """conf[g, p] += count of pixels with label g predicted as p (ignore_label skipped)."""
    gt, pred = _flat_labels(gt, "gt"), _flat_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt has {gt.size} pixels but pred has {pred.size}")
    k = conf.shape[0]
    valid = gt != ignore_label
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    bad = (g < 0) | (g >= k) | (p < 0) | (p >= k)
    if bad.any():
        i = int(np.flatnonzero(valid)[np.argmax(bad)])
        raise ValueError(f"label out of range [0, {k}) at pixel {i}: gt {gt[i]}, pred {pred[i]} "
                         f"(ignore label {ignore_label})")
    conf += np.bincount(g * k + p, minlength=k * k).reshape(k, k)
    return conf


def accumulate_cython(conf, gt, pred, ignore_label=IGNORE_LABEL):
    """The same as accumulate_numpy, in one compiled pass."""
    if _confusion is None:
        raise ImportError("attention_scale.evaluation._confusion is not built; run `pip install .`")
    gt, pred = _flat_labels(gt, "gt"), _flat_labels(pred, "pred")
    if gt.dtype not in _CYTHON_DTYPES:
        gt = gt.astype(np.int64)
    if pred.dtype not in _CYTHON_DTYPES:
        pred = pred.astype(np.int64)
    _confusion.accumulate(conf, gt, pred, ignore_label)
    return conf


def default_backend():
    return "cython" if _confusion is not None else "numpy"


class ConfusionMatrix:
    """Rows: ground truth, columns: prediction; counts over every update."""

    def __init__(self, num_classes=len(VOC_CLASSES), ignore_label=IGNORE_LABEL, backend=None):
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self._accumulate = accumulate_cython if backend == "cython" else accumulate_numpy
        self.backend = backend
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    @property
    def num_classes(self):
        return self.matrix.shape[0]

    def update(self, gt, pred):
        """Add one image (or a batch) of ground-truth and predicted labels of the same shape."""
        if np.shape(gt) != np.shape(pred):
            raise ValueError(f"gt shape {np.shape(gt)} differs from pred shape {np.shape(pred)}")
        self._accumulate(self.matrix, gt, pred, self.ignore_label)
        return self

    def merge(self, other):
        self.matrix += other.matrix
        return self

    def _ratio(self, num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    def iou(self):
        """Per-class TP / (TP + FP + FN); NaN for a class absent from both gt and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        return self._ratio(tp, self.matrix.sum(0) + self.matrix.sum(1) - tp)

    def class_accuracy(self):
        """Per-class TP / (pixels of that class); NaN for a class absent from the gt."""
        return self._ratio(np.diag(self.matrix).astype(np.float64), self.matrix.sum(1))

    def mean_iou(self):
        """Mean over the classes present in gt or predictions."""
        return _nanmean(self.iou())

    def mean_class_accuracy(self):
        return _nanmean(self.class_accuracy())

    def pixel_accuracy(self):
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names=None):
        """A JSON-ready dict: per-class IoU and accuracy, mIOU, pixel and mean class accuracy."""
        names = class_names or _default_names(self.num_classes)
        iou, acc = self.iou(), self.class_accuracy()
        return {
            "mean_iou": _json_float(self.mean_iou()),
            "pixel_accuracy": _json_float(self.pixel_accuracy()),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy()),
            "num_pixels": int(self.matrix.sum()),
            "per_class": {name: {"iou": _json_float(iou[i]), "accuracy": _json_float(acc[i]),
                                 "pixels": int(self.matrix[i].sum())}
                          for i, name in enumerate(names)},
            "confusion_matrix": self.matrix.tolist(),
        }

    def format_table(self, class_names=None):
        """A plain-text table of per-class IoU and accuracy (percent) and the totals."""
        names = class_names or _default_names(self.num_classes)
        iou, acc = self.iou(), self.class_accuracy()
        width = max(12, max(len(n) for n in names))
        lines = [f"{'class':<{width}}  {'IoU %':>7}  {'acc %':>7}"]
        lines += [f"{name:<{width}}  {_pct(iou[i]):>7}  {_pct(acc[i]):>7}"
                  for i, name in enumerate(names)]
        lines += [f"{'mean IoU':<{width}}  {_pct(self.mean_iou()):>7}",
                  f"{'pixel acc':<{width}}  {_pct(self.pixel_accuracy()):>7}",
                  f"{'mean acc':<{width}}  {_pct(self.mean_class_accuracy()):>7}"]
        return "\n".join(lines)

    def save_json(self, path, class_names=None):
        with open(path, "w") as handle:
            json.dump(self.summary(class_names), handle, indent=2)


def _default_names(num_classes):
    return VOC_CLASSES if num_classes == len(VOC_CLASSES) else tuple(map(str, range(num_classes)))


def _nanmean(values):
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _json_float(value):
    return None if not np.isfinite(value) else float(value)


def _pct(value):
    return "n/a" if not np.isfinite(value) else f"{100 * value:.2f}"
