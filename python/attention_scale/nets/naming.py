"""Blob and layer names shared with evaluation and the demo (see the project's CONTRACT).

Scale 1 has the plain DeepLab names (conv1_1 ... fc8), so a DeepLab/VGG .caffemodel loads by
layer name; every other scale s adds the suffix "_res" + the digits of s after "0."
(0.75 -> "_res075", 0.5 -> "_res05").
"""

import math

from ..errors import LayerConfigError


def scale_suffix(scale) -> str:
    """"" for 1, "_res075" for 0.75, "_res05" for 0.5, "_res025" for 0.25."""
    scale = float(scale)
    if scale == 1:
        return ""
    if not (0 < scale < 1) or not math.isfinite(scale):
        raise LayerConfigError(f"scale {scale}: only the first scale is 1; the others must lie in "
                               f"(0, 1)")
    digits = repr(scale)[2:]  # repr(0.75) == "0.75"; shortest round-trip form, no float noise
    if "e" in digits or len(digits) > 4:
        raise LayerConfigError(f"scale {scale}: at most 4 decimal digits (it becomes a name suffix)")
    return "_res0" + digits


def check_scales(scales) -> tuple:
    """The scales as a tuple of floats: first 1, the rest distinct, in (0, 1)."""
    scales = tuple(float(s) for s in scales)
    if not scales or scales[0] != 1:
        raise LayerConfigError(f"scales {scales}: the first scale must be 1 (the branch whose "
                               f"score resolution the others are resized to)")
    suffixes = [scale_suffix(s) for s in scales]
    if len(set(suffixes)) != len(suffixes):
        raise LayerConfigError(f"scales {scales}: each scale may appear once")
    return scales


def scales_slug(scales) -> str:
    """Folder name of a scale set: (1, 0.75, 0.5) -> "scales-1-0.75-0.5"."""
    return "scales-" + "-".join("1" if s == 1 else repr(float(s)) for s in scales)


def param_names(layer):
    """Shared weight and bias names of a layer of the scale-1 branch: conv1_1 -> conv1_1_w, _b."""
    return f"{layer}_w", f"{layer}_b"
