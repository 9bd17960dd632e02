"""What every benchmark shares: the layer cases at the paper's sizes, the one-layer test net, the
machine description and writing a report (printed, and saved whole as markdown + JSON)."""

import json
import os
import platform
from pathlib import Path

import numpy as np

from ..files import atomic_write

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
    # Not a size of the paper (only with --phase large): issue 9's case, where the Python layer
    # built dense 32001 x 32000 interpolation matrices (4 GB).
    ("large", "ScaleInterp", "rows 32000 -> 32001", {"x": (1, 1, 32000, 4)},
     "height: 32001 width: 4"),
]


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
        # Other work on the machine skews the times, not always both forms alike: the 1-minute
        # load average when the report was made says how quiet the machine was.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    info.update(extra or {})
    return info


def input_layers_text(shapes):
    """A net header and one Input layer per blob: {"x": (2, 3, 5, 5)}."""
    lines = ['name: "bench" force_backward: true']
    for name, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "{name}" type: "Input" top: "{name}" '
                     f'input_param {{ shape {{ {dims} }} }} }}')
    return "\n".join(lines) + "\n"


def one_layer_net(layer_type, shapes, param_text):
    """Input blobs feeding one layer of ours (C++ form) whose top is "out"."""
    from ..layers.params import FIELDS

    bottoms = " ".join(f'bottom: "{name}"' for name in shapes)
    return (input_layers_text(shapes)
            + f'layer {{ name: "layer" type: "{layer_type}" {bottoms} top: "out" '
              f'{FIELDS[layer_type]} {{ {param_text} }} }}\n')


def publish_report(data, markdown, output_dir, stem, write=True):
    """Print the markdown report and, with `write`, save it and its data as output_dir/stem.md
    and output_dir/stem.json (each written whole or not at all)."""
    print(markdown)
    if write:
        json_path, md_path = Path(output_dir) / f"{stem}.json", Path(output_dir) / f"{stem}.md"
        atomic_write(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write(md_path, markdown)
        print(f"wrote {json_path} and {md_path}")
