"""Evaluating a list of images: predictions written per image (resumable), metrics over the split.

    evaluation = Evaluation(class_names)
    counts = evaluate_list(entries, evaluation, PredictionFolder.under(out), predictor=net)
    evaluation.summary()   # mIOU etc. from ONE confusion matrix, IoU by object size, attention

With a predictor (a NetPredictor, or anything with predict(image) -> Prediction, num_classes,
has_attention and scale_names), images whose prediction is already on disk are read back, not
recomputed; the others are predicted and written. Without one, the folder's predictions are
evaluated as they are and a missing file is an error.
"""

import json
import time
from pathlib import Path

from tqdm import tqdm

from ..data.images import check_same_size, read_image, read_label
from ..errors import DataError
from ..files import atomic_write
from .attention_stats import AttentionStatistics
from .inference import InputTooLarge
from .metrics import IGNORE_LABEL, ConfusionMatrix
from .outputs import (PredictionFolder, RunCounts, claim_output, dequantize_attention,
                      quantize_attention)
from .report import full_report
from .segment_images import SOURCES, ImageInput, SourceRecord, image_digest
from .segments import DEFAULT_AREA_BINS, DEFAULT_DISTANCE_BINS, Bins, find_segments
from .size_metrics import SizeBinnedConfusion


class Evaluation:
    """The accumulators of one split: confusion matrix, IoU by object size, attention statistics
    (created with the first image that has attention maps)."""

    def __init__(self, class_names, area_bins: Bins = DEFAULT_AREA_BINS,
                 distance_bins: Bins = DEFAULT_DISTANCE_BINS, ignore_label=IGNORE_LABEL):
        self.class_names = list(class_names)
        self.area_bins, self.distance_bins = area_bins, distance_bins
        self.ignore_label = ignore_label
        self.confusion = ConfusionMatrix(len(self.class_names), ignore_label)
        self.by_size = SizeBinnedConfusion(len(self.class_names), area_bins, ignore_label)
        self.attention = None
        self.branches = {}  # scale name -> ConfusionMatrix of that scale's own prediction
        self.images = 0

    @property
    def num_classes(self):
        return len(self.class_names)

    def add(self, gt, pred, attention=None, scale_names=None, branches=None):
        """One image: ground truth, prediction, optionally the attention maps (S x H x W) and
        the per-scale branches' predictions ({scale name: H x W})."""
        segments = find_segments(gt, ignore_label=self.ignore_label)
        self.confusion.update(gt, pred)
        self.by_size.update(gt, pred, segments)
        if attention is not None:
            if self.attention is None:
                self.attention = AttentionStatistics(
                    scale_names or [f"scale {i + 1}" for i in range(len(attention))],
                    self.area_bins, self.distance_bins, ignore_label=self.ignore_label)
            self.attention.update(attention, gt, segments)
        for branch, branch_pred in (branches or {}).items():
            if branch not in self.branches:
                self.branches[branch] = ConfusionMatrix(self.num_classes, self.ignore_label)
            self.branches[branch].update(gt, branch_pred)
        self.images += 1

    def summary(self, settings=None):
        """JSON-ready; free of timings and paths of the output, so that equal inputs give an
        equal file whichever way the run went."""
        return {"images": self.images,
                "classes": self.class_names,
                "metrics": self.confusion.summary(self.class_names),
                "by_object_size": self.by_size.summary(self.class_names),
                "attention": self.attention.summary() if self.attention is not None else None,
                "branches": {name: _brief(matrix, self.class_names)
                             for name, matrix in self.branches.items()} or None,
                "settings": settings or {}}

    def save(self, path, settings=None):
        atomic_write(path, json.dumps(self.summary(settings), indent=2) + "\n")


def _brief(matrix, class_names):
    full = matrix.summary(class_names)
    return {"mean_iou": full["mean_iou"], "pixel_accuracy": full["pixel_accuracy"],
            "per_class_iou": {name: v["iou"] for name, v in full["per_class"].items()}}


def _check_unique_names(entries):
    seen = {}
    for entry in entries:
        if entry.name in seen:
            raise DataError(f"{entry.where} and {seen[entry.name].where}: two images named "
                            f"{entry.name!r}; their predictions would share one file")
        seen[entry.name] = entry


def evaluate_list(entries, evaluation: Evaluation, folder: PredictionFolder, predictor=None,
                  crf=None, with_attention=None, progress=True, claim=None) -> RunCounts:
    """Add every entry (a data.lists.ListEntry with a label) to `evaluation`; see the module doc.

    with_attention: None follows the predictor (its attention maps are stored and counted; with no
    predictor, none are read); True requires the folder's attention maps for every image.
    claim: the folder's outputs.OutputClaim, recorded before the first prediction is written."""
    if predictor is not None and predictor.num_classes != evaluation.num_classes:
        raise ValueError(f"the net scores {predictor.num_classes} classes but the evaluation has "
                         f"{evaluation.num_classes} class names; give the net's class names, one "
                         f"per line, with --classes FILE")
    if with_attention is None:
        with_attention = predictor is not None and predictor.has_attention
    if with_attention and folder.attention is None:
        raise ValueError("attention maps requested but the prediction folder keeps none")
    if with_attention and predictor is not None and not predictor.has_attention:
        raise ValueError("attention maps requested but the net has no attention blob")
    branches = getattr(predictor, "branch_names", []) if predictor is not None else []
    if branches and folder.branches is None:
        raise ValueError("per-scale branches requested but the prediction folder keeps none")
    _check_unique_names(entries)
    if predictor is not None:
        folder.remove_stale_temporaries()
    # Predictions tools/segment.py made there say which image file they came from; checked in
    # every mode (also for a folder of predictions given alone: <folder>/../sources.jsonl).
    sources_path = folder.predictions.parent / SOURCES
    sources = SourceRecord(sources_path) if sources_path.is_file() else None
    counts, start = RunCounts(), time.monotonic()
    bar = tqdm(entries, desc="evaluating", unit="img", disable=not progress, dynamic_ncols=True)
    for entry in bar:
        if entry.label is None:
            raise DataError(f"{entry.where}: no ground-truth label path")
        gt = read_label(entry.label, where=entry.where, num_classes=evaluation.num_classes,
                        ignore_label=evaluation.ignore_label)
        if predictor is None or folder.has(entry.name, with_attention, branches):
            if sources is not None and entry.name in sources.by_name:
                source = ImageInput(entry.image, entry.where)
                sources.check(source, image_digest(source), folder.prediction_path(entry.name))
            pred = folder.load_prediction(entry.name, gt.shape, evaluation.num_classes, entry.where)
            attention, scales = None, None
            if with_attention:
                attention, scales = folder.load_attention(entry.name, gt.shape, entry.where)
            branch_preds = {b: folder.load_prediction(entry.name, gt.shape, evaluation.num_classes,
                                                      entry.where, branch=b) for b in branches}
            counts.reused += 1
        else:
            image = read_image(entry.image, where=entry.where)
            check_same_size(image, gt, entry.image, entry.label, entry.where)
            try:
                prediction = predictor.predict(image)
            except InputTooLarge as exc:
                raise InputTooLarge(f"{entry.image} ({entry.where}): {exc}") from None
            pred = crf(image, prediction.probabilities) if crf is not None else prediction.label
            attention, scales = None, None
            if with_attention:
                scales = predictor.scale_names
                # Counted as it is stored, so that a resumed run reads back the same numbers.
                attention = dequantize_attention(quantize_attention(prediction.attention))
            branch_preds = {b: prediction.branches[b].argmax(axis=0).astype("uint8")
                            for b in branches}
            if claim is not None:
                claim.record()
            # Recorded as segment.py records it, so that segment.py reusing this folder can
            # tell another image under the same name.
            if sources is None:
                sources = SourceRecord(sources_path)
            source = ImageInput(entry.image, entry.where)
            sources.add(source, image_digest(source))
            folder.save(entry.name, pred, attention if with_attention else None, scales,
                        branch_preds)
            counts.computed += 1
        evaluation.add(gt, pred, attention, scales, branch_preds)
        bar.set_postfix(reused=counts.reused, computed=counts.computed, refresh=False)
    counts.seconds = time.monotonic() - start
    return counts


METRICS_JSON, METRICS_MD = "metrics.json", "metrics.md"


def evaluate_into(output, entries, evaluation: Evaluation, predictor=None, crf=None,
                  predictions=None, settings=None, progress=True):
    """What tools/test_voc.py does, for callers such as the demo: with a predictor, predict into
    <output>/predictions (and attention/), resuming, after checking that the folder was made with
    the same settings (outputs.claim_output); without one, evaluate the PNGs in `predictions`
    (refused where output holds another run's results).
    Writes <output>/metrics.json and metrics.md; returns (summary, RunCounts, PredictionFolder)."""
    output = Path(output)
    settings = dict(settings or {})
    if predictor is not None:
        folder = PredictionFolder.under(output)
        settings.update(predictor.settings())
        if crf is not None:
            settings["crf"] = crf.params.settings() if hasattr(crf, "params") else repr(crf)
    else:
        if predictions is None:
            raise ValueError("give a predictor or a folder of predictions")
        folder = PredictionFolder(predictions)
        settings["predictions"] = str(predictions)
    # Absolute, so that compare_results.py --bootstrap finds them from any working directory.
    for key in ("list", "root", "predictions"):
        if settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    claim = claim_output(output, settings)
    counts = evaluate_list(entries, evaluation, folder, predictor, crf, progress=progress,
                           claim=claim)
    claim.record()
    summary = evaluation.summary(settings)
    evaluation.save(output / METRICS_JSON, settings)
    atomic_write(output / METRICS_MD, full_report(summary, markdown=True))
    return summary, counts, folder
