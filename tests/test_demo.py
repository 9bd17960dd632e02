"""The demo (tools/demo.py): the --quick path end to end through `caffe train` and the evaluation,
a second run that reuses everything, a changed configuration refused; the results' statistics
and the paper's-ordering verdicts on hand-made numbers."""

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

from attention_scale.demo import experiment, report

REPO = Path(__file__).resolve().parents[1]
CONFIG = experiment.QUICK


def run_demo(output, *extra):
    return subprocess.run([sys.executable, str(REPO / "tools/demo.py"), "--quick", "--quiet",
                           "--output", str(output), *extra], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo") / "out"
    started = time.monotonic()
    done = run_demo(output)
    assert done.returncode == 0, done.stdout + done.stderr
    return output, done, time.monotonic() - started


def test_every_variant_trained(quick):
    output, done, _ = quick
    # Caffe's lines go to the logs, not through the demo's own progress display
    assert "Snapshotting to" not in done.stderr + done.stdout
    results = json.loads((output / "results.json").read_text())
    assert [v["key"] for v in results["variants"]] == [v.key for v in CONFIG.variants]
    for variant in results["variants"]:
        (run,) = variant["runs"]
        assert run["seed"] == 0
        # the merged scores' loss fell from its start (about ln 7 = 1.95)
        assert run["last_loss"] < 0.8 * run["first_loss"], (variant["key"], run)
        assert run["train_seconds"] > 0
        folder = output / "runs" / "seed-0" / variant["key"]
        assert (folder / f"snapshot_iter_{CONFIG.iterations}.caffemodel").is_file()
        log = (folder / "train.log").read_text()
        assert f"Iteration {CONFIG.iterations}, loss = " in log
        assert cv2.imread(str(folder / "loss.png")) is not None


def test_every_variant_evaluated(quick):
    output, done, _ = quick
    results = json.loads((output / "results.json").read_text())
    names = CONFIG.class_names
    for variant in results["variants"]:
        metrics = json.loads((output / "runs" / "seed-0" / variant["key"] / "eval" /
                              "metrics.json").read_text())
        assert metrics["images"] == CONFIG.num_val
        assert 0 <= metrics["metrics"]["mean_iou"] <= 1
        assert set(metrics["metrics"]["per_class"]) == set(names)
        assert variant["mean_iou"]["values"] == [metrics["metrics"]["mean_iou"]]
        assert set(variant["per_class_iou"]) == set(names)
        assert len(variant["size_bins"]) == len(CONFIG.area_bins) + 1
        multi = variant["merge"] is not None
        assert ("branches" in variant) == multi
        if multi:
            assert set(variant["branches"]) == {"1", "0.5"}
        assert ("attention" in variant) == (variant["merge"] == "ATTENTION")
        if variant["merge"] == "ATTENTION":
            for row in variant["attention"]["by_size"]:
                if row["pixel_mean"] is not None:
                    assert abs(sum(row["pixel_mean"]) - 1) < 1e-3
    table = (output / "results.md").read_text()
    for variant in CONFIG.variants:
        assert f"| {variant.label} |" in table
    # every claim's difference with the test set's noise (a paired bootstrap per seed)
    noise = results["test_noise"]
    assert set(noise["pairs"]) == {report.pair_name(*pair) for pair in report.CLAIM_PAIRS}
    for pair in noise["pairs"].values():
        low, high = pair["0"]["difference_interval"]
        assert -1 <= low <= high <= 1 and 0 <= pair["0"]["p_better"] <= 1
    assert all("test-set 95% interval per seed: [" in c["detail"]
               for c in results["claims"] if "difference_pp" in c)
    assert "## The paper's ordering, checked" in table
    assert {c["verdict"] for c in results["claims"]} <= {"yes", "no", "mixed"}
    assert len(results["claims"]) >= 7
    assert "results.md" in done.stdout and "figures" in done.stdout


def test_figures_drawn(quick):
    output, _, _ = quick
    for name in ("miou.png", "loss_curves.png", "attention_examples.png",
                 "attention_by_size.png", "samples.png"):
        image = cv2.imread(str(output / "figures" / name))
        assert image is not None and min(image.shape[:2]) > 100, name
        assert f"figures/{name}" in (output / "results.md").read_text()


def test_second_run_reuses_everything(quick):
    output, _, first_seconds = quick
    before = json.loads((output / "results.json").read_text())
    before_md = (output / "results.md").read_text()
    logs = {p: p.stat().st_mtime for p in (output / "runs").rglob("train.log")}
    done = run_demo(output)
    assert done.returncode == 0, done.stderr
    after = json.loads((output / "results.json").read_text())
    assert [v["mean_iou"] for v in after["variants"]] == [v["mean_iou"] for v in before["variants"]]
    assert {p: p.stat().st_mtime for p in logs} == logs  # nothing trained again
    # the table says its times leave out what an earlier run trained
    assert before["reused_trainings"] == 0 and "earlier run" not in before_md
    assert after["reused_trainings"] == len(CONFIG.variants)
    assert f"{len(CONFIG.variants)} of {len(CONFIG.variants)} trainings were done by an " \
           f"earlier run" in (output / "results.md").read_text()


def test_other_configuration_refused(quick):
    output, _, _ = quick
    done = run_demo(output, "--iterations", "7")
    assert done.returncode == 1
    assert "made with --quick" in done.stderr and "another configuration" in done.stderr
    assert "--fresh" in done.stderr
    assert (output / "runs" / "seed-0" / "single" / "train.log").is_file()


# -- statistics and verdicts on hand-made numbers ------------------------------------------------

def _job(key, seed, miou):
    variant = CONFIG.variant(key)
    per_class = {name: {"iou": miou, "accuracy": miou} for name in CONFIG.class_names}
    metrics = {"metrics": {"mean_iou": miou, "pixel_accuracy": 0.9, "per_class": per_class},
               "by_object_size": {"bins": [{"bin": "all", "segments": 3, "mean_iou": miou}]},
               "branches": None, "attention": None}
    train = {"seconds": 10.0 + seed, "seconds_per_iteration": 0.1, "first_loss": 2.0,
             "last_loss": 0.5}
    return SimpleNamespace(seed=seed, variant=variant, train=train, metrics=metrics)


def test_aggregate_and_verdicts():
    values = {"single": (0.60, 0.62, 0.64), "max-esupv": (0.61, 0.63, 0.66),
              "average-esupv": (0.59, 0.63, 0.63), "attention-esupv": (0.70, 0.72, 0.70),
              "attention": (0.70, 0.70, 0.71)}
    jobs = [_job(key, seed, v[seed]) for key, v in values.items() for seed in range(3)]
    results = report.aggregate(CONFIG, jobs, [0, 1, 2])
    single = results["variants"][0]
    assert single["mean_iou"]["mean"] == pytest.approx(0.62)
    assert single["mean_iou"]["std"] == pytest.approx(0.02)  # sample std of 0.60, 0.62, 0.64
    assert single["train_seconds"]["values"] == [10.0, 11.0, 12.0]
    verdicts = {c["claim"]: c for c in results["claims"]}
    assert verdicts["MAX + E-Supv > single scale"]["verdict"] == "yes"
    average = verdicts["AVERAGE + E-Supv > single scale"]
    assert average["verdict"] == "mixed" and average["seeds_agreeing"] == 1
    assert average["difference_pp"]["values"] == pytest.approx([-1.0, 1.0, -1.0])
    assert verdicts["E-Supv helps ATTENTION"]["verdict"] == "mixed"  # +0, +2, -1: 0 is not >
    assert verdicts["ATTENTION + E-Supv >= MAX + E-Supv"]["verdict"] == "yes"
    lower = [_job(key, seed, 0.5 if key == "attention-esupv" else v[seed])
             for key, v in values.items() for seed in range(3)]
    verdicts = {c["claim"]: c["verdict"] for c in report.claims(
        report.aggregate(CONFIG, lower, [0, 1, 2]))}
    assert verdicts["ATTENTION + E-Supv >= AVERAGE + E-Supv"] == "no"
    text = report.markdown(results)
    assert "62.00 ± 2.00" in text and "| yes |" in text and "| mixed |" in text
    assert "test-set" not in text  # no intervals without the noise


def test_verdicts_carry_the_test_set_noise_per_seed():
    values = {key: (0.60, 0.62, 0.64) for key in ("single", "max-esupv", "attention-esupv",
                                                   "attention")}
    values["average-esupv"] = (0.61, 0.63, 0.66)
    jobs = [_job(key, seed, v[seed]) for key, v in values.items() for seed in range(3)]
    rows = [[-0.004, 0.02], [0.001, 0.03], [0.0, 0.01]]
    # ATTENTION + E-Supv >= MAX + E-Supv: identical predictions in seed 0 ([0, 0]), an interval
    # that starts at zero in seed 1, one wholly below zero in seed 2
    at_least = [[0.0, 0.0], [0.0, 0.02], [-0.03, -0.01]]
    noise = {"resamples": 1000, "seed": 0, "pairs": {
        report.pair_name("average-esupv", "single"): {
            str(seed): {"difference_interval": rows[seed], "p_better": 0.9} for seed in range(3)},
        report.pair_name("attention-esupv", "max-esupv"): {
            str(seed): {"difference_interval": at_least[seed], "p_better": 0.0}
            for seed in range(3)}}}
    results = report.aggregate(CONFIG, jobs, [0, 1, 2], noise=noise)
    claims = {c["claim"]: c for c in results["claims"]}
    claim = claims["AVERAGE + E-Supv > single scale"]
    # beyond the noise only where the whole interval is above zero (seed 2 touches zero)
    assert claim["seeds_beyond_test_noise"] == 1
    assert claim["seeds_against_beyond_test_noise"] == 0
    assert [v for pair in claim["test_intervals_pp"] for v in pair] == pytest.approx(
        [-0.4, 2.0, 0.1, 3.0, 0.0, 1.0])
    assert claim["detail"].endswith(
        "test-set 95% interval per seed: [-0.40, +2.00], [+0.10, +3.00], [+0.00, +1.00] "
        "(beyond the test set's noise: 1 for, 0 against, 2 within the noise, of 3 seeds)")
    # A '>=' claim is "yes" on equal mIOUs, but an interval touching zero, [0, 0] included, is
    # never beyond the noise in its favour (it was counted so before: "above zero in 2 of 3").
    ge = claims["ATTENTION + E-Supv >= MAX + E-Supv"]
    assert ge["difference_pp"]["values"] == [0.0, 0.0, 0.0] and ge["verdict"] == "yes"
    assert ge["seeds_beyond_test_noise"] == 0 and ge["seeds_against_beyond_test_noise"] == 1
    assert ge["detail"].endswith("(beyond the test set's noise: 0 for, 1 against, 2 within the "
                                 "noise, of 3 seeds)")
    text = report.markdown(results)
    assert "paired bootstrap over them (1000 resamples" in text
    assert "above zero" not in text and "Quick run" not in text
    lines = report.summary_lines(results)
    assert ("  yes: AVERAGE + E-Supv > single scale (beyond the test set's noise: 1 for, "
            "0 against, 2 within the noise, of 3 seeds)") in lines
    assert ("  yes: ATTENTION + E-Supv >= MAX + E-Supv (beyond the test set's noise: 0 for, "
            "1 against, 2 within the noise, of 3 seeds)") in lines
    assert not any("in its favour" in line for line in lines)


def test_quick_results_say_they_test_the_pipeline():
    values = {key: (0.1,) for key in ("single", "max-esupv", "average-esupv", "attention-esupv",
                                      "attention")}
    jobs = [_job(key, 0, v[0]) for key, v in values.items()]
    results = report.aggregate(CONFIG, jobs, [0], extra={"quick": True})
    caveat = "the nets are too briefly trained for these numbers and verdicts to mean anything"
    assert caveat in report.markdown(results)
    assert any(caveat in line for line in report.summary_lines(results))
    plain = report.aggregate(CONFIG, jobs, [0], extra={"quick": False})
    assert caveat not in report.markdown(plain)
    assert not any(caveat in line for line in report.summary_lines(plain))


def test_ctrl_c_ends_with_status_130(monkeypatch, capsys):
    """A Ctrl-C during the trainings (run_jobs' DemoStopped) exits 130 like the other tools;
    any other refusal stays 1."""
    import importlib

    from attention_scale.demo import run
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    demo = importlib.import_module("demo")
    assert issubclass(run.DemoStopped, run.DemoError)

    def stopped(*args, **kwargs):
        raise run.DemoStopped("stopped by Ctrl-C: run the same command again")

    def refused(*args, **kwargs):
        raise run.DemoError("something else")

    monkeypatch.setattr(run, "run_demo", stopped)
    assert demo.main(["--quick", "--quiet"]) == 130
    assert "demo: stopped by Ctrl-C" in capsys.readouterr().err
    monkeypatch.setattr(run, "run_demo", refused)
    assert demo.main(["--quick", "--quiet"]) == 1


def test_other_configuration_named(tmp_path):
    """The refusal of a folder made with another configuration names --quick or the default."""
    from attention_scale.demo import run
    layout = run.DemoLayout(tmp_path / "out")
    layout.root.mkdir()
    layout.config.write_text(json.dumps({"digest": experiment.QUICK.digest()}))
    with pytest.raises(run.DemoError) as err:
        run.prepare(experiment.DEFAULT, layout, progress=False)
    message = str(err.value)
    assert "made with --quick (digest" in message
    assert "this run is the default configuration (no --quick)" in message
    assert "--fresh" in message and "results/demo unless --output differs" in message


def test_attention_verdict_reads_size_and_depth():
    def summary(small_w1, large_rim_w1, large_inside_w1):
        rows = [{"bin": "< 64 px", "pixels": 10, "segments": 2, "pixel_mean": [small_w1, 1 - small_w1],
                 "segment_mean": None},
                {"bin": ">= 1024 px", "pixels": 10, "segments": 1,
                 "pixel_mean": [0.5, 0.5], "segment_mean": None}]
        cells = [[[small_w1, 1 - small_w1], None],
                 [[large_rim_w1, 1 - large_rim_w1], [large_inside_w1, 1 - large_inside_w1]]]
        return {"scales": ["1", "0.5"], "by_size": rows, "by_size_and_distance": cells,
                "distance_bins": ["< 4 px", ">= 4 px"]}

    def verdict(att):
        results = {"variants": [{"key": "attention-esupv", "label": "A", "attention": att}]}
        return report._attention_claim(results, "attention-esupv")["verdict"]

    assert verdict(summary(0.9, 0.7, 0.2)) == "yes"
    assert verdict(summary(0.4, 0.7, 0.2)) == "no"    # small objects not on scale 1
    assert verdict(summary(0.9, 0.7, 0.8)) == "no"    # insides not on the coarse scale


def test_input_scale_multiplies_the_data_first():
    """The demo's nets scale `data` by input_scale in front of every branch (a Power layer): the
    same weights on data * s without it give the same scores and attention."""
    import numpy as np
    from attention_scale.nets import builder
    from pyhelpers import make_net

    variant = CONFIG.variant("attention-esupv")
    scaled = CONFIG.net_options(variant).with_(form="python", test_size=33)
    plain = scaled.with_(input_scale=1.0)
    assert scaled.input_scale == pytest.approx(1 / 64)
    text = {}
    for name, options in (("scaled", scaled), ("plain", plain)):
        net = builder.build(options, "test")
        body = str(net).split("\n", 1)[1]  # without the net's name line
        text[name] = body
    assert 'name: "data_scaled"' in text["scaled"] and "Power" in text["scaled"]
    assert "data_scaled" not in text["plain"]
    nets = {name: make_net(body) for name, body in text.items()}
    rng = np.random.default_rng(0)
    for layer, blobs in nets["scaled"].params.items():
        for i, blob in enumerate(blobs):
            blob.data[...] = rng.normal(0, 0.3, blob.data.shape)
            nets["plain"].params[layer][i].data[...] = blob.data
    x = rng.uniform(-128, 128, (1, 3, 33, 33)).astype(np.float32)
    nets["scaled"].blobs["data"].data[...] = x
    nets["plain"].blobs["data"].data[...] = x / 64
    for net in nets.values():
        net.forward()
    for blob in ("score", "attention", "fc8_res05_interp"):
        np.testing.assert_allclose(nets["scaled"].blobs[blob].data, nets["plain"].blobs[blob].data,
                                   rtol=1e-4, atol=1e-5)


def test_layout_benchmark_report():
    """The core-layout benchmark's layouts and its report on hand-made timings: ratios against
    one job with one thread, the fastest named, the configuration described from the result."""
    from attention_scale.demo import benchmark

    assert benchmark.layouts(1) == [("1 job x 1 thread", 1, 1)]
    assert benchmark.layouts(2) == [("1 job x 1 thread", 1, 1), ("1 job x 2 threads", 1, 2),
                                    ("2 jobs x 1 thread", 2, 1)]
    rows = [{"layout": name, "seconds_per_iteration": times, "throughput": sum(1 / t for t in times)}
            for name, times in (("1 job x 1 thread", [0.1]), ("1 job x 2 threads", [0.08]),
                                ("2 jobs x 1 thread", [0.125, 0.125]))]
    for row in rows:
        row["throughput_ratio"] = row["throughput"] / rows[0]["throughput"]
    result = {"variant": "ATTENTION + E-Supv", "iterations": 50, "cores": 2, "batch_size": 4,
              "image_size": 33, "scales": [1.0, 0.5], "rows": rows,
              "load_average_before": [0.5, 0.4, 0.3], "load_average_after": [1.5, 1.0, 0.5]}
    text = benchmark.markdown(result, {"cpu_count": 2, "cpu": "test cpu"})
    assert "| 2 jobs x 1 thread | 0.125, 0.125 | 16.00 | 1.60 |" in text
    assert "| 1 job x 2 threads | 0.080 | 12.50 | 1.25 |" in text
    assert "Fastest: **2 jobs x 1 thread** (1.60x" in text
    assert "scales 1, 0.5, batch 4 of 33 x 33 images" in text


def test_what_the_jobs_import_is_imported_before_their_threads_start():
    # Python 3.9.2 (Debian 11) failed a thread's `from M import X` while another thread was
    # importing M ("partially initialized module"): a second demo run lost four of five jobs.
    import ast
    import inspect

    from attention_scale.demo import run
    lazy = {"." * node.level + (node.module or "")
            for job in (run.evaluate_job, run.train_job)
            for node in ast.walk(ast.parse(inspect.getsource(job)))
            if isinstance(node, ast.ImportFrom)}
    assert lazy <= set(run._JOB_MODULES), lazy - set(run._JOB_MODULES)
    run.import_job_modules()
    for name in run._JOB_MODULES:
        resolved = name if not name.startswith(".") else \
            "attention_scale." + name.lstrip(".")
        assert resolved in sys.modules
    assert "matplotlib.pyplot" in sys.modules
