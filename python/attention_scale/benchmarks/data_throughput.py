"""SegmentationData's throughput under the real `caffe` tool, against what a net consumes.

A VOC-sized data set (375 x 500 JPEGs and PNG labels, made by data.toy_voc) is read with the
training augmentation (batch 10, crop 321, mirror; and with random scaling 0.5-1.5). Every
number is the data layer's own forward time as `caffe time` reports it per layer:

1. the data layer alone: with 0 workers forward() makes the batch itself, with W workers it
   waits for the next ready batch, so batch / time is what the layer can supply;
2. the data layer feeding C++ layers that compute for T ms per iteration (a stand-in for a net:
   3x3 conv 64, ReLU, 1x1 conv to the classes, softmax loss, at 321 x 321): with processes the
   batch is made during those T ms and the data layer's forward is just a copy; with a Python
   prefetch thread (ThreadPrefetchData) it is not, because the caffe tool's main thread holds
   the GIL while the C++ layers run.
"""

import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data import data_params
from ..data.toy_voc import make_toy_voc

LAYER_TIME = re.compile(r"\]\s+(\S+)\s+forward: ([\d.]+) ms")
TOTAL_TIME = re.compile(r"Average Forward-Backward: ([\d.]+) ms")


@dataclass
class DataTiming:
    case: str
    net: str
    prefetch: str  # "none", "thread", "N processes"
    data_forward_ms: float
    iteration_ms: float
    rounds_data_ms: list


def _data_layer(param, module="attention_scale.data", layer="SegmentationData"):
    escaped = data_params.to_text(param).replace('"', '\\"')
    return (f'layer {{ name: "data" type: "Python" top: "data" top: "label" python_param {{ '
            f'module: "{module}" layer: "{layer}" param_str: "{escaped}" }} }}\n')


CONSUMER = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 64 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "score" type: "Convolution" bottom: "conv" top: "score"
        convolution_param { num_output: %d kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
        loss_param { ignore_label: 255 } }
"""


def _consumer_net(param, module, layer):
    """The data layer and C++ layers that take a while per batch (see the module's text)."""
    return _data_layer(param, module, layer) + CONSUMER % param.num_classes


def _processes(n):
    return f"{n} worker process" + ("es" if n > 1 else "")


def caffe_time(caffe, model_text, iterations, env, tmp):
    model = Path(tmp) / "model.prototxt"
    model.write_text(model_text)
    result = subprocess.run([caffe, "time", "-model", str(model), "-iterations", str(iterations)],
                            capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"caffe time failed:\n{result.stderr[-3000:]}")
    layers = {m.group(1): float(m.group(2)) for m in LAYER_TIME.finditer(result.stderr)}
    total = TOTAL_TIME.search(result.stderr)
    return layers["data"], float(total.group(1)) if total else float("nan")


def run_data_benchmarks(caffe, images=60, iterations=20, worker_counts=(1, 2), progress=True,
                        blas_threads=1, rounds=3):
    """Every case `rounds` times, the cases taking turns (so the machine's load hits all of
    them alike); the median round of each is kept."""
    from tqdm import tqdm

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads), GLOG_minloglevel="0")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        train_list, _ = make_toy_voc(Path(tmp) / "voc", train=images, val=1, size=(375, 500),
                                     num_classes=4, seed=0)
        base = dict(source=str(train_list), root=str(Path(tmp) / "voc"), batch_size=10,
                    crop_size=321, num_classes=4, seed=0, prefetch=2)
        jobs = []
        for scale in ((1.0, 1.0), (0.5, 1.5)):
            case = "crop 321, mirror" + (", scale 0.5-1.5" if scale != (1.0, 1.0) else "")
            for workers in (0,) + tuple(worker_counts):
                param = data_params.make(**base, workers=workers, scale_min=scale[0],
                                         scale_max=scale[1])
                prefetch = _processes(workers) if workers else "none"
                jobs.append((case, "data layer alone", prefetch, _data_layer(param)))
        param0 = data_params.make(**base, workers=0)
        consumer = "C++ layers (conv 64)"
        jobs.append(("crop 321, mirror", consumer, "none", _consumer_net(param0,
                     "attention_scale.data", "SegmentationData")))
        jobs.append(("crop 321, mirror", consumer, "thread", _consumer_net(param0,
                     "attention_scale.benchmarks.thread_prefetch", "ThreadPrefetchData")))
        for workers in worker_counts:
            param = data_params.make(**base, workers=workers)
            jobs.append(("crop 321, mirror", consumer, _processes(workers),
                         _consumer_net(param, "attention_scale.data", "SegmentationData")))
        runs = {k: [] for k in range(len(jobs))}
        with tqdm(total=rounds * len(jobs), desc="caffe time runs", disable=not progress) as bar:
            for _ in range(rounds):
                for k, (_, _, _, text) in enumerate(jobs):
                    runs[k].append(caffe_time(caffe, text, iterations, env, tmp))
                    bar.update()
        for k, (case, net, prefetch, _) in enumerate(jobs):
            data_ms, total_ms = sorted(runs[k])[len(runs[k]) // 2]  # the median round
            results.append(DataTiming(case, net, prefetch, data_ms, total_ms,
                                      [r[0] for r in runs[k]]))
    return results


def data_report(results, environment, batch=10, net_seconds_per_image=None,
                net_note=""):
    rows = []
    for r in results:
        supply = batch / (r.data_forward_ms / 1e3) if r.data_forward_ms > 0 else float("inf")
        share = 100 * r.data_forward_ms / r.iteration_ms if r.iteration_ms else float("nan")
        rows.append(f"| {r.net} | {r.case} | {r.prefetch} | {r.data_forward_ms:.1f} | "
                    f"{r.iteration_ms:.1f} | {share:.1f}% | "
                    + (f"{supply:.0f}" if r.net == "data layer alone" else "-") + " |")
    alone = [r for r in results if r.net == "data layer alone" and r.prefetch != "none"]
    best = max((batch / (r.data_forward_ms / 1e3) for r in alone), default=float("nan"))
    data = {"environment": environment, "batch": batch,
            "results": [asdict(r) for r in results],
            "best_supply_images_per_s": best,
            "net_seconds_per_image": net_seconds_per_image}
    consume = ""
    if net_seconds_per_image:
        consume = (f"\nThe VGG-16 attention net (3 scales, 321 x 321) trains at about "
                   f"{1 / net_seconds_per_image:.3f} images/s on this CPU ({net_note}); the data "
                   f"layer supplies up to {best:.0f} images/s, {best * net_seconds_per_image:.0f} "
                   f"times that.\n")
    markdown = f"""# SegmentationData throughput under the `caffe` tool

Generated by `tools/benchmark_training.py --what data`. VOC-sized images (375 x 500 JPEG + PNG
label), training augmentation, batch {batch}; `caffe time` (the real tool, TRAIN phase), the data
layer's own forward time per iteration as the tool reports it; every case ran in several
rounds, the cases taking turns, and the median round is shown (all rounds in the JSON).
"data layer alone": the time to get one batch, so batch / time is what the layer can supply (images/s). "C++ layers": the
data layer feeds a 3x3 conv (64), ReLU, 1x1 conv and softmax loss at 321 x 321 that compute
between two batches (iteration ms - data ms); a data forward time near zero means the batch
was made while they computed. The Python thread does not get there: under the caffe tool the
main thread holds the GIL while C++ layers run.

| net | augmentation | prefetch | data forward ms | iteration ms | data share | images/s |
| --- | --- | --- | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}
{consume}
Environment: {json.dumps(environment)}
"""
    return data, markdown
