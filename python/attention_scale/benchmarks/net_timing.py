"""Training-iteration time of the attention net against the max-merge net (same run, CPU).

Both VGG-16 nets (scales 1, 0.75, 0.5; C++ layers; Input blobs filled with random images and
labels) train through pycaffe's SGD solver at a reduced input size; their iterations alternate
(A, B, A, B, ...) so that a change in the machine's load hits both alike, and the median is
kept. The measured ratio is printed beside the ratio of the two nets' training MACs
(benchmarks/macs.py): within a few percent means the attention head's convolutions are the only
real extra work and our resize, softmax and merge layers cost next to nothing. One more pass
with every layer timed on its own splits each net's time by layer type.
"""

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from ..nets import builder
from ..nets.solver import SolverOptions, solver_text
from .macs import count_macs

OURS = ("ScaleInterp", "SoftmaxOverScales", "WeightedScaleSum")


@dataclass
class NetTiming:
    label: str
    merge: str
    esupv: bool
    forward_macs: int
    training_macs: int
    median_s: float
    all_s: list
    by_type_ms: dict = field(default_factory=dict)  # forward + backward per layer type


def _solver(tmp, options, tag):
    net_path = os.path.join(tmp, f"{tag}.prototxt")
    with open(net_path, "w") as handle:
        handle.write(builder.to_text(options, "train"))
    solver_path = os.path.join(tmp, f"{tag}_solver.prototxt")
    # base_lr 0: every update is computed as usual, but random data cannot drive the weights
    # to NaN (a NaN reaching Caffe's max pooling makes its backward write out of bounds).
    settings = SolverOptions(base_lr=0.0, iter_size=1, max_iter=10 ** 6, display=0,
                             snapshot=0, random_seed=1)
    with open(solver_path, "w") as handle:
        handle.write(solver_text(net_path, os.path.join(tmp, tag), settings))
    return solver_path


def _fill(net, rng, num_classes):
    data, label = net.blobs["data"], net.blobs["label"]
    data.data[...] = rng.normal(0, 50, data.data.shape)
    label.data[...] = rng.integers(0, num_classes, label.data.shape)


def _layer_type_times(net):
    """One forward + backward with every layer timed alone: {type: ms}."""
    times = defaultdict(float)
    n = len(net.layers)
    for i in range(n):
        start = time.perf_counter()
        net._forward(i, i)
        times[net.layers[i].type] += time.perf_counter() - start
    for i in reversed(range(n)):
        start = time.perf_counter()
        net._backward(i, i)
        times[net.layers[i].type] += time.perf_counter() - start
    return {k: 1e3 * v for k, v in sorted(times.items(), key=lambda kv: -kv[1])}


def run_net_timing(size=161, batch=1, repeats=5, scales=(1.0, 0.75, 0.5), esupv=False,
                   backbone="vgg16", progress=True):
    """Time attention vs max at input size x size; returns [NetTiming attention, NetTiming max]."""
    import caffe
    from tqdm import tqdm

    caffe.set_mode_cpu()
    rng = np.random.default_rng(0)
    merges = ("ATTENTION", "MAX")
    solvers, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for merge in merges:
            options = builder.NetOptions(scales=scales, merge=merge, esupv=esupv,
                                         crop_size=size, batch_size=batch, backbone=backbone)
            solver = caffe.get_solver(_solver(tmp, options, merge.lower()))
            _fill(solver.net, rng, options.num_classes)
            macs = count_macs(solver.net)
            solver.step(1)  # warm-up: allocation of every blob and buffer
            solvers[merge] = solver
            results[merge] = NetTiming(merge.lower() + ("-esupv" if esupv else ""), merge, esupv,
                                       macs.forward, macs.training, 0.0, [])
        for _ in tqdm(range(repeats), desc="iterations (pairs)", disable=not progress):
            for merge in merges:
                start = time.perf_counter()
                solvers[merge].step(1)
                results[merge].all_s.append(time.perf_counter() - start)
        for merge in merges:
            results[merge].median_s = statistics.median(results[merge].all_s)
            results[merge].by_type_ms = _layer_type_times(solvers[merge].net)
    return [results["ATTENTION"], results["MAX"]]


def extrapolated_seconds_per_image(timing: NetTiming, size=321, batch=1):
    """Seconds per training image at size x size, from a timing at another size: the measured
    seconds per training MAC times the net's training MACs per image at `size` (counted on the
    net, not run)."""
    import caffe

    options = builder.NetOptions(scales=(1.0, 0.75, 0.5), merge=timing.merge, esupv=timing.esupv,
                                 crop_size=size, batch_size=batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.prototxt")
        with open(path, "w") as handle:
            handle.write(builder.to_text(options, "train"))
        net = caffe.Net(path, caffe.TRAIN)
    macs = count_macs(net).training / batch
    return timing.median_s / timing.training_macs * macs


def pair_ratios(attention: NetTiming, max_net: NetTiming):
    """attention / max of each pair of neighbouring iterations (they ran back to back, so a
    change in the machine's load affects both alike)."""
    return [a / b for a, b in zip(attention.all_s, max_net.all_s)]


def net_report(timings, environment, size, batch):
    attention, max_net = timings
    ratios = pair_ratios(attention, max_net)
    measured = statistics.median(ratios)
    fastest = min(attention.all_s) / min(max_net.all_s)
    predicted = attention.training_macs / max_net.training_macs
    conv = [t.by_type_ms.get("Convolution", 0.0) for t in timings]
    data = {"environment": environment, "input_size": size, "batch": batch,
            "measured_ratio": measured, "pair_ratios": ratios,
            "fastest_ratio": fastest, "median_ratio": attention.median_s / max_net.median_s,
            "convolution_time_ratio": conv[0] / conv[1] if conv[1] else None,
            "predicted_ratio": predicted, "deviation": measured / predicted - 1,
            "nets": [asdict(t) for t in timings]}
    rows = "\n".join(
        f"| {t.label} | {t.forward_macs / 1e9:.2f} | {t.training_macs / 1e9:.2f} | "
        f"{t.median_s:.3f} | {', '.join(f'{s:.3f}' for s in t.all_s)} |" for t in timings)
    types = sorted({k for t in timings for k in t.by_type_ms},
                   key=lambda k: -max(t.by_type_ms.get(k, 0) for t in timings))
    def cell(t, k):
        ms = t.by_type_ms.get(k, 0)
        return f"{ms:.1f} ({100 * ms / sum(t.by_type_ms.values()):.1f}%)"

    type_rows = "\n".join(f"| {k}{' (ours)' if k in OURS else ''} | "
                          + " | ".join(cell(t, k) for t in timings) + " |" for k in types)
    markdown = f"""# Training iteration: attention net vs max-merge net (CPU)

Generated by `tools/benchmark_training.py --what nets`. VGG-16 DeepLab-LargeFOV branches at
scales 1, 0.75, 0.5 (C++ layers), {"with" if timings[0].esupv else "without"} E-Supv, input
{size} x {size}, batch {batch}; one pycaffe SGD solver step per iteration, the two nets
alternating, {len(timings[0].all_s)} iterations each after a warm-up.

**Measured time ratio attention / max: {measured:.3f} (median of the {len(ratios)} back-to-back
pairs: {", ".join(f"{r:.3f}" for r in ratios)}); ratio of their training MACs: {predicted:.3f};
measured is {100 * (measured / predicted - 1):+.1f}% from predicted.** Ratio of the fastest
iterations: {fastest:.3f}; of the medians: {attention.median_s / max_net.median_s:.3f}; of the
time in convolutions (table below): {data["convolution_time_ratio"]:.3f}.

| net | forward GMAC | training GMAC | median s / iteration | all iterations (s) |
| --- | ---: | ---: | ---: | --- |
{rows}

Time by layer type, one forward + backward with each layer timed alone (ms, share of the net):

| layer type | {" | ".join(t.label for t in timings)} |
| --- | {" | ".join("---:" for _ in timings)} |
{type_rows}

Environment: {json.dumps(environment)}
"""
    return data, markdown
