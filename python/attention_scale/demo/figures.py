"""The demo's pictures: mIOU per variant and object size, loss curves, attention examples and
the attention-against-object-size plot (PNG, matplotlib's Agg backend)."""

import json

import numpy as np

from ..data.images import read_image, read_label
from ..data.lists import read_list
from ..data.palette import colorize, voc_palette
from ..evaluation.figures import ATTENTION_COLORMAP, attention_size_plot, plt, save_figure
from ..evaluation.outputs import PredictionFolder
from ..training import caffe_log, plots
from .report import ATTENTION_ESUPV, SINGLE


def miou_chart(results):
    """Left: mIOU per variant (bar: mean over seeds, dots: each seed). Right: mIOU by object-size
    bin, one line per variant."""
    variants = results["variants"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(variants))
    means = [100 * v["mean_iou"]["mean"] for v in variants]
    left.bar(x, means, color=[colors[i % len(colors)] for i in x], alpha=0.75)
    for i, v in enumerate(variants):
        values = [100 * s for s in v["mean_iou"]["values"]]
        left.plot([i] * len(values), values, "k.", markersize=7)
        left.annotate(f"{means[i]:.1f}", (i, means[i]), ha="center", va="bottom", fontsize=8,
                      xytext=(0, 3), textcoords="offset points")
    low = min(100 * min(v["mean_iou"]["values"]) for v in variants)
    left.set_ylim(max(0, low - 8), min(100, max(means) + 5))
    left.set_xticks(x, [v["label"] for v in variants], rotation=20, ha="right", fontsize=8)
    left.set_ylabel("val mIOU % (dots: seeds)")
    left.grid(axis="y", alpha=0.3)
    bins = [b["bin"] for b in variants[0]["size_bins"]]
    bx = np.arange(len(bins))
    for i, v in enumerate(variants):
        values = [np.nan if b["mean"] is None else 100 * b["mean"] for b in v["size_bins"]]
        right.plot(bx, values, "o-", color=colors[i % len(colors)], label=v["label"])
    right.set_xticks(bx, [f"{b}\n({s['segments']} obj.)" for b, s in
                          zip(bins, variants[0]["size_bins"])], fontsize=8)
    right.set_xlabel("ground-truth object area")
    right.set_ylabel("mIOU % of the pixels nearest to such objects")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    seeds = len(results["seeds"])
    figure.suptitle(f"synthetic demo: {results['iterations']} iterations, {seeds} seed"
                    f"{'s' if seeds > 1 else ''}")
    figure.tight_layout()
    return figure


def loss_curves(layout, config, seed):
    """The merged scores' training loss of every variant for one seed (one colour each)."""
    logs, labels = [], []
    for variant in config.variants:
        path = layout.run(seed, variant).log
        if path.is_file():
            logs.append(caffe_log.parse_file(path))
            labels.append(variant.label)
    return plots.curves_figure(logs, labels, title=f"training, seed {seed} (merged loss)")


def example_images(layout, count):
    """Val images to draw: those with an uncut large object and small objects beside it, in
    list order (the first `count`); others fill up if too few qualify."""
    objects = json.loads((layout.data / "objects.json").read_text())
    entries = read_list(layout.val_list, layout.data)
    sizes = [o["size"] for objs in objects.values() for o in objs]
    threshold = (min(sizes) + max(sizes)) / 2 if sizes else 0

    def good(entry):
        objs = objects.get(entry.name, [])
        large = [o for o in objs if o["size"] >= threshold and not o["truncated"]]
        small = [o for o in objs if o["size"] < threshold]
        return bool(large) and len(small) >= 3

    chosen = [e for e in entries if good(e)][:count]
    chosen += [e for e in entries if e not in chosen][:count - len(chosen)]
    return chosen


def attention_examples(layout, config, seed, entries):
    """One row per image: input, ground truth, the single-scale prediction, ATTENTION + E-Supv's
    prediction and its weight for each scale (one 0-1 colour scale)."""
    single = config.variant(SINGLE)
    attention = config.variant(ATTENTION_ESUPV)
    single_folder = PredictionFolder.under(layout.run(seed, single).eval_dir)
    att_folder = PredictionFolder.under(layout.run(seed, attention).eval_dir)
    num_classes = len(config.class_names)
    scales = None
    rows = []
    for entry in entries:
        image = read_image(entry.image, where=entry.where)
        gt = read_label(entry.label, where=entry.where)
        single_pred = single_folder.load_prediction(entry.name, gt.shape, num_classes)
        att_pred = att_folder.load_prediction(entry.name, gt.shape, num_classes)
        weights, scales = att_folder.load_attention(entry.name, gt.shape)
        rows.append((entry.name, image, gt, single_pred, att_pred, weights))
    columns = 4 + len(scales)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.1 * columns + 0.8,
                                                             2.2 * len(rows) + 0.4),
                                squeeze=False)
    titles = ["input", "ground truth", single.label, attention.label] + \
        [f"attention: scale {s}" for s in scales]
    shown = None
    for r, (name, image, gt, single_pred, att_pred, weights) in enumerate(rows):
        panels = [image[:, :, ::-1], colorize(gt), colorize(single_pred), colorize(att_pred)]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
        for s in range(len(scales)):
            shown = axes[r, 4 + s].imshow(weights[s], cmap=ATTENTION_COLORMAP, vmin=0, vmax=1,
                                          interpolation="nearest")
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c in range(columns):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=8)
    figure.colorbar(shown, ax=list(axes[:, 4:].ravel()), fraction=0.03, pad=0.02,
                    label="attention weight")
    palette = voc_palette(num_classes) / 255.0
    from matplotlib.patches import Patch
    figure.legend(handles=[Patch(color=palette[k], label=name)
                           for k, name in enumerate(config.class_names)],
                  loc="lower center", ncol=num_classes, fontsize=7, frameon=False)
    figure.subplots_adjust(bottom=0.08)
    return figure


def attention_by_size(results, key=ATTENTION_ESUPV):
    for v in results["variants"]:
        if v["key"] == key and v.get("attention"):
            seeds = v["attention"].get("seeds_averaged", 1)
            return attention_size_plot(v["attention"], title=f"{v['label']}: mean attention "
                                       f"weight ({seeds} seed{'s' if seeds > 1 else ''})")
    return None


def write_all(results, layout, config, seed, num_examples=3) -> dict:
    """Write every figure under layout.figures; returns {what: path}."""
    out = {}
    figures = layout.figures

    def keep(name, figure):
        if figure is not None:
            path = figures / name
            save_figure(figure, path, dpi=90)
            out[name] = path

    keep("miou.png", miou_chart(results))
    keep("loss_curves.png", loss_curves(layout, config, seed))
    if any(v.key == ATTENTION_ESUPV for v in config.variants) and num_examples:
        keep("attention_examples.png",
             attention_examples(layout, config, seed, example_images(layout, num_examples)))
    keep("attention_by_size.png", attention_by_size(results))
    samples = layout.data / "samples.png"
    if samples.is_file():
        (figures / "samples.png").write_bytes(samples.read_bytes())
        out["samples.png"] = figures / "samples.png"
    return out
