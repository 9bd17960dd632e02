"""What a .caffemodel holds (layer names, blob shapes) and whether it fills a network's layers.

caffe.Net(prototxt, weights) copies a .caffemodel's blobs into the net by layer name. A layer the
model has and the net lacks is skipped and a layer the net has and the model lacks keeps its
initial values (the prototxt's fillers: zeros or noise), both without a word; a blob whose shape
differs ends the process (LOG(FATAL)). Evaluating a net whose classifier kept its fillers (a
DeepLab model names it `fc8_voc12`, these nets `fc8`) gives meaningless predictions and a mIOU
that looks like a result. check_weights_fit finds all of it before the copy, names the layers on
both sides and refuses; only blobs the prototxt fixes itself (lr_mult: 0, e.g. a bilinear
upsampling kernel) may stay as they are, with a warning. For evaluation, learned layers the net
lacks are refused too: an attention model's weights in a max-merge net run and look plausible.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from google.protobuf.message import DecodeError

_SHOWN = 6


class WeightsMismatch(ValueError):
    """The .caffemodel does not fit the net: the message names the layers and what to do."""


@dataclass(frozen=True)
class SavedShape:
    """A saved blob's shape: `shape { dim }`, or the legacy num/channels/height/width fields,
    which Caffe compares with the net blob's shape padded to 4 axes (Blob::ShapeEquals)."""
    dims: Tuple[int, ...]
    legacy: bool = False

    def fits(self, shape: Sequence[int]) -> bool:
        shape = tuple(int(d) for d in shape)
        if self.legacy:
            return len(shape) <= 4 and (1,) * (4 - len(shape)) + shape == self.dims
        return shape == self.dims

    def __str__(self):
        return _shape_text(self.dims)


def _shape_text(dims):
    return " x ".join(str(d) for d in dims) if len(dims) else "scalar"


def _saved_shape(blob) -> SavedShape:
    legacy_fields = ("num", "channels", "height", "width")
    if not blob.HasField("shape") and any(blob.HasField(f) for f in legacy_fields):
        return SavedShape(tuple(getattr(blob, f) for f in legacy_fields), legacy=True)
    return SavedShape(tuple(blob.shape.dim))


def read_saved_shapes(path, net_parameter) -> Dict[str, List[SavedShape]]:
    """{layer name: [saved blob shapes]} of a binary .caffemodel (layers without blobs left out;
    V1 `layers` included, as Caffe upgrades them). net_parameter: the caffe.NetParameter class."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsMismatch(f"cannot read the weights {path}: {exc.strerror}") from None
    model = net_parameter()
    try:
        model.ParseFromString(data)
    except DecodeError:
        raise WeightsMismatch(f"{path} is not a .caffemodel (a binary caffe.NetParameter); a "
                              "text prototxt or a .solverstate given in place of the weights?") from None
    layers = list(model.layer)
    if "layers" in model.DESCRIPTOR.fields_by_name:
        layers += list(model.layers)
    shapes = {layer.name: [_saved_shape(b) for b in layer.blobs] for layer in layers if layer.blobs}
    if not shapes:
        raise WeightsMismatch(f"{path} holds no weights (no layer with blobs): not a trained "
                              ".caffemodel")
    return shapes


@dataclass
class NetParams:
    """The learnable blobs of a built net and how its prototxt declares them."""
    shapes: Dict[str, List[Tuple[int, ...]]]  # layer -> its blobs' shapes, net order
    shared: Dict[Tuple[str, int], str]  # (layer, blob) -> `param { name }` where one is given
    fixed: Dict[Tuple[str, int], bool]  # (layer, blob) -> lr_mult given as 0


def net_params(net, net_param) -> NetParams:
    """NetParams of a pycaffe net and its parsed NetParameter (the same prototxt)."""
    shapes = {name: [tuple(blob.data.shape) for blob in blobs]
              for name, blobs in net.params.items()}
    shared, fixed = {}, {}
    for layer in net_param.layer:
        for i, spec in enumerate(layer.param):
            if spec.name:
                shared[(layer.name, i)] = spec.name
            fixed[(layer.name, i)] = spec.HasField("lr_mult") and spec.lr_mult == 0
    return NetParams(shapes, shared, fixed)


@dataclass
class Fit:
    mismatched: List[str]  # "layer 'fc8' blob 0: 21 x 1024 x 1 x 1 saved, 2 x ... in the net"
    unfilled: Dict[str, List[int]]  # layer -> blobs no saved blob reaches (directly or shared)
    unfilled_fixed: Dict[str, List[int]]  # the same for blobs the prototxt fixes (lr_mult: 0)
    unused: List[str]  # saved layers the net does not have


def fit(params: NetParams, saved: Dict[str, List[SavedShape]]) -> Fit:
    """How Caffe's copy by name would go (Net::CopyTrainedLayersFrom), blob sharing included: a
    shared blob is filled when any layer holding it is."""
    mismatched = []
    filled_names = set()
    for layer, shapes in params.shapes.items():
        if layer not in saved:
            continue
        blobs = saved[layer]
        if len(blobs) != len(shapes):
            mismatched.append(f"layer {layer!r}: {len(blobs)} blob(s) saved, {len(shapes)} in "
                              "the net (a bias_term that differs?)")
            continue
        for i, (saved_shape, shape) in enumerate(zip(blobs, shapes)):
            if not saved_shape.fits(shape):
                mismatched.append(f"layer {layer!r} blob {i}: {saved_shape} saved, "
                                  f"{_shape_text(shape)} in the net")
        filled_names.update(name for (owner, _), name in params.shared.items() if owner == layer)
    unfilled, unfilled_fixed = {}, {}
    for layer, shapes in params.shapes.items():
        if layer in saved:
            continue
        for i in range(len(shapes)):
            if params.shared.get((layer, i)) in filled_names:
                continue
            target = unfilled_fixed if params.fixed.get((layer, i)) else unfilled
            target.setdefault(layer, []).append(i)
    unused = [layer for layer in saved if layer not in params.shapes]
    return Fit(mismatched, unfilled, unfilled_fixed, unused)


def _listed(items, describe):
    shown = "; ".join(describe(item) for item in items[:_SHOWN])
    return shown + (f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


MISMATCH_ADVICE = ("Are they the weights of this net (its number of classes, its variant)? To "
                   "learn such a layer afresh instead, rename it in the prototxt")


# At test time a layer cannot be learned afresh (a renamed one keeps the prototxt's fillers):
# the weights have to be the ones trained with this net.
INFERENCE_MISMATCH_ADVICE = ("Are they the weights of this net (its number of classes, its "
                             "variant)? Give the weights trained with this prototxt, or the "
                             "prototxt they were trained with")


UNUSED_ADVICE = ("They were learned as part of another net (an attention model given a max- or "
                 "average-merge net, say), and the net would give that other net's results "
                 "without them: use the test prototxt of the variant the weights were trained "
                 "with")


def check_weights_fit(params: NetParams, saved: Dict[str, List[SavedShape]], weights,
                      prototxt, mismatch_advice=MISMATCH_ADVICE, refuse_unused=False) -> List[str]:
    """Raise WeightsMismatch when the saved weights would end the process or leave learnable
    blobs of the net at their initial values, or (refuse_unused) hold learned layers the net
    lacks; else the warnings (fixed blobs left as declared)."""
    result = fit(params, saved)
    if result.mismatched:
        raise WeightsMismatch(
            f"{weights} does not fit {prototxt}: {_listed(result.mismatched, str)}. Caffe would "
            f"stop the process on this. {mismatch_advice}")
    if result.unfilled:
        def net_layer(layer):
            shapes = [_shape_text(params.shapes[layer][i]) for i in result.unfilled[layer]]
            return f"{layer!r} ({', '.join(shapes)})"

        def saved_layer(layer):
            return f"{layer!r} ({', '.join(str(shape) for shape in saved[layer])})"

        unused = ""
        if result.unused:
            unused = (" The saved layers the net does not use: "
                      f"{_listed(result.unused, saved_layer)}; if one of them is the same layer "
                      "under another name, rename it in the prototxt.")
        raise WeightsMismatch(
            f"{weights} has no weights for {len(result.unfilled)} layer(s) of {prototxt}: "
            f"{_listed(list(result.unfilled), net_layer)}. They would keep their initial values "
            f"(the prototxt's fillers) and the net's outputs would mean nothing.{unused}")
    learned_unused = [layer for layer in result.unused if saved[layer]]
    if refuse_unused and learned_unused:
        raise WeightsMismatch(
            f"{weights} holds learned layers that {prototxt} does not have: "
            f"{_listed(learned_unused, lambda layer: repr(layer))}. {UNUSED_ADVICE}")
    return [f"{prototxt}: layer {layer!r} blob(s) {', '.join(map(str, blobs))} are not in "
            f"{weights}; they keep the values the prototxt gives them (lr_mult: 0)"
            for layer, blobs in result.unfilled_fixed.items()]


def check_net_weights(net, text, weights, source, mismatch_advice=MISMATCH_ADVICE,
                      refuse_unused=False) -> List[str]:
    """check_weights_fit for a built pycaffe net, its prototxt text (named `source` in messages)
    and the .caffemodel at `weights`. mismatch_advice: a string, or a function of the saved
    shapes giving one. Nothing is compared where the text does not parse here (Caffe read it)."""
    from .caffe_proto import ConversionError, load_protos
    from .prototxt import parse_net

    protos = load_protos()
    try:
        net_param, _ = parse_net(text, protos, source)
    except ConversionError:
        return []
    saved = read_saved_shapes(weights, protos.net_parameter)
    if callable(mismatch_advice):
        mismatch_advice = mismatch_advice(saved)
    return check_weights_fit(net_params(net, net_param), saved, weights, source,
                             mismatch_advice, refuse_unused)
