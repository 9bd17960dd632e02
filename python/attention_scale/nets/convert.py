"""Switch a network's layers between their C++ form and their Python-layer form.

C++ form:     type: "ScaleInterp"  scale_interp_param { scale: 0.75 }
Python form:  type: "Python"  python_param { module: "attention_scale.layers"
                                             layer: "ScaleInterp" param_str: "scale: 0.75" }
DeepLab's `type: "Interp" interp_param {...}` is accepted as input and becomes ScaleInterp (its
fields are a subset of ScaleInterpParameter's, with the same names and numbers).

The prototxt is parsed with the Caffe's own caffe.proto. When that Caffe was not patched with our
layers, its file descriptor is extended at run time (our messages and LayerParameter fields added,
built in a private descriptor pool), so the converter works with any pycaffe or a bare caffe.proto.
Comments in the input prototxt are not kept.
"""

import ast
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from .. import attention_scale_pb2 as our_pb2
from ..files import atomic_write
from ..layers.params import FIELDS, MESSAGES

PYTHON_MODULE = "attention_scale.layers"
LAYER_TYPES = tuple(MESSAGES)
DEEPLAB_TYPE, DEEPLAB_FIELD = "Interp", "interp_param"
TARGETS = ("python", "cpp")
# Number given to interp_param when the Caffe lacks it: used for text parsing only, never written.
_SPARE_INTERP_NUMBER = 2016099


class ConversionError(ValueError):
    """The prototxt or the Caffe proto cannot be converted; the message says which layer."""


@dataclass
class NetProtos:
    """Message classes able to hold a network with both forms of our layers."""
    net_parameter: type  # caffe.NetParameter
    extended: bool  # True when the Caffe proto lacked our layers and was extended here
    interp_field: str = DEEPLAB_FIELD


# ---------------------------------------------------------------------------------------------
# Finding caffe.proto's descriptor
# ---------------------------------------------------------------------------------------------

def _descriptor_from_proto_file(path):
    """Compile a caffe.proto with protoc and return its FileDescriptorProto."""
    path = Path(path)
    protoc = shutil.which("protoc")
    if protoc is None:
        raise ConversionError("`protoc` is needed to read a caffe.proto (apt-get install "
                              "protobuf-compiler); or omit --caffe-proto to use pycaffe's caffe_pb2")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "caffe.desc"
        result = subprocess.run(
            [protoc, f"--proto_path={path.parent.resolve()}", f"--descriptor_set_out={out}",
             "--include_imports", path.name], capture_output=True, text=True)
        if result.returncode != 0:
            raise ConversionError(f"protoc could not compile {path}:\n{result.stderr}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    for fdp in files:
        if any(m.name == "NetParameter" for m in fdp.message_type):
            return fdp
    raise ConversionError(f"{path} declares no NetParameter message: not a caffe.proto")


def _bytes_literal(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value
    # protoc < 3.20 wrote serialized_pb=_b('...') with _b = latin-1 encode
    if (isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return node.args[0].value.encode("latin-1")
    return None


def _descriptor_from_pb2_source(path):
    """Read the serialized descriptor out of a generated caffe_pb2.py without importing it.

    Importing caffe_pb2 imports the caffe package and with it libcaffe; reading the literal does
    not, so conversion needs no working pycaffe.
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        candidates = list(node.args[:1]) if name == "AddSerializedFile" else []
        candidates += [kw.value for kw in node.keywords if kw.arg == "serialized_pb"]
        for candidate in candidates:
            data = _bytes_literal(candidate)
            if data is not None:
                return descriptor_pb2.FileDescriptorProto.FromString(data)
    raise ConversionError(f"no serialized file descriptor found in {path}")


def _find_caffe_pb2_file():
    spec = importlib.util.find_spec("caffe")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            "pycaffe (the `caffe` package) is not importable, so its caffe.proto is unknown: "
            "put Caffe's python/ on PYTHONPATH or pass the Caffe's caffe.proto (--caffe-proto)")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "proto" / "caffe_pb2.py"
        if candidate.is_file():
            return candidate
    raise ConversionError("the caffe package has no proto/caffe_pb2.py (was pycaffe built?)")


def caffe_file_descriptor(caffe_proto=None):
    """caffe.proto's FileDescriptorProto: from a .proto path, a loaded caffe_pb2 or pycaffe's file."""
    if caffe_proto is not None:
        if str(caffe_proto).endswith(".py"):
            return _descriptor_from_pb2_source(caffe_proto)
        return _descriptor_from_proto_file(caffe_proto)
    module = sys.modules.get("caffe.proto.caffe_pb2")
    if module is not None:
        return descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    return _descriptor_from_pb2_source(_find_caffe_pb2_file())


# ---------------------------------------------------------------------------------------------
# Extending it with our layers
# ---------------------------------------------------------------------------------------------

def _our_file_descriptor():
    return descriptor_pb2.FileDescriptorProto.FromString(our_pb2.DESCRIPTOR.serialized_pb)


def _message(fdp, name):
    for message in fdp.message_type:
        if message.name == name:
            return message
    raise ConversionError(f"{fdp.name} has no message {name}: not a caffe.proto")


def extend_caffe_descriptor(caffe_fdp):
    """(FileDescriptorProto, changed): caffe.proto plus whatever of our messages/fields it lacks.

    Mirrors what tools/inject_layers.py does to the C++ build's caffe.proto: messages copied into
    the caffe package, fields added to LayerParameter with their fixed numbers.
    """
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.CopyFrom(caffe_fdp)
    ours = _our_file_descriptor()
    our_prefix, caffe_prefix = f".{ours.package}.", f".{fdp.package}." if fdp.package else "."
    layer = _message(fdp, "LayerParameter")
    by_name = {f.name: f for f in layer.field}
    by_number = {f.number: f for f in layer.field}
    have_messages = {m.name for m in fdp.message_type}
    changed = False

    for message in ours.message_type:
        if message.name == "LayerParameterFields" or message.name in have_messages:
            continue
        copy = fdp.message_type.add()
        copy.CopyFrom(message)
        for field in copy.field:
            if field.type_name.startswith(our_prefix):
                field.type_name = caffe_prefix + field.type_name[len(our_prefix):]
        changed = True

    for field in _message(ours, "LayerParameterFields").field:
        existing = by_name.get(field.name)
        if existing is not None:
            if existing.number != field.number:
                raise ConversionError(
                    f"this caffe.proto declares LayerParameter.{field.name} = {existing.number}, "
                    f"but the project uses number {field.number}")
            continue
        if field.number in by_number:
            raise ConversionError(
                f"this caffe.proto already uses LayerParameter field number {field.number} for "
                f"{by_number[field.number].name}; the project needs it for {field.name}")
        added = layer.field.add()
        added.CopyFrom(field)
        added.type_name = caffe_prefix + field.type_name[len(our_prefix):]
        changed = True

    if DEEPLAB_FIELD not in by_name:  # a BVLC caffe.proto: let DeepLab's Interp blocks parse
        number = _SPARE_INTERP_NUMBER
        while number in by_number:
            number += 1
        added = layer.field.add(name=DEEPLAB_FIELD, number=number,
                                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                                type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                                type_name=caffe_prefix + "ScaleInterpParameter")
        changed = True
    return fdp, changed


def load_protos(caffe_proto=None):
    """NetProtos for the Caffe at hand (pycaffe's caffe_pb2, or the given caffe.proto / pb2 file)."""
    fdp, changed = extend_caffe_descriptor(caffe_file_descriptor(caffe_proto))
    module = sys.modules.get("caffe.proto.caffe_pb2")
    if not changed and caffe_proto is None and module is not None:
        return NetProtos(module.NetParameter, extended=False)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    name = f"{fdp.package}.NetParameter" if fdp.package else "NetParameter"
    return NetProtos(message_factory.GetMessageClass(pool.FindMessageTypeByName(name)),
                     extended=changed)


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------

def _text(message):
    return text_format.MessageToString(message, as_one_line=True)


def _parse_into(text, message, layer, what):
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConversionError(f"layer {layer.name!r} ({layer.type}): cannot read {what} "
                              f"{text!r} as {message.DESCRIPTOR.name}: {exc}") from None


def _interp_to_scale_interp(layer, protos):
    """DeepLab Interp -> ScaleInterp: same fields under a new name."""
    if layer.HasField(protos.interp_field):
        text = _text(getattr(layer, protos.interp_field))
        layer.ClearField(protos.interp_field)
        _parse_into(text, layer.scale_interp_param, layer, "interp_param")
    layer.type = "ScaleInterp"


def _is_our_python_layer(layer):
    return (layer.type == "Python" and layer.python_param.module == PYTHON_MODULE
            and layer.python_param.layer in LAYER_TYPES)


def to_python(net, protos):
    """In place: every C++ layer of ours (and DeepLab Interp) -> Python layer. Returns the count."""
    count = 0
    for layer in net.layer:
        if layer.type == DEEPLAB_TYPE:
            _interp_to_scale_interp(layer, protos)
        if layer.type not in LAYER_TYPES:
            continue
        field = FIELDS[layer.type]
        param_str = _text(getattr(layer, field)) if layer.HasField(field) else ""
        layer.ClearField(field)
        python = layer.python_param
        python.module, python.layer = PYTHON_MODULE, layer.type
        if param_str:
            python.param_str = param_str
        layer.type = "Python"
        count += 1
    return count


def to_cpp(net, protos):
    """In place: every Python layer of ours (and DeepLab Interp) -> C++ layer. Returns the count."""
    count = 0
    for layer in net.layer:
        if layer.type == DEEPLAB_TYPE:
            _interp_to_scale_interp(layer, protos)
            count += 1
        elif _is_our_python_layer(layer):
            layer_type, param_str = layer.python_param.layer, layer.python_param.param_str
            field = FIELDS[layer_type]
            layer.ClearField("python_param")
            layer.type = layer_type
            _parse_into(param_str, getattr(layer, field), layer, "param_str")
            count += 1
    return count


def convert_text(text, target, protos=None):
    """(converted prototxt text, number of layers changed); target is "python" or "cpp"."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    protos = protos or load_protos()
    net = protos.net_parameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as exc:
        raise ConversionError(f"cannot parse the network: {exc}") from None
    count = (to_python if target == "python" else to_cpp)(net, protos)
    return text_format.MessageToString(net), count


def convert_file(src, dst, target, caffe_proto=None):
    """Convert the prototxt at src and write it to dst (may be src); returns layers changed.

    The output is written to a temporary file first and renamed, so dst is never half-written.
    """
    text, count = convert_text(Path(src).read_text(), target, load_protos(caffe_proto))
    atomic_write(dst, text)
    return count
