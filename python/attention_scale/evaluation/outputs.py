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
from dataclasses import dataclass, field
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


@dataclass
class RunCounts:
    """What a run over a list did with a PredictionFolder: images predicted now, images whose
    stored prediction was reused (of them, those whose source image is not on record), and the
    run's wall time (runner.evaluate_list, segment_images.segment_list)."""
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    unrecorded: int = 0  # reused without a record of the image they came from (sources.jsonl)
    skipped: list = field(default_factory=list)  # (input, reason) left out (--skip-unreadable)


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

    def load_prediction(self, name, gt_shape, num_classes, where=None, branch=None,
                        image=None) -> np.ndarray:
        """The stored prediction (of the merged scores, or of one branch), checked. image: the
        image file whose size gt_shape is, where there is no ground truth (named in messages)."""
        path = self.prediction_path(name) if branch is None else self.branch_path(branch, name)
        label = read_label(path, where=where, num_classes=num_classes, what="prediction")
        if label.shape != tuple(gt_shape):
            against = "ground truth" if image is None else f"image {image}"
            cause = "" if image is None else (": it was made from another image of that name; "
                                              "delete it to predict this one")
            raise DataError(f"prediction {path} is {label.shape[0]}x{label.shape[1]} but its "
                            f"{against} is {gt_shape[0]}x{gt_shape[1]}"
                            + (f" ({where})" if where else "") + cause)
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
# What shapes the predictions: a folder made with other values must not be resumed. The paths
# alone do not say it (a snapshot name such as train_iter_6000.caffemodel is reused by the next
# training run): the weights file's and the net's content are recorded too (net_sha256: of the
# net as parsed, so comments and layout do not count).
_PREDICTION_KEYS = ("net", "weights", "mean_bgr", "test_scales", "flip", "size_step", "crf",
                    "branches")
CONTENT_KEYS = ("net_sha256", "weights_sha256")
_PREDICTIONS_KEY = "predictions"


class OutputClaim:
    """The run.json a run will leave in its output folder. It is written with the run's first
    result (record()), not before: a run that fails before that leaves nothing behind."""

    def __init__(self, path, wanted, recorded):
        self.path, self.wanted, self.recorded = Path(path), wanted, recorded

    def record(self):
        if not self.recorded:
            atomic_write(self.path, json.dumps(self.wanted, indent=2) + "\n")
            self.recorded = True


def _holds_results(root, recorded) -> bool:
    """Whether root still holds what the run recorded in run.json made: prediction files for a
    net's run, metrics.json for a folder of predictions evaluated there. A lone run.json (a run
    that failed before its first result, in versions that wrote it first) holds nothing."""
    root = Path(root)
    if _PREDICTIONS_KEY in recorded and "net" not in recorded:
        return (root / "metrics.json").is_file()
    folders = [root / PREDICTIONS, root / ATTENTION]
    if (root / BRANCHES).is_dir():
        folders += [p for p in (root / BRANCHES).iterdir() if p.is_dir()]
    return any(not p.name.startswith(".") for folder in folders if folder.is_dir()
               for p in folder.iterdir())


def _read_claim(path):
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it only if the results beside it "
                        f"were made with the current settings") from None
    if not isinstance(recorded, dict):
        raise DataError(f"{path}: not a run record (a JSON object); delete it only if the "
                        f"results beside it were made with the current settings")
    return recorded


def _same_content(key, recorded, wanted):
    """A net or weights path that differs while the content hash is the same (another spelling
    of the path, or a copy): the same file as far as the predictions go."""
    hashed = f"{key}_sha256"
    return (key in ("net", "weights") and recorded.get(hashed) is not None
            and recorded.get(hashed) == wanted.get(hashed))


def _difference(key, old, new, wanted):
    if key in CONTENT_KEYS:
        file = wanted.get(key.replace("_sha256", ""))
        return (f"{key.replace('_sha256', '')}: {file} has other content now, sha256 "
                f"{str(old)[:12]}... there, {str(new)[:12]}... now")
    return f"{key}: {old!r} there, {new!r} now"


def claim_output(root, settings, option="--output") -> OutputClaim:
    """Check that the results under root were made with these settings (a net's: net and weights,
    their content, test-time settings; a folder of predictions': that folder) and return the claim
    to record with the run's first result. Resuming with another net, other weights (also new
    weights at the same path) or another test-time setting would mix results, and metrics of other
    predictions would no longer describe the net's predictions beside them: refused. A run.json
    without results beside it does not hold the folder. `option` names the folder in messages.

    A run.json of an older version, without the content hashes, cannot tell whether its
    predictions came from the files now at those paths (a modification time proves nothing:
    `cp -p`, rsync and tar keep old ones): with results beside it, it is refused."""
    root = Path(root)
    path = root / RUN_SETTINGS
    if _PREDICTIONS_KEY in settings and "net" not in settings:
        wanted = {_PREDICTIONS_KEY: str(Path(settings[_PREDICTIONS_KEY]).resolve())}
    else:
        wanted = {key: settings.get(key) for key in _PREDICTION_KEYS + CONTENT_KEYS}
    if not path.is_file():
        return OutputClaim(path, wanted, recorded=False)
    recorded = _read_claim(path)
    net_run = "net" in recorded
    if _PREDICTIONS_KEY in wanted:
        if net_run and Path(wanted[_PREDICTIONS_KEY]) == (root / PREDICTIONS).resolve():
            # The folder's own predictions evaluated again: its run.json stays as it is.
            return OutputClaim(path, recorded, recorded=True)
        if net_run and _holds_results(root, recorded):
            raise DataError(
                f"{root} holds the predictions of {recorded.get('net')} with "
                f"{recorded.get('weights')} (run.json); metrics of the predictions in "
                f"{wanted[_PREDICTIONS_KEY]} written there would not describe them: use another "
                f"{option}")
    legacy = net_run and not any(key in recorded for key in CONTENT_KEYS) and \
        _PREDICTIONS_KEY not in wanted
    different = [_difference(k, recorded.get(k), v, wanted) for k, v in wanted.items()
                 if recorded.get(k) != v and not (k in CONTENT_KEYS and (
                     legacy or recorded.get(k.replace("_sha256", "")) != wanted.get(
                         k.replace("_sha256", ""))))  # another file: its path says so
                 and not _same_content(k, recorded, wanted)]
    if legacy:
        different.append("its run.json was written by an earlier version without the content "
                         "hashes of the net and weights, so whether these predictions came from "
                         "the files now at those paths cannot be told")
    if not different:
        return OutputClaim(path, wanted, recorded=True)
    if not _holds_results(root, recorded):
        return OutputClaim(path, wanted, recorded=False)
    if not net_run:
        raise DataError(f"{root} holds the metrics of the predictions in "
                        f"{recorded.get(_PREDICTIONS_KEY)} (run.json); use another {option} or "
                        f"delete that folder")
    raise DataError(f"{root} holds predictions made with other settings ({'; '.join(different)}); "
                    f"use another {option} or delete that folder")
