"""Tables of an evaluation summary (Evaluation.summary()): plain text for the terminal, markdown
for files people read."""


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


def _weights(values):
    return "n/a" if values is None else " / ".join(f"{v:.3f}" for v in values)


def _table(header, rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))) for row in cells)


def markdown_table(header, rows):
    """A markdown table (for reports of other modules)."""
    return _table(header, rows, markdown=True)


def metrics_table(summary, markdown=False):
    metrics = summary["metrics"]
    rows = [[name, _pct(v["iou"]), _pct(v["accuracy"])] for name, v in metrics["per_class"].items()]
    rows += [["**mean IoU**" if markdown else "mean IoU", _pct(metrics["mean_iou"]), ""],
             ["pixel accuracy", _pct(metrics["pixel_accuracy"]), ""],
             ["mean class accuracy", _pct(metrics["mean_class_accuracy"]), ""]]
    return _table(["class", "IoU %", "accuracy %"], rows, markdown)


def size_table(summary, markdown=False):
    rows = [[b["bin"], b["segments"], _pct(b["mean_iou"]), _pct(b["object_accuracy"])]
            for b in summary["by_object_size"]["bins"]]
    return _table(["object area", "segments", "mIOU %", "object pixel acc. %"], rows, markdown)


def attention_size_table(attention, markdown=False):
    scales = " / ".join(attention["scales"])
    rows = [[b["bin"], b["segments"], b["pixels"], _weights(b["pixel_mean"]),
             _weights(b["segment_mean"])] for b in attention["by_size"]]
    rows.append(["background", "", attention["background"]["pixels"],
                 _weights(attention["background"]["pixel_mean"]), ""])
    return _table(["object area", "segments", "pixels", f"mean weight ({scales})",
                   "mean of segment means"], rows, markdown)


def attention_distance_table(attention, markdown=False):
    """Rows: distance from the edge; columns: area bins holding pixels; cells: weights."""
    used = [i for i, b in enumerate(attention["by_size"]) if b["pixels"]]
    header = ["distance from edge"] + [attention["area_bins"][i] for i in used] + ["all objects"]
    rows = []
    for d, row in enumerate(attention["by_distance"]):
        cells = [_weights(attention["by_size_and_distance"][i][d]) for i in used]
        rows.append([row["bin"]] + cells + [_weights(row["pixel_mean"])])
    return _table(header, rows, markdown)


def branches_table(summary, markdown=False):
    """Each scale's own prediction next to the merged one: mIOU and per-class IoU."""
    branches = summary["branches"]
    names = list(summary["metrics"]["per_class"])
    header = ["prediction", "mIOU %"] + names
    merged = summary["metrics"]
    rows = [["merged (score)", _pct(merged["mean_iou"])]
            + [_pct(merged["per_class"][n]["iou"]) for n in names]]
    rows += [[f"scale {b}", _pct(v["mean_iou"])] + [_pct(v["per_class_iou"][n]) for n in names]
             for b, v in branches.items()]
    return _table(header, rows, markdown)


def full_report(summary, markdown=False):
    """Everything: class table, IoU by object size and, for attention nets, the weights."""
    heading = (lambda text: f"## {text}\n") if markdown else (lambda text: f"{text}\n")
    parts = [heading(f"Segmentation ({summary['images']} images)") + metrics_table(summary, markdown),
             heading("IoU by object size (ground-truth segment area)") + size_table(summary, markdown)]
    if summary.get("branches"):
        parts.append(heading("Each scale's own scores (IoU %)") + branches_table(summary, markdown))
    attention = summary.get("attention")
    if attention:
        scales = " / ".join(attention["scales"])
        parts.append(heading(f"Mean attention weight per scale ({scales}) by object size")
                     + attention_size_table(attention, markdown))
        parts.append(heading("Mean attention weight by distance from the object's edge and object "
                             "size") + attention_distance_table(attention, markdown))
    return "\n\n".join(parts) + "\n"
