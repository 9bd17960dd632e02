"""OpenMP scaling of the C++ layers: the same cases timed in fresh child processes with
OMP_NUM_THREADS = 1, 2, ..., alternating between the thread counts round by round, with the
results' SHA-256 compared across thread counts (the parallel loops split work, never sums, so the
bits must not change).

A child is `python -m attention_scale.benchmarks.speed_scaling` with a JSON spec on stdin; it
prints one JSON line. OMP_NUM_THREADS is read when libgomp loads, hence a process per count.
`caffe_prefix` points the children at another Caffe install (its python/ goes first on
PYTHONPATH), e.g. one built with `tools/build_caffe.py --openmp`, so that the main benchmark can
run on the default build and the scaling on the OpenMP one in the same run.
"""

import hashlib
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field


# ---------------------------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------------------------


def _digest(results):
    h = hashlib.sha256()
    for key in sorted(results):
        h.update(key.encode() + results[key].tobytes())
    return h.hexdigest()


def child_main(spec):
    import caffe

    from .speed_merge import merge_inputs
    from .speed_nets import merge_net, merge_shapes, resize_net
    from ..caffe_runtime import build_features
    from ..pycaffe import net_from_text
    from .speed_timing import NetRun, median, time_rounds

    import numpy as np

    caffe.set_mode_cpu()
    out = {"features": build_features(), "threads": os.environ.get("OMP_NUM_THREADS"),
           "cases": []}
    for case in spec["cases"]:
        if case["kind"] == "merge":
            num, channels, height, width, scales = case["dims"]
            inputs = merge_inputs(merge_shapes(*case["dims"]))
            top_shape = (num, channels, height, width)
            text = merge_net("fused", *case["dims"])
        else:
            channels, in_side, out_side = case["dims"]
            rng = np.random.default_rng(0)
            inputs = {"x": rng.standard_normal((1, channels, in_side, in_side), dtype=np.float32)}
            top_shape = (1, channels, out_side, out_side)
            text = resize_net(1, channels, (in_side, in_side), (out_side, out_side))
        top_diff = np.random.default_rng(1).standard_normal(top_shape).astype(np.float32)
        run = NetRun(net_from_text(caffe, text), inputs, top_diff)
        time_rounds([run], spec["repeats"], warmup=1)
        out["cases"].append({"label": case["label"],
                             "ms": median([f + b for f, b in zip(run.forward_ms,
                                                                  run.backward_ms)]),
                             "digest": _digest(run.results())})
        del run
    return out


def main():
    spec = json.load(sys.stdin)
    sys.stdout.write("\n" + json.dumps(child_main(spec)) + "\n")


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


@dataclass
class ScalingResult:
    label: str
    threads: list
    ms: dict  # threads -> median over rounds of the child's median ms (forward + backward)
    speedup: dict  # threads -> ms[threads[0]] / ms[threads]
    bit_identical: bool  # the same results digest at every thread count and round
    all_ms: dict = field(default_factory=dict)


def _child_env(threads, caffe_prefix):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = "1"  # only the layers' own threads differ
    env.setdefault("GLOG_minloglevel", "2")
    if caffe_prefix:
        python_dir = os.path.join(caffe_prefix, "python")
        env["PYTHONPATH"] = python_dir + (os.pathsep + env["PYTHONPATH"]
                                          if env.get("PYTHONPATH") else "")
    return env


def run_child(spec, threads, caffe_prefix=None, timeout=3600):
    proc = subprocess.run([sys.executable, "-m", "attention_scale.benchmarks.speed_scaling"],
                          input=json.dumps(spec), capture_output=True, text=True,
                          env=_child_env(threads, caffe_prefix), timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scaling child (OMP_NUM_THREADS={threads}) failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def scaling_cases(merge_cases, resize_cases):
    """Child case specs from speed_merge.MERGE_CASES-style and speed_resize.resize_cases()-style
    tuples."""
    cases = [{"kind": "merge", "label": f"softmax + merge {label}", "dims": list(dims)}
             for label, *dims in merge_cases]
    cases += [{"kind": "resize", "label": f"ScaleInterp {label}", "dims": [c, i, o]}
              for label, c, i, o in resize_cases]
    return cases


def run_scaling(cases, threads=(1, 2), rounds=2, repeats=5, caffe_prefix=None, progress=True):
    """(features of the children's libcaffe, [ScalingResult]); rounds alternate the counts."""
    from tqdm import tqdm

    spec = {"cases": cases, "repeats": repeats}
    runs = {t: [] for t in threads}
    jobs = [(r, t) for r in range(rounds) for t in threads]
    for _, t in tqdm(jobs, desc="OpenMP scaling", disable=not progress):
        runs[t].append(run_child(spec, t, caffe_prefix))
    features = runs[threads[0]][0]["features"]
    results = []
    for k, case in enumerate(cases):
        ms = {t: statistics.median(run["cases"][k]["ms"] for run in runs[t]) for t in threads}
        digests = {run["cases"][k]["digest"] for t in threads for run in runs[t]}
        results.append(ScalingResult(
            case["label"], list(threads), ms, {t: ms[threads[0]] / ms[t] for t in threads},
            len(digests) == 1,
            {t: [round(run["cases"][k]["ms"], 3) for run in runs[t]] for t in threads}))
    return features, results


if __name__ == "__main__":
    main()
