"""The nets the speed benchmark times, as prototxt text.

- `merge_net`: equations (1)-(2) as this project's two layers (SoftmaxOverScales ->
  WeightedScaleSum ATTENTION) or as a user would otherwise write them from stock Caffe layers:
  Softmax (axis 1) -> Slice (axis 1) -> Tile (C times) -> Eltwise PROD per scale -> Eltwise SUM.
  Both read the same Input blobs (h: the attention logits, f0 .. f{S-1}: the score maps) and end
  in the top "out", so one set of inputs and one top diff drive either.
- `resize_net`: one ScaleInterp from H_in x W_in to H_out x W_out.
- `copy_net`: one Power layer with its defaults, whose forward is Caffe's caffe_copy (memcpy on
  the CPU, cudaMemcpy device to device on a GPU): the copy-bandwidth reference.
"""

from .common import input_layers_text

TOP = "out"


def merge_shapes(num, channels, height, width, num_scales):
    """The Input blobs of a merge net: logits h (N x S x H x W) and S score maps (N x C x H x W)."""
    shapes = {"h": (num, num_scales, height, width)}
    shapes.update({f"f{s}": (num, channels, height, width) for s in range(num_scales)})
    return shapes


def _layer(name, layer_type, bottoms, tops, params=""):
    bottoms = " ".join(f'bottom: "{b}"' for b in bottoms)
    tops = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{layer_type}" {bottoms} {tops} {params} }}\n'


def merge_net(form, num, channels, height, width, num_scales):
    """Prototxt of equations (1)-(2) on the blobs of merge_shapes; form "fused" (this project's
    layers) or "stock" (Caffe's own layers)."""
    shapes = merge_shapes(num, channels, height, width, num_scales)
    scores = [f"f{s}" for s in range(num_scales)]
    text = input_layers_text(shapes)
    if form == "fused":
        text += _layer("attention", "SoftmaxOverScales", ["h"], ["w"])
        text += _layer("merge", "WeightedScaleSum", scores + ["w"], [TOP],
                       "weighted_scale_sum_param { merge: ATTENTION }")
        return text
    if form != "stock":
        raise ValueError(f"form must be 'fused' or 'stock', got {form!r}")
    text += _layer("attention", "Softmax", ["h"], ["w"], "softmax_param { axis: 1 }")
    slices = [f"w{s}" for s in range(num_scales)]
    if num_scales == 1:  # Slice needs two tops; one scale is its own weight
        text += _layer("slice", "Split", ["w"], slices)
    else:
        text += _layer("slice", "Slice", ["w"], slices, "slice_param { axis: 1 }")
    for s in range(num_scales):
        text += _layer(f"tile{s}", "Tile", [slices[s]], [f"t{s}"],
                       f"tile_param {{ axis: 1 tiles: {channels} }}")
        text += _layer(f"prod{s}", "Eltwise", [scores[s], f"t{s}"], [f"p{s}"],
                       "eltwise_param { operation: PROD }")
    products = [f"p{s}" for s in range(num_scales)]
    if num_scales == 1:
        text += _layer("sum", "Power", products, [TOP])
    else:
        text += _layer("sum", "Eltwise", products, [TOP], "eltwise_param { operation: SUM }")
    return text


def resize_net(num, channels, in_hw, out_hw):
    """One ScaleInterp (bilinear, corner-aligned) of an N x C x H_in x W_in blob "x"."""
    shapes = {"x": (num, channels) + tuple(in_hw)}
    return (input_layers_text(shapes)
            + _layer("resize", "ScaleInterp", ["x"], [TOP],
                     f"scale_interp_param {{ height: {out_hw[0]} width: {out_hw[1]} }}"))


def copy_net(count):
    """A Power layer with its defaults (power 1, scale 1, shift 0) copying a blob of `count`
    floats: its forward is exactly one caffe_copy."""
    return input_layers_text({"x": (1, 1, 1, count)}) + _layer("copy", "Power", ["x"], [TOP])
