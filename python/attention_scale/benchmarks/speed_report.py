"""The speed benchmark's report: ratios against the targets of issue 11, as markdown and JSON."""

import json
from dataclasses import asdict

# Issue 11's targets.
MERGE_SPEEDUP_TARGET = 3.0  # stock composition time / fused time, forward + backward
MERGE_BANDWIDTH_TARGET = 0.5  # of the copy bandwidth, at 1 x 21 x 513 x 513 (CPU)
GPU_BANDWIDTH_TARGET = 0.7  # of cudaMemcpy device to device
RESIZE_CV2_TARGET = 1.5  # ScaleInterp forward / cv2.resize
BANDWIDTH_TARGET_CASE = "test S=3"

NOT_MEASURED = "not yet measured"


def mark(ok):
    return "yes" if ok else "**no**"


def _mib(nbytes):
    return nbytes / 2**20


def format_ms(value):
    """Milliseconds to three significant digits or so."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def merge_row_data(result, bandwidth_gbs):
    data = asdict(result)
    gbs = result.fused_gbs()
    data.update({"fused_ms": result.fused_ms, "stock_ms": result.stock_ms,
                 "speedup": result.speedup, "fused_gbs": gbs,
                 "fraction_of_copy_bandwidth": gbs / bandwidth_gbs,
                 "intermediate_ratio": result.fused_intermediate_bytes
                 / result.stock_intermediate_bytes})
    return data


def resize_row_data(result, bandwidth_gbs):
    data = asdict(result)
    data.update({
        "forward_over_cv2": result.forward_over_cv2,
        "forward_backward_ms": result.forward_backward_ms,
        "forward_fraction_of_copy_bandwidth":
            result.forward_bytes / result.forward_ms / 1e6 / bandwidth_gbs,
        "forward_backward_fraction_of_copy_bandwidth":
            (result.forward_bytes + result.backward_bytes) / result.forward_backward_ms / 1e6
            / bandwidth_gbs,
        "cv2_fraction_of_copy_bandwidth":
            result.forward_bytes / result.cv2_ms / 1e6 / bandwidth_gbs if result.cv2_ms else None,
    })
    return data


def targets(merge, resize, bandwidth, gpu_merge=None, gpu_bandwidth=None, gpu_summary=None):
    """[(target, worst measured value, met)] of issue 11 for what this run measured."""
    rows = []
    if merge:
        worst = min(merge, key=lambda r: r.speedup)
        rows.append((f"softmax + merge >= {MERGE_SPEEDUP_TARGET:g}x faster than the stock "
                     "composition, forward + backward, every size (CPU, 1 thread)",
                     f"{worst.speedup:.2f}x ({worst.case})", worst.speedup >= MERGE_SPEEDUP_TARGET))
        for r in merge:
            if r.case == BANDWIDTH_TARGET_CASE:
                fraction = r.fused_gbs() / bandwidth.reference_gbs
                rows.append((f"softmax + merge >= {MERGE_BANDWIDTH_TARGET:.0%} of the copy "
                             f"bandwidth at 1x21x513x513 (CPU, 1 thread)",
                             f"{fraction:.0%}", fraction >= MERGE_BANDWIDTH_TARGET))
        worst_mem = max(merge, key=lambda r: r.fused_intermediate_bytes
                        / r.stock_intermediate_bytes * r.shape[4])
        ratio = worst_mem.fused_intermediate_bytes / worst_mem.stock_intermediate_bytes
        rows.append(("extra memory of softmax + merge <= 1/S of the composition's",
                     f"{ratio:.3f} = 1/{1 / ratio:.0f} at S={worst_mem.shape[4]} "
                     f"({worst_mem.case})", ratio <= 1 / worst_mem.shape[4]))
    measured = [r for r in resize if r.cv2_ms]
    if measured:
        worst = max(measured, key=lambda r: r.forward_over_cv2)
        rows.append((f"ScaleInterp forward within {RESIZE_CV2_TARGET:g}x of cv2.resize, every "
                     "size (CPU, 1 thread)", f"{worst.forward_over_cv2:.2f}x ({worst.case})",
                     worst.forward_over_cv2 <= RESIZE_CV2_TARGET))
    if gpu_merge:
        worst = min(gpu_merge, key=lambda r: r.fused_gbs())
        fraction = worst.fused_gbs() / gpu_bandwidth.reference_gbs
        rows.append((f"GPU kernels >= {GPU_BANDWIDTH_TARGET:.0%} of cudaMemcpy device to device "
                     "(softmax + merge, worst size)", f"{fraction:.0%} ({worst.case})",
                     fraction >= GPU_BANDWIDTH_TARGET))
    elif gpu_summary and gpu_summary["targets"]:
        name = gpu_summary["device"].get("name", "a GPU")
        rows += [(t["target"], f"{t['measured']} ({name}, [{gpu_summary['file']}]"
                  f"({gpu_summary['file']}))", t["met"]) for t in gpu_summary["targets"]]
    else:
        rows.append((f"GPU kernels >= {GPU_BANDWIDTH_TARGET:.0%} of cudaMemcpy device to device",
                     NOT_MEASURED, None))
    return rows


def report(env, bandwidth, merge, resize, scaling=None, scaling_note=None, gpu=None,
           gpu_summary=None):
    """(json-ready dict, markdown). gpu: {"status": reason or None, "bandwidth": Bandwidth,
    "merge": [MergeResult], "resize": [ResizeResult]} or None (not asked for); gpu_summary:
    speed_gpu_report.load_gpu_summary of a separate --gpu-only run, quoted when this run
    measured no GPU."""
    bw = bandwidth.reference_gbs
    gpu = gpu or {"status": "not asked for (--gpu)"}
    gpu_measured = gpu.get("status") is None
    target_rows = targets(merge, resize, bandwidth,
                          gpu.get("merge") if gpu_measured else None,
                          gpu.get("bandwidth") if gpu_measured else None,
                          None if gpu_measured else gpu_summary)
    data = {
        "environment": env,
        "bandwidth": asdict(bandwidth),
        "merge": [merge_row_data(r, bw) for r in merge],
        "resize": [resize_row_data(r, bw) for r in resize],
        "scaling": {"note": scaling_note,
                    "results": [asdict(s) for s in scaling] if scaling else []},
        "gpu": {"status": NOT_MEASURED if not gpu_measured else "measured",
                "reason": gpu.get("status")},
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in target_rows],
    }
    if gpu_measured:
        gbw = gpu["bandwidth"].reference_gbs
        data["gpu"].update({"bandwidth": asdict(gpu["bandwidth"]),
                            "merge": [merge_row_data(r, gbw) for r in gpu["merge"]],
                            "resize": [resize_row_data(r, gbw) for r in gpu["resize"]]})

    lines = [
        "# Speed of the layers against what users would otherwise write (issue 11)",
        "",
        "Generated by `tools/benchmark_speed.py`. Every ratio compares contenders measured in the",
        "same run. After two untimed warm-up runs each, the contenders take turns in rounds: in",
        "each round a contender runs once \"cold\" (right after the other contender, so from the",
        "caches that one left) and then several times back to back \"warm\" (each run from the",
        "caches its own previous run left, as repeated runs of a net). Times are medians of the",
        "warm runs (the targets) and, where shown, of the cold runs; alternating the rounds makes a",
        "change of the machine's load hit every contender alike. CPU: one thread (OpenBLAS, OpenMP",
        "and OpenCV), unless a table says otherwise.",
        "",
        f"Environment: {json.dumps(env)}",
        "",
        "## Targets",
        "",
        "| target | measured (worst case) | met |",
        "| --- | --- | --- |",
    ]
    for target, measured, ok in target_rows:
        lines.append(f"| {target} | {measured} | {NOT_MEASURED if ok is None else mark(ok)} |")

    lines += [
        "",
        "## Copy bandwidth (the memory-bound reference)",
        "",
        "A Power layer with its defaults, whose forward is one `caffe_copy` (memcpy on the CPU,",
        "`cudaMemcpy` device to device on a GPU), of a blob far larger than the caches; bandwidth =",
        "2 x bytes (each byte read once and written once) / median time.",
        "",
        "| device | MiB | Caffe copy GB/s | numpy copy GB/s |",
        "| --- | ---: | ---: | ---: |",
        f"| CPU | {bandwidth.mib:g} | {bandwidth.caffe_copy_gbs:.2f} | "
        f"{bandwidth.numpy_copy_gbs:.2f} |" if bandwidth.numpy_copy_gbs else
        f"| CPU | {bandwidth.mib:g} | {bandwidth.caffe_copy_gbs:.2f} | - |",
    ]
    summary = None if gpu_measured else gpu_summary
    if gpu_measured:
        g = gpu["bandwidth"]
        lines.append(f"| GPU | {g.mib:g} | {g.caffe_copy_gbs:.1f} | - |")
    elif summary:
        g = summary["bandwidth"]
        lines.append(f"| GPU ({summary['device'].get('name', 'a GPU')}, [{summary['file']}]"
                     f"({summary['file']})) | {g['mib']:g} | {g['caffe_copy_gbs']:.1f} | - |")
    else:
        lines.append(f"| GPU | - | {NOT_MEASURED} | - |")

    lines += _merge_tables(merge, bw, gpu if gpu_measured else None, summary)
    lines += _resize_tables(resize, bw, gpu if gpu_measured else None, summary)
    lines += _scaling_table(scaling, scaling_note)
    if not gpu_measured and gpu_summary:
        name = gpu_summary["device"].get("name", "a GPU")
        data["gpu"]["separate_run"] = {k: gpu_summary[k] for k in ("device", "targets", "file")}
        lines += ["", "## GPU", "", f"GPU column: not measured in this run ({gpu.get('status')}); "
                  f"measured separately on {name} with `--gpu-only`: "
                  f"[{gpu_summary['file']}]({gpu_summary['file']})."]
    elif not gpu_measured:
        lines += ["", "## GPU", "", f"GPU column: {NOT_MEASURED} ({gpu.get('status')})."]
    return data, "\n".join(lines) + "\n"


def _gpu_cell(gpu, key, case, fmt, summary=None, summary_fmt=None):
    """A GPU column's cell: from this run's GPU results, else from a separate --gpu-only run's
    rows (summary), else "not yet measured"."""
    if gpu is None:
        if summary and case in summary[key]:
            return summary_fmt(summary[key][case])
        return NOT_MEASURED
    for r in gpu[key]:
        if r.case == case:
            return fmt(r)
    return "-"


def _merge_tables(merge, bw, gpu, summary=None):
    if not merge:
        return []
    lines = [
        "",
        "## Softmax + merge (equations (1)-(2)) against the stock-Caffe composition",
        "",
        "Fused: `SoftmaxOverScales` -> `WeightedScaleSum` (ATTENTION). Stock: `Softmax` (axis 1) ->",
        "`Slice` (axis 1) -> `Tile` (C times) -> `Eltwise PROD` per scale -> `Eltwise SUM`. Both are",
        "real Caffe nets on the same inputs (logits h ~ N(0, 2), score maps ~ N(0, 1)) and top diff;",
        "forward + backward of the whole net. Max rel. diff: the largest difference between the",
        "two nets' top and input diffs, over the largest magnitude of that array.",
        "",
        "| case | N, C, H x W, S | fused fwd ms | fused bwd ms | fused ms | stock ms "
        f"| stock / fused | >= {MERGE_SPEEDUP_TARGET:g}x | cold: fused ms | cold: stock / fused "
        "| max rel. diff | repeats bit-identical | GPU stock / fused |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in merge:
        n, c, h, w, s = r.shape
        gpu_cell = _gpu_cell(gpu, "merge", r.case, lambda g: f"{g.speedup:.2f}", summary,
                             lambda g: f"{g['speedup']:.2f}")
        lines.append(
            f"| {r.case} | {n}, {c}, {h}x{w}, {s} | {format_ms(r.fused_forward_ms)} | "
            f"{format_ms(r.fused_backward_ms)} | {format_ms(r.fused_ms)} | "
            f"{format_ms(r.stock_ms)} | {r.speedup:.2f} | "
            f"{mark(r.speedup >= MERGE_SPEEDUP_TARGET)} | "
            f"{format_ms(r.fused_cold_ms)} | {r.cold_speedup:.2f} | {r.max_rel_diff:.1e} | "
            f"{'yes' if r.bit_identical_repeats else '**no**'} | {gpu_cell} |")
    lines += [
        "",
        "### Bytes moved against the copy bandwidth",
        "",
        "The least the two layers must move, forward + backward (float32, P = N H W pixels):",
        "softmax forward reads h and writes w (2 S P); merge forward reads f^1..f^S and w, writes g",
        "(S C P + S P + C P); merge backward reads dg, w, f^1..f^S and writes df^1..df^S and dw",
        "(C P + S P + 2 S C P + S P); softmax backward reads w, dw and writes dh (3 S P): in all",
        "4 (3 S C + 2 C + 8 S) P bytes. Fraction = (those bytes / fused time) / copy bandwidth. The",
        "training sizes (about 1.4 MB per score map) partly stay in the caches, so their fraction",
        "can pass what DRAM allows; the bound that matters is the full-resolution case.",
        "",
        "| case | min. MB moved | fused GB/s | of copy bandwidth | GPU of cudaMemcpy |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in merge:
        gbs = r.fused_gbs()
        target = ""
        if r.case == BANDWIDTH_TARGET_CASE:
            target = f" ({mark(gbs / bw >= MERGE_BANDWIDTH_TARGET)} >= " \
                     f"{MERGE_BANDWIDTH_TARGET:.0%})"
        gpu_cell = _gpu_cell(gpu, "merge", r.case,
                             lambda g: f"{g.fused_gbs() / gpu['bandwidth'].reference_gbs:.0%}",
                             summary, lambda g: f"{g['fraction_of_copy_bandwidth']:.0%}")
        lines.append(f"| {r.case} | {r.bytes_min / 1e6:.1f} | {gbs:.2f} | {gbs / bw:.0%}{target} "
                     f"| {gpu_cell} |")
    lines += [
        "",
        "### Extra memory",
        "",
        "Counted: data + diff of every blob between the inputs and the top (fused: the weights w;",
        "stock: w, its S slices, S tiled copies and S products). Measured: peak resident memory",
        "(VmHWM) of a fresh child running the net, minus that of a baseline child with the same",
        "inputs and top and no layers (`attention_scale.benchmarks.layer_memory`), which adds the",
        "layers' internal buffers (Caffe's Softmax keeps an N x 1 x H x W scale buffer).",
        "",
        "| case | fused MiB | stock MiB | fused / stock | <= 1/S | measured fused MiB "
        "| measured stock MiB |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in merge:
        ratio = r.fused_intermediate_bytes / r.stock_intermediate_bytes
        mem = r.memory or {}
        measured = (f"{mem['fused_extra_mib']:.1f} | {mem['stock_extra_mib']:.1f}" if mem
                    else "- | -")
        lines.append(f"| {r.case} | {_mib(r.fused_intermediate_bytes):.2f} | "
                     f"{_mib(r.stock_intermediate_bytes):.2f} | {ratio:.3f} | "
                     f"{mark(ratio <= 1 / r.shape[4])} | {measured} |")
    return lines


def _resize_tables(resize, bw, gpu, summary=None):
    if not resize:
        return []
    lines = [
        "",
        "## ScaleInterp against cv2.resize",
        "",
        "ScaleInterp (bilinear, DeepLab's corner-aligned grid) as a one-layer Caffe net on 1 x C",
        "planes; `cv2.resize` (INTER_LINEAR, `cv2.setNumThreads(1)`) called plane by plane into a",
        "preallocated output, in the same rounds. cv2.resize samples the half-pixel grid, so its",
        "values differ (last column); it does the same work at the same sizes. ScaleInterp's values",
        "are checked against a float64 numpy resize on the corner-aligned grid (numpy diff) and",
        "against `cv2.warpAffine` with the exact corner-aligned map (diff in units of the input's",
        "largest neighbour step; OpenCV may round sample positions to 1/32 pixel, so up to 1/32 is",
        "agreement), on the first planes of each stack.",
        "",
        "| case (C x in -> out) | fwd ms | cv2.resize ms | fwd / cv2 "
        f"| <= {RESIZE_CV2_TARGET:g}x | cold: fwd / cv2 | fwd + bwd ms | (fwd + bwd) / cv2 "
        "| numpy diff | warpAffine diff (steps) | cv2.resize diff | GPU fwd ms |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in resize:
        cv2_cells = (f"{format_ms(r.cv2_ms)} | {r.forward_over_cv2:.2f} | "
                     f"{mark(r.forward_over_cv2 <= RESIZE_CV2_TARGET)} | "
                     f"{r.cold_forward_ms / r.cold_cv2_ms:.2f}" if r.cv2_ms
                     else "- | - | - | -")
        fb_cv2 = f"{r.forward_backward_ms / r.cv2_ms:.2f}" if r.cv2_ms else "-"
        warp = f"{r.warp_affine_max_diff_steps:.1e}" if r.warp_affine_max_diff_steps is not None \
            else "-"
        cvd = f"{r.cv2_resize_max_abs_diff:.2f}" if r.cv2_resize_max_abs_diff is not None else "-"
        gpu_cell = _gpu_cell(gpu, "resize", r.case, lambda g: f"{g.forward_ms:.3f}",
                             summary, lambda g: f"{g['forward_ms']:.3f}")
        lines.append(f"| {r.case} | {format_ms(r.forward_ms)} | {cv2_cells} | "
                     f"{format_ms(r.forward_backward_ms)} | {fb_cv2} | "
                     f"{r.numpy_max_abs_diff:.1e} | {warp} | {cvd} | {gpu_cell} |")
    lines += [
        "",
        "### Bytes moved against the copy bandwidth",
        "",
        "Forward: the input rows some output reads (whole rows) + the output; backward: the top",
        "diff + the whole bottom diff (float32). The 21-plane stacks (at most 22 MB) largely fit",
        "in the caches; the 1024-plane ones (up to 1.1 GB) do not.",
        "",
        "| case | fwd MB | bwd MB | fwd of copy bw | fwd + bwd of copy bw | cv2.resize of copy bw |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in resize:
        fwd = r.forward_bytes / r.forward_ms / 1e6 / bw
        both = (r.forward_bytes + r.backward_bytes) / r.forward_backward_ms / 1e6 / bw
        cv = f"{r.forward_bytes / r.cv2_ms / 1e6 / bw:.0%}" if r.cv2_ms else "-"
        lines.append(f"| {r.case} | {r.forward_bytes / 1e6:.1f} | {r.backward_bytes / 1e6:.1f} | "
                     f"{fwd:.0%} | {both:.0%} | {cv} |")
    return lines


def _scaling_table(scaling, note):
    lines = ["", "## OpenMP scaling (CPU)", ""]
    if note:
        lines += [note, ""]
    if not scaling:
        return lines
    threads = scaling[0].threads
    head = " | ".join(f"{t} thread{'s' if t > 1 else ''} ms" for t in threads)
    speed = " | ".join(f"speedup x{t}" for t in threads[1:])
    lines += [f"| case | {head} | {speed} | results bit-identical |",
              "| --- | " + " | ".join("---:" for _ in threads) + " | "
              + " | ".join("---:" for _ in threads[1:]) + " | --- |"]
    for s in scaling:
        times = " | ".join(f"{s.ms[t]:.2f}" for t in threads)
        ups = " | ".join(f"{s.speedup[t]:.2f}" for t in threads[1:])
        lines.append(f"| {s.label} | {times} | {ups} | {'yes' if s.bit_identical else '**no**'} |")
    return lines
