"""The Caffe's caffe.proto as message classes able to hold both forms of the project's layers.

The prototxt is parsed with the Caffe's own caffe.proto: pycaffe's generated caffe_pb2 (read
without importing it, so no working libcaffe is needed), a caffe.proto compiled with protoc, or a
caffe_pb2.py file. When that Caffe was not patched with the project's layers, its file descriptor
is extended at run time (our messages and LayerParameter fields added, built in a private
descriptor pool), as tools/inject_layers.py extends the C++ build's caffe.proto.
"""

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .. import attention_scale_pb2 as our_pb2

DEEPLAB_FIELD = "interp_param"
# Number given to interp_param when the Caffe lacks it: used for text parsing only, never written.
_SPARE_INTERP_NUMBER = 2016099
# BVLC's Input layer (2016): its parameter block, added for parsing only to a caffe.proto from
# before it (DeepLab-v2), so a net with Input layers can be read there and rewritten with the
# net's older `input` / `input_shape` fields (convert.input_layers_to_fields).
INPUT_FIELD = "input_param"
_INPUT_MESSAGE = "InputParameter"
_SPARE_INPUT_NUMBER = 2016199
_FIELDS_MESSAGE = "LayerParameterFields"


class ConversionError(ValueError):
    """The prototxt or the Caffe proto cannot be converted; the message says what and where."""


@dataclass
class NetProtos:
    """Message classes able to hold a network with both forms of our layers."""
    net_parameter: type  # caffe.NetParameter
    extended: bool  # True when the Caffe proto lacked our layers and was extended here
    interp_field: str = DEEPLAB_FIELD
    # False when the Caffe's own caffe.proto predates the Input layer (its input_param block
    # parses here only because it was added for parsing).
    has_input_layer: bool = True
    # Where the caffe.proto came from, for messages: "--caffe-proto PATH" or pycaffe's file.
    origin: str = "pycaffe's caffe_pb2"
    from_user: bool = False  # True when the user named the caffe.proto (--caffe-proto)


# ---------------------------------------------------------------------------------------------
# Finding caffe.proto's descriptor
# ---------------------------------------------------------------------------------------------

# How much of a --caffe-proto file is looked at before protoc sees it (a caffe.proto is ~60 KB),
# and how much of protoc's complaint is kept: a binary file gave it tens of MB of error text.
_SNIFF_BYTES = 1 << 20
_PROTOC_ERROR_CHARS = 4000
_MESSAGE_DEFINITION = re.compile(rb"^\s*message\b", re.MULTILINE)
_NET_TEXT = re.compile(rb"^\s*(layers?\s*\{|input\s*:|input_shape\s*\{)", re.MULTILINE)
_SOLVER_TEXT = re.compile(rb"^\s*(net|train_net|base_lr|lr_policy|max_iter)\s*:", re.MULTILINE)


def _not_a_proto_file(path):
    """Why the file at path cannot be a caffe.proto (None when it may be one), from its start:
    protoc given a .caffemodel or a net prototxt answers with pages of syntax errors."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\0" in head or _undecodable(head):
        return ("a binary file (a .caffemodel or .solverstate?), not a caffe.proto: give the "
                "Caffe's src/caffe/proto/caffe.proto, the message definitions")
    if _MESSAGE_DEFINITION.search(head):
        return None
    if _NET_TEXT.search(head):
        kind = "a network prototxt (NetParameter text)"
    elif _SOLVER_TEXT.search(head):
        kind = "a solver prototxt (SolverParameter text)"
    else:
        kind = "a text file without any `message` definition"
    return (f"{kind}, not a caffe.proto: give the Caffe's src/caffe/proto/caffe.proto, which "
            "defines the messages such a file is written in")


def _undecodable(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut off by the read's end is not a sign of binary data
        return exc.start < len(data) - 4
    return False


def _bounded_protoc_stderr(stderr_file):
    """protoc's complaint from its stderr file, cut to a few thousand characters."""
    stderr_file.seek(0)
    text = stderr_file.read(_PROTOC_ERROR_CHARS + 1).decode("utf-8", "replace")
    if len(text) > _PROTOC_ERROR_CHARS:
        cut = text[:_PROTOC_ERROR_CHARS].rsplit("\n", 1)[0]
        return cut + "\n... (protoc's further output left out)"
    return text


def _descriptor_from_proto_file(path):
    """Compile a caffe.proto with protoc and return its FileDescriptorProto."""
    path = Path(path)
    if path.is_dir():
        raise ConversionError(f"--caffe-proto {path}: a folder, not a caffe.proto file")
    if not path.is_file():
        raise ConversionError(f"--caffe-proto {path}: no such file")
    why = _not_a_proto_file(path)
    if why:
        raise ConversionError(f"--caffe-proto {path}: {why}")
    protoc = shutil.which("protoc")
    if protoc is None:
        raise ConversionError("`protoc` is needed to read a caffe.proto (apt-get install "
                              "protobuf-compiler); or omit --caffe-proto to use pycaffe's caffe_pb2")
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as stderr_file:
        out = Path(tmp) / "caffe.desc"
        # stderr into a file, not a pipe: only its start is read back, however much protoc writes
        result = subprocess.run(
            [protoc, f"--proto_path={path.parent.resolve()}", f"--descriptor_set_out={out}",
             "--include_imports", path.name], stdout=subprocess.DEVNULL, stderr=stderr_file)
        if result.returncode != 0:
            raise ConversionError(f"protoc could not compile {path}:\n"
                                  f"{_bounded_protoc_stderr(stderr_file)}")
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
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise ConversionError(f"cannot read {path} as a generated caffe_pb2.py: {exc}") from None
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
    return _caffe_file_descriptor(caffe_proto)[0]


def _caffe_file_descriptor(caffe_proto=None):
    """(FileDescriptorProto, where it came from)."""
    if caffe_proto is not None:
        origin = f"--caffe-proto {caffe_proto}"
        if str(caffe_proto).endswith(".py"):
            return _descriptor_from_pb2_source(caffe_proto), origin
        return _descriptor_from_proto_file(caffe_proto), origin
    module = sys.modules.get("caffe.proto.caffe_pb2")
    if module is not None:
        return (descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb),
                f"pycaffe's caffe_pb2 ({getattr(module, '__file__', 'loaded')})")
    path = _find_caffe_pb2_file()
    return _descriptor_from_pb2_source(path), f"pycaffe's caffe_pb2 ({path})"


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


def _relative(type_name, package):
    prefix = f".{package}." if package else "."
    return type_name[len(prefix):] if type_name.startswith(prefix) else type_name


def _normalized(message, package):
    """A copy of a DescriptorProto that compares equal across packages and generators: type
    names relative to the package; json names, options and reserved ranges dropped."""
    copy = descriptor_pb2.DescriptorProto()
    copy.CopyFrom(message)
    copy.ClearField("options")
    copy.ClearField("reserved_range")
    copy.ClearField("reserved_name")
    for field in copy.field:
        field.ClearField("json_name")
        field.ClearField("options")
        if field.type_name:
            field.type_name = _relative(field.type_name, package)
    for enum in copy.enum_type:
        enum.ClearField("options")
        for value in enum.value:
            value.ClearField("options")
    nested = [_normalized(m, package) for m in copy.nested_type]
    del copy.nested_type[:]
    copy.nested_type.extend(nested)
    return copy


def _field_signature(field):
    kind = descriptor_pb2.FieldDescriptorProto.Type.Name(field.type)[5:].lower()
    text = f"{field.name} = {field.number} ({kind}"
    if field.type_name:
        text += f" {field.type_name}"
    if field.HasField("default_value"):
        text += f", default {field.default_value}"
    return text + ")"


def _message_differences(theirs, ours):
    """Human-readable differences between two normalized DescriptorProtos."""
    their_fields = {f.name: _field_signature(f) for f in theirs.field}
    our_fields = {f.name: _field_signature(f) for f in ours.field}
    notes = []
    for name, signature in our_fields.items():
        if name not in their_fields:
            notes.append(f"lacks {signature}")
        elif their_fields[name] != signature:
            notes.append(f"has {their_fields[name]} where the project has {signature}")
    notes += [f"has {signature}, which the project's lacks"
              for name, signature in their_fields.items() if name not in our_fields]
    their_enums = {e.name: [(v.name, v.number) for v in e.value] for e in theirs.enum_type}
    for enum in ours.enum_type:
        values = [(v.name, v.number) for v in enum.value]
        if their_enums.get(enum.name) != values:
            notes.append(f"enum {enum.name} is {their_enums.get(enum.name)}, the project's is "
                         f"{values}")
    return notes or ["its nested declarations differ"]


def _check_same_message(fdp, theirs, ours_fdp, ours, origin):
    """Refuse a caffe.proto whose message of one of our names is not ours (a fork's own, or an
    outdated injection): its fields would be read with the wrong meaning."""
    a, b = _normalized(theirs, fdp.package), _normalized(ours, ours_fdp.package)
    if a == b:
        return
    raise ConversionError(
        f"{origin} defines its own message {theirs.name}, which is not this project's: it "
        + "; ".join(_message_differences(a, b))
        + ". If tools/inject_layers.py added it, the tree's injection is out of date: run "
          "`tools/inject_layers.py <caffe root>` again and rebuild; if the Caffe has its own "
          f"layer of that name, the project's {theirs.name} cannot share a caffe.proto with it")


def extend_caffe_descriptor(caffe_fdp, origin="this caffe.proto"):
    """(FileDescriptorProto, changed): caffe.proto plus whatever of our messages/fields it lacks.

    Mirrors what tools/inject_layers.py does to the C++ build's caffe.proto: messages copied into
    the caffe package, fields added to LayerParameter with their fixed numbers. A message or field
    of ours that the proto already has must be the project's own, or the proto is refused.
    """
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.CopyFrom(caffe_fdp)
    ours = _our_file_descriptor()
    our_prefix, caffe_prefix = f".{ours.package}.", f".{fdp.package}." if fdp.package else "."
    layer = _message(fdp, "LayerParameter")
    by_name = {f.name: f for f in layer.field}
    by_number = {f.number: f for f in layer.field}
    have_messages = {m.name: m for m in fdp.message_type}
    changed = False

    for message in ours.message_type:
        if message.name == _FIELDS_MESSAGE:
            continue
        if message.name in have_messages:
            _check_same_message(fdp, have_messages[message.name], ours, message, origin)
            continue
        copy = fdp.message_type.add()
        copy.CopyFrom(message)
        for field in copy.field:
            if field.type_name.startswith(our_prefix):
                field.type_name = caffe_prefix + field.type_name[len(our_prefix):]
        changed = True

    for field in _message(ours, _FIELDS_MESSAGE).field:
        wanted_type = caffe_prefix + field.type_name[len(our_prefix):]
        existing = by_name.get(field.name)
        if existing is not None:
            if existing.number != field.number:
                raise ConversionError(
                    f"{origin} declares LayerParameter.{field.name} = {existing.number}, "
                    f"but the project uses number {field.number}")
            if existing.type_name != wanted_type:
                raise ConversionError(
                    f"{origin} declares LayerParameter.{field.name} with type "
                    f"{existing.type_name or existing.type}, but the project's is {wanted_type}")
            continue
        if field.number in by_number:
            raise ConversionError(
                f"{origin} already uses LayerParameter field number {field.number} for "
                f"{by_number[field.number].name}; the project needs it for {field.name}")
        added = layer.field.add()
        added.CopyFrom(field)
        added.type_name = wanted_type
        changed = True

    if DEEPLAB_FIELD not in by_name:  # a BVLC caffe.proto: let DeepLab's Interp blocks parse
        _add_spare_field(layer, DEEPLAB_FIELD, _SPARE_INTERP_NUMBER,
                         caffe_prefix + "ScaleInterpParameter")
        changed = True
    if (INPUT_FIELD not in by_name and "BlobShape" in have_messages
            and _INPUT_MESSAGE not in have_messages):  # a Caffe from before the Input layer
        message = fdp.message_type.add(name=_INPUT_MESSAGE)
        message.field.add(name="shape", number=1,
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                          type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                          type_name=caffe_prefix + "BlobShape")
        _add_spare_field(layer, INPUT_FIELD, _SPARE_INPUT_NUMBER, caffe_prefix + _INPUT_MESSAGE)
        changed = True
    return fdp, changed


def _add_spare_field(layer, name, first_number, type_name):
    """An optional message field of LayerParameter at the first free number from first_number:
    for parsing text only (its number is never written to a file)."""
    taken = {f.number for f in layer.field}
    number = first_number
    while number in taken:
        number += 1
    layer.field.add(name=name, number=number,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                    type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=type_name)


def load_protos(caffe_proto=None):
    """NetProtos for the Caffe at hand (pycaffe's caffe_pb2, or the given caffe.proto / pb2 file)."""
    caffe_fdp, origin = _caffe_file_descriptor(caffe_proto)
    has_input = any(f.name == INPUT_FIELD for f in _message(caffe_fdp, "LayerParameter").field)
    fdp, changed = extend_caffe_descriptor(caffe_fdp, origin)
    from_user = caffe_proto is not None
    module = sys.modules.get("caffe.proto.caffe_pb2")
    if not changed and not from_user and module is not None:
        return NetProtos(module.NetParameter, extended=False, origin=origin)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    name = f"{fdp.package}.NetParameter" if fdp.package else "NetParameter"
    return NetProtos(message_class(pool.FindMessageTypeByName(name)),
                     extended=changed, origin=origin, from_user=from_user,
                     has_input_layer=has_input)


def message_class(descriptor):
    """The message class of a descriptor: GetMessageClass since protobuf 4.21 (3.20, the runtime
    that matches an Ubuntu 22.04 protoc 3.12, has only the factory object)."""
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)
