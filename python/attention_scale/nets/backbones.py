"""The shared per-scale network ("backbone"): DeepLab-LargeFOV on VGG-16, or a small one like it.

A backbone is described by data, not code, so that the synthetic demo can tune a small one
(widths, depth, dilations) without touching the builder:

    conv{s}_{i} (3x3, ReLU) for every stage s and conv i, pool{s} after a stage (max-pool 3x3 pad 1
    as DeepLab, or 2x2 pad 0; stride 1 or 2; or none), fc6 (k x k, dilated), ReLU + dropout,
    fc7 (1x1), ReLU + dropout.

fc8 (the classifier) belongs to the multi-scale builder, which names and shares it like the rest.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..errors import LayerConfigError


@dataclass(frozen=True)
class Backbone:
    """Architecture of one scale's branch up to fc7.

    stages:          channel widths of the 3x3 convs of each stage, e.g. ((64, 64), (128, 128), ...)
    pool_strides:    per stage, the stride of the max-pool after it (1 or 2), or None for no pool
    pool_kernel:     3 (pad 1, DeepLab's) or 2 (pad 0)
    stage_dilations: per stage, the dilation of its 3x3 convs
    fc6_channels, fc6_kernel, fc6_dilation: fc6 (padding keeps the size: dilation * (kernel - 1) / 2)
    fc7_channels:    fc7 (1x1)
    dropout:         ratio of the dropout after fc6 and fc7 (0 disables it)
    """
    name: str
    stages: Tuple[Tuple[int, ...], ...]
    pool_strides: Tuple[Optional[int], ...]
    stage_dilations: Tuple[int, ...]
    fc6_channels: int
    fc6_kernel: int
    fc6_dilation: int
    fc7_channels: int
    dropout: float = 0.5
    pool_kernel: int = 3
    conv_filler: dict = field(default_factory=lambda: {"type": "msra"}, compare=False)

    def __post_init__(self):
        problems = []
        if not self.stages or any(not stage for stage in self.stages):
            problems.append("every stage needs at least one conv")
        if len(self.pool_strides) != len(self.stages) or len(self.stage_dilations) != len(self.stages):
            problems.append(f"pool_strides ({len(self.pool_strides)}) and stage_dilations "
                            f"({len(self.stage_dilations)}) need one entry per stage "
                            f"({len(self.stages)})")
        if any(s not in (None, 1, 2) for s in self.pool_strides):
            problems.append(f"pool strides must be 1, 2 or None, got {self.pool_strides}")
        if self.pool_kernel not in (2, 3):
            problems.append(f"pool_kernel must be 3 (pad 1) or 2 (pad 0), got {self.pool_kernel}")
        if any(d < 1 for d in self.stage_dilations) or self.fc6_dilation < 1:
            problems.append("dilations must be >= 1")
        if self.fc6_kernel < 1 or self.fc6_kernel % 2 == 0:
            problems.append(f"fc6_kernel must be odd (size-preserving padding), got {self.fc6_kernel}")
        widths = [w for stage in self.stages for w in stage] + [self.fc6_channels, self.fc7_channels]
        if any(w < 1 for w in widths):
            problems.append(f"channel widths must be >= 1, got {widths}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must lie in [0, 1), got {self.dropout}")
        if problems:
            raise LayerConfigError(f"backbone {self.name!r}: " + "; ".join(problems))

    @property
    def output_stride(self) -> int:
        stride = 1
        for s in self.pool_strides:
            stride *= s or 1
        return stride

    @property
    def pool_pad(self) -> int:
        return 1 if self.pool_kernel == 3 else 0

    def output_size(self, size: int) -> int:
        """Score-map side for an input side, by Caffe's pooling arithmetic (ceil mode, and the
        last window must start inside the image or its padding)."""
        k, p = self.pool_kernel, self.pool_pad
        for s in self.pool_strides:
            if s:
                out = -(-(size + 2 * p - k) // s) + 1
                if p and (out - 1) * s >= size + p:
                    out -= 1
                size = out
        return size

    def receptive_field(self) -> int:
        """Receptive field (pixels) of one fc7 output (fc7 is 1x1: that of fc6)."""
        rf, jump = 1, 1
        for stage, pool, dilation in zip(self.stages, self.pool_strides, self.stage_dilations):
            rf += len(stage) * 2 * dilation * jump
            if pool:
                rf += (self.pool_kernel - 1) * jump
                jump *= pool
        return rf + (self.fc6_kernel - 1) * self.fc6_dilation * jump


# DeepLab-LargeFOV (SPEC section 3): VGG-16's convs; pool4/pool5 stride 1 and conv5 dilated 2 keep
# output stride 8; fc6 1024 x 3x3 dilation 12; fc7 1024 x 1x1.
VGG16 = Backbone(
    name="vgg16",
    stages=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    pool_strides=(2, 2, 2, 1, 1),
    stage_dilations=(1, 1, 1, 1, 2),
    fc6_channels=1024, fc6_kernel=3, fc6_dilation=12, fc7_channels=1024, dropout=0.5)


def small_backbone(widths=(16, 32, 32), convs_per_stage=(1, 1, 2), pool_strides=(2, 2, None),
                   stage_dilations=None, pool_kernel=2, fc_channels=32, fc6_kernel=3,
                   fc6_dilation=1, dropout=0.5, name="small") -> Backbone:
    """A few-channel backbone with the same layer names, for tests and the synthetic demo.

    The default (conv 16, pool 2x2, conv 32, pool 2x2, two convs 32, fc6 3x3 32, fc7 1x1 32) is
    the backbone of shared/DEMO-FACTS.md plus fc7: output stride 4 (97 -> 25 px), receptive
    field 34 px.
    """
    if len(convs_per_stage) != len(widths):
        raise LayerConfigError(f"backbone {name!r}: convs_per_stage has {len(convs_per_stage)} "
                               f"entries for {len(widths)} stages")
    stages = tuple((w,) * n for w, n in zip(widths, convs_per_stage))
    return Backbone(name=name, stages=stages, pool_strides=tuple(pool_strides),
                    stage_dilations=tuple(stage_dilations or (1,) * len(widths)),
                    pool_kernel=pool_kernel, fc6_channels=fc_channels, fc6_kernel=fc6_kernel, fc6_dilation=fc6_dilation,
                    fc7_channels=fc_channels, dropout=dropout)


SMALL = small_backbone()
BACKBONES = {"vgg16": VGG16, "small": SMALL}


def get_backbone(backbone) -> Backbone:
    """A Backbone, or the name of a preset ("vgg16", "small")."""
    if isinstance(backbone, Backbone):
        return backbone
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise LayerConfigError(f"unknown backbone {backbone!r}; presets: "
                               f"{', '.join(BACKBONES)} (or pass a Backbone)") from None
