"""Equations (1)-(2): this project's SoftmaxOverScales + WeightedScaleSum against the stock-Caffe
composition (speed_nets.merge_net), both as real Caffe nets on the same inputs, forward +
backward, timed in alternating rounds (speed_timing.time_rounds); outputs and gradients compared; bytes moved against the copy
bandwidth; the memory each approach allocates beyond the net's inputs and output.
"""

from dataclasses import dataclass, field

import numpy as np

from . import traffic
from .speed_nets import TOP, merge_net, merge_shapes
from ..pycaffe import net_from_text
from .speed_timing import NetRun, median, time_rounds

# (label, N, C, H, W, S): training (batch 10 of 321 crops: 41 x 41 scores; scales {1, 0.75, 0.5}
# and {1, 0.5}) and the full-resolution test of one 513 x 513 image.
MERGE_CASES = [
    ("train S=3", 10, 21, 41, 41, 3),
    ("train S=2", 10, 21, 41, 41, 2),
    ("test S=3", 1, 21, 513, 513, 3),
]
# On a GPU also ten test images at once: one 513 x 513 image is small for a GPU (its least
# traffic takes tens of microseconds), a batch shows what the kernels sustain.
GPU_EXTRA_CASES = [("test S=3, N=10", 10, 21, 513, 513, 3)]


@dataclass
class MergeResult:
    case: str
    shape: list  # N, C, H, W, S
    mode: str
    fused_forward_ms: float
    fused_backward_ms: float
    stock_forward_ms: float
    stock_backward_ms: float
    bytes_min: int  # traffic.merge_bytes
    max_abs_diff: float  # fused vs stock, top data and every input's diff
    max_rel_diff: float  # the same over the largest magnitude of that array
    bit_identical_repeats: bool  # fused results of the first and the last round identical
    fused_intermediate_bytes: int  # data + diff of every blob between the inputs and the top
    stock_intermediate_bytes: int
    fused_cold_ms: float = None  # forward + backward of the first run of each round (median)
    stock_cold_ms: float = None
    fused_all_ms: list = field(default_factory=list)  # forward + backward of every warm run
    stock_all_ms: list = field(default_factory=list)
    memory: dict = None  # measured peaks (layer_memory children), when asked for

    @property
    def fused_ms(self):
        return self.fused_forward_ms + self.fused_backward_ms

    @property
    def stock_ms(self):
        return self.stock_forward_ms + self.stock_backward_ms

    @property
    def speedup(self):
        """Stock composition time / fused time, forward + backward (warm runs)."""
        return self.stock_ms / self.fused_ms

    @property
    def cold_speedup(self):
        """The same for the first run of each round (caches left by the other net)."""
        return self.stock_cold_ms / self.fused_cold_ms

    def fused_gbs(self):
        return self.bytes_min / self.fused_ms / 1e6


def merge_inputs(shapes, seed=0):
    """Logits ~ N(0, 2) (weights far from uniform), score maps ~ N(0, 1), float32."""
    rng = np.random.default_rng(seed)
    return {name: (rng.normal(0, 2, shape) if name == "h" else rng.standard_normal(shape))
            .astype(np.float32) for name, shape in shapes.items()}


def intermediate_bytes(net, inputs):
    """Data + diff bytes of every blob of the net other than the inputs and the top."""
    return sum(2 * 4 * blob.count for name, blob in net.blobs.items()
               if name not in inputs and name != TOP)


def compare(results_a, results_b):
    """(max abs diff, max diff relative to each array's largest magnitude) over the arrays."""
    worst_abs = worst_rel = 0.0
    for key, a in results_a.items():
        b = results_b[key]
        diff = float(np.max(np.abs(a.astype(np.float64) - b)))
        scale = float(np.max(np.abs(b))) or 1.0
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / scale)
    return worst_abs, worst_rel


def _cold_ms(run):
    return median([f + b for f, b in zip(run.cold_forward_ms, run.cold_backward_ms)])


def run_merge_case(caffe, label, num, channels, height, width, num_scales, repeats, mode="cpu",
                   clock=None, seed=0, passes=1):
    """Time both forms of one case interleaved; a MergeResult. passes: NetRun.passes."""
    shapes = merge_shapes(num, channels, height, width, num_scales)
    inputs = merge_inputs(shapes, seed)
    top_diff = np.random.default_rng(seed + 1).standard_normal(
        (num, channels, height, width)).astype(np.float32)
    dims = (num, channels, height, width, num_scales)
    fused = NetRun(net_from_text(caffe, merge_net("fused", *dims)), inputs, top_diff,
                   passes=passes)
    stock = NetRun(net_from_text(caffe, merge_net("stock", *dims)), inputs, top_diff,
                   passes=passes)
    identical = time_rounds([fused, stock], repeats, clock=clock)
    max_abs, max_rel = compare(fused.results(), stock.results())
    result = MergeResult(
        label, [num, channels, height, width, num_scales], mode,
        median(fused.forward_ms), median(fused.backward_ms),
        median(stock.forward_ms), median(stock.backward_ms),
        traffic.merge_bytes(num, channels, height, width, num_scales), max_abs, max_rel,
        identical[0], intermediate_bytes(fused.net, inputs), intermediate_bytes(stock.net, inputs),
        _cold_ms(fused), _cold_ms(stock),
        [round(f + b, 3) for f, b in zip(fused.forward_ms, fused.backward_ms)],
        [round(f + b, 3) for f, b in zip(stock.forward_ms, stock.backward_ms)])
    del fused, stock
    return result


def measure_merge_memory(num, channels, height, width, num_scales, repeats=1):
    """Peak resident memory (VmHWM) of a fresh child per net, minus that of a baseline child with
    the same inputs and top and no work (attention_scale.benchmarks.layer_memory): what each
    approach allocates at its peak, its internal buffers included. {"fused_extra_mib": ..,
    "stock_extra_mib": .., "baseline_mib": .., and every child's peak}."""
    import statistics

    from .layer_memory import baseline_text, measure_net

    shapes = merge_shapes(num, channels, height, width, num_scales)
    texts = {"fused": merge_net("fused", num, channels, height, width, num_scales),
             "stock": merge_net("stock", num, channels, height, width, num_scales),
             "baseline": baseline_text(shapes, (num, channels, height, width))}
    peaks = {key: [] for key in texts}
    for _ in range(repeats):
        for key, text in texts.items():
            peaks[key].append(measure_net(text, passes=2)["peak_kib"])
    base = statistics.median(peaks["baseline"])
    return {"baseline_mib": round(base / 1024, 3),
            "fused_extra_mib": round((statistics.median(peaks["fused"]) - base) / 1024, 3),
            "stock_extra_mib": round((statistics.median(peaks["stock"]) - base) / 1024, 3),
            "peaks_kib": peaks}


def run_merge_benchmarks(caffe, repeats, cases=MERGE_CASES, mode="cpu", clock=None,
                         memory_repeats=0, progress=True, passes=1):
    """run_merge_case (and, with memory_repeats > 0, measure_merge_memory) for every case."""
    from tqdm import tqdm

    results = []
    for label, *dims in tqdm(cases, desc=f"merge ({mode})", disable=not progress):
        result = run_merge_case(caffe, label, *dims, repeats=repeats, mode=mode, clock=clock,
                                passes=passes)
        if memory_repeats > 0:
            result.memory = measure_merge_memory(*dims, repeats=memory_repeats)
        results.append(result)
    return results
