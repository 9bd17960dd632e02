"""What the demo runs: the data set, the shared small network, the schedule and the variants.

One DemoConfig holds every choice, so that a run is reproducible from its config.json and the
default (`DEFAULT`), the tests' `--quick` path (`QUICK`) and a user's variation differ only in
values. The variants are the paper's comparison on scales {1, 0.5}: the single-scale baseline,
MAX, AVERAGE and ATTENTION merges with extra supervision (E-Supv), and ATTENTION without it.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Optional, Tuple

from ..data.synthetic import SyntheticSpec
from ..nets import backbones
from ..nets.builder import NetOptions
from ..nets.solver import SolverOptions


@dataclass(frozen=True)
class DemoVariant:
    key: str                    # folder name, e.g. "attention-esupv"
    label: str                  # what the tables say, e.g. "ATTENTION + E-Supv"
    merge: Optional[str]        # None: the single-scale baseline
    esupv: bool = False


VARIANTS = (
    DemoVariant("single", "single scale (1)", None),
    DemoVariant("max-esupv", "MAX + E-Supv", "MAX", True),
    DemoVariant("average-esupv", "AVERAGE + E-Supv", "AVERAGE", True),
    DemoVariant("attention-esupv", "ATTENTION + E-Supv", "ATTENTION", True),
    DemoVariant("attention", "ATTENTION", "ATTENTION", False),
)


def demo_backbone():
    """The shared per-scale network: conv 16, pool, conv 32, pool, conv 32, fc6 3x3 32, fc7 1x1 32.

    Output stride 4 (97 -> 25 score pixels; 49 -> 13 at scale 0.5) and a receptive field of
    26 px: one conv fewer than the nets' `small` default (34 px), so that at scale 1 a pixel
    deeper than 13 px inside a large object cannot see the object's edge, while at scale 0.5 the
    same field covers 52 px of the image."""
    return backbones.small_backbone(widths=(16, 32, 32), convs_per_stage=(1, 1, 1),
                                    pool_strides=(2, 2, None), fc_channels=32, dropout=0.0,
                                    name="demo")


@dataclass(frozen=True)
class DemoConfig:
    """Everything a demo run depends on (see the module doc)."""
    spec: SyntheticSpec = field(default_factory=SyntheticSpec)
    data_seed: int = 0                     # the data set is the same for every training seed
    num_train: int = 2000
    num_val: int = 300
    scales: Tuple[float, ...] = (1.0, 0.5)
    backbone: backbones.Backbone = field(default_factory=demo_backbone)
    attention_channels: int = 32
    attention_dropout: float = 0.0
    input_scale: float = 1 / 64            # mean-subtracted pixels (+-128) to about +-2
    batch_size: int = 10
    iterations: int = 1000
    base_lr: float = 0.001                 # what the designs in the README were tried with
    lr_power: float = 0.9                  # poly decay to 0 at the last iteration
    weight_decay: float = 0.0005
    display: int = 20
    variants: Tuple[DemoVariant, ...] = VARIANTS
    jobs: int = 2                          # trainings side by side, one BLAS thread each
    area_bins: Tuple[float, ...] = (128, 512, 2048)  # px: small objects are 47-484, large 1250-4100
    distance_bins: Tuple[float, ...] = (2, 4, 8, 16)
    figure_examples: int = 3               # val images drawn with their attention maps

    @property
    def class_names(self):
        return self.spec.class_names

    def net_options(self, variant: DemoVariant, stage_size=None) -> NetOptions:
        multi = variant.merge is not None
        size = self.spec.image_size
        return NetOptions(scales=self.scales if multi else (1.0,), merge=variant.merge,
                          esupv=variant.esupv, num_classes=len(self.class_names),
                          crop_size=size, batch_size=self.batch_size,
                          test_size=stage_size or size, form="cpp", backbone=self.backbone,
                          attention_channels=self.attention_channels,
                          attention_dropout=self.attention_dropout,
                          input_scale=self.input_scale)

    def solver_options(self, seed) -> SolverOptions:
        return SolverOptions(type="Adam", base_lr=self.base_lr, lr_policy="poly",
                             power=self.lr_power, max_iter=self.iterations, momentum=0.9,
                             momentum2=0.999, weight_decay=self.weight_decay, iter_size=1,
                             display=self.display, average_loss=self.display,
                             snapshot=self.iterations, random_seed=int(seed))

    def variant(self, key) -> DemoVariant:
        for variant in self.variants:
            if variant.key == key:
                return variant
        raise KeyError(f"no demo variant {key!r}; variants: "
                       f"{', '.join(v.key for v in self.variants)}")

    def with_(self, **changes) -> "DemoConfig":
        return replace(self, **changes)

    def to_json(self) -> dict:
        data = asdict(self)
        data["backbone"].pop("conv_filler", None)
        data["backbone"]["receptive_field"] = self.backbone.receptive_field()
        data["backbone"]["output_stride"] = self.backbone.output_stride
        return data

    def digest(self) -> str:
        """Identifies what the trained nets depend on (not jobs, figures or bins)."""
        data = self.to_json()
        for key in ("jobs", "figure_examples", "area_bins", "distance_bins"):
            data.pop(key)
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


DEFAULT = DemoConfig()

# The same path in under two minutes (the test suite's): few images, few iterations.
QUICK = DEFAULT.with_(num_train=40, num_val=8, batch_size=4, iterations=30, display=5,
                      figure_examples=2)
