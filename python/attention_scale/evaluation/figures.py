"""Pictures of an evaluation: per-image attention figures (as in the paper's figures) and the mean
attention per scale against object size. matplotlib with the Agg backend (no display needed).
"""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from ..data.palette import colorize  # noqa: E402
from ..files import atomic_write  # noqa: E402

ATTENTION_COLORMAP = "viridis"


def save_figure(figure, path, dpi=100):
    """Write the figure as PNG atomically and release it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())


def attention_figure(image_bgr, gt, pred, attention, scale_names, title=None):
    """One row: input, ground truth, prediction and one panel per scale's attention map, all the
    maps on one 0-1 colour scale with a colour bar. gt None (an image without ground truth): no
    ground-truth panel. attention: S x H x W (or None: no such panels)."""
    attention = [] if attention is None else list(attention)
    maps = [("input", np.asarray(image_bgr)[:, :, ::-1])]
    if gt is not None:
        maps.append(("ground truth", colorize(gt)))
    maps.append(("prediction", colorize(pred)))
    panels = len(maps) + len(attention)
    figure, axes = plt.subplots(1, panels, figsize=(2.6 * panels + 0.6, 3.0), squeeze=False)
    axes = axes[0]
    for ax, (name, picture) in zip(axes, maps):
        ax.imshow(picture, interpolation=None if name == "input" else "nearest")
        ax.set_title(name)
    attention_axes = list(axes[len(maps):])
    shown = None
    for ax, weights, name in zip(attention_axes, attention, scale_names):
        shown = ax.imshow(weights, cmap=ATTENTION_COLORMAP, vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_title(f"attention, scale {name}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        figure.colorbar(shown, ax=attention_axes, fraction=0.046, pad=0.02, label="weight")
    if title:
        figure.suptitle(title, y=1.06)
    return figure


def _series(rows, key, scale):
    return [np.nan if row[key] is None else row[key][scale] for row in rows]


def attention_size_plot(attention_summary, title=None):
    """Two panels: mean weight of each scale against object-area bin (log-scale bins, one point
    per bin, gaps where a bin holds no object), and against the distance from the object's edge
    (all objects solid; the largest populated area bin dashed)."""
    scales = attention_summary["scales"]
    by_size = attention_summary["by_size"]
    by_distance = attention_summary["by_distance"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(len(by_size))
    for s, name in enumerate(scales):
        left.plot(x, _series(by_size, "pixel_mean", s), "o-", color=colors[s % len(colors)],
                  label=f"scale {name}")
    left.set_xticks(x, [row["bin"] for row in by_size], rotation=35, ha="right")
    left.set_xlabel("ground-truth object area (log-scale bins)")
    left.set_ylabel("mean attention weight")
    left.set_ylim(-0.02, 1.02)
    left.grid(alpha=0.3)
    left.legend()
    for row, seg in zip(by_size, x):
        if row["segments"]:
            left.annotate(f"n={row['segments']}", (seg, 0.02), ha="center", fontsize=7,
                          color="gray")

    xd = np.arange(len(by_distance))
    populated = [i for i, row in enumerate(by_size) if row["pixels"]]
    largest = populated[-1] if populated else None
    per_bin = attention_summary["by_size_and_distance"]
    for s, name in enumerate(scales):
        color = colors[s % len(colors)]
        right.plot(xd, _series(by_distance, "pixel_mean", s), "o-", color=color,
                   label=f"scale {name}, all objects")
        if largest is not None and len(populated) > 1:
            values = [np.nan if cell is None else cell[s] for cell in per_bin[largest]]
            right.plot(xd, values, "s--", color=color,
                       label=f"scale {name}, objects {by_size[largest]['bin']}")
    right.set_xticks(xd, [row["bin"] for row in by_distance], rotation=35, ha="right")
    right.set_xlabel("distance from the object's edge")
    right.set_ylim(-0.02, 1.02)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
