"""SegmentationData's parameters: param_str (protobuf text or JSON) -> checked message.

The message, SegmentationDataParameter, is declared in data/segmentation_data.proto; setup.py
generates segmentation_data_pb2 from it. Nothing here imports caffe.
"""

import json
import os
import re

from google.protobuf import json_format, text_format

from ..errors import LayerConfigError

try:
    from . import segmentation_data_pb2 as pb2
except ImportError as exc:  # a source tree that was never built
    raise ImportError(
        "attention_scale.data.segmentation_data_pb2 is missing: it is generated from "
        "python/attention_scale/data/segmentation_data.proto when the package is built; "
        "run `pip install .` in the repository root") from exc

SegmentationDataParameter = pb2.SegmentationDataParameter
AUTO, TRAIN, TEST = (SegmentationDataParameter.AUTO, SegmentationDataParameter.TRAIN,
                     SegmentationDataParameter.TEST)
VOC_MEAN_BGR = (104.008, 116.669, 122.675)
LAYER = "SegmentationData"
# The batch a TRAIN-mode layer starts at. tools/train.py sets it to iteration x iter_size when it
# resumes from a snapshot, so the resumed run reads the batches an uninterrupted one would have
# read (a batch depends on the seed and its index only); Caffe's own data layers start over.
START_BATCH_ENV = "ATTENTION_SCALE_DATA_START_BATCH"
_NO_FIELD = re.compile(r'has no field named "(\w+)"')


def _fail(param_str, problem):
    raise LayerConfigError(f"{LAYER} (Python layer, param_str {param_str!r}): {problem}") from None


def parse(param_str) -> SegmentationDataParameter:
    """Protobuf text, or a JSON object (first character "{"), of SegmentationDataParameter.
    LayerConfigError for text that does not parse, naming the field and, for a misspelt field
    or enum value, the likely name."""
    message = SegmentationDataParameter()
    text = (param_str or "").strip()
    try:
        if text.startswith("{"):
            json_format.Parse(text, message)
        else:
            text_format.Parse(text, message)
    except (text_format.ParseError, json_format.ParseError, json.JSONDecodeError) as exc:
        from ..nets.prototxt import misspelling_hint
        kind = "JSON" if text.startswith("{") else "protobuf text"
        reason = re.sub(r"\s*\n\s*", " ", str(exc).strip()).rstrip(".")  # one line
        where = ""
        if isinstance(exc, text_format.ParseError):
            where, reason = _text_error_place(text, exc, reason)
        hint = misspelling_hint(reason, message.DESCRIPTOR.file.pool)
        _fail(param_str, f"cannot read it as {kind} of {message.DESCRIPTOR.full_name}: "
                         f"{where}{reason}{hint}")
    return message


_LOCATION = re.compile(r"^(\d+):(\d+) : ")
_FIELD_BEFORE = re.compile(r"(\w+)\s*:?\s*$")


def _text_error_place(text, exc, reason):
    """('field F (column C): ', reason) for a text-format ParseError: protobuf's own message
    gives the position and echoes the whole param_str, not the field it was reading."""
    location = _LOCATION.match(reason)
    if location is None:
        return "", reason
    line, column = int(location.group(1)), int(location.group(2))
    reason = reason[location.end():]
    lines = text.split("\n")
    for echoed in lines + [""]:  # newer protobuf repeats the line it was reading
        if reason.startswith(f"'{echoed}': "):
            reason = reason[len(echoed) + 4:]
            break
    missing = _NO_FIELD.search(reason)
    before = lines[line - 1][:column - 1] if 0 < line <= len(lines) else ""
    field = missing.group(1) if missing else None
    if field is None:
        found = _FIELD_BEFORE.search(before)
        field = found.group(1) if found else None
    at = f"line {line}, column {column}" if len(lines) > 1 else f"column {column}"
    return (f"field {field!r} ({at}): " if field else f"{at}: "), reason


def mean_bgr(param) -> tuple:
    return tuple(param.mean_bgr) if len(param.mean_bgr) else VOC_MEAN_BGR


def validate(param, param_str="") -> None:
    """LayerConfigError naming every field that cannot work; files are checked by the layer."""
    problems = []
    if not param.source:
        problems.append("source (the list file) is required")
    if not param.HasField("root"):
        problems.append("root (the folder the list's paths are joined to) is required")
    if param.batch_size < 1:
        problems.append(f"batch_size must be >= 1, got {param.batch_size}")
    if param.crop_size < 1:
        problems.append(f"crop_size must be >= 1, got {param.crop_size}")
    if len(param.mean_bgr) not in (0, 3):
        problems.append(f"mean_bgr needs 3 values (B, G, R), got {len(param.mean_bgr)}")
    if not 0 < param.scale_min <= param.scale_max:
        problems.append(f"need 0 < scale_min <= scale_max, got scale_min {param.scale_min}, "
                        f"scale_max {param.scale_max}")
    if not 1 <= param.num_classes <= 255:
        problems.append(f"num_classes must lie in 1..255, got {param.num_classes}")
    if param.ignore_label > 255 or param.ignore_label < param.num_classes:
        problems.append(f"ignore_label must lie in num_classes..255 ({param.num_classes}..255), "
                        f"got {param.ignore_label}")
    if param.workers > 64:
        problems.append(f"workers must lie in 0..64, got {param.workers}")
    if param.prefetch < 1:
        problems.append(f"prefetch (batches in flight per worker) must be >= 1, got "
                        f"{param.prefetch}")
    if problems:
        _fail(param_str, "; ".join(problems))


def to_text(param) -> str:
    """One-line protobuf text, as it goes into a prototxt's param_str."""
    return text_format.MessageToString(param, as_one_line=True)


def make(**fields) -> SegmentationDataParameter:
    """A message from keyword arguments (mode may be "TRAIN"/"TEST"/"AUTO" or a pb2 constant)."""
    message = SegmentationDataParameter()
    for name, value in fields.items():
        if value is None:
            continue
        if name == "mean_bgr":
            message.mean_bgr.extend(value)
        elif name == "mode" and isinstance(value, str):
            message.mode = SegmentationDataParameter.Mode.Value(value)
        else:
            setattr(message, name, value)
    return message


def start_batch(environ=None) -> int:
    """The batch index a TRAIN-mode layer starts at: START_BATCH_ENV, 0 when unset."""
    value = (os.environ if environ is None else environ).get(START_BATCH_ENV, "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise LayerConfigError(f"{LAYER} (Python layer): the environment's {START_BATCH_ENV}="
                               f"{value!r} is not a batch index (a whole number >= 0); unset it "
                               "to start at the first batch")
    return int(value)
