"""Solvers: the paper's training schedule, with DeepLab-LargeFOV's published solver where the
paper is silent (docs/training.md, "Training schedule", gives the sources and decisions).

    SGD, base_lr 0.001 (fc8 and the attention head 10x through their lr_mult), step policy
    x0.1 every 2000 iterations, 6000 iterations, momentum 0.9, weight decay 0.0005;
    mini-batch 30 = batch_size 10 in the net x iter_size 3 (gradient accumulation);
    a snapshot every 2000 iterations; CPU unless `caffe train -gpu N`.
"""

from dataclasses import asdict, dataclass, replace
from typing import Optional, Tuple

from google.protobuf import text_format


@dataclass(frozen=True)
class SolverOptions:
    type: str = "SGD"
    base_lr: float = 0.001
    lr_policy: str = "step"
    gamma: float = 0.1
    stepsize: int = 2000  # for lr_policy "step" and "sigmoid"
    stepvalue: Tuple[int, ...] = ()  # for lr_policy "multistep"
    power: Optional[float] = None  # for lr_policy "poly" and "inv"
    max_iter: int = 6000
    momentum: float = 0.9
    momentum2: Optional[float] = None  # Adam
    weight_decay: float = 0.0005
    iter_size: int = 3
    display: int = 10
    average_loss: int = 20
    snapshot: int = 2000
    random_seed: Optional[int] = None
    solver_mode: str = "CPU"

    def with_(self, **changes) -> "SolverOptions":
        return replace(self, **changes)


PAPER = SolverOptions()


_COMMENTS = {
    "iter_size": "mini-batch = the train net's batch_size x iter_size",
    "base_lr": "fc8 and the attention head learn 10x faster (their lr_mult)",
    "solver_mode": "`caffe train -gpu N` overrides it",
}
_ORDER = ("type", "iter_size", "base_lr", "lr_policy", "gamma", "stepsize", "stepvalue", "power",
          "max_iter",
          "momentum", "momentum2", "weight_decay", "display", "average_loss", "snapshot",
          "random_seed", "solver_mode")


def _value_text(value):
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def solver_text(net_path, snapshot_prefix, options: SolverOptions = PAPER, header="") -> str:
    """Solver prototxt text for the net at net_path, in reading order with short comments;
    checked by parsing it as caffe.SolverParameter."""
    from caffe.proto import caffe_pb2

    values = asdict(options)
    lines = [f'net: "{net_path}"']
    for name in _ORDER:
        value = values[name]
        if value is None or (name == "stepsize" and options.lr_policy not in ("step", "sigmoid")):
            continue
        if name == "stepvalue":  # a repeated field: one line per value
            lines += [f"stepvalue: {int(v)}" for v in value]
            continue
        text = value if name == "solver_mode" else _value_text(value)
        comment = f"  # {_COMMENTS[name]}" if name in _COMMENTS else ""
        lines.append(f"{name}: {text}{comment}")
        if name == "snapshot":
            lines.append(f'snapshot_prefix: "{snapshot_prefix}"')
    text = header + "\n".join(lines) + "\n"
    text_format.Parse(text, caffe_pb2.SolverParameter())  # a typo here must fail the generator
    return text
