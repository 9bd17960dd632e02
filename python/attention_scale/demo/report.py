"""The demo's results over variants and seeds: one JSON-ready dict, a markdown table, and the
paper's ordering checked against the numbers (seed by seed, not only on the means).

Every number here is read from the runs' train.json and tools/test_voc.py's metrics.json; the
verdicts are computed, never written by hand.
"""

from statistics import mean, stdev

from .experiment import DemoConfig

SINGLE, MAX, AVERAGE = "single", "max-esupv", "average-esupv"
ATTENTION_ESUPV, ATTENTION = "attention-esupv", "attention"


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "values": []}
    return {"mean": mean(values), "std": stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def class_groups(config: DemoConfig):
    """[(name, [class names])] of the data set's object groups, e.g. small (texture) classes."""
    groups = []
    for group in config.spec.groups:
        lo, hi = group.size
        groups.append((f"{lo}-{hi} px objects", list(group.classes)))
    return groups


def _group_iou(per_class, names):
    values = [per_class[n] for n in names if per_class.get(n) is not None]
    return mean(values) if values else None


def _run_record(config, job):
    metrics = job.metrics["metrics"]
    per_class = {name: v["iou"] for name, v in metrics["per_class"].items()}
    record = {"seed": job.seed, "mean_iou": metrics["mean_iou"],
              "pixel_accuracy": metrics["pixel_accuracy"], "per_class_iou": per_class,
              "groups": {g: _group_iou(per_class, names) for g, names in class_groups(config)},
              "size_bins": [{"bin": b["bin"], "segments": b["segments"], "mean_iou": b["mean_iou"]}
                            for b in job.metrics["by_object_size"]["bins"]],
              "train_seconds": job.train["seconds"],
              "seconds_per_iteration": job.train["seconds_per_iteration"],
              "resumed_from": job.train.get("resumed_from"),
              "first_loss": job.train["first_loss"], "last_loss": job.train["last_loss"]}
    if job.metrics.get("branches"):
        record["branches"] = {scale: {"mean_iou": b["mean_iou"],
                                      "per_class_iou": b["per_class_iou"]}
                              for scale, b in job.metrics["branches"].items()}
    if job.metrics.get("attention"):
        record["attention"] = job.metrics["attention"]
    return record


def _mean_lists(lists):
    """Element-wise mean of equally long lists (None where any is None)."""
    if any(x is None for x in lists):
        return None
    return [mean(values) for values in zip(*lists)]


def _mean_attention(summaries):
    """The attention statistics averaged over seeds. Every seed is evaluated on the same images
    and ground truth, so each cell holds the same pixels in every seed and the mean of the
    per-seed means is the mean over all of them."""
    first = summaries[0]
    out = dict(first)
    out["by_size"] = [dict(row, pixel_mean=_mean_lists([s["by_size"][i]["pixel_mean"]
                                                         for s in summaries]),
                           segment_mean=_mean_lists([s["by_size"][i]["segment_mean"]
                                                     for s in summaries]))
                      for i, row in enumerate(first["by_size"])]
    out["by_distance"] = [dict(row, pixel_mean=_mean_lists([s["by_distance"][i]["pixel_mean"]
                                                             for s in summaries]))
                          for i, row in enumerate(first["by_distance"])]
    out["by_size_and_distance"] = [
        [_mean_lists([s["by_size_and_distance"][a][d] for s in summaries])
         for d in range(len(first["by_size_and_distance"][a]))]
        for a in range(len(first["by_size_and_distance"]))]
    out["background"] = dict(first["background"], pixel_mean=_mean_lists(
        [s["background"]["pixel_mean"] for s in summaries]))
    out["seeds_averaged"] = len(summaries)
    return out


def aggregate(config: DemoConfig, jobs, seeds, extra=None, noise=None) -> dict:
    """The results dict (results.json) from the finished jobs (run.JobResult). noise: the
    test set's sampling noise of the claims' differences (run.test_set_noise), or None."""
    variants = []
    for variant in config.variants:
        runs = [_run_record(config, job) for job in jobs if job.variant.key == variant.key]
        runs.sort(key=lambda r: r["seed"])
        entry = {"key": variant.key, "label": variant.label, "merge": variant.merge,
                 "esupv": variant.esupv, "runs": runs,
                 "mean_iou": _stats([r["mean_iou"] for r in runs]),
                 "per_class_iou": {name: _stats([r["per_class_iou"][name] for r in runs])
                                   for name in config.class_names},
                 "groups": {g: _stats([r["groups"][g] for r in runs])
                            for g, _ in class_groups(config)},
                 "size_bins": [dict(bin=b["bin"], segments=b["segments"],
                                    **_stats([r["size_bins"][i]["mean_iou"] for r in runs]))
                               for i, b in enumerate(runs[0]["size_bins"])],
                 "train_seconds": _stats([r["train_seconds"] for r in runs]),
                 "seconds_per_iteration": _stats([r["seconds_per_iteration"] for r in runs])}
        if runs and "branches" in runs[0]:
            entry["branches"] = {
                scale: {"mean_iou": _stats([r["branches"][scale]["mean_iou"] for r in runs]),
                        "per_class_iou": {n: _stats([r["branches"][scale]["per_class_iou"][n]
                                                     for r in runs])
                                          for n in config.class_names}}
                for scale in runs[0]["branches"]}
        if runs and "attention" in runs[0]:
            entry["attention"] = _mean_attention([r["attention"] for r in runs])
        variants.append(entry)
    results = {"seeds": list(seeds), "iterations": config.iterations,
               "val_images": config.num_val, "train_images": config.num_train,
               "classes": config.class_names,
               "groups": {g: names for g, names in class_groups(config)},
               "variants": variants, **(extra or {})}
    if noise is not None:
        results["test_noise"] = noise
    results["claims"] = claims(results)
    return results


# -- the paper's ordering ----------------------------------------------------------------------

def _by_key(results):
    return {v["key"]: v for v in results["variants"]}


def _paired(a, b):
    """Seed-paired differences a - b of mIOU (percentage points)."""
    by_seed = {r["seed"]: r["mean_iou"] for r in b["runs"]}
    # To the tables' 0.01 pp: a smaller difference is a tie, not a win.
    return [round(100 * (r["mean_iou"] - by_seed[r["seed"]]), 2) for r in a["runs"]
            if r["seed"] in by_seed]


def _verdict(diffs, at_least=False):
    """'yes' when every seed agrees, 'no' when none does, else 'mixed'; with at_least, a
    difference of 0 counts as agreeing."""
    if not diffs:
        return "n/a"
    agree = sum(1 for d in diffs if (d >= 0 if at_least else d > 0))
    return "yes" if agree == len(diffs) else "no" if agree == 0 else "mixed"


def pair_name(better, worse):
    """The key of a claim's difference in results["test_noise"]["pairs"]."""
    return f"{better} - {worse}"


def _compare(results, better, worse, claim, at_least=False):
    v = _by_key(results)
    if better not in v or worse not in v:
        return None
    diffs = _paired(v[better], v[worse])
    agree = sum(1 for d in diffs if (d >= 0 if at_least else d > 0))
    spread = stdev(diffs) if len(diffs) > 1 else 0.0
    out = {"claim": claim, "verdict": _verdict(diffs, at_least),
           "difference_pp": {"mean": mean(diffs), "std": spread, "values": diffs},
           "seeds_agreeing": agree, "seeds": len(diffs),
           "detail": f"{v[better]['label']} - {v[worse]['label']}: {mean(diffs):+.2f} pp "
                     f"(seeds: {', '.join(f'{d:+.2f}' for d in diffs)}); holds in {agree} of "
                     f"{len(diffs)} seeds"}
    noise = (results.get("test_noise") or {}).get("pairs", {}).get(pair_name(better, worse))
    if noise:
        intervals = [noise[str(r["seed"])]["difference_interval"] for r in v[better]["runs"]
                     if str(r["seed"]) in noise]
        # Beyond the test set's noise: the whole 95% interval strictly on one side of zero. An
        # interval that touches zero ([0, 0] for identical predictions) is within the noise, for
        # a '>=' claim too: its "yes" rests on the point estimates, not on the intervals.
        clear = sum(1 for lo, hi in intervals if lo > 0)
        against = sum(1 for lo, hi in intervals if hi < 0)
        out["test_intervals_pp"] = [[100 * lo, 100 * hi] for lo, hi in intervals]
        out["seeds_beyond_test_noise"] = clear
        out["seeds_against_beyond_test_noise"] = against
        out["detail"] += ("; test-set 95% interval per seed: "
                          + ", ".join(f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
                                      for lo, hi in intervals)
                          + f" ({noise_count(clear, against, len(intervals))})")
    return out


def noise_count(clear, against, seeds):
    """How many seeds' intervals exclude zero, on either side: both counts, so that a seed
    beyond the noise against a claim is not hidden among the rest."""
    return (f"beyond the test set's noise: {clear} for, {against} against, "
            f"{seeds - clear - against} within the noise, of {seeds} "
            f"seed{'s' if seeds > 1 else ''}")


def _attention_claim(results, key):
    """Holds when scale 1's weight is higher on the smallest populated object-size bin than on
    the largest, and the coarse scale has the larger weight inside the largest objects (their
    deepest populated distance bin), more than at their rim."""
    v = _by_key(results).get(key)
    if v is None or "attention" not in v:
        return None
    att = v["attention"]
    sizes = [(i, row) for i, row in enumerate(att["by_size"]) if row["pixel_mean"] is not None]
    if len(sizes) < 2:
        return None
    (_, small), (large_i, large) = sizes[0], sizes[-1]
    cells = att["by_size_and_distance"][large_i]
    depths = [(d, cell) for d, cell in enumerate(cells) if cell is not None]
    rim, inside = depths[0], depths[-1]
    scales = att["scales"]
    holds_size = small["pixel_mean"][0] > large["pixel_mean"][0]
    holds_depth = inside[1][-1] > 0.5 and inside[1][-1] > rim[1][-1]
    coarse = scales[-1]
    detail = (f"{v['label']}: mean weight of scale {scales[0]} on objects {small['bin']} "
              f"{small['pixel_mean'][0]:.2f}, on objects {large['bin']} "
              f"{large['pixel_mean'][0]:.2f}; inside the largest objects (distance from the edge "
              f"{att['distance_bins'][inside[0]]}) scale {coarse} gets {inside[1][-1]:.2f}, at "
              f"their rim ({att['distance_bins'][rim[0]]}) {rim[1][-1]:.2f}")
    return {"claim": f"{v['label']}: scale {scales[0]} gets the weight on small objects, scale "
                     f"{coarse} on large ones (inside them)",
            "verdict": "yes" if holds_size and holds_depth else "no", "detail": detail,
            "small": small["pixel_mean"], "large": large["pixel_mean"],
            "large_inside": inside[1], "large_rim": rim[1]}


# The claims' differences (better, worse): the paper's ordering.
CLAIM_PAIRS = [(MAX, SINGLE), (AVERAGE, SINGLE), (ATTENTION_ESUPV, SINGLE), (ATTENTION, SINGLE),
               (ATTENTION_ESUPV, MAX), (ATTENTION_ESUPV, AVERAGE), (ATTENTION_ESUPV, ATTENTION)]


def claims(results) -> list:
    out = []
    for key in (MAX, AVERAGE, ATTENTION_ESUPV, ATTENTION):
        label = _by_key(results).get(key, {}).get("label", key)
        out.append(_compare(results, key, SINGLE, f"{label} > single scale"))
    out.append(_compare(results, ATTENTION_ESUPV, MAX, "ATTENTION + E-Supv >= MAX + E-Supv",
                        at_least=True))
    out.append(_compare(results, ATTENTION_ESUPV, AVERAGE,
                        "ATTENTION + E-Supv >= AVERAGE + E-Supv", at_least=True))
    out.append(_compare(results, ATTENTION_ESUPV, ATTENTION, "E-Supv helps ATTENTION"))
    out.append(_attention_claim(results, ATTENTION_ESUPV))
    out.append(_attention_claim(results, ATTENTION))
    return [c for c in out if c is not None]


# -- markdown ----------------------------------------------------------------------------------

def _pct(stats, spread=True):
    if stats is None or stats["mean"] is None:
        return "n/a"
    text = f"{100 * stats['mean']:.2f}"
    if spread and len(stats["values"]) > 1:
        text += f" ± {100 * stats['std']:.2f}"
    return text


def _weights(values):
    return "n/a" if values is None else " / ".join(f"{w:.2f}" for w in values)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results) -> str:
    seeds = results["seeds"]
    n = len(seeds)
    spread = "mean ± std over seeds" if n > 1 else "one seed"
    parts = [f"# Attention to Scale: synthetic demo results\n\n"
             f"{results['train_images']} training and {results['val_images']} validation "
             f"images; {results['iterations']} iterations per net; seeds "
             f"{', '.join(map(str, seeds))} ({spread}). mIOU from one confusion matrix over the "
             f"validation set (tools/test_voc.py's evaluation)."]
    if results.get("wall_seconds") is not None:
        env = results.get("environment", {})
        parts[0] += (f" Whole run: {results['wall_seconds'] / 60:.1f} min on "
                     f"{env.get('cpu_count')} CPU cores, load average at the end "
                     f"{env.get('load_average')}")
        cpu = env.get("cpu_seconds")
        if cpu:
            parts[0] += (f"; CPU time {sum(cpu.values()) / 60:.1f} min (trainings "
                         f"{cpu['trainings'] / 60:.1f}, evaluation, data and figures "
                         f"{cpu['demo_process'] / 60:.1f})")
        parts[0] += "."
        reused = results.get("reused_trainings")
        if reused:
            total = len(results["seeds"]) * len(results["variants"])
            parts[0] += (f" {reused} of {total} trainings were done by an earlier run into the "
                         f"same folder and reused: the whole-run and CPU times above leave them "
                         f"out (their own times are in the table).")
    if quick_caveat(results):
        parts.append(f"**{quick_caveat(results)}**")
    groups = list(results["groups"])
    header = ["variant", "mIOU %"] + [f"{g} IoU %" for g in groups]
    header += ["per seed (mIOU %)", "train time per net (s)", "s / iteration"]
    rows = []
    for v in results["variants"]:
        rows.append([v["label"], _pct(v["mean_iou"])]
                    + [_pct(v["groups"][g]) for g in groups]
                    + [", ".join(f"{100 * x:.2f}" for x in v["mean_iou"]["values"]),
                       f"{v['train_seconds']['mean']:.0f}",
                       f"{v['seconds_per_iteration']['mean']:.3f}"])
    parts.append("## Mean IoU\n\n" + _table(header, rows)
                 + "\n\nGroups: " + "; ".join(f"{g}: {', '.join(names)}"
                                               for g, names in results["groups"].items())
                 + ". Training times: two nets trained side by side, one thread each.")
    claim_rows = [[c["claim"], c["verdict"], c["detail"]] for c in results["claims"]]
    noise = results.get("test_noise")
    note = ""
    if noise:
        note = (f"\n\n\"holds\" compares the seeds' mIOUs. The test-set intervals say how much "
                f"of a difference the {results['val_images']} validation images alone could make: "
                f"a paired bootstrap over them ({noise['resamples']} resamples, the same images "
                f"for both nets; tools/compare_results.py --bootstrap), per seed; a difference "
                f"whose interval holds zero (or touches it) is within the test set's noise for "
                f"those weights, one whose interval lies wholly above or below zero is beyond it, "
                f"for or against the claim.")
    parts.append("## The paper's ordering, checked\n\n" + _table(["claim", "holds", "numbers"],
                                                                 claim_rows) + note)
    classes = results["classes"]
    rows = [[v["label"]] + [_pct(v["per_class_iou"][c], spread=False) for c in classes]
            for v in results["variants"]]
    parts.append("## IoU per class (%" + (", mean over seeds" if n > 1 else "") + ")\n\n"
                 + _table(["variant"] + classes, rows))
    bins = results["variants"][0]["size_bins"]
    rows = [[v["label"]] + [_pct(b) for b in v["size_bins"]] for v in results["variants"]]
    parts.append("## mIOU by object size (%)\n\nEvery pixel belongs to the nearest ground-truth "
                 "object; bins by that object's area (segments per bin: "
                 + ", ".join(f"{b['bin']}: {b['segments']}" for b in bins) + ").\n\n"
                 + _table(["variant"] + [b["bin"] for b in bins], rows))
    branch_rows = []
    for v in results["variants"]:
        for scale, b in v.get("branches", {}).items():
            branch_rows.append([v["label"], f"scale {scale} alone", _pct(b["mean_iou"])]
                               + [_pct(b["per_class_iou"][c], spread=False) for c in classes])
    if branch_rows:
        parts.append("## Each scale's own prediction (IoU %)\n\nThe same trained multi-scale "
                     "net, scored from one branch's `fc8` only.\n\n"
                     + _table(["variant", "prediction", "mIOU"] + classes, branch_rows))
    for v in results["variants"]:
        att = v.get("attention")
        if not att:
            continue
        scales = " / ".join(att["scales"])
        rows = [[b["bin"], b["segments"], _weights(b["pixel_mean"])] for b in att["by_size"]]
        rows.append(["background", "", _weights(att["background"]["pixel_mean"])])
        used = [i for i, b in enumerate(att["by_size"]) if b["pixels"]]
        drows = [[d["bin"]] + [_weights(att["by_size_and_distance"][i][k]) for i in used]
                 for k, d in enumerate(att["by_distance"])]
        parts.append(f"## Attention of {v['label']} (mean weight, scale {scales})\n\n"
                     "By object size:\n\n" + _table(["object area", "objects", "weights"], rows)
                     + "\n\nBy distance from the object's edge (columns: object area):\n\n"
                     + _table(["distance"] + [att["area_bins"][i] for i in used], drows))
    rows = [[v["label"], f"{100 * v['mean_iou']['mean']:.2f}",
             ", ".join(f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}" for r in v["runs"]),
             ", ".join(f"{r['train_seconds']:.0f}" for r in v["runs"])]
            for v in results["variants"]]
    parts.append("## Training\n\n" + _table(["variant", "mIOU %", "merged loss, first -> last "
                                                              "(per seed)", "seconds (per seed)"],
                                             rows))
    return "\n\n".join(parts) + "\n"


def quick_caveat(results):
    """For a --quick run: its nets are too briefly trained for the numbers to mean anything."""
    if not results.get("quick"):
        return None
    return (f"Quick run ({results['train_images']} training images, {results['iterations']} "
            f"iterations per net): the nets are too briefly trained for these numbers and "
            f"verdicts to mean anything; this path tests the pipeline. The real demo is "
            f"tools/demo.py without --quick.")


def summary_lines(results) -> list:
    """A short plain-text table for the terminal: mIOU per variant and the ordering's verdicts."""
    groups = list(results["groups"])
    width = max(len(v["label"]) for v in results["variants"])
    lines = [f"{'variant':<{width}}  {'mIOU %':>14}  " + "  ".join(f"{g:>16}" for g in groups)]
    for v in results["variants"]:
        lines.append(f"{v['label']:<{width}}  {_pct(v['mean_iou']):>14}  "
                     + "  ".join(f"{_pct(v['groups'][g]):>16}" for g in groups))
    lines.append("")
    for c in results["claims"]:
        line = f"{c['verdict']:>5}: {c['claim']}"
        if "seeds_beyond_test_noise" in c:
            intervals = c["test_intervals_pp"]
            # counted here too: a results.json of an older version has no "against" count
            against = sum(1 for _, hi in intervals if hi < 0)
            line += f" ({noise_count(c['seeds_beyond_test_noise'], against, len(intervals))})"
        lines.append(line)
    if quick_caveat(results):
        lines += ["", quick_caveat(results)]
    return lines
