"""The memory benchmark end to end on one tiny case: structure of the result, finite
baseline-subtracted numbers, and sanity checks that the baseline child sees a bigger blob and not
its parent's memory. No absolute memory or time thresholds."""

import math

import pytest

from attention_scale.benchmarks import layer_memory as bm
from pyhelpers import import_caffe


@pytest.fixture(scope="module")
def protos():
    import_caffe()
    from attention_scale.nets.convert import load_protos
    return load_protos()


def test_one_case_end_to_end(protos):
    shapes = {"f0": (1, 2, 5, 5), "f1": (1, 2, 5, 5)}
    m = bm.measure_case("test", "WeightedScaleSum", "tiny AVERAGE", shapes, "merge: AVERAGE",
                        protos, repeats=1, passes=2)
    assert isinstance(m, bm.LayerMemory)
    assert (m.phase, m.layer, m.case) == ("test", "WeightedScaleSum", "tiny AVERAGE")
    assert m.blobs_mib == pytest.approx(3 * 2 * 4 * 50 / 2**20, abs=1e-3)  # 3 blobs, data + diff
    for peaks in (m.baseline_kib, m.cpp_kib, m.python_kib):
        assert len(peaks) == 1 and all(isinstance(p, int) and p > 0 for p in peaks)
    for value in (m.baseline_mib, m.cpp_extra_mib, m.python_extra_mib):
        assert math.isfinite(value)
    assert m.ratio is None or math.isfinite(m.ratio)
    data = bm.memory_data([m], repeats=1, passes=2)
    assert data["results"][0]["case"] == "tiny AVERAGE"
    table = bm.memory_markdown([m], repeats=1, passes=2)
    assert "| C++ extra MiB | Python extra MiB | memory ratio |" in table
    assert "| test | WeightedScaleSum | tiny AVERAGE |" in table


def test_bigger_blob_raises_baseline_peak():
    small = {"x": (1, 1, 4, 4)}
    big = dict(small, big=(1, 1, 1024, 2048))  # 8 MiB data + 8 MiB diff
    without = bm.measure_net(bm.baseline_text(small, (1, 1, 8, 8)), passes=1)
    with_big = bm.measure_net(bm.baseline_text(big, (1, 1, 8, 8)), passes=1)
    assert with_big["blobs"]["big"] == [1, 1, 1024, 2048]
    assert with_big["blob_bytes"] - without["blob_bytes"] == 2 * 4 * 1024 * 2048
    # Every byte of the blob is written, so at least half of it must show in the peak.
    assert with_big["peak_kib"] - without["peak_kib"] >= 0.5 * 2 * 4 * 1024 * 2048 / 1024, \
        (without, with_big)


def test_parent_memory_does_not_leak_into_the_child():
    """The child's peak is its own: a large array touched in this (parent) process before the
    child starts must not show up in it (it would with ru_maxrss, which survives execve)."""
    import numpy as np

    text = bm.baseline_text({"x": (1, 1, 4, 4)}, (1, 1, 8, 8))
    before = bm.measure_net(text, passes=1)["peak_kib"]
    ballast = np.ones(16 * 2**20, np.float32)  # 64 MiB, every page written
    after = bm.measure_net(text, passes=1)["peak_kib"]
    del ballast
    assert after - before < 32 * 1024, (before, after)
