"""Loss and accuracy curves from Caffe logs (PNG, matplotlib).

One log: every loss output of the train net (loss, and with E-Supv loss_res1, loss_res075, ...)
and the pixel accuracy. Several logs (comparing variants): one colour per log; the merged
`loss` (comparable across variants, unlike the displayed total, which sums the E-Supv losses)
and the accuracy. Thin lines are the values at each displayed iteration, thick ones their
moving average.
"""

import io
import threading
from pathlib import Path

import numpy as np

from ..files import atomic_write


# pyplot keeps global state and is not thread-safe: callers that train several nets in threads
# (runner.train plots at every snapshot) would otherwise lose figures or crash.
PYPLOT_LOCK = threading.RLock()


def _matplotlib():
    import matplotlib
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    return plt


def moving_average(values, window):
    """Trailing mean over up to `window` points (the first points average what exists)."""
    values = np.asarray(values, float)
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(np.nan_to_num(values), 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(values.size) + 1 - counts]) / counts


def _auto_window(n):
    return max(1, n // 20)


def _plot_series(ax, iterations, values, label, color, window, width=1.8, zorder=2):
    if not iterations:
        return 0
    window = _auto_window(len(values)) if window is None else window
    if window > 1:
        ax.plot(iterations, values, color=color, alpha=0.3, linewidth=0.8, zorder=zorder)
    ax.plot(iterations, moving_average(values, window), color=color, linewidth=width,
            label=label, zorder=zorder)
    return 1


def curves_figure(logs, labels=None, window=None, title=None):
    """A matplotlib Figure: loss panel, plus an accuracy panel where a log has accuracy.

    logs: list of caffe_log.TrainingLog. Returns the figure (callers save or inspect it).
    """
    plt = _matplotlib()
    labels = list(labels) if labels else [f"log {i + 1}" for i in range(len(logs))]
    if len(labels) != len(logs):
        raise ValueError(f"{len(labels)} labels for {len(logs)} logs")
    has_accuracy = any(log.accuracy_names() or log.accuracy_names(test=True) for log in logs)
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(12 if has_accuracy else 7, 4.5),
                             squeeze=False)
    loss_ax = axes[0, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    single = len(logs) == 1
    drawn = 0
    for index, (log, label) in enumerate(zip(logs, labels)):
        names = log.loss_names() if single else (["loss"] if "loss" in log.outputs else [])
        if not names and log.display_loss:  # a net whose loss output has another name
            iterations = sorted(log.display_loss)
            drawn += _plot_series(loss_ax, iterations, [log.display_loss[i] for i in iterations],
                                  label if not single else "displayed loss",
                                  colors[index % len(colors)], window)
        for k, name in enumerate(names):
            merged = single and name == "loss"  # the merged scores' loss, drawn on top
            color = "black" if merged else colors[(k if single else index) % len(colors)]
            drawn += _plot_series(loss_ax, *log.series(name), name if single else label, color,
                                  window, width=2.4 if merged else 1.4, zorder=3 if merged else 2)
    loss_ax.set_xlabel("iteration")
    loss_ax.set_ylabel("loss" if single else "loss (merged scores)")
    loss_ax.set_yscale("log" if drawn and _all_positive(logs) else "linear")
    loss_ax.grid(True, alpha=0.3)
    if drawn:
        loss_ax.legend(fontsize=8)
    if has_accuracy:
        acc_ax = axes[0, 1]
        for index, (log, label) in enumerate(zip(logs, labels)):
            color = colors[index % len(colors)]
            for name in log.accuracy_names():
                _plot_series(acc_ax, *log.series(name), f"{label}: {name}" if not single else
                             f"train {name}", color, window)
            for name in log.accuracy_names(test=True):
                iterations, values = log.series(name, test=True)
                acc_ax.plot(iterations, values, "o--", color=color,
                            label=f"{label}: test {name}" if not single else f"test {name}")
        acc_ax.set_xlabel("iteration")
        acc_ax.set_ylabel("pixel accuracy")
        acc_ax.grid(True, alpha=0.3)
        acc_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _all_positive(logs):
    values = [v for log in logs for series in log.outputs.values() for v in series.values()]
    values += [v for log in logs for v in log.display_loss.values()]
    return bool(values) and all(v > 0 for v in values if np.isfinite(v))


def save_figure(fig, path, dpi=110):
    """Write the figure as a PNG, whole or not at all, and close it."""
    plt = _matplotlib()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())


def default_label(log_path):
    """The log's name, or for tools/train.py's snapshots/<scales>/<merge>/train.log the variant."""
    path = Path(log_path)
    if path.stem in ("train", "log", "caffe"):
        return "/".join(path.resolve().parent.parts[-2:])
    return path.stem


def plot_logs(log_paths, output, labels=None, window=None, title=None, on_skip=None):
    """Parse the logs and write their curves to output (PNG); returns the output path.

    A log without training iterations raises ValueError; with on_skip (a callable given the
    log's path and why), such a log among others is left out instead (a comparison of several
    runs still plots when one has not started yet), and only all of them empty raise."""
    from .caffe_log import parse_file
    log_paths = list(log_paths)
    labels = list(labels) if labels else [default_label(p) for p in log_paths]
    if len(labels) != len(log_paths):
        raise ValueError(f"{len(labels)} labels for {len(log_paths)} logs")
    logs = [parse_file(path) for path in log_paths]
    empty = [k for k, log in enumerate(logs) if not log.outputs and not log.display_loss]
    if empty and (on_skip is None or len(empty) == len(logs)):
        path = log_paths[empty[0]]
        raise ValueError(f"{path}: no training iterations found (is it a `caffe train` log?)")
    for k in empty:
        on_skip(log_paths[k], "no training iterations found yet")
    keep = [k for k in range(len(logs)) if k not in empty]
    with PYPLOT_LOCK:
        save_figure(curves_figure([logs[k] for k in keep], [labels[k] for k in keep], window,
                                  title), output)
    return Path(output)
