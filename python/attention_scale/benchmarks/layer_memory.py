"""Peak memory of the Python fallback layers and the C++ layers, beyond the blobs of the net.

Every measurement runs in a fresh child process (`python -m attention_scale.benchmarks.layer_memory`, the
net's prototxt text as JSON on stdin), so no peak leaks from one case or form into the next. The
child imports numpy, caffe and attention_scale.layers (in every child, whichever form it runs, so
the fixed cost of the imports is not charged to one form), builds the one-layer net, writes random
values into the data AND the diff of every blob (Caffe allocates blob memory lazily; touching all of
it in every child keeps that from skewing the comparison), runs forward + backward a few times and
reports its peak resident memory (VmHWM of /proc/self/status, KiB; see _maxrss_kib for why not
ru_maxrss) as one JSON line on stdout.

Per case three children run: the C++ form, the Python form, and a baseline net that has the same
Input blobs and a top blob of the same shape made by one more Input layer, so no layer does any
work. Baseline peak = interpreter + imports + the net's own blobs (data and diff); the extra memory
of a form is its peak minus the baseline peak.
"""

import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field

MEMORY_PASSES = 3  # forward + backward passes per child; the peak is reached on the first
TOP = "out"


# ---------------------------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------------------------


def _maxrss_kib():
    """Peak resident memory of this process image (KiB): VmHWM of /proc/self/status.

    Not getrusage's ru_maxrss: that survives execve and starts at the parent's peak (subprocess
    spawns with vfork, and the kernel records the old image's high-water mark at exec), so the
    child of a benchmark that has already run large nets would report that run's peak. VmHWM
    belongs to the memory map that execve creates fresh."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (the memory benchmark needs Linux)")


def measure_in_this_process(net_text, passes=MEMORY_PASSES, seed=0):
    """Build the net, touch every blob, run it; dict of peaks (KiB) and blob shapes.

    Meant for a fresh process: ru_maxrss is the peak of the whole process so far."""
    import numpy as np

    import caffe
    after_caffe = _maxrss_kib()
    import attention_scale.layers.python_layers  # noqa: F401  (in every child: not a form's cost)
    from attention_scale.pycaffe import net_from_text
    after_imports = _maxrss_kib()

    caffe.set_mode_cpu()
    net = net_from_text(caffe, net_text)
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, blob in net.blobs.items():
        # In place, float32: no temporary array raises the peak.
        rng.standard_normal(dtype=np.float32, out=blob.data)
        rng.standard_normal(dtype=np.float32, out=blob.diff)
        blobs[name] = list(blob.data.shape)
    setup = _maxrss_kib()
    last = len(net.layers) - 1
    for _ in range(passes):
        net._forward(0, last)
        net._backward(last, 0)  # the top diff set above stays; bottom diffs are overwritten
    peak = _maxrss_kib()
    import resource
    return {"ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # for the record
            "after_caffe_kib": after_caffe, "after_imports_kib": after_imports,
            "setup_kib": setup, "peak_kib": peak, "blobs": blobs,
            "blob_bytes": sum(2 * 4 * int(np.prod(shape)) for shape in blobs.values())}


def main():
    spec = json.load(sys.stdin)
    result = measure_in_this_process(spec["net"], spec.get("passes", MEMORY_PASSES),
                                     spec.get("seed", 0))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def measure_net(net_text, passes=MEMORY_PASSES, seed=0, timeout=600):
    """Run measure_in_this_process in a fresh child of this Python; its result dict."""
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    proc = subprocess.run([sys.executable, "-m", "attention_scale.benchmarks.layer_memory"],
                          input=json.dumps({"net": net_text, "passes": passes, "seed": seed}),
                          capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def baseline_text(shapes, top_shape):
    """The same Input blobs and a top blob of top_shape, made by an Input layer: no work."""
    from .common import input_layers_text

    return input_layers_text(dict(shapes, **{TOP: tuple(top_shape)}))


@dataclass
class LayerMemory:
    phase: str
    layer: str
    case: str
    blobs_mib: float  # data + diff of every blob of the net
    baseline_mib: float  # peak RSS of the baseline child
    cpp_extra_mib: float  # C++ form's peak - baseline peak (median over the repeats)
    python_extra_mib: float
    ratio: float  # python / C++ extra; None where the C++ extra is below RESOLUTION_MIB
    baseline_kib: list = field(default_factory=list)  # every child's peak (VmHWM)
    cpp_kib: list = field(default_factory=list)
    python_kib: list = field(default_factory=list)


RESOLUTION_MIB = 1.0  # below this a C++ extra is within a few times the noise: no ratio


def memory_ratio(python_extra_mib, cpp_extra_mib):
    if cpp_extra_mib < RESOLUTION_MIB:
        return None
    return round(python_extra_mib / cpp_extra_mib, 3)


def measure_case(phase, layer_type, label, shapes, param_text, protos, repeats=1,
                 passes=MEMORY_PASSES):
    """Baseline, C++ and Python children for one case, `repeats` rounds; a LayerMemory."""
    from ..nets.convert import convert_text
    from .common import one_layer_net

    cpp_text = one_layer_net(layer_type, shapes, param_text)
    python_text, _ = convert_text(cpp_text, "python", protos)
    peaks = {"baseline": [], "cpp": [], "python": []}
    base_text = None
    blob_bytes = None
    for _ in range(repeats):
        cpp = measure_net(cpp_text, passes)
        python = measure_net(python_text, passes)
        if python["blobs"] != cpp["blobs"]:
            raise AssertionError(f"{label}: the forms' blob shapes differ: "
                                 f"{cpp['blobs']} vs {python['blobs']}")
        if base_text is None:
            base_text = baseline_text(shapes, cpp["blobs"][TOP])
        base = measure_net(base_text, passes)
        if base["blobs"] != cpp["blobs"]:
            raise AssertionError(f"{label}: baseline blobs {base['blobs']} != {cpp['blobs']}")
        blob_bytes = base["blob_bytes"]
        for key, result in (("baseline", base), ("cpp", cpp), ("python", python)):
            peaks[key].append(result["peak_kib"])
    base_kib = statistics.median(peaks["baseline"])
    cpp_extra = (statistics.median(peaks["cpp"]) - base_kib) / 1024
    python_extra = (statistics.median(peaks["python"]) - base_kib) / 1024
    return LayerMemory(phase, layer_type, label, round(blob_bytes / 2**20, 3),
                       round(base_kib / 1024, 3), round(cpp_extra, 3), round(python_extra, 3),
                       memory_ratio(python_extra, cpp_extra),
                       peaks["baseline"], peaks["cpp"], peaks["python"])


def run_memory_benchmarks(phases=("train", "test"), repeats=1, passes=MEMORY_PASSES, progress=True):
    """measure_case for every case of common.LAYER_CASES in the phases; list of LayerMemory."""
    from tqdm import tqdm

    from ..nets.convert import load_protos
    from .common import LAYER_CASES

    protos = load_protos()
    cases = [case for case in LAYER_CASES if case[0] in phases]
    return [measure_case(*case, protos, repeats=repeats, passes=passes)
            for case in tqdm(cases, disable=not progress, desc="memory")]


def memory_data(results, repeats, passes=MEMORY_PASSES):
    ratios = [m.ratio for m in results if m.ratio is not None]
    return {"method": "peak resident memory (VmHWM) of a fresh child per form and case, minus that "
                      "of a baseline child with the same blobs and no work layer; median over the "
                      "repeats",
            "repeats": repeats, "passes": passes, "resolution_mib": RESOLUTION_MIB,
            "max_spread_mib": round(_max_spread_mib(results), 3),
            "results": [asdict(m) for m in results],
            "ratio_python_over_cpp_max": max(ratios) if ratios else None}


def _max_spread_mib(results):
    return max((max(peaks) - min(peaks)) / 1024 for m in results
               for peaks in (m.baseline_kib, m.cpp_kib, m.python_kib))


def memory_markdown(results, repeats, passes=MEMORY_PASSES):
    rounds = (f"median of {repeats} rounds of the three children" if repeats > 1
              else "one round of the three children")
    spread = (f"the largest spread (max - min) of one form's peaks over the rounds was "
              f"{_max_spread_mib(results):.2f} MiB in this run" if repeats > 1
              else "run with `--memory-repeats 3` to see the spread of the peaks")
    lines = [
        "## Peak memory beyond the net's blobs (CPU, forward + backward)",
        "",
        "Every number comes from a fresh child process (`python -m attention_scale.benchmarks.layer_memory`),",
        "so no peak leaks between cases or forms. The child imports numpy, caffe and",
        "`attention_scale.layers` (in every child, whichever form it runs), builds the one-layer net",
        "(the same prototxt text as the timing above), writes random values into the data and the",
        "diff of every blob (Caffe allocates blob memory lazily), runs forward + backward "
        f"{passes} times and",
        "reports its peak resident memory, `VmHWM` of `/proc/self/status`. Not",
        "`getrusage(RUSAGE_SELF).ru_maxrss`: that survives `execve`, so a child spawned by this",
        "benchmark, which has already run large nets, would start from the parent's peak; `VmHWM`",
        "belongs to the memory map the exec'd child starts afresh.",
        "",
        "Per case a third child runs a baseline net: the same Input blobs and a top blob of the",
        "layer's top shape made by one more Input layer, no work. Baseline peak = interpreter +",
        "imports + the net's blobs (data and diff). A form's extra = its peak minus the baseline",
        f"peak, all in the same run ({rounds}). That is what the layer itself",
        "needs at its peak: internal buffers (the C++ ScaleInterp's intermediate pass, the MAX index",
        "map) and, for the Python form, numpy temporaries, cached interpolation matrices and, where it",
        "calls BLAS (ScaleInterp's matrix products), the part of OpenBLAS's work buffer it touches.",
        "Memory ratio = Python extra / C++ extra; none is formed where the C++ extra is below",
        f"{RESOLUTION_MIB} MiB (that layer needs no buffer of its own, and the ratio would be noise",
        f"over noise). Small negative extras are noise too: {spread}.",
        "",
        "| phase | layer | case | blobs MiB | baseline peak MiB | C++ extra MiB | Python extra MiB "
        "| memory ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        ratio = "- (C++ ~ 0)" if m.ratio is None else f"{m.ratio:.2f}"
        lines.append(f"| {m.phase} | {m.layer} | {m.case} | {m.blobs_mib:.1f} | {m.baseline_mib:.1f} "
                     f"| {m.cpp_extra_mib:.2f} | {m.python_extra_mib:.2f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
