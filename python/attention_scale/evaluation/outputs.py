"""The files an evaluation leaves per image, written whole or not at all and read back checked.

    <folder>/predictions/<name>.png   the predicted class ids as a VOC palette PNG
    <folder>/attention/<name>.npz     attention nets: the S x H x W weights at the image's size,
                                      quantised to 1/255 (uint8), with the scales' names
    <folder>/branches/scale-<s>/<name>.png   with per-scale branches: each scale's own prediction

The metrics are always computed from these files' contents (a fresh prediction is quantised the
same way before it is counted), so a run resumed from them gives the same numbers as a run
that never stopped.
"""

import io
import json
from pathlib import Path

import numpy as np

from ..data.images import read_label
from ..data.palette import write_label_png
from ..errors import DataError
from ..files import atomic_write

PREDICTIONS = "predictions"
ATTENTION = "attention"
BRANCHES = "branches"
_LEVELS = 255


def quantize_attention(attention) -> np.ndarray:
    return np.rint(np.clip(np.asarray(attention, np.float64), 0, 1) * _LEVELS).astype(np.uint8)


def dequantize_attention(quantized) -> np.ndarray:
    return quantized.astype(np.float32) / np.float32(_LEVELS)


class PredictionFolder:
    """Prediction PNGs (and attention maps, when `attention` is set) of one evaluation."""

    def __init__(self, predictions, attention=None, branches=None):
        self.predictions = Path(predictions)
        self.attention = Path(attention) if attention is not None else None
        self.branches = Path(branches) if branches is not None else None

    @classmethod
    def under(cls, root):
        """The layout tools/test_voc.py writes under its --output folder."""
        root = Path(root)
        return cls(root / PREDICTIONS, root / ATTENTION, root / BRANCHES)

    def prediction_path(self, name) -> Path:
        return self.predictions / f"{name}.png"

    def attention_path(self, name) -> Path:
        return self.attention / f"{name}.npz"

    def branch_path(self, branch, name) -> Path:
        return self.branches / f"scale-{branch}" / f"{name}.png"

    def has(self, name, with_attention, branches=()) -> bool:
        if not self.prediction_path(name).is_file():
            return False
        if with_attention and not self.attention_path(name).is_file():
            return False
        return all(self.branch_path(b, name).is_file() for b in branches)

    def remove_stale_temporaries(self):
        """atomic_write's temporaries ('.<name>.<random>') left by a killed run: never results."""
        folders = [self.predictions, self.attention]
        if self.branches is not None and self.branches.is_dir():
            folders += [p for p in self.branches.iterdir() if p.is_dir()]
        for folder in folders:
            if folder is not None and folder.is_dir():
                for pattern in (".*.png.*", ".*.npz.*"):
                    for path in folder.glob(pattern):
                        path.unlink()

    # -- writing ---------------------------------------------------------------------------------

    def save(self, name, label, attention=None, scale_names=None, branches=None):
        """Attention and branches first, the prediction last: the prediction PNG's presence
        means the image is done."""
        for branch, branch_label in (branches or {}).items():
            write_label_png(self.branch_path(branch, name), branch_label)
        if attention is not None:
            if self.attention is None:
                raise ValueError("this prediction folder keeps no attention maps")
            buffer = io.BytesIO()
            np.savez_compressed(buffer, attention=quantize_attention(attention),
                                scales=np.array(scale_names or [], dtype=str))
            atomic_write(self.attention_path(name), buffer.getvalue())
        write_label_png(self.prediction_path(name), label)

    # -- reading ---------------------------------------------------------------------------------

    def load_prediction(self, name, gt_shape, num_classes, where=None, branch=None) -> np.ndarray:
        """The stored prediction (of the merged scores, or of one branch), checked."""
        path = self.prediction_path(name) if branch is None else self.branch_path(branch, name)
        label = read_label(path, where=where, num_classes=num_classes, what="prediction")
        if label.shape != tuple(gt_shape):
            raise DataError(f"prediction {path} is {label.shape[0]}x{label.shape[1]} but its "
                            f"ground truth is {gt_shape[0]}x{gt_shape[1]}"
                            + (f" ({where})" if where else ""))
        return label

    def load_attention(self, name, gt_shape, where=None):
        """(S x H x W float32 weights, scale names)."""
        path = self.attention_path(name)
        suffix = f" ({where})" if where else ""
        if not path.is_file():
            raise DataError(f"attention maps {path}: no such file{suffix}")
        try:
            with np.load(path) as archive:
                quantized, scales = archive["attention"], [str(s) for s in archive["scales"]]
        except Exception as exc:  # zipfile, numpy and key errors for a damaged archive
            raise DataError(f"attention maps {path}: not a readable attention archive "
                            f"({type(exc).__name__}: {exc}){suffix}") from None
        if quantized.ndim != 3 or quantized.dtype != np.uint8 or \
                quantized.shape[1:] != tuple(gt_shape):
            raise DataError(f"attention maps {path}: expected S x {gt_shape[0]} x {gt_shape[1]} "
                            f"uint8, got {quantized.shape} {quantized.dtype}{suffix}")
        return dequantize_attention(quantized), scales


RUN_SETTINGS = "run.json"
# What shapes the predictions: a folder made with other values must not be resumed.
_PREDICTION_KEYS = ("net", "weights", "mean_bgr", "test_scales", "flip", "size_step", "crf",
                    "branches")


def claim_output(root, settings):
    """Record the settings that made the predictions under root, or check that they are the ones
    recorded there: resuming with another net, weights or test-time setting would mix results."""
    path = Path(root) / RUN_SETTINGS
    wanted = {key: settings.get(key) for key in _PREDICTION_KEYS}
    if path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable ({exc}); delete it only if the predictions "
                            f"beside it were made with the current settings") from None
        different = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
        if different:
            detail = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in
                               different.items())
            raise DataError(f"{root} holds predictions made with other settings ({detail}); "
                            f"use another --output or delete that folder")
        return
    atomic_write(path, json.dumps(wanted, indent=2) + "\n")
