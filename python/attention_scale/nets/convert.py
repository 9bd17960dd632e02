"""Switch a network's layers between their C++ form and their Python-layer form.

C++ form:     type: "ScaleInterp"  scale_interp_param { scale: 0.75 }
Python form:  type: "Python"  python_param { module: "attention_scale.layers"
                                             layer: "ScaleInterp" param_str: "scale: 0.75" }
DeepLab's `type: "Interp" interp_param {...}` is accepted as input and becomes ScaleInterp (its
fields are a subset of ScaleInterpParameter's, with the same names and numbers).

The two forms map one to one, so Python -> C++ -> Python and C++ -> Python -> C++ give back the
same NetParameter: a parameter block, even an empty one, is a `param_str`, even an empty one, and
no block is no `param_str`. A layer whose other block would be overwritten or dropped (a C++ layer
that already has a different python_param, a Python layer whose param_str disagrees with a block of
the C++ form it also carries) is refused by name rather than merged.

Separately, `input_fields` rewrites BVLC's `Input` layers as the net's older `input` /
`input_shape` fields, for a Caffe from before the Input layer (DeepLab-v2); BVLC Caffe reads those
fields too (it upgrades them to an Input layer).

The prototxt is parsed with the Caffe's own caffe.proto (caffe_proto.py). Comments are not kept.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from google.protobuf import text_format

from ..files import atomic_write
from ..layers.params import FIELDS, MESSAGES
from .caffe_proto import (DEEPLAB_FIELD, INPUT_FIELD, ConversionError, NetProtos,
                          caffe_file_descriptor, extend_caffe_descriptor, load_protos)
from .prototxt import parse_net, read_prototxt

__all__ = ["ConversionError", "NetProtos", "Conversion", "caffe_file_descriptor",
           "extend_caffe_descriptor", "load_protos", "to_python", "to_cpp",
           "input_layers_to_fields", "convert_net",
           "convert_text", "convert_file", "TARGETS", "LAYER_TYPES", "PYTHON_MODULE"]

PYTHON_MODULE = "attention_scale.layers"
# Module names under which a Python layer of ours is recognized (the second one imports the
# same classes); the Python form written is always PYTHON_MODULE.
_OUR_MODULES = (PYTHON_MODULE, PYTHON_MODULE + ".python_layers")
LAYER_TYPES = tuple(MESSAGES)
DEEPLAB_TYPE = "Interp"
INPUT_TYPE = "Input"
TARGETS = ("python", "cpp")
_PYTHON_FIELDS = {"module", "layer", "param_str"}  # what the Python form of our layers uses


@dataclass
class Conversion:
    """The converted network and what the user should know about it."""
    text: str
    count: int  # layers changed
    notes: List[str] = field(default_factory=list)


def _text(message):
    return text_format.MessageToString(message, as_one_line=True)


def _layer_label(layer):
    return f"layer {layer.name!r} ({layer.type})"


def _parsed(text, message_class, layer, what):
    message = message_class()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConversionError(f"{_layer_label(layer)}: cannot read {what} {text!r} as "
                              f"{message.DESCRIPTOR.name}: {exc}") from None
    return message


def _set_block(layer, field_name, message, present, source_what):
    """Put `message` into layer.<field_name> (present: even when empty); refuse to overwrite a
    block the layer already has with different contents."""
    if layer.HasField(field_name):
        existing = getattr(layer, field_name)
        if existing != message:
            raise ConversionError(
                f"{_layer_label(layer)} has both {source_what} and a {field_name} block "
                f"{{ {_text(existing)} }} that says something else; Caffe reads only one of them. "
                "Keep the one you mean, delete the other, then convert")
        present = True
    if present:
        getattr(layer, field_name).CopyFrom(message)
        getattr(layer, field_name).SetInParent()  # CopyFrom of an empty message may not
    else:  # nothing given (message is empty): no block, as no param_str
        layer.ClearField(field_name)


def _interp_to_scale_interp(layer, protos, notes):
    """DeepLab Interp -> ScaleInterp: same fields under a new name, DeepLab's precedence kept."""
    field_name = protos.interp_field
    present = layer.HasField(field_name)
    text = _text(getattr(layer, field_name)) if present else ""
    layer.ClearField(field_name)
    message = _parsed(text, type(layer.scale_interp_param), layer, DEEPLAB_FIELD)
    factors = [f for f in ("zoom_factor", "shrink_factor") if message.HasField(f)]
    size = [f for f in ("height", "width") if message.HasField(f)]
    # DeepLab's InterpLayer::Reshape tries, in order: one factor alone; height and width; both
    # factors. What it does not use is left out (ScaleInterp refuses two size rules).
    if factors and size:
        if len(factors) == 2 and len(size) == 2:
            unused, used = factors, size
        else:
            unused, used = size, factors
        for name in unused:
            message.ClearField(name)
        notes.append(f"layer {layer.name!r}: DeepLab's Interp ignores {' and '.join(unused)} "
                     f"when {' and '.join(used)} {'are' if len(used) > 1 else 'is'} set, so the "
                     f"ScaleInterp leaves {'them' if len(unused) > 1 else 'it'} out")
    _set_block(layer, "scale_interp_param", message, present, f"{DEEPLAB_FIELD} {{ {text} }}")
    layer.type = "ScaleInterp"


def _is_our_python_layer(layer):
    return (layer.type == "Python" and layer.python_param.module in _OUR_MODULES
            and layer.python_param.layer in LAYER_TYPES)


def _python_param_for(layer, layer_type, param_str):
    wanted = type(layer.python_param)()
    wanted.module, wanted.layer = PYTHON_MODULE, layer_type
    if param_str is not None:
        wanted.param_str = param_str
    return wanted


def to_python(net, protos, notes=None):
    """In place: every C++ layer of ours (and DeepLab Interp) -> Python layer. Returns the count."""
    notes = [] if notes is None else notes
    count = 0
    for layer in net.layer:
        if layer.type == DEEPLAB_TYPE:
            _interp_to_scale_interp(layer, protos, notes)
        if layer.type not in LAYER_TYPES:
            continue
        field_name = FIELDS[layer.type]
        param_str = _text(getattr(layer, field_name)) if layer.HasField(field_name) else None
        wanted = _python_param_for(layer, layer.type, param_str)
        if layer.HasField("python_param") and layer.python_param != wanted:
            raise ConversionError(
                f"{_layer_label(layer)} already has a python_param block "
                f"{{ {_text(layer.python_param)} }}, which the Python form would replace with "
                f"{{ {_text(wanted)} }}; delete it (a C++ layer does not read it), then convert")
        layer.ClearField(field_name)
        layer.python_param.CopyFrom(wanted)
        layer.type = "Python"
        count += 1
    return count


def to_cpp(net, protos, notes=None):
    """In place: every Python layer of ours (and DeepLab Interp) -> C++ layer. Returns the count."""
    notes = [] if notes is None else notes
    count = 0
    for layer in net.layer:
        if layer.type == DEEPLAB_TYPE:
            _interp_to_scale_interp(layer, protos, notes)
            count += 1
        elif _is_our_python_layer(layer):
            python = layer.python_param
            extra = [f.name for f, _ in python.ListFields() if f.name not in _PYTHON_FIELDS]
            if extra:
                raise ConversionError(
                    f"layer {layer.name!r} (Python {python.layer}): python_param "
                    f"{' and '.join(extra)} has no C++ equivalent and would be lost; delete it, "
                    "then convert")
            layer_type = python.layer
            field_name = FIELDS[layer_type]
            present = python.HasField("param_str")
            message = _parsed(python.param_str, type(getattr(layer, field_name)), layer,
                              "param_str")
            _set_block(layer, field_name, message, present, f"param_str {python.param_str!r}")
            layer.ClearField("python_param")
            layer.type = layer_type
            count += 1
    return count


def _shape_text(shape):
    return "x".join(str(d) for d in shape.dim)


def input_layers_to_fields(net, notes=None):
    """In place: every `Input` layer -> the net's `input` + `input_shape` fields (one per top),
    in the order of the layers. Returns the number of layers changed.

    Refused by name: an Input layer with bottoms, without shapes, with a number of shapes that
    is neither 1 nor its number of tops (Caffe's own rule), or with phase rules (the net-level
    fields hold in every phase); a net that already declares inputs by `input_dim`."""
    notes = [] if notes is None else notes
    inputs = [layer for layer in net.layer if layer.type == INPUT_TYPE]
    if not inputs:
        return 0
    fields = net.DESCRIPTOR.fields_by_name
    if "input_shape" not in fields:
        raise ConversionError("this caffe.proto's NetParameter has no input_shape field, so the "
                              "Input layers have no older form here")
    if len(net.input_dim):
        raise ConversionError(
            f"the net declares inputs {list(net.input)} by input_dim; Input layers cannot be "
            "added to them as input_shape (Caffe takes one kind or the other)")
    for layer in inputs:
        label = f"Input layer {layer.name!r}"
        shapes = (list(getattr(layer, INPUT_FIELD).shape)
                  if INPUT_FIELD in layer.DESCRIPTOR.fields_by_name else [])
        if layer.bottom:
            raise ConversionError(f"{label} has bottoms {list(layer.bottom)}: not an input")
        if not shapes:
            raise ConversionError(f"{label} gives no shape; the net's input_shape needs one")
        if len(shapes) not in (1, len(layer.top)):
            raise ConversionError(f"{label} has {len(layer.top)} tops and {len(shapes)} shapes "
                                  "(Caffe wants one shape, or one per top)")
        if any(len(getattr(layer, rule)) for rule in ("include", "exclude")
               if rule in layer.DESCRIPTOR.fields_by_name):
            raise ConversionError(f"{label} has include/exclude rules; the net's input fields "
                                  "hold in every phase: write one net per phase")
        for i, top in enumerate(layer.top):
            shape = shapes[i if len(shapes) > 1 else 0]
            net.input.append(top)
            net.input_shape.add().CopyFrom(shape)
            notes.append(f"{label} -> net input {top!r} ({_shape_text(shape)})")
    kept = [layer for layer in net.layer if layer.type != INPUT_TYPE]
    del net.layer[:]
    net.layer.extend(kept)
    return len(inputs)


def convert_net(text, target, protos=None, source="the network", input_fields=False):
    """Conversion of prototxt text; target is "python", "cpp" or None (layers as they are);
    input_fields: Input layers -> the net's input fields too. source names it in messages."""
    if target is not None and target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS} or None, got {target!r}")
    protos = protos or load_protos()
    net, note = parse_net(text, protos, source)
    notes = [note] if note else []
    count = 0
    if target is not None:
        count = (to_python if target == "python" else to_cpp)(net, protos, notes)
    if input_fields:
        count += input_layers_to_fields(net, notes)
    elif not protos.has_input_layer and any(layer.type == INPUT_TYPE for layer in net.layer):
        notes.append(f"{protos.origin} predates the Input layer, so that Caffe cannot read this "
                     "net's Input layers: convert with input fields (convert_net.py "
                     "--input-fields) for it")
    return Conversion(text_format.MessageToString(net), count, notes)


def convert_text(text, target, protos=None):
    """(converted prototxt text, number of layers changed); target is "python" or "cpp"."""
    result = convert_net(text, target, protos)
    return result.text, result.count


def convert_file(src, dst, target, caffe_proto=None, input_fields=False):
    """Convert the prototxt at src and write it to dst (may be src); returns the Conversion.

    Nothing is written unless the whole network converts; the output goes to a temporary file
    first and is renamed, so dst is never half-written.
    """
    protos = load_protos(caffe_proto)
    result = convert_net(read_prototxt(src, protos), target, protos, source=str(src),
                         input_fields=input_fields)
    atomic_write(Path(dst), result.text)
    return result
