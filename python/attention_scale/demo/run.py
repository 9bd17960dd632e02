"""Running the demo: the data set, every (seed, variant) trained with `caffe train` and evaluated
with tools/test_voc.py's code, then the results table and figures (demo.report, demo.figures).

Trainings run `config.jobs` at a time, each with one BLAS thread (on two cores, two one-thread
jobs side by side were faster than one two-thread job: shared/DEMO-FACTS.md). One progress bar
counts the iterations of all of them, with the running variants and an ETA. A run that was
stopped continues where it was when the same command is run again: finished trainings and
evaluations are kept, a stopped training resumes from its snapshot.
"""

import importlib
import json
import os
import resource
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional

from tqdm import tqdm

from ..data.lists import read_list
from ..data.synthetic import write_dataset
from ..errors import DataError
from ..files import atomic_write
from ..training import caffe_log, plots, runner
from .experiment import DemoConfig, DemoVariant
from .layout import DemoLayout, RunPaths, write_run_files


# For each `caffe train`: one BLAS thread, and glog's INFO lines, which the runner reads for
# progress and losses (pycaffe in this process is made quiet through the same variable).
TRAIN_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "GLOG_minloglevel": "0"}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


class DemoStopped(DemoError):
    """Stopped by Ctrl-C: the tool ends with status 130, as the other tools and a shell do."""


@dataclass
class JobResult:
    seed: int
    variant: DemoVariant
    paths: RunPaths
    train: dict        # train.json: seconds, iterations, first/last loss
    metrics: dict      # the evaluation summary (metrics.json)


# -- progress ------------------------------------------------------------------------------------

class Progress:
    """One bar over the iterations of every training; the running jobs in its postfix."""

    def __init__(self, total, enabled=True):
        self.lock = threading.Lock()
        self.done = {}       # job name -> iterations counted
        self.status = {}     # job name -> short text
        self.bar = tqdm(total=total, unit="iter", desc="demo", dynamic_ncols=True,
                        disable=not enabled, smoothing=0.05)
        self.enabled = enabled

    def advance(self, job, iteration, text=None):
        with self.lock:
            step = max(0, iteration - self.done.get(job, 0))
            self.done[job] = max(iteration, self.done.get(job, 0))
            if text is not None:
                self.status[job] = text
            self._postfix()
            self.bar.update(step)

    def set_status(self, job, text):
        with self.lock:
            if text is None:
                self.status.pop(job, None)
            else:
                self.status[job] = text
            self._postfix()

    def _postfix(self):
        self.bar.set_postfix_str(" | ".join(f"{k}: {v}" for k, v in self.status.items()),
                                 refresh=False)
        self.bar.refresh()

    def write(self, text):
        with self.lock:
            if self.enabled:
                self.bar.write(text)
            else:
                print(text, flush=True)

    def close(self):
        self.bar.close()


# -- one job -------------------------------------------------------------------------------------

def _loss_ends(log_path, points=3):
    """(mean of the first, mean of the last `points`) displayed values of the merged `loss`."""
    log = caffe_log.parse_file(log_path)
    _, values = log.series("loss")
    if not values:
        iterations = sorted(log.display_loss)
        values = [log.display_loss[i] for i in iterations]
    if not values:
        return None, None
    head, tail = values[:points], values[-points:]
    return sum(head) / len(head), sum(tail) / len(tail)


def train_job(config: DemoConfig, layout: DemoLayout, seed, variant: DemoVariant, progress,
              caffe=None, protos=None) -> dict:
    """Train one (seed, variant), or read back its train.json when it is done; returns it."""
    paths = layout.run(seed, variant)
    job = f"s{seed} {variant.key}"
    weights = paths.weights(config.iterations)
    if paths.train_json.is_file() and weights.is_file():
        # trained by an earlier run in this folder: its time is not in this run's wall time
        record = dict(json.loads(paths.train_json.read_text()), reused=True)
        progress.advance(job, config.iterations)
        progress.set_status(job, None)
        return record
    write_run_files(config, layout, seed, variant, protos)
    start_state = runner.latest_solverstate(paths.snapshot_prefix)
    earlier = runner.snapshot_iteration(start_state) if start_state else 0
    progress.advance(job, earlier or 0, f"{earlier or 0}/{config.iterations}")

    def on_event(event):
        if event.kind == "display":
            progress.advance(job, event.iteration,
                             f"{event.iteration}/{config.iterations} loss {event.value:.3g}")

    started = time.monotonic()
    # plot=False: the runner would draw with pyplot in this worker thread while the other job
    # draws in its own, and pyplot is not thread-safe (figures went missing, or "pop from empty
    # list"); the curve is drawn below, one thread at a time
    result = runner.train(paths.solver, resume=True, caffe=caffe, progress=False,
                          env=TRAIN_ENV, on_event=on_event, echo=False, log_path=paths.log,
                          plot=False)
    seconds = time.monotonic() - started
    if result.log.stopped_early or not weights.is_file():
        raise DemoError(f"{variant.label}, seed {seed}: training stopped at iteration "
                        f"{result.last_iteration}; run the same command again to continue")
    # plot_logs holds pyplot's lock: the other job's thread may be drawing too.
    plots.plot_logs([paths.log], paths.loss_plot, title=f"{variant.label}, seed {seed}")
    first, last = _loss_ends(paths.log)
    record = {"variant": variant.key, "seed": seed, "iterations": config.iterations,
              "seconds": round(seconds, 1), "resumed_from": earlier or None,
              "seconds_per_iteration": round(seconds / max(1, config.iterations - earlier), 4),
              "first_loss": first, "last_loss": last, "weights": str(weights)}
    atomic_write(paths.train_json, json.dumps(record, indent=2) + "\n")
    progress.advance(job, config.iterations)
    return record


def evaluate_job(config: DemoConfig, layout: DemoLayout, seed, variant: DemoVariant,
                 progress) -> dict:
    """tools/test_voc.py's evaluation of one trained net on the val list (resumable; metrics.json
    read back when complete). Multi-scale nets also get each scale's own prediction."""
    from ..evaluation.inference import InferenceOptions, NetPredictor
    from ..evaluation.runner import Evaluation, evaluate_into
    from ..evaluation.segments import Bins

    distance_labels = Bins(config.distance_bins, " px").labels()
    paths = layout.run(seed, variant)
    weights = paths.weights(config.iterations)
    entries = read_list(layout.val_list, layout.data)
    area_bins = Bins(config.area_bins, " px")
    if paths.metrics.is_file():
        summary = json.loads(paths.metrics.read_text())
        bins = [b["bin"] for b in summary["by_object_size"]["bins"]]
        if summary.get("images") == len(entries) and bins == area_bins.labels() and \
                summary["settings"].get("weights") == str(weights) and \
                (summary["attention"] or {}).get("distance_bins", distance_labels) == \
                distance_labels:
            return summary
    job = f"s{seed} {variant.key}"
    progress.set_status(job, "evaluating")
    evaluation = Evaluation(config.class_names, area_bins, Bins(config.distance_bins, " px"))
    predictor = NetPredictor(paths.test_net, weights,
                             InferenceOptions(branches=variant.merge is not None))
    summary, _, _ = evaluate_into(paths.eval_dir, entries, evaluation, predictor,
                                  settings={"list": str(layout.val_list)}, progress=False)
    progress.set_status(job, None)
    return summary


def test_set_noise(layout: DemoLayout, jobs, resamples=1000, seed=0) -> dict:
    """Per seed, the paired bootstrap over the val images of every claim's mIOU difference
    (report.CLAIM_PAIRS), from the predictions the evaluations stored: how much of a difference
    the choice of test images alone could make for those trained weights."""
    from ..evaluation import comparison
    from . import report

    entries = read_list(layout.val_list, layout.data)
    counts = comparison.resample_counts(len(entries), resamples, seed)
    by_job = {(job.seed, job.variant.key): job for job in jobs}
    matrices = {}

    def confusions(job):
        key = (job.seed, job.variant.key)
        if key not in matrices:
            evaluated = comparison.Evaluated(job.variant.key, job.paths.eval_dir, job.metrics)
            matrices[key] = comparison.per_image_confusions(evaluated, entries, progress=False)
        return matrices[key]

    pairs = {}
    for better, worse in report.CLAIM_PAIRS:
        for run_seed in sorted({job.seed for job in jobs}):
            a, b = by_job.get((run_seed, better)), by_job.get((run_seed, worse))
            if a is None or b is None:
                continue
            row = comparison.paired_bootstrap([confusions(b), confusions(a)], counts)["rows"][1]
            pairs.setdefault(report.pair_name(better, worse), {})[str(run_seed)] = row
    return {"resamples": resamples, "seed": seed, "pairs": pairs}


# -- the whole run -------------------------------------------------------------------------------

DEFAULT_OUTPUT = "results/demo"


def describe_config(digest):
    """The configuration of a digest in the user's words: the options that make it, where known."""
    from .experiment import DEFAULT, QUICK
    known = {DEFAULT.digest(): "the default configuration (no --quick)",
             QUICK.digest(): "--quick"}
    return known.get(digest, "another configuration (other --iterations, or an earlier version)")


def prepare(config: DemoConfig, layout: DemoLayout, fresh=False, progress=True):
    """Check or record the run's config (a folder made with another config is refused unless
    fresh, which deletes its runs), and write the data set."""
    layout.root.mkdir(parents=True, exist_ok=True)
    record = {"digest": config.digest(), "config": config.to_json()}
    if layout.config.is_file():
        existing = json.loads(layout.config.read_text())
        if existing.get("digest") != record["digest"]:
            if not fresh:
                raise DemoError(f"{layout.root} holds a demo run made with "
                                f"{describe_config(existing.get('digest'))} (digest "
                                f"{existing.get('digest')}), this run is "
                                f"{describe_config(record['digest'])} (digest {record['digest']}):"
                                f" --quick and the default share {DEFAULT_OUTPUT} unless --output "
                                f"differs; pass --fresh to delete its runs and start again, or "
                                f"choose another --output")
            for sub in ("runs", "data", "figures"):
                if (layout.root / sub).exists():
                    shutil.rmtree(layout.root / sub)
    atomic_write(layout.config, json.dumps(record, indent=2) + "\n")
    try:
        write_dataset(layout.data, config.spec, config.data_seed, config.num_train,
                      config.num_val, num_samples=8, progress=progress, force=True)
    except DataError as exc:
        raise DemoError(str(exc)) from None


# What the jobs import on first use, imported before the threads start. Python 3.9.2 (Debian 11;
# fixed in 3.9.3, bpo-43517) could fail one thread's `from M import X` with "cannot import name X
# from partially initialized module M (most likely due to a circular import)" while another
# thread was importing M: a second demo run, whose evaluations all start at once, lost four of
# its five jobs that way.
_JOB_MODULES = ("caffe", "..evaluation.inference", "..evaluation.runner", "..evaluation.segments",
                "..nets.caffe_proto", "..nets.caffemodel", "..nets.convert",
                "..nets.layer_support", "..nets.prototxt", "..data.data_params")


def import_job_modules():
    for name in _JOB_MODULES:
        try:
            importlib.import_module(name, __package__)
        except ImportError:  # a job says what is missing, as it would have
            pass
    plots._matplotlib()  # pyplot, for the loss plots


def run_jobs(config: DemoConfig, layout: DemoLayout, seeds, caffe=None,
             progress=True) -> List[JobResult]:
    """Train and evaluate every (seed, variant), config.jobs at a time; results in job order."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # before pycaffe loads glog: quiet nets
    from ..nets import convert
    protos = convert.load_protos()
    import_job_modules()
    jobs = [(seed, variant) for seed in seeds for variant in config.variants]
    bar = Progress(total=len(jobs) * config.iterations, enabled=progress)
    failures: Dict[str, BaseException] = {}

    stopping = threading.Event()

    def one(job):
        seed, variant = job
        if stopping.is_set():
            return None
        try:
            train = train_job(config, layout, seed, variant, bar, caffe, protos)
            metrics = evaluate_job(config, layout, seed, variant, bar)
        except BaseException as exc:  # reported below, after the other jobs stop
            failures[f"{variant.label}, seed {seed}"] = exc
            return None
        miou = metrics["metrics"]["mean_iou"]
        bar.write(f"seed {seed} {variant.label}: {config.iterations} iterations in "
                  f"{train['seconds']:.0f} s, val mIOU {100 * miou:.2f}%")
        return JobResult(seed, variant, layout.run(seed, variant), train, metrics)

    pool = ThreadPoolExecutor(max_workers=config.jobs)
    futures = [pool.submit(one, job) for job in jobs]
    try:
        results = [future.result() for future in futures]
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached the caffe processes too: they snapshot and stop.
        stopping.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        raise DemoStopped("stopped by Ctrl-C: run the same command again to continue (finished "
                          "trainings and snapshots are kept)") from None
    pool.shutdown()
    bar.close()
    if failures:
        detail = "\n".join(f"  {name}: {exc}" for name, exc in failures.items())
        raise DemoError(f"{len(failures)} of {len(jobs)} jobs failed:\n{detail}")
    return results


def caffe_available(caffe: Optional[str]) -> str:
    try:
        return runner.find_caffe(caffe)
    except runner.TrainingError as exc:
        raise DemoError(str(exc)) from None


def cpu_seconds() -> dict:
    """CPU time of this process and of its finished children (the caffe trainings and their
    data workers): unlike wall time, it hardly depends on what else the machine runs."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"demo_process": own.ru_utime + own.ru_stime,
            "trainings": children.ru_utime + children.ru_stime}


def environment_note(cpu_before=None) -> dict:
    """What the timings depend on: cores, the load when the run ended, CPU seconds used."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    note = {"cpu_count": os.cpu_count(),
            "load_average": [round(v, 2) for v in load] if load else None}
    if cpu_before is not None:
        now = cpu_seconds()
        note["cpu_seconds"] = {k: round(now[k] - cpu_before[k], 1) for k in now}
    return note


def run_demo(config: DemoConfig, output, seeds, caffe=None, fresh=False, progress=True,
             quick=False):
    """The whole demo into `output`; returns (results dict, {figure name: path}). quick: the
    --quick path, whose results say that its nets are too briefly trained to mean anything."""
    from . import figures, report

    started, cpu_before = time.monotonic(), cpu_seconds()
    layout = DemoLayout(output)
    caffe = caffe_available(caffe)
    seeds = list(seeds)
    if not seeds:
        raise DemoError("at least one seed is needed")
    prepare(config, layout, fresh=fresh, progress=progress)
    jobs = run_jobs(config, layout, seeds, caffe=caffe, progress=progress)
    extra = {"digest": config.digest(), "config": config.to_json(),
             "resumed": any(job.train.get("resumed_from") for job in jobs),
             "reused_trainings": sum(1 for job in jobs if job.train.get("reused")),
             "quick": bool(quick)}
    try:
        noise = test_set_noise(layout, jobs)
    except DataError as exc:
        raise DemoError(str(exc)) from None
    results = report.aggregate(config, jobs, seeds, extra, noise)
    pictures = figures.write_all(results, layout, config, seeds[0], config.figure_examples)
    results["figures"] = {name: str(path.relative_to(layout.root))
                          for name, path in pictures.items()}
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["environment"] = environment_note(cpu_before)
    text = report.markdown(results)
    text += "\n## Figures\n\n" + "\n".join(f"![{name}]({rel})"
                                            for name, rel in results["figures"].items()) + "\n"
    atomic_write(layout.results_json, json.dumps(results, indent=2) + "\n")
    atomic_write(layout.results_md, text)
    return results, pictures
