"""Timing of the Python fallback layers against the C++ layers, and of the confusion-matrix paths.

Both forms of a layer run in the same process on the same inputs through pycaffe nets (the Python
form made from the C++ one by attention_scale.convert), so the ratio compares like with like.
"""

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_write

# (phase, layer type, label, input shapes, parameter text) at SPEC section 3's sizes:
# training N=10, C=21, 41 x 41 scores, S=3 scales of a 321 x 321 crop; test 513 x 513, N=1.
LAYER_CASES = [
    ("train", "ScaleInterp", "score 21x21 -> 41x41", {"x": (10, 21, 21, 21)}, "height: 41 width: 41"),
    ("train", "ScaleInterp", "score 31x31 -> 41x41", {"x": (10, 21, 31, 31)}, "height: 41 width: 41"),
    ("train", "ScaleInterp", "score 21x21 -> reference 41x41",
     {"x": (10, 21, 21, 21), "ref": (10, 21, 41, 41)}, ""),
    ("train", "ScaleInterp", "image 321 -> 241 (scale 0.75)", {"x": (10, 3, 321, 321)}, "scale: 0.75"),
    ("train", "ScaleInterp", "label 321 -> 41 (NEAREST)", {"x": (10, 1, 321, 321)},
     "shrink_factor: 8 interpolation: NEAREST"),
    ("train", "SoftmaxOverScales", "10x3x41x41", {"h": (10, 3, 41, 41)}, ""),
    ("train", "SoftmaxOverScales", "3 bottoms of 10x1x41x41",
     {"h0": (10, 1, 41, 41), "h1": (10, 1, 41, 41), "h2": (10, 1, 41, 41)}, ""),
    ("train", "WeightedScaleSum", "ATTENTION 3 x 10x21x41x41",
     {"f0": (10, 21, 41, 41), "f1": (10, 21, 41, 41), "f2": (10, 21, 41, 41), "w": (10, 3, 41, 41)},
     "merge: ATTENTION"),
    ("train", "WeightedScaleSum", "AVERAGE 3 x 10x21x41x41",
     {"f0": (10, 21, 41, 41), "f1": (10, 21, 41, 41), "f2": (10, 21, 41, 41)}, "merge: AVERAGE"),
    ("train", "WeightedScaleSum", "MAX 3 x 10x21x41x41",
     {"f0": (10, 21, 41, 41), "f1": (10, 21, 41, 41), "f2": (10, 21, 41, 41)}, "merge: MAX"),
    ("test", "ScaleInterp", "score 65x65 -> 513x513 (zoom 8)", {"x": (1, 21, 65, 65)}, "zoom_factor: 8"),
    ("test", "ScaleInterp", "score 49x49 -> 513x513", {"x": (1, 21, 49, 49)}, "height: 513 width: 513"),
    ("test", "SoftmaxOverScales", "1x3x513x513", {"h": (1, 3, 513, 513)}, ""),
    ("test", "WeightedScaleSum", "ATTENTION 3 x 1x21x513x513",
     {"f0": (1, 21, 513, 513), "f1": (1, 21, 513, 513), "f2": (1, 21, 513, 513),
      "w": (1, 3, 513, 513)}, "merge: ATTENTION"),
    ("test", "WeightedScaleSum", "AVERAGE 3 x 1x21x513x513",
     {"f0": (1, 21, 513, 513), "f1": (1, 21, 513, 513), "f2": (1, 21, 513, 513)}, "merge: AVERAGE"),
    ("test", "WeightedScaleSum", "MAX 3 x 1x21x513x513",
     {"f0": (1, 21, 513, 513), "f1": (1, 21, 513, 513), "f2": (1, 21, 513, 513)}, "merge: MAX"),
]


@dataclass
class LayerTiming:
    phase: str
    layer: str
    case: str
    shapes: dict
    param: str
    cpp_ms: float
    python_ms: float
    ratio: float  # python / C++
    max_abs_diff: float  # of the outputs and bottom diffs, as a sanity check
    cpp_all_ms: list = field(default_factory=list)
    python_all_ms: list = field(default_factory=list)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(extra=None):
    info = {
        "machine": platform.machine(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    info.update(extra or {})
    return info


def _net_text(layer_type, shapes, param_text):
    from .params import FIELDS
    lines = ['name: "bench" force_backward: true']
    for name, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "{name}" type: "Input" top: "{name}" '
                     f'input_param {{ shape {{ {dims} }} }} }}')
    bottoms = " ".join(f'bottom: "{name}"' for name in shapes)
    lines.append(f'layer {{ name: "layer" type: "{layer_type}" {bottoms} top: "out" '
                 f'{FIELDS[layer_type]} {{ {param_text} }} }}')
    return "\n".join(lines) + "\n"


def _load_net(caffe, text, tmp_dir):
    path = os.path.join(tmp_dir, "net.prototxt")
    with open(path, "w") as handle:
        handle.write(text)
    return caffe.Net(path, caffe.TEST)


def _time_net(net, inputs, top_diff, repeats):
    """Median and all times (ms) of one forward + backward of the whole net."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    last = len(net.layers) - 1
    net._forward(0, last)  # warm-up: allocations, cached matrices
    net.blobs["out"].diff[...] = top_diff
    net._backward(last, 0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net._forward(0, last)
        net._backward(last, 0)
        times.append(1e3 * (time.perf_counter() - start))
    results = [net.blobs["out"].data.copy()] + [net.blobs[name].diff.copy() for name in inputs]
    return statistics.median(times), times, results


def run_layer_benchmarks(repeats=10, phases=("train", "test"), progress=True):
    """Time every case of LAYER_CASES in both forms; returns a list of LayerTiming."""
    import tempfile

    import caffe
    from tqdm import tqdm

    from .convert import convert_text, load_protos

    caffe.set_mode_cpu()
    protos = load_protos()
    cases = [case for case in LAYER_CASES if case[0] in phases]
    timings = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for phase, layer_type, label, shapes, param_text in tqdm(cases, disable=not progress,
                                                                 desc="layers"):
            cpp_text = _net_text(layer_type, shapes, param_text)
            python_text, _ = convert_text(cpp_text, "python", protos)
            cpp_net = _load_net(caffe, cpp_text, tmp)
            python_net = _load_net(caffe, python_text, tmp)
            inputs = {name: rng.standard_normal(shape).astype(np.float32)
                      for name, shape in shapes.items()}
            top_diff = rng.standard_normal(cpp_net.blobs["out"].data.shape).astype(np.float32)
            cpp_ms, cpp_all, cpp_results = _time_net(cpp_net, inputs, top_diff, repeats)
            py_ms, py_all, py_results = _time_net(python_net, inputs, top_diff, repeats)
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(cpp_results, py_results))
            timings.append(LayerTiming(phase, layer_type, label, {k: list(v) for k, v in shapes.items()},
                                       param_text, round(cpp_ms, 3), round(py_ms, 3),
                                       round(py_ms / cpp_ms, 3), diff,
                                       [round(t, 3) for t in cpp_all], [round(t, 3) for t in py_all]))
            del cpp_net, python_net
    return timings


def layer_report(timings, env, memory=None, memory_repeats=1):
    """(json-ready dict, markdown text) of layer timings and, if given, of the LayerMemory
    results of attention_scale.benchmark_memory (under "memory" and in a second table)."""
    data = {"environment": env, "results": [asdict(t) for t in timings],
            "ratio_python_over_cpp_max": max(t.ratio for t in timings)}
    lines = [
        "# Python fallback layers vs C++ layers (CPU, forward + backward)",
        "",
        "Generated by `tools/benchmark_layers.py`; both forms timed in the same run on the same inputs,",
        "median of the repeats. Ratio = Python / C++ (below 1: the Python layer is faster).",
        "",
        f"Environment: {json.dumps(env)}",
        "",
        "| phase | layer | case | C++ ms | Python ms | ratio | max abs diff |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {t.phase} | {t.layer} | {t.case} | {t.cpp_ms:.2f} | {t.python_ms:.2f} | "
              f"{t.ratio:.2f} | {t.max_abs_diff:.1e} |" for t in timings]
    markdown = "\n".join(lines) + "\n"
    if memory is not None:
        from .benchmark_memory import memory_data, memory_markdown
        data["memory"] = memory_data(memory, memory_repeats)
        markdown += "\n" + memory_markdown(memory, memory_repeats)
    return data, markdown


def run_metrics_benchmark(num_images=50, height=375, width=500, num_classes=21, repeats=5,
                          seed=0):
    """Confusion-matrix accumulation over a VOC-sized split, numpy vs cython; dict of results."""
    from .metrics import ConfusionMatrix

    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(num_images):
        gt = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.05] = 255  # object borders, ignored
        gts.append(gt)
        preds.append(rng.integers(0, num_classes, (height, width)).astype(np.uint8))
    results = {}
    matrices = {}
    for backend in ("numpy", "cython"):
        times = []
        for _ in range(repeats):
            conf = ConfusionMatrix(num_classes, backend=backend)
            start = time.perf_counter()
            for gt, pred in zip(gts, preds):
                conf.update(gt, pred)
            times.append(1e3 * (time.perf_counter() - start))
        matrices[backend] = conf.matrix
        results[backend] = {"median_ms": round(statistics.median(times), 3),
                            "all_ms": [round(t, 3) for t in times]}
    if not np.array_equal(matrices["numpy"], matrices["cython"]):
        raise AssertionError("the numpy and cython confusion matrices differ")
    return {
        "workload": {"images": num_images, "height": height, "width": width,
                     "num_classes": num_classes, "dtype": "uint8", "repeats": repeats},
        "results": results,
        "ratio_numpy_over_cython": round(results["numpy"]["median_ms"]
                                         / results["cython"]["median_ms"], 3),
    }


def metrics_report(data, env):
    data = dict(data, environment=env)
    w = data["workload"]
    lines = [
        "# Confusion-matrix accumulation: numpy vs cython",
        "",
        "Generated by `tools/benchmark_metrics.py`; both paths in the same run on the same labels,",
        f"{w['images']} images of {w['height']}x{w['width']} (uint8 labels, {w['num_classes']} classes, "
        f"5% ignore label), median of {w['repeats']} passes over the whole set.",
        "",
        f"Environment: {json.dumps(env)}",
        "",
        "| path | ms per pass |",
        "| --- | ---: |",
        f"| numpy (bincount) | {data['results']['numpy']['median_ms']:.1f} |",
        f"| cython | {data['results']['cython']['median_ms']:.1f} |",
        "",
        f"numpy / cython = {data['ratio_numpy_over_cython']:.2f}",
    ]
    return data, "\n".join(lines) + "\n"


def publish_report(data, markdown, output_dir, stem, write=True):
    """Print the markdown report and, with `write`, save it and its data as output_dir/stem.md
    and output_dir/stem.json (each written whole or not at all)."""
    print(markdown)
    if write:
        json_path, md_path = Path(output_dir) / f"{stem}.json", Path(output_dir) / f"{stem}.md"
        atomic_write(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write(md_path, markdown)
        print(f"wrote {json_path} and {md_path}")
