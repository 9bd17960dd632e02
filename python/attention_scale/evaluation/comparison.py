"""Several evaluations side by side, as in the paper's tables: the output folders of
tools/test_voc.py (one per variant: single scale, MAX, AVERAGE, ATTENTION, ...) become one table of
mIOU, mIOU by object size, per-class IoU and mean attention per scale.

A difference of half a point on VOC val can be noise. With the list and its labels, a paired
bootstrap over images says how sure it is: the images are resampled with replacement, the same
draw for every folder, and each resample's mIOU is recomputed from per-image confusion matrices
(which must add up to the matrix in each folder's metrics.json: the predictions on disk are then
the ones that were evaluated). The difference to the first folder is given with its 95% interval
and the shares of resamples in which it is above, at and below zero.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .metrics import ConfusionMatrix, IGNORE_LABEL
from .outputs import PredictionFolder
from .report import markdown_table
from .runner import METRICS_JSON
from ..data.images import read_label

COMPARISON_JSON, COMPARISON_MD, COMPARISON_PNG = ("comparison.json", "comparison.md",
                                                  "comparison.png")


@dataclass
class Evaluated:
    """One test_voc.py output folder: its name in the tables and its metrics.json."""
    name: str
    folder: Path
    summary: dict

    @property
    def num_classes(self):
        return len(self.summary["classes"])


def load(folder, name=None) -> Evaluated:
    """The folder's metrics.json, checked for what the tables read."""
    folder = Path(folder)
    path = folder / METRICS_JSON
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (a tools/test_voc.py --output folder)")
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{folder}: no {METRICS_JSON}; evaluate first: tools/test_voc.py ... "
                        f"--output {folder}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc})") from None
    needed = ("images", "classes", "metrics")
    if not isinstance(summary, dict) or not all(k in summary for k in needed):
        raise DataError(f"{path}: not a tools/test_voc.py metrics file (needs images, classes, "
                        "metrics)")
    return Evaluated(name or folder.resolve().name, folder, summary)


def check_comparable(results: List[Evaluated]) -> List[str]:
    """DataError where the folders were not evaluated on the same thing (class names, number of
    images, names in the tables); warnings (returned) for lists given by different paths."""
    if len(results) < 2:
        raise DataError("give at least two folders to compare")
    first = results[0]
    names = {}
    for result in results:
        if result.name in names:
            raise DataError(f"{names[result.name].folder} and {result.folder} would share the name "
                            f"{result.name!r} in the tables; give --names")
        names[result.name] = result
        if result.summary["classes"] != first.summary["classes"]:
            raise DataError(f"{result.folder} was evaluated with other class names than "
                            f"{first.folder} ({len(result.summary['classes'])} vs "
                            f"{len(first.summary['classes'])} classes, or renamed ones): their "
                            "IoUs are not comparable")
        if result.summary["images"] != first.summary["images"]:
            raise DataError(f"{result.folder} was evaluated on {result.summary['images']} images "
                            f"but {first.folder} on {first.summary['images']}: compare "
                            "evaluations of the same list (and the same --limit)")
    # Resolved: one list spelled relative in one run and absolute in another is the same file
    # (a relative path of an older metrics.json is taken as relative to here).
    lists = {str(Path(r.summary["settings"]["list"]).resolve())
             if (r.summary.get("settings") or {}).get("list") else "None" for r in results}
    if len(lists) > 1:
        return [f"the folders name different list files ({', '.join(sorted(lists))}) with the "
                "same number of images; the table assumes they hold the same images"]
    return []


def _bins(summary):
    by_size = summary.get("by_object_size") or {}
    return [b["bin"] for b in by_size.get("bins", [])]


def _test_time(settings):
    """How the folder's predictions were made, in a few words: the input scales the net was run
    at (1 for one pass at the image's size, whatever scales the net merges inside)."""
    if "predictions" in settings and "net" not in settings:
        return "predictions folder"
    words = [", ".join(f"{s:g}" for s in settings.get("test_scales", [1.0]))]
    if settings.get("flip"):
        words.append("flip")
    if settings.get("crf"):
        words.append("CRF")
    return "; ".join(words)


def _net_scales(summary):
    """The scales the net merges inside, where the folder says: recorded with the net (this
    version), else its attention maps' or per-scale branches' scales; None when unknown."""
    settings = summary.get("settings") or {}
    if settings.get("net_scales"):
        return list(settings["net_scales"])
    if summary.get("attention"):
        return list(summary["attention"]["scales"])
    if summary.get("branches"):
        return list(summary["branches"])
    return None


def evaluated_entries(results: List[Evaluated], entries):
    """The list's entries the folders were evaluated on: its first N where every folder recorded
    test_voc.py's --limit (they were evaluated on the same number of images, check_comparable)."""
    images = results[0].summary["images"]
    limits = [(r.summary.get("settings") or {}).get("limit") for r in results]
    if len(entries) > images and all(limit is not None for limit in limits):
        return entries[:images]
    return entries


# --- per-image confusion matrices and the bootstrap ---------------------------------------------

def per_image_confusions(result: Evaluated, entries, progress=True) -> np.ndarray:
    """images x C x C confusion matrices of the folder's stored predictions against the labels
    of `entries` (data.lists.ListEntry), checked against the folder's metrics.json."""
    if len(entries) != result.summary["images"]:
        n = result.summary["images"]
        hint = "" if len(entries) < n else (
            f"; if it was evaluated with test_voc.py --limit {n} (which metrics.json did not "
            f"record before), give a list of the first {n} lines: head -n {n} LIST > FILE")
        raise DataError(f"{result.folder} was evaluated on {n} images but the list has "
                        f"{len(entries)}: give the list it was evaluated on{hint}")
    num_classes = result.num_classes
    folder = _prediction_folder(result)
    matrices = np.zeros((len(entries), num_classes, num_classes), np.int64)
    bar = tqdm(entries, desc=f"reading {result.name}", unit="img", disable=not progress,
               dynamic_ncols=True, leave=False)
    for i, entry in enumerate(bar):
        if entry.label is None:
            raise DataError(f"{entry.where}: no ground-truth label path")
        gt = read_label(entry.label, where=entry.where, num_classes=num_classes,
                        ignore_label=IGNORE_LABEL)
        if not folder.prediction_path(entry.name).is_file():
            recorded = (result.summary.get("settings") or {}).get("predictions")
            where = "" if recorded is None or Path(recorded).is_absolute() else (
                f" (its metrics.json names the --predictions folder {recorded}, relative to the "
                f"directory test_voc.py ran in: run compare_results from there)")
            raise DataError(f"{result.folder}: no prediction {folder.prediction_path(entry.name)} "
                            f"for {entry.where}; the bootstrap reads the predictions that were "
                            f"evaluated{where}")
        pred = folder.load_prediction(entry.name, gt.shape, num_classes, entry.where)
        matrices[i] = ConfusionMatrix(num_classes, IGNORE_LABEL).update(gt, pred).matrix
    recorded = np.asarray(result.summary["metrics"].get("confusion_matrix"), np.int64)
    if recorded.shape != matrices.shape[1:] or not np.array_equal(matrices.sum(0), recorded):
        raise DataError(f"{result.folder}: its predictions against these labels do not give the "
                        f"confusion matrix of its {METRICS_JSON}: the predictions or the labels "
                        "changed since it was evaluated, or it was evaluated on another list; "
                        "run tools/test_voc.py again")
    return matrices


def _prediction_folder(result: Evaluated) -> PredictionFolder:
    """Where the folder's evaluated predictions are: its predictions/ for a net, the folder given
    to test_voc.py --predictions otherwise (recorded absolute; an older metrics.json's relative
    path is relative to where it ran)."""
    settings = result.summary.get("settings") or {}
    if settings.get("predictions") and not settings.get("net"):
        return PredictionFolder(Path(settings["predictions"]))
    return PredictionFolder.under(result.folder)


def mean_iou(matrices: np.ndarray) -> np.ndarray:
    """mIOU of each C x C matrix in `matrices` (... x C x C), as ConfusionMatrix.mean_iou:
    the mean over the classes present in ground truth or prediction."""
    matrices = np.asarray(matrices, np.float64)
    tp = np.diagonal(matrices, axis1=-2, axis2=-1)
    union = matrices.sum(-1) + matrices.sum(-2) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    present = union > 0
    count = present.sum(-1)
    total = np.where(present, iou, 0.0).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def resample_counts(num_images, resamples, seed=0) -> np.ndarray:
    """resamples x images: how often each image is drawn in each resample (with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    return np.stack([np.bincount(row, minlength=num_images) for row in draws])


def paired_bootstrap(confusions: List[np.ndarray], counts: np.ndarray) -> dict:
    """mIOU of every folder in every resample (the same resampled images for all), and the
    difference of each folder to the first: 95% percentile interval and the shares of
    resamples in which it is above, exactly at and below zero (identical predictions tie in every
    resample: P(better) 0 alone would read as "certainly worse")."""
    mious = []
    for matrices in confusions:
        flat = matrices.reshape(len(matrices), -1).astype(np.float64)
        totals = (counts.astype(np.float64) @ flat).reshape((len(counts),) + matrices.shape[1:])
        mious.append(mean_iou(totals))
    base = mious[0]
    rows = []
    for miou in mious:
        diff = miou - base
        rows.append({"miou_interval": [float(np.percentile(miou, 2.5)),
                                       float(np.percentile(miou, 97.5))],
                     "difference_interval": [float(np.percentile(diff, 2.5)),
                                             float(np.percentile(diff, 97.5))],
                     "p_better": float(np.mean(diff > 0)),
                     "p_tie": float(np.mean(diff == 0)),
                     "p_worse": float(np.mean(diff < 0))})
    return {"resamples": int(len(counts)), "rows": rows}


# --- the comparison -----------------------------------------------------------------------------

def compare(results: List[Evaluated], bootstrap: Optional[dict] = None) -> dict:
    """A JSON-ready comparison: one row per folder (the first is the baseline of differences)."""
    classes = results[0].summary["classes"]
    bins = _bins(results[0].summary)
    same_bins = all(_bins(r.summary) == bins for r in results)
    base = results[0].summary["metrics"]["mean_iou"]
    rows = []
    for i, result in enumerate(results):
        summary, metrics = result.summary, result.summary["metrics"]
        settings = summary.get("settings", {})
        attention = summary.get("attention")
        row = {"name": result.name, "folder": str(result.folder),
               "mean_iou": metrics["mean_iou"],
               "difference": (None if metrics["mean_iou"] is None or base is None
                              else metrics["mean_iou"] - base),
               "pixel_accuracy": metrics.get("pixel_accuracy"),
               "mean_class_accuracy": metrics.get("mean_class_accuracy"),
               "per_class_iou": {c: metrics["per_class"][c]["iou"] for c in classes},
               "by_object_size": ([b["mean_iou"] for b in summary["by_object_size"]["bins"]]
                                  if same_bins and bins else None),
               "attention": (None if not attention else
                             {"scales": attention["scales"],
                              "objects": _object_mean(attention),
                              "background": attention["background"]["pixel_mean"]}),
               "test_time": _test_time(settings), "net_scales": _net_scales(summary),
               "net": settings.get("net"), "weights": settings.get("weights")}
        if bootstrap is not None:
            row["bootstrap"] = bootstrap["rows"][i]
        rows.append(row)
    return {"images": results[0].summary["images"], "classes": classes,
            "size_bins": bins if same_bins else None, "baseline": results[0].name,
            "bootstrap_resamples": bootstrap["resamples"] if bootstrap else None, "rows": rows}


def _object_mean(attention):
    """Mean weight per scale over every object pixel (the size bins pooled by pixel count)."""
    total, weights = 0, None
    for b in attention["by_size"]:
        if b["pixels"] and b["pixel_mean"] is not None:
            part = np.asarray(b["pixel_mean"], np.float64) * b["pixels"]
            weights = part if weights is None else weights + part
            total += b["pixels"]
    return None if weights is None else [float(w) for w in weights / total]


def _pct(value, signed=False):
    if value is None:
        return "n/a"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _shares(bootstrap):
    """P(better / tie / worse); a bootstrap of an older comparison.json has P(better) only."""
    if "p_tie" not in bootstrap:
        return f"{bootstrap['p_better']:.3f}"
    return " / ".join(f"{bootstrap[k]:.3f}" for k in ("p_better", "p_tie", "p_worse"))


def _weights(values):
    return "n/a" if values is None else " / ".join(f"{v:.3f}" for v in values)


def markdown(comparison, warnings=()) -> str:
    rows = comparison["rows"]
    boot = comparison["bootstrap_resamples"]
    out = [f"# {len(rows)} evaluations compared",
           "",
           f"{comparison['images']} images; differences are to **{comparison['baseline']}**."]
    if boot:
        out.append(f"Paired bootstrap over images ({boot} resamples, the same images for every "
                   "net): 95% interval of the difference in mIOU and the shares of resamples in "
                   "which it is above, at and below zero (better / tie / worse).")
    out += [f"Warning: {w}." for w in warnings]
    header = ["net", "mIOU %", "difference"]
    if boot:
        header += ["95% interval", "P(better / tie / worse)"]
    header += ["pixel acc. %", "mean class acc. %", "net's scales", "test-time input scales"]
    table = []
    for row in rows:
        cells = [row["name"], _pct(row["mean_iou"]), _pct(row["difference"], signed=True)]
        if boot:
            b = row["bootstrap"]
            first = row is rows[0]
            cells += ["" if first else " to ".join(_pct(v, True) for v in b["difference_interval"]),
                      "" if first else _shares(b)]
        scales = row.get("net_scales")
        cells += [_pct(row["pixel_accuracy"]), _pct(row["mean_class_accuracy"]),
                  " / ".join(scales) if scales else "n/a", row["test_time"]]
        table.append(cells)
    out += ["", markdown_table(header, table)]
    out.append("\nTest-time input scales: the sizes the image was fed at (1: one pass at its own "
               "size); a multi-scale net merges its own scales inside each pass.")
    if comparison["size_bins"]:
        out += ["", "## mIOU % by object size", "",
                markdown_table(["net"] + comparison["size_bins"],
                          [[r["name"]] + [_pct(v) for v in r["by_object_size"]] for r in rows])]
    elif comparison["size_bins"] is None:
        out += ["", "(mIOU by object size left out: the folders used different --area-bins.)"]
    out += ["", "## IoU % per class", "",
            markdown_table(["class"] + [r["name"] for r in rows],
                      [[c] + [_pct(r["per_class_iou"][c]) for r in rows]
                       for c in comparison["classes"]])]
    attention = [r for r in rows if r["attention"]]
    if attention:
        out += ["", "## Mean attention per scale", "",
                markdown_table(["net", "scales", "object pixels", "background pixels"],
                          [[r["name"], " / ".join(r["attention"]["scales"]),
                            _weights(r["attention"]["objects"]),
                            _weights(r["attention"]["background"])] for r in attention])]
    out += ["", "## Folders", "",
            markdown_table(["net", "folder", "net file", "weights"],
                      [[r["name"], r["folder"], r["net"] or "", r["weights"] or ""]
                       for r in rows])]
    return "\n".join(out) + "\n"


def chart(comparison):
    """Left: grouped bars of mIOU over all images and per object-size bin, one colour per net.
    Right, with the bootstrap: each net's difference to the first with its paired 95% interval,
    the interval the table gives. Each net's own (unpaired) mIOU interval is not drawn: two such
    intervals may overlap while the paired difference is well above zero."""
    from .figures import plt
    rows = comparison["rows"]
    groups = ["all"] + (comparison["size_bins"] or [])
    width = 0.8 / len(rows)
    paired = bool(comparison.get("bootstrap_resamples")) and len(rows) > 1
    bars_width = max(6.0, 1.1 * len(groups) * (1 + 0.25 * len(rows)))
    if paired:
        diff_width = 1.0 + 0.6 * len(rows)
        figure, (ax, diff_ax) = plt.subplots(
            1, 2, figsize=(bars_width + diff_width, 4.0),
            gridspec_kw={"width_ratios": [bars_width, diff_width]})
    else:
        figure, ax = plt.subplots(figsize=(bars_width, 4.0))
    x = np.arange(len(groups))
    colors = []
    for i, row in enumerate(rows):
        values = [row["mean_iou"]] + (row["by_object_size"] or [])[:len(groups) - 1]
        values = [np.nan if v is None else 100 * v for v in values]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=row["name"])
        colors.append(bars[0].get_facecolor())
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=20)
    ax.set_ylabel("mIOU %")
    ax.set_xlabel("object area" if len(groups) > 1 else "")
    ax.set_title(f"{comparison['images']} images")
    ax.legend(fontsize="small", ncol=min(len(rows), 5), loc="upper center",
              bbox_to_anchor=(0.5, -0.25 if len(groups) > 1 else -0.1))
    ax.grid(axis="y", alpha=0.3)
    if paired:
        for i, row in enumerate(rows[1:], start=1):
            low, high = (100 * v for v in row["bootstrap"]["difference_interval"])
            diff = np.nan if row["difference"] is None else 100 * row["difference"]
            diff_ax.errorbar([i - 1], [diff], yerr=[[diff - low], [high - diff]], fmt="o",
                             color=colors[i], ecolor="black", capsize=4, linewidth=1)
        diff_ax.axhline(0, color="grey", linewidth=0.8)
        diff_ax.set_xticks(np.arange(len(rows) - 1))
        diff_ax.set_xticklabels([r["name"] for r in rows[1:]], rotation=20, fontsize="small")
        diff_ax.set_xlim(-0.6, len(rows) - 1.4)
        diff_ax.set_ylabel(f"mIOU difference to {rows[0]['name']} (points)")
        diff_ax.set_title("paired bootstrap: 95% interval", fontsize="medium")
        diff_ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure
