"""The speed benchmark of issue 11 end to end (tools/benchmark_speed.py is its command line)."""

import dataclasses
import json
import os
import sys
from pathlib import Path

from .. import caffe_runtime
from . import (speed_gpu_report, speed_merge, speed_report, speed_resize, speed_scaling,
               speed_timing)
from .common import environment, publish_report


def _log(message):
    print(f"benchmark_speed: {message}", file=sys.stderr, flush=True)


def merge_cases(args, gpu=False):
    if not args.merge_case:
        return speed_merge.MERGE_CASES + (speed_merge.GPU_EXTRA_CASES if gpu else [])
    return [(f"--merge-case {k + 1}", n, c, h, w, s)
            for k, (n, c, h, w, s) in enumerate(args.merge_case)]


def resize_cases(args):
    if not args.resize_case:
        return speed_resize.resize_cases()
    return [(f"{c} x {i}x{i} -> {o}x{o}", c, i, o) for c, i, o in args.resize_case]


def scaling_note(features, prefix, threads, results=()):
    where = f"Caffe in {prefix}" if prefix else "this run's pycaffe"
    if not features["openmp"]:
        return (f"Not measured: {where} was built without OpenMP (libcaffe does not load "
                "libgomp). Build one with `python3 tools/build_caffe.py --openmp` and pass its "
                "prefix (`--print-env` prints it) as `--openmp-prefix`.")
    counts = ", ".join(map(str, threads))
    differ = [r.label for r in results if not r.bit_identical]
    bits = ("Results bit-identical: the SHA-256 of the top and every input diff is the same at "
            "every thread count." if not differ else
            f"Results NOT bit-identical across thread counts for: {', '.join(differ)}.")
    return (f"The fused layers of {where} ({features['libcaffe']}, built with OpenMP) in fresh "
            f"processes with OMP_NUM_THREADS = {counts}, alternating; forward + backward, median. "
            + bits)


def run_gpu(caffe, args, m_cases, r_cases):
    """The GPU part: {"status": None, ...results} or {"status": why it was skipped}."""
    reason = caffe_runtime.gpu_unavailable_reason(args.gpu)
    if reason is not None:
        _log(f"--gpu: skipped: {reason}; the GPU column stays "
             f"'{speed_report.NOT_MEASURED}'")
        return {"status": reason}
    runtime = caffe_runtime.CudaRuntime()
    passes = args.gpu_passes
    caffe.set_device(args.gpu)
    caffe.set_mode_gpu()
    clock = speed_timing.EventClock(runtime)
    try:
        device = runtime.describe(args.gpu)
        _log(f"GPU {args.gpu}: {device}")
        bandwidth = speed_timing.copy_bandwidth(caffe, "gpu", args.bandwidth_mib, args.repeats,
                                                clock=clock, passes=passes)
        merge = (speed_merge.run_merge_benchmarks(caffe, args.repeats, m_cases, "gpu", clock,
                                                  passes=passes)
                 if "merge" in args.only else [])
        resize = (speed_resize.run_resize_benchmarks(caffe, args.repeats, r_cases, "gpu", clock,
                                                     passes=passes)
                  if "resize" in args.only else [])
    finally:
        clock.close()
        caffe.set_mode_cpu()
    return {"status": None, "device": device, "passes": passes, "bandwidth": bandwidth,
            "merge": merge, "resize": resize}


def run_gpu_only(caffe, args):
    """--gpu-only: the GPU half alone, written as speed-gpu.md/.json; 1 (nothing written) where
    there is no GPU to run on."""
    gpu = run_gpu(caffe, args, merge_cases(args, gpu=True), resize_cases(args))
    if gpu["status"] is not None:
        _log("--gpu-only: nothing measured, nothing written")
        return 1
    env = environment({"repeats": args.repeats, "gpu_passes": args.gpu_passes,
                       "libcaffe": caffe_runtime.build_features()["libcaffe"]})
    data, markdown = speed_gpu_report.gpu_report(env, gpu)
    publish_report(data, markdown, args.output_dir, speed_gpu_report.STEM,
                   write=not args.no_write)
    return 0


def _from_row(cls, row):
    """A result dataclass from its report row (the row's derived figures left out)."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})


def _scaling_from_row(row):
    # JSON made the thread counts of its dicts strings
    by_threads = {name: {int(t): v for t, v in row.get(name, {}).items()}
                  for name in ("ms", "speedup", "all_ms")}
    return speed_scaling.ScalingResult(row["label"], row["threads"], by_threads["ms"],
                                       by_threads["speedup"], row["bit_identical"],
                                       by_threads["all_ms"])


class StoredRunError(Exception):
    """speed.json missing, unreadable or not a report of this benchmark."""


def load_stored_run(output_dir):
    """The arguments of speed_report.report for the run stored in output_dir/speed.json:
    (env, bandwidth, merge, resize, scaling, note, gpu)."""
    path = Path(output_dir) / "speed.json"
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise StoredRunError(f"{path}: cannot be read ({error.strerror or error}); run the "
                             "benchmark there first") from None
    except ValueError as error:
        raise StoredRunError(f"{path}: not JSON ({error})") from None
    try:
        bandwidth = speed_timing.Bandwidth(**data["bandwidth"])
        merge = [_from_row(speed_merge.MergeResult, r) for r in data["merge"]]
        resize = [_from_row(speed_resize.ResizeResult, r) for r in data["resize"]]
        scaling = [_scaling_from_row(r) for r in data["scaling"]["results"]] or None
        gpu = {"status": data["gpu"]["reason"]}
        if data["gpu"]["status"] == "measured":
            gpu_bw = data["gpu"]["bandwidth"]
            gpu = {"status": None, "bandwidth": speed_timing.Bandwidth(**gpu_bw),
                   "merge": [_from_row(speed_merge.MergeResult, r)
                             for r in data["gpu"]["merge"]],
                   "resize": [_from_row(speed_resize.ResizeResult, r)
                              for r in data["gpu"]["resize"]]}
        return (data["environment"], bandwidth, merge, resize, scaling,
                data["scaling"]["note"], gpu)
    except (KeyError, TypeError, AttributeError) as error:
        raise StoredRunError(f"{path}: not a report of tools/benchmark_speed.py (missing or "
                             f"malformed {error})") from None


def render(args):
    """--render: speed.md and .json again from the stored speed.json, nothing measured, quoting
    the speed-gpu.json beside it as it is now (after a --gpu-only run on another machine)."""
    try:
        env, bandwidth, merge, resize, scaling, note, gpu = load_stored_run(args.output_dir)
    except StoredRunError as error:
        _log(f"--render: {error}")
        return 1
    data, markdown = speed_report.report(env, bandwidth, merge, resize, scaling, note, gpu,
                                         speed_gpu_report.load_gpu_summary(args.output_dir))
    publish_report(data, markdown, args.output_dir, "speed", write=not args.no_write)
    return 0


def _load_average():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run(args):
    if args.render:
        return render(args)
    import caffe

    caffe.set_mode_cpu()
    if args.gpu_only:
        return run_gpu_only(caffe, args)
    load_start = _load_average()  # the report's own figure is taken at the end
    features = caffe_runtime.build_features()
    m_cases, r_cases = merge_cases(args), resize_cases(args)
    _log(f"libcaffe: {features['libcaffe']} (OpenMP: {features['openmp']}, "
         f"CUDA: {features['cuda']})")
    before = speed_timing.copy_bandwidth(caffe, "cpu", args.bandwidth_mib, args.repeats)
    merge = (speed_merge.run_merge_benchmarks(caffe, args.repeats, m_cases,
                                              memory_repeats=args.memory_repeats)
             if "merge" in args.only else [])
    resize = (speed_resize.run_resize_benchmarks(caffe, args.repeats, r_cases)
              if "resize" in args.only else [])
    after = speed_timing.copy_bandwidth(caffe, "cpu", args.bandwidth_mib, args.repeats)
    # The higher of the two: the fractions are then the smaller (conservative).
    bandwidth = max(before, after, key=lambda b: b.reference_gbs)

    scaling, note = None, None
    if not args.no_scaling:
        prefix = str(args.openmp_prefix) if args.openmp_prefix else None
        cases = speed_scaling.scaling_cases(m_cases if "merge" in args.only else [],
                                            r_cases if "resize" in args.only else [])
        child_features = features
        if prefix:
            child_features = speed_scaling.run_child({"cases": [], "repeats": 1}, 1,
                                                     prefix)["features"]
        if child_features["openmp"]:
            child_features, scaling = speed_scaling.run_scaling(
                cases, tuple(args.threads), args.scaling_rounds, max(3, args.repeats // 2),
                prefix)
        note = scaling_note(child_features, prefix, args.threads, scaling or ())

    gpu = (run_gpu(caffe, args, merge_cases(args, gpu=True), r_cases)
           if args.gpu is not None else None)
    env = environment({"repeats": args.repeats, "libcaffe_openmp": features["openmp"],
                       "libcaffe_cuda": features["cuda"],
                       "load_average_1min_start": load_start,
                       # how the OpenMP children's idle threads wait (libgomp's default: unset)
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                       "copy_bandwidth_gbs_before_after": [round(before.reference_gbs, 2),
                                                           round(after.reference_gbs, 2)]})
    data, markdown = speed_report.report(env, bandwidth, merge, resize, scaling, note, gpu,
                                         speed_gpu_report.load_gpu_summary(args.output_dir))
    publish_report(data, markdown, args.output_dir, "speed", write=not args.no_write)
    return 0
