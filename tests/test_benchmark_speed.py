"""The speed benchmark (issue 11) on tiny cases: the bytes formulas by hand, the stock
composition and the corner-aligned references against independent ones, the report's target
marks, the command line (the --gpu skip included) and the OpenMP children's bit-identity.
No time thresholds: timings are only checked to be finite and positive."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attention_scale.benchmarks import speed_gpu_report, speed_report, traffic
from attention_scale.benchmarks.speed_merge import MergeResult
from attention_scale.benchmarks.speed_resize import ResizeResult
from attention_scale.benchmarks.speed_timing import Bandwidth, EventClock, HostClock, NetRun
from pyhelpers import import_caffe, ref_interp_forward

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Bytes moved, by hand
# ---------------------------------------------------------------------------------------------

def test_merge_bytes_by_hand():
    # N=1, C=2, 1x1 pixel, S=3. Softmax forward: h, w (3 + 3). Merge forward: f (3 x 2), w (3),
    # g (2). Merge backward: dg (2), w (3), f (6), df (6), dw (3). Softmax backward: w, dw, dh
    # (3 + 3 + 3). In all 6 + 11 + 20 + 9 = 46 floats.
    assert traffic.merge_bytes(1, 2, 1, 1, 3) == 4 * 46
    # Linear in the pixels: 2 x 3 pixels, 5 samples.
    assert traffic.merge_bytes(5, 2, 2, 3, 3) == 4 * 46 * 30
    # The formula of the report: 4 (3 S C + 2 C + 8 S) N H W.
    n, c, h, w, s = 1, 21, 513, 513, 3
    assert traffic.merge_bytes(n, c, h, w, s) == 4 * (3 * s * c + 2 * c + 8 * s) * n * h * w


def test_rows_read_by_hand():
    assert traffic.rows_read(5, 3) == {0, 2, 4}  # exact 2x: output i reads row 2i only
    assert traffic.rows_read(3, 5) == {0, 1, 2}
    assert traffic.rows_read(4, 3) == {0, 1, 2, 3}  # 0, 1.5, 3
    assert traffic.rows_read(7, 1) == {0}
    assert len(traffic.rows_read(321, 161)) == 161
    assert len(traffic.rows_read(321, 241)) == 321


def test_resize_bytes_by_hand():
    forward, backward = traffic.resize_bytes(2, (5, 5), (3, 3))
    assert forward == 4 * 2 * (3 * 5 + 9)  # rows 0, 2, 4 of 5 cells + the output
    assert backward == 4 * 2 * (9 + 25)


# ---------------------------------------------------------------------------------------------
# References of the resize comparison
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_hw, out_hw", [((5, 7), (9, 13)), ((9, 9), (4, 6)), ((6, 5), (1, 3))])
def test_numpy_reference_is_the_corner_aligned_resize(in_hw, out_hw):
    from attention_scale.benchmarks.speed_resize import numpy_reference

    x = np.random.default_rng(0).standard_normal((1, 2) + in_hw).astype(np.float32)
    np.testing.assert_allclose(numpy_reference(x[0], out_hw), ref_interp_forward(x, out_hw)[0],
                               rtol=1e-6, atol=1e-6)  # the loop reference sums in float32


def test_warp_affine_samples_the_corner_aligned_grid_to_its_quantization():
    cv2 = pytest.importorskip("cv2")
    from attention_scale.benchmarks.speed_resize import (max_neighbour_step,
                                                         warp_affine_corner_aligned)

    x = np.random.default_rng(1).standard_normal((1, 1, 9, 11)).astype(np.float32)
    for out_hw in ((17, 21), (5, 6), (33, 41)):
        warped = warp_affine_corner_aligned(cv2, x[0, 0], out_hw)
        exact = ref_interp_forward(x, out_hw)[0, 0]
        error = np.max(np.abs(warped - exact)) / max_neighbour_step(x[0])
        assert error <= 1 / 32, (out_hw, error)  # weights quantized to 1/32 pixel
        # and cv2.resize is another grid: far further off at the same sizes
        resized = cv2.resize(x[0, 0], out_hw[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.max(np.abs(resized - exact)) / max_neighbour_step(x[0]) > 4 * error


# ---------------------------------------------------------------------------------------------
# The nets on tiny cases
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def caffe():
    return import_caffe()


@pytest.mark.parametrize("n, c, h, w, s", [(2, 3, 4, 5, 3), (1, 2, 3, 3, 2), (1, 4, 2, 3, 1)])
def test_stock_composition_computes_the_same_as_the_fused_layers(caffe, n, c, h, w, s):
    from attention_scale.benchmarks.speed_merge import run_merge_case

    r = run_merge_case(caffe, "tiny", n, c, h, w, s, repeats=2)
    assert r.max_rel_diff < 1e-5 and r.max_abs_diff < 1e-5
    assert r.bit_identical_repeats
    pixels = n * h * w
    # fused: w; stock: w, its S slices (or the split of one), S tiles, S products (data + diff)
    assert r.fused_intermediate_bytes == 2 * 4 * s * pixels
    assert r.stock_intermediate_bytes == 2 * 4 * (s * pixels + s * pixels + 2 * s * c * pixels)
    for value in (r.fused_forward_ms, r.fused_backward_ms, r.stock_forward_ms,
                  r.stock_backward_ms):
        assert math.isfinite(value) and value > 0
    assert len(r.fused_all_ms) == len(r.stock_all_ms) == 2
    assert r.fused_cold_ms > 0 and r.stock_cold_ms > 0


def test_stock_composition_is_independent_of_the_fused_layers():
    from attention_scale.benchmarks.speed_nets import merge_net

    stock = merge_net("stock", 1, 2, 3, 3, 3)
    assert "SoftmaxOverScales" not in stock and "WeightedScaleSum" not in stock
    for layer_type in ("Softmax", "Slice", "Tile", "Eltwise"):
        assert f'type: "{layer_type}"' in stock
    with pytest.raises(ValueError, match="form must be"):
        merge_net("other", 1, 2, 3, 3, 3)


def test_resize_case_against_the_references(caffe):
    pytest.importorskip("cv2")
    import cv2

    from attention_scale.benchmarks.speed_resize import run_resize_case

    r = run_resize_case(caffe, cv2, "tiny", 3, 9, 17, repeats=2)
    assert r.numpy_max_abs_diff < 1e-5
    assert r.warp_affine_max_diff_steps <= 1 / 32
    assert r.cv2_resize_max_abs_diff > 1e-3  # the half-pixel grid
    assert r.bit_identical_repeats
    assert (r.forward_bytes, r.backward_bytes) == traffic.resize_bytes(3, (9, 9), (17, 17))
    assert r.cv2_ms > 0 and r.forward_ms > 0 and r.backward_ms > 0


def test_copy_bandwidth_copies(caffe):
    from attention_scale.benchmarks.speed_timing import copy_bandwidth

    bw = copy_bandwidth(caffe, "cpu", mib=1, repeats=2)
    assert bw.caffe_copy_gbs > 0 and bw.numpy_copy_gbs > 0 and len(bw.caffe_copy_ms) == 2


# ---------------------------------------------------------------------------------------------
# The report's marks
# ---------------------------------------------------------------------------------------------

def _merge(case, fused_ms, stock_ms, s=3, shape=(1, 21, 513, 513)):
    n, c, h, w = shape
    return MergeResult(case, [n, c, h, w, s], "cpu", fused_ms / 2, fused_ms / 2, stock_ms / 2,
                       stock_ms / 2, traffic.merge_bytes(n, c, h, w, s), 0.0, 0.0, True,
                       2 * 4 * s * n * h * w, 2 * 4 * (2 * s * n * h * w + 2 * s * c * n * h * w),
                       fused_ms, stock_ms)


def _resize(case, forward_ms, cv2_ms):
    return ResizeResult(case, 21, 65, 513, "cpu", forward_ms, forward_ms, cv2_ms,
                        *traffic.resize_bytes(21, (65, 65), (513, 513)), 0.0, 0.01, 0.5, True,
                        forward_ms, cv2_ms)


def _marks(markdown):
    rows = markdown.split("## Targets")[1].split("##")[0]
    return [line.rsplit("|", 2)[1].strip() for line in rows.splitlines()
            if line.startswith("| ") and "---" not in line and "target |" not in line]


def test_report_marks_each_target():
    bw = Bandwidth("cpu", 256, 10.0, 12.0)
    # 268 MB at 10 GB/s copy bandwidth: 50% is 53.7 ms
    good = [_merge("train S=3", 1.0, 3.5), _merge("test S=3", 50.0, 200.0)]
    _, markdown = speed_report.report({}, bw, good, [_resize("a", 1.4, 1.0)])
    assert _marks(markdown) == ["yes", "yes", "yes", "yes", speed_report.NOT_MEASURED]
    bad = [_merge("train S=3", 1.0, 2.9), _merge("test S=3", 60.0, 200.0)]
    data, markdown = speed_report.report({}, bw, bad, [_resize("a", 1.6, 1.0)])
    assert _marks(markdown) == ["**no**", "**no**", "yes", "**no**", speed_report.NOT_MEASURED]
    assert [t["met"] for t in data["targets"]] == [False, False, True, False, None]
    assert data["gpu"]["status"] == speed_report.NOT_MEASURED
    assert "GPU column: not yet measured" in markdown
    json.dumps(data)  # JSON-ready


def _gpu_run(fused_ms):
    # 268 MB at 4000 GB/s: 70% is 0.0958 ms
    return {"status": None, "device": {"name": "Test GPU", "runtime": "13.0"}, "passes": 10,
            "bandwidth": Bandwidth("gpu", 256, 4000.0),
            "merge": [_merge("train S=3", 0.02, 0.1), _merge("test S=3", fused_ms, 0.5)],
            "resize": [_resize("a", 0.01, None)]}


def test_gpu_report_marks_the_bandwidth_target_at_full_resolution():
    bytes_min = traffic.merge_bytes(1, 21, 513, 513, 3)
    assert bytes_min / 0.0958e-3 / 1e9 == pytest.approx(0.7 * 4000, rel=1e-3)
    data, markdown = speed_gpu_report.gpu_report({}, _gpu_run(0.0950))
    assert _marks(markdown) == ["yes"] and data["targets"][0]["met"] is True
    assert "Test GPU" in markdown and "10 passes" in markdown
    data, markdown = speed_gpu_report.gpu_report({}, _gpu_run(0.0970))
    assert _marks(markdown) == ["**no**"] and data["targets"][0]["measured"] == "69%"
    json.dumps(data)


def test_cpu_report_quotes_a_separate_gpu_run(tmp_path):
    data, _ = speed_gpu_report.gpu_report({}, _gpu_run(0.0950))
    (tmp_path / "speed-gpu.json").write_text(json.dumps(data))
    summary = speed_gpu_report.load_gpu_summary(tmp_path)
    bw = Bandwidth("cpu", 256, 10.0, 12.0)
    cpu, markdown = speed_report.report({}, bw, [_merge("test S=3", 50.0, 200.0)], [], gpu=None,
                                        gpu_summary=summary)
    assert _marks(markdown)[-1] == "yes"
    assert "Test GPU, [speed-gpu.md](speed-gpu.md)" in markdown
    # the GPU columns of the CPU tables come from the separate run's rows: 0.5 / 0.095 ms
    merge_row = next(line for line in markdown.splitlines() if line.startswith("| test S=3 | 1,"))
    assert merge_row.endswith("| 5.26 |")
    assert "| GPU (Test GPU, [speed-gpu.md](speed-gpu.md)) | 256 | 4000.0 | - |" in markdown
    assert cpu["gpu"]["separate_run"]["device"]["name"] == "Test GPU"
    assert speed_gpu_report.load_gpu_summary(tmp_path / "nowhere") is None
    (tmp_path / "speed-gpu.json").write_text("{not json")
    assert speed_gpu_report.load_gpu_summary(tmp_path) is None


class _CountingNet:
    """Stands in for a pycaffe Net: counts the passes NetRun makes."""
    layers = [None, None]

    def __init__(self):
        self.forward = self.backward = 0

    def _forward(self, start, end):
        self.forward += 1

    def _backward(self, start, end):
        self.backward += 1


def test_net_run_makes_its_passes_between_two_synchronizations():
    net, syncs = _CountingNet(), []
    run = NetRun(net, {}, passes=4)
    run.run(HostClock(lambda: syncs.append(net.forward + net.backward)), record="warm")
    assert (net.forward, net.backward) == (4, 4)
    assert syncs == [0, 4, 8]  # before, after the forwards, after the backwards
    assert len(run.forward_ms) == len(run.backward_ms) == 1


class _FakeRuntime:
    """Stands in for CudaRuntime: logs the calls, with the net's pass counts at each, and gives
    each event the time at which it was recorded (10 ms per pass)."""

    def __init__(self, net):
        self.net, self.log, self._made = net, [], 0

    def _passes(self):
        return self.net.forward + self.net.backward

    def synchronize(self):
        self.log.append(("sync", self._passes()))

    def event_create(self):
        self._made += 1
        return {"id": self._made}

    def event_record(self, event):
        event["at"] = 10.0 * self._passes()
        self.log.append(("record", self._passes()))

    def event_synchronize(self, event):
        self.log.append(("wait", self._passes()))

    def event_elapsed_ms(self, start, end):
        return end["at"] - start["at"]

    def event_destroy(self, event):
        self.log.append(("destroy", event["id"]))


def test_event_clock_queues_one_untimed_pass_before_the_first_event():
    """The GPU clock: synchronize, one lead forward, then an event before and after the timed
    forwards and after the backwards; the laps exclude the lead pass."""
    net = _CountingNet()
    runtime = _FakeRuntime(net)
    clock = EventClock(runtime)
    run = NetRun(net, {}, passes=4)
    run.run(clock, record="warm")
    assert (net.forward, net.backward) == (5, 4)  # 4 timed forwards + the lead
    assert runtime.log == [("sync", 0), ("record", 1), ("record", 5), ("record", 9),
                           ("wait", 9)]
    assert run.forward_ms == [10.0] and run.backward_ms == [10.0]  # 40 ms / 4 passes each
    clock.close()
    assert [entry[0] for entry in runtime.log[-3:]] == ["destroy"] * 3


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def _tool(*args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "tools/benchmark_speed.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_tool_end_to_end_with_gpu_skipped(tmp_path, caffe):
    from attention_scale.caffe_runtime import build_features

    res = _tool("--merge-case", "1", "2", "5", "5", "2", "--resize-case", "2", "9", "17",
                "--repeats", "1", "--memory-repeats", "1", "--bandwidth-mib", "1",
                "--scaling-rounds", "1", "--gpu", "--output-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    markdown = (tmp_path / "speed.md").read_text()
    data = json.loads((tmp_path / "speed.json").read_text())
    assert markdown in res.stdout
    assert data["merge"][0]["shape"] == [1, 2, 5, 5, 2]
    assert data["merge"][0]["memory"]["fused_extra_mib"] is not None
    assert data["resize"][0]["case"] == "2 x 9x9 -> 17x17"
    if not build_features()["cuda"]:
        assert "--gpu: skipped: libcaffe does not load the CUDA runtime" in res.stderr
        assert data["gpu"]["status"] == speed_report.NOT_MEASURED
        assert "GPU column: not yet measured" in markdown
    if build_features()["openmp"]:
        assert all(s["bit_identical"] for s in data["scaling"]["results"])
        assert len(data["scaling"]["results"]) == 2
    else:
        assert "built without OpenMP" in data["scaling"]["note"]


def test_gpu_only_without_a_gpu_writes_nothing(tmp_path, caffe):
    from attention_scale.caffe_runtime import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("this machine has a GPU: --gpu-only measures instead")
    res = _tool("--gpu-only", "--merge-case", "1", "2", "5", "5", "2", "--resize-case", "2",
                "9", "17", "--repeats", "1", "--output-dir", str(tmp_path))
    assert res.returncode == 1, res.stderr
    assert "--gpu: skipped:" in res.stderr and "nothing written" in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--gpu-passes", "0"], "--gpu-passes must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--merge-case", "1", "0", "2", "2", "2"], "every value must be >= 1"),
    (["--resize-case", "2", "1", "5"], "sides >= 2"),
    (["--gpu", "-1"], "--gpu ID must be >= 0"),
    (["--openmp-prefix", "/nonexistent"], "no pycaffe"),
])
def test_tool_refuses_bad_arguments(args, message):
    res = _tool(*args, "--no-write")
    assert res.returncode == 2 and message in res.stderr, res.stderr


# ---------------------------------------------------------------------------------------------
# OpenMP children: the same bits at every thread count
# ---------------------------------------------------------------------------------------------

def test_scaling_children_agree_bit_for_bit():
    # The children use the pycaffe under test: the threads differ only where that is an OpenMP
    # build (the default build is not; the benchmark's --openmp-prefix run covers that one).
    from attention_scale.benchmarks import speed_scaling

    # sizes past the loops' blocks and thread splits: several pixel blocks, odd plane counts
    cases = speed_scaling.scaling_cases([("m", 2, 3, 47, 53, 3)], [("r", 5, 31, 77)])
    features, results = speed_scaling.run_scaling(cases, threads=(1, 2, 3), rounds=1, repeats=1,
                                                  progress=False)
    assert [r.label for r in results] == ["softmax + merge m", "ScaleInterp r"]
    assert all(r.bit_identical for r in results), results
    assert features["libcaffe"]


def test_openmp_is_a_build_option_off_by_default():
    from attention_scale.caffe_build import builder

    py = builder.python_facts()
    default = builder.cmake_args(builder.BuildConfig(project_root=REPO), py, Path("/py"),
                                 Path("/prefix"))
    assert not any("OPENMP" in arg for arg in default)
    openmp = builder.cmake_args(builder.BuildConfig(project_root=REPO, openmp=True), py,
                                Path("/py"), Path("/prefix"))
    assert "-DUSE_OPENMP=ON" in openmp


def test_scaling_note_states_bit_identity_from_the_results():
    from attention_scale.benchmarks.speed import scaling_note
    from attention_scale.benchmarks.speed_scaling import ScalingResult

    features = {"openmp": True, "libcaffe": "/x/libcaffe.so"}
    same = ScalingResult("softmax + merge a", [1, 2], {1: 2.0, 2: 1.0}, {1: 1.0, 2: 2.0}, True)
    other = ScalingResult("ScaleInterp b", [1, 2], {1: 2.0, 2: 1.0}, {1: 1.0, 2: 2.0}, False)
    assert "Results bit-identical" in scaling_note(features, None, [1, 2], [same])
    note = scaling_note(features, None, [1, 2], [same, other])
    assert "NOT bit-identical" in note and "ScaleInterp b" in note
    assert "softmax + merge a" not in note
    assert "built without OpenMP" in scaling_note({"openmp": False}, "/p", [1, 2])


# ---------------------------------------------------------------------------------------------
# --render: the report again from the stored run, quoting the GPU run beside it as it is now
# ---------------------------------------------------------------------------------------------

def _render(output_dir):
    import argparse

    from attention_scale.benchmarks import speed

    return speed.render(argparse.Namespace(output_dir=output_dir, no_write=False))


def test_render_reproduces_the_committed_report(tmp_path, capsys):
    # benchmarks/speed.md is what its speed.json and speed-gpu.json make, byte for byte, so a
    # re-render after a new --gpu-only run changes the GPU quotes and nothing else
    for name in ("speed.json", "speed-gpu.json"):
        (tmp_path / name).write_bytes((REPO / "benchmarks" / name).read_bytes())
    assert _render(tmp_path) == 0
    assert (tmp_path / "speed.md").read_text() == (REPO / "benchmarks" / "speed.md").read_text()
    assert (json.loads((tmp_path / "speed.json").read_text())
            == json.loads((REPO / "benchmarks" / "speed.json").read_text()))


def test_render_quotes_the_gpu_run_beside_it(tmp_path, capsys):
    (tmp_path / "speed.json").write_bytes((REPO / "benchmarks" / "speed.json").read_bytes())
    for fused_ms, mark in ((0.0970, "**no**"), (0.0950, "yes")):
        data, _ = speed_gpu_report.gpu_report({}, _gpu_run(fused_ms))
        (tmp_path / "speed-gpu.json").write_text(json.dumps(data))
        assert _render(tmp_path) == 0
        markdown = (tmp_path / "speed.md").read_text()
        gpu_rows = [line for line in markdown.splitlines()
                    if line.startswith("| GPU softmax + merge")]
        assert len(gpu_rows) == 1 and "(Test GPU, [speed-gpu.md](speed-gpu.md))" in gpu_rows[0]
        assert gpu_rows[0].endswith(f"| {mark} |")
        assert "| GPU (Test GPU, [speed-gpu.md](speed-gpu.md)) | 256 | 4000.0 | - |" in markdown
    # the CPU figures are the stored run's
    stored = json.loads((REPO / "benchmarks" / "speed.json").read_text())
    rendered = json.loads((tmp_path / "speed.json").read_text())
    assert rendered["merge"] == stored["merge"] and rendered["resize"] == stored["resize"]


def test_render_without_a_stored_run_says_so(tmp_path, capsys):
    assert _render(tmp_path) == 1
    err = capsys.readouterr().err
    assert f"--render: {tmp_path / 'speed.json'}: cannot be read" in err
    assert "run the benchmark there first" in err
    assert not (tmp_path / "speed.md").exists()
    (tmp_path / "speed.json").write_text(json.dumps({"merge": []}))
    assert _render(tmp_path) == 1
    assert "not a report of tools/benchmark_speed.py (missing or malformed 'bandwidth')" in (
        capsys.readouterr().err)
    assert not (tmp_path / "speed.md").exists()


def test_render_refuses_gpu_options():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark_speed.py"),
                             "--render", "--gpu-only"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--render measures nothing: it cannot take --gpu or --gpu-only" in result.stderr
