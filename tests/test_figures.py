"""Attention figures and the attention-by-size plot: panels, bins, files; the visualisation tool."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

import evalnets
from attention_scale.evaluation import figures
from attention_scale.evaluation.attention_stats import AttentionStatistics
from attention_scale.evaluation.segments import Bins

REPO = Path(__file__).resolve().parents[1]


def _stats(num_scales=3):
    rng = np.random.default_rng(0)
    stats = AttentionStatistics([f"s{i}" for i in range(num_scales)], Bins((4, 16, 64)),
                                Bins((2, 4)))
    gt = np.zeros((20, 20), np.uint8)
    gt[2:4, 2:4] = 1     # area 4
    gt[8:18, 8:18] = 2   # area 100
    weights = rng.random((num_scales, 20, 20))
    stats.update(weights / weights.sum(axis=0), gt)
    return stats, gt


def test_attention_figure_has_a_panel_per_scale_and_one_colour_bar(tmp_path):
    _, gt = _stats()
    attention = np.random.default_rng(1).random((3, 20, 20))
    image = np.zeros((20, 20, 3), np.uint8)
    fig = figures.attention_figure(image, gt, gt, attention, ["1", "0.75", "0.5"], title="x")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3 + 3 and len(fig.axes) == 3 + 3 + 1
    assert [ax.get_title() for ax in panels[3:]] == [
        "attention, scale 1", "attention, scale 0.75", "attention, scale 0.5"]
    for ax in panels[3:]:  # one shared 0-1 colour scale
        assert ax.images[0].get_clim() == (0.0, 1.0)
    figures.save_figure(fig, tmp_path / "fig.png")
    picture = cv2.imread(str(tmp_path / "fig.png"))
    assert picture is not None and picture.shape[1] > picture.shape[0]


def test_size_plot_has_one_point_per_bin_and_a_line_per_scale(tmp_path):
    stats, _ = _stats()
    fig = figures.attention_size_plot(stats.summary())
    left, right = fig.axes
    assert len(left.get_xticklabels()) == 4 and len(right.get_xticklabels()) == 3
    assert [t.get_text() for t in left.get_xticklabels()] == stats.area_bins.labels()
    assert len(left.lines) == 3
    for line, s in zip(left.lines, range(3)):
        y = line.get_ydata()
        assert len(y) == 4
        assert np.isnan(y[0]) and np.isnan(y[2])       # no objects < 4 px or of 16-64 px
        assert y[1] == stats.by_size()[1]["pixel_mean"][s]
        assert y[3] == stats.by_size()[3]["pixel_mean"][s]
    # all objects + the largest populated size bin, per scale
    assert len(right.lines) == 2 * 3
    figures.save_figure(fig, tmp_path / "plot.png")
    assert cv2.imread(str(tmp_path / "plot.png")) is not None


def test_visualize_attention_tool(tmp_path):
    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(), seed=1)
    list_path = evalnets.write_dataset(tmp_path / "data", [(30, 31), (25, 20), (33, 33)])
    classes = tmp_path / "classes.txt"
    classes.write_text("bg\na\nb\nc\n")
    common = [sys.executable, str(REPO / "tools/visualize_attention.py"), "--list", list_path,
              "--root", tmp_path / "data", "--classes", classes, "--results", tmp_path / "res",
              "--area-bins", "16,64,256", "--quiet"]
    missing = subprocess.run(list(map(str, common)), capture_output=True, text=True,
                             env=evalnets.tool_env())
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"visualize_attention: --results {tmp_path / 'res'}: no "
                                     f"predictions/ there; make it first with tools/segment.py")
    run = subprocess.run(list(map(str, common + ["--net", net[0], "--weights", net[1],
                                                 "--images", "img002", "img000"])),
                         capture_output=True, text=True, env=evalnets.tool_env())
    assert run.returncode == 0, run.stderr
    out = tmp_path / "res" / "figures"
    assert sorted(p.name for p in out.iterdir()) == [
        "attention_by_size.json", "attention_by_size.md", "attention_by_size.png",
        "img000.png", "img002.png"]
    table = json.loads((out / "attention_by_size.json").read_text())
    assert table["scales"] == ["1", "0.5"] and len(table["by_size"]) == 4
    assert sum(row["pixels"] for row in table["by_size"]) > 0
    assert "| object area |" in (out / "attention_by_size.md").read_text()
    # without the net, from the stored files; an unknown image is named
    again = subprocess.run(list(map(str, common + ["--images", "nope"])), capture_output=True,
                           text=True, env=evalnets.tool_env())
    assert again.returncode == 1 and "nope" in again.stderr


def _visualize(*args):
    return subprocess.run([sys.executable, str(REPO / "tools/visualize_attention.py"),
                           *map(str, args)], capture_output=True, text=True,
                          env=evalnets.tool_env())


def test_results_of_a_net_without_attention_are_named_so(tmp_path):
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.evaluation.outputs import PredictionFolder
    from attention_scale.evaluation.runner import Evaluation, evaluate_list
    from attention_scale.data.lists import read_list

    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(merge="MAX"), seed=1)
    list_path = evalnets.write_dataset(tmp_path / "data", [(30, 31), (25, 20)])
    evaluate_list(read_list(list_path, tmp_path / "data"), Evaluation(["bg", "a", "b", "c"]),
                  PredictionFolder.under(tmp_path / "res"), NetPredictor(*net), progress=False)
    (tmp_path / "classes.txt").write_text("bg\na\nb\nc\n")
    result = _visualize("--list", list_path, "--root", tmp_path / "data", "--classes",
                        tmp_path / "classes.txt", "--results", tmp_path / "res", "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"visualize_attention: {tmp_path / 'res'} holds predictions but no attention maps: the "
        "net that made them has no attention (a max or average merge, or one scale); attention "
        "pictures need the results of an attention net")


def test_help_and_unwritable_figures(tmp_path):
    help_text = " ".join(_visualize("--help").stdout.split())
    assert "stored under <results>/branches/" in help_text
    list_path = evalnets.write_dataset(tmp_path / "data", [(30, 31)])
    for figures_dir, problem in (("/sys/figs", "cannot write in /sys ("),
                                 (list_path, "a file, not a folder")):
        result = _visualize("--list", list_path, "--root", tmp_path / "data", "--results",
                            tmp_path / "res", "--figures", figures_dir)
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"visualize_attention: --figures {figures_dir}: {problem}")
        assert "Traceback" not in result.stderr
    # Without --figures the pictures go under --results: where that cannot be written (a
    # read-only results folder), the message says that --figures can put them elsewhere.
    result = _visualize("--list", list_path, "--root", tmp_path / "data", "--results",
                        "/sys/res")
    assert result.returncode == 1
    assert result.stderr.startswith("visualize_attention: --results /sys/res/figures: "
                                    "cannot write in /sys (")
    assert result.stderr.rstrip().endswith("give --figures DIR for the pictures"), result.stderr
