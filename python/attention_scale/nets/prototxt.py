"""Reading a network prototxt for conversion, with the errors a user can act on.

Refused, each with a message that says what the file is and what to do: a binary file (a
.caffemodel given by mistake), a template whose placeholders (${NUM_LABELS}, as in DeepLab's
configs) are not filled in, a solver prototxt, fields the chosen caffe.proto lacks (a fork's
prototxt read with a stock pycaffe: --caffe-proto), and V1 `layers { }` nets, which are named layer
by layer and pointed to Caffe's upgrade tool rather than skipped.
"""

import difflib
import importlib.util
import re
import shutil
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .caffe_proto import ConversionError

# Bytes that never occur in protobuf text: a file holding them is binary (a .caffemodel's field
# tags and lengths are such bytes).
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
# Tokens that matter for placeholders: strings and comments (skipped), $NAME and ${NAME}.
_TEMPLATE_SCAN = re.compile(
    r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\#[^\n]*|\$\{[^}\n]*\}|\$[A-Za-z_]\w*""")
# NetParameter has no such fields; SolverParameter does.
_SOLVER_FIELDS = {"net", "train_net", "test_net", "base_lr", "lr_policy", "max_iter",
                  "solver_mode", "snapshot_prefix", "test_iter", "net_param", "solver_type",
                  "type", "momentum", "weight_decay", "display"}
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_NO_ENUM_VALUE = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')
UPGRADE_TOOL = "upgrade_net_proto_text"


class NotAPrototxt(ConversionError):
    """A binary file where a text prototxt was expected; `weights` when it is a .caffemodel."""

    def __init__(self, message, weights):
        super().__init__(message)
        self.weights = weights


def read_prototxt(path, protos):
    """The text of the prototxt at `path`; a binary or non-UTF-8 file is refused with what it is."""
    data = Path(path).read_bytes()
    control = _BINARY_BYTES.search(data)
    if control is not None:
        raise NotAPrototxt(f"{path}: {_describe_binary(data, control.start(), protos)}",
                           weights=bool(_layer_names_of_binary_net(data, protos)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(
            f"{path}: not UTF-8 text (byte {exc.start}); a prototxt is protobuf text: re-encode "
            "it (e.g. `iconv -f latin1 -t utf-8`)") from None


def _layer_names_of_binary_net(data, protos):
    """Layer names when `data` parses as a binary NetParameter with named layers, else []."""
    net = protos.net_parameter()
    try:
        net.ParseFromString(data)
    except DecodeError:
        return []
    layers = list(net.layer)
    if "layers" in net.DESCRIPTOR.fields_by_name:  # V1 layers, in old .caffemodel files
        layers += list(net.layers)
    names = [layer.name for layer in layers]
    return names if names and all(names) else []


def _describe_binary(data, offset, protos):
    names = _layer_names_of_binary_net(data, protos)
    if names:
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        return (f"this is a binary NetParameter (byte {offset}) with {len(names)} layer(s) "
                f"({shown}): a .caffemodel (trained weights), not a network definition. The "
                "converter reads text prototxt files (the net you pass to `caffe train --model` "
                "or caffe.Net). Weights need no conversion: Caffe copies them into a net by "
                "layer name, whichever form the net's layers have, and the project's layers have "
                "none")
    return (f"this is not a text prototxt: it holds binary data (byte {offset}). The converter "
            "reads network definitions in protobuf text format (.prototxt)")


def template_placeholders(text):
    """[(placeholder, line, inside_string)] for $NAME / ${NAME} in the text (not in comments)."""
    found = []
    for match in _TEMPLATE_SCAN.finditer(text):
        token = match.group()
        line = text.count("\n", 0, match.start()) + 1
        if token.startswith("$"):
            found.append((token, line, False))
        elif token[0] in "\"'":
            found += [(inner, line, True)
                      for inner in re.findall(r"\$\{[^}]*\}|\$[A-Za-z_]\w*", token)]
    return found


def _summarize(placeholders):
    lines = {}
    for token, line, _ in placeholders:
        lines.setdefault(token, []).append(line)
    return ", ".join(f"{token} (line{'s' if len(where) > 1 else ''} "
                     f"{', '.join(map(str, where[:4]))}{', ...' if len(where) > 4 else ''})"
                     for token, where in lines.items())


def check_template(text, source):
    """Refuse a template whose placeholders stand where values go; return a note (or None) for
    placeholders inside strings, which parse and are kept as they are."""
    placeholders = template_placeholders(text)
    bare = [p for p in placeholders if not p[2]]
    if bare:
        raise ConversionError(
            f"{source} is a template: {_summarize(bare)} must be filled in first (DeepLab's "
            "run scripts do it with sed; or e.g. `NUM_LABELS=21 envsubst < in > out`), then "
            "convert the filled-in copy")
    quoted = [p for p in placeholders if p[2]]
    if quoted:
        return (f"{source} still holds template placeholders inside strings, kept as they are: "
                f"{_summarize(quoted)}")
    return None


CAFFE_PROTO_ADVICE = ("Pass that Caffe's caffe.proto (or its generated caffe_pb2.py) with "
                      "--caffe-proto PATH")


def _parse_hint(message, protos, fork_advice=CAFFE_PROTO_ADVICE):
    enum = _NO_ENUM_VALUE.search(message)
    if enum is not None:
        return _enum_hint(_pool(protos), *enum.groups())
    match = _NO_FIELD.search(message)
    if match is None:
        return ""
    owner, field = match.groups()
    if owner.rsplit(".", 1)[-1] == "NetParameter" and field in _SOLVER_FIELDS:
        return (". This looks like a solver prototxt: convert the network file it names "
                "(net: / train_net:) instead")
    if owner.rsplit(".", 1)[-1] == "NetParameter" and field == "layers":
        return ". " + v1_advice()
    close = _close_fields(_pool(protos), owner, field)
    if close:
        return (f". Did you mean {' or '.join(repr(name) for name in close)}? (If not, the "
                f"network was written for another Caffe's caffe.proto.)")
    if protos.from_user:
        return (f". {protos.origin} lacks that field: is it the caffe.proto of the Caffe this "
                "network was written for?")
    return (f". The network was written for a Caffe whose caffe.proto has that field (a fork: "
            f"DeepLab's adds e.g. ImageDataParameter.label_type), but {protos.origin} lacks it. "
            f"{fork_advice}")


def misspelling_hint(message, pool):
    """For protobuf's text-format error `message` about a field or an enum value the message
    type lacks: '. Did you mean ...?' with the likely names in descriptor `pool`; else ''."""
    enum = _NO_ENUM_VALUE.search(message)
    if enum is not None:
        return _enum_hint(pool, *enum.groups())
    match = _NO_FIELD.search(message)
    close = _close_fields(pool, *match.groups()) if match else []
    return f". Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""


def _pool(protos):
    return protos.net_parameter.DESCRIPTOR.file.pool


def _enum_hint(pool, enum_name, value):
    """'. It has A, B, C' (and the likely one) for a value enum_name lacks."""
    try:
        enum = pool.FindEnumTypeByName(enum_name)
    except KeyError:
        return ""
    names = list(enum.values_by_name)
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    guess = f" Did you mean {close[0]}?" if close else ""
    return f". Its values: {', '.join(names)}.{guess}"


def _close_fields(pool, owner, field):
    """Field names of message `owner` that look like a misspelling of `field`."""
    try:
        message = pool.FindMessageTypeByName(owner)
    except KeyError:
        return []
    return difflib.get_close_matches(field, list(message.fields_by_name), n=2, cutoff=0.8)


def parse_net(text, protos, source="the network", fork_advice=CAFFE_PROTO_ADVICE,
              accept_v1=False):
    """A NetParameter from prototxt text, or a ConversionError that says what to do
    (fork_advice: the last sentence for a field that only another Caffe's proto has).
    accept_v1: a V1 `layers { }` net is returned as it is (Caffe itself upgrades one when it
    loads it) instead of being refused."""
    note = check_template(text, source)
    net = protos.net_parameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as exc:
        reason = str(exc).rstrip(".")
        hint = _parse_hint(reason, protos, fork_advice)
        raise ConversionError(f"cannot parse {source}: {reason}{hint}") from None
    if "layers" in net.DESCRIPTOR.fields_by_name and len(net.layers) and not accept_v1:
        shown = ", ".join(f"{layer.name!r} ({_v1_type(layer)})" for layer in net.layers[:6])
        more = ", ..." if len(net.layers) > 6 else ""
        raise ConversionError(
            f"{source} uses the V1 `layers {{ }}` format ({len(net.layers)} layer(s): {shown}"
            f"{more}), which this converter does not rewrite. {v1_advice()}")
    return net, note


def _v1_type(layer):
    field = layer.DESCRIPTOR.fields_by_name.get("type")
    if field is None or field.enum_type is None:
        return "?"
    value = field.enum_type.values_by_number.get(layer.type)
    return value.name if value is not None else str(layer.type)


def _upgrade_tool():
    """Where Caffe's upgrade_net_proto_text is: on PATH, or in the bin/ beside pycaffe."""
    found = shutil.which(UPGRADE_TOOL)
    if found:
        return found
    spec = importlib.util.find_spec("caffe")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for candidate in (Path(location).parents[1] / "bin" / UPGRADE_TOOL,
                          Path(location).parents[1] / "build" / "tools" / UPGRADE_TOOL):
            if candidate.is_file():
                return str(candidate)
    return None


def v1_advice():
    tool = _upgrade_tool() or f"{UPGRADE_TOOL} (built with Caffe's tools)"
    return (f"Upgrade it first with Caffe's own tool: `{tool} IN.prototxt OUT.prototxt`, then "
            "convert OUT.prototxt")
