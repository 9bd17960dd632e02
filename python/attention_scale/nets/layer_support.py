"""Whether a Caffe knows every layer type a network uses, and what to do when it does not.

Caffe meets an unknown type with LOG(FATAL) (`Unknown layer type: ScaleInterp (known types: ...)`),
which in pycaffe ends the Python process and in `caffe train` leaves a line listing every type
it does know. The usual causes each have one fix: a Caffe without this project's layers (use the
setup's Caffe, inject the layers into yours, or run their Python form), one built without Python
layers (the data layer and the Python form need WITH_PYTHON_LAYER), and DeepLab's `Interp` on a
Caffe that lacks it (the converter makes it a ScaleInterp). check_net_layers compares a net's types
with the Caffe's registry before the net is built and raises MissingLayerTypes with that advice;
failure_advice gives the same advice for the fatal lines of a `caffe train` that failed (and
says what to do when the tool's Python cannot import this package).
"""

import difflib
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..layers.params import MESSAGES
from .caffe_proto import ConversionError, load_protos
from .prototxt import parse_net

OUR_TYPES = tuple(MESSAGES)  # ScaleInterp, SoftmaxOverScales, WeightedScaleSum
PYTHON_TYPE = "Python"
DEEPLAB_INTERP = "Interp"
# glog's fatal line from Caffe's layer registry (layer_factory.hpp).
_UNKNOWN_TYPE = re.compile(r"Unknown layer type: (\S+)")
_KNOWN_TYPES = re.compile(r"\(known types: ([^)]*)\)")
# Caffe's fatal line for -gpu on a CPU_ONLY build (common.cpp), and for several GPUs with a
# Python layer in the train net (python_layer.hpp).
_CPU_ONLY = "Cannot use GPU in CPU-only Caffe"
_MULTI_GPU = "PythonLayer does not support CLI Multi-GPU"
# What the caffe tool's embedded Python prints when a Python layer's module is not importable.
_NO_PACKAGE = re.compile(r"No module named '(attention_scale[\w.]*)'")
_SHOWN_LAYERS = 4


class MissingLayerTypes(ValueError):
    """The Caffe at hand cannot build the net: it lacks layer types the net uses."""


# For a net that only another Caffe's caffe.proto can read.
OTHER_PYCAFFE_ADVICE = ("Run it with that Caffe's pycaffe (its python/ folder first on "
                        "PYTHONPATH, its libraries on LD_LIBRARY_PATH)")


def net_layers(text, protos=None, source="the network") -> List[Tuple[str, str]]:
    """[(layer name, type)] of a prototxt's layers, in order (parsed with the Caffe's caffe.proto
    extended by this project's layer parameters, so a net of our layers parses on any Caffe)."""
    net, _ = parse_net(text, protos or load_protos(), source, fork_advice=OTHER_PYCAFFE_ADVICE)
    return [(layer.name, layer.type) for layer in net.layer]


def missing_types(layers: Iterable[Tuple[str, str]], known: Iterable[str]) -> Dict[str, List[str]]:
    """{type: [layer names]} for the layers whose type is not in `known`, types in net order."""
    known = set(known)
    missing: Dict[str, List[str]] = {}
    for name, layer_type in layers:
        if layer_type not in known:
            missing.setdefault(layer_type, []).append(name)
    return missing


def _layers_of(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_LAYERS])
    more = f" and {len(names) - _SHOWN_LAYERS} more" if len(names) > _SHOWN_LAYERS else ""
    return f"layer{'s' if len(names) > 1 else ''} {shown}{more}"


def advice(missing: Dict[str, Optional[Sequence[str]]], caffe_label: str,
           python_form: str = "tools/convert_net.py NET --to python",
           known: Sequence[str] = ()) -> str:
    """What is missing from `caffe_label` (a pycaffe or caffe binary) and what to do, one
    sentence per cause. missing: {type: layer names, or None where they are not known};
    known: the types it has, for a likely misspelling."""
    def what(types):
        named = [f"{t} ({_layers_of(missing[t])})" if missing[t] else t for t in types]
        return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]

    ours = [t for t in missing if t in OUR_TYPES]
    parts = []
    if ours:
        parts.append(
            f"{caffe_label} has no {what(ours)}: it was built without this project's layers. "
            "Use the Caffe that `bash tools/setup.sh` builds (.venv/bin/python, .venv/bin/caffe), "
            "add the layers to yours (`python tools/inject_layers.py CAFFE_ROOT`, then rebuild "
            f"it and its pycaffe), or run their Python form on this Caffe ({python_form})")
    if PYTHON_TYPE in missing:
        users = (_layers_of(missing[PYTHON_TYPE]) if missing[PYTHON_TYPE]
                 else "the data layer (SegmentationData) and the Python form of the layers")
        parts.append(
            f"{caffe_label} was built without Python layers (type \"Python\"), which {users} "
            "need: rebuild it with WITH_PYTHON_LAYER := 1 (Makefile.config) or "
            "-DWITH_PYTHON_LAYER=ON (CMake); the Caffe of `bash tools/setup.sh` has them")
    if DEEPLAB_INTERP in missing:
        # The C++ ScaleInterp only helps a Caffe that has it: one that lacks it too (it is
        # missing from the net's layers or from the types the Caffe listed) needs the Python form.
        lacks_ours = "ScaleInterp" in missing or (known and "ScaleInterp" not in known)
        fix = (f"the Python form ({python_form}) makes each a ScaleInterp Python layer"
               if lacks_ours else
               "`python tools/convert_net.py NET --to cpp -o NEW` makes each a ScaleInterp")
        parts.append(
            f"{caffe_label} has no {what([DEEPLAB_INTERP])}, DeepLab's resize layer: "
            f"{fix} (the same numerics)")
    others = [t for t in missing if t not in OUR_TYPES + (PYTHON_TYPE, DEEPLAB_INTERP)]
    if others:
        guesses = [f"{t} -> {close[0]}" for t in others
                   for close in [difflib.get_close_matches(t, list(known), n=1, cutoff=0.8)]
                   if close]
        guess = f" (a misspelling? {', '.join(guesses)})" if guesses else ""
        parts.append(
            f"{caffe_label} has no layer type {what(others)}{guess}: the net needs a Caffe (or "
            "fork) that registers it")
    return "; ".join(parts)


def caffe_label(caffe) -> str:
    """Which pycaffe this is, for messages: its folder."""
    where = getattr(caffe, "__file__", None)
    return f"this pycaffe ({Path(where).parent})" if where else "this pycaffe"


def lacks_input_layer(caffe) -> bool:
    """True when pycaffe lists its layer types and `Input` is not among them (a Caffe from
    before 2016, such as DeepLab-v2): nets must declare their inputs by the net's fields."""
    list_types = getattr(caffe, "layer_type_list", None)
    return list_types is not None and "Input" not in list_types()


def check_net_parses(prototxt, text, caffe, protos=None, reader=None, accept_v1=False):
    """The net as a NetParameter, or ConversionError when the text does not parse with
    pycaffe's caffe.proto (extended by this project's parameters): caffe.Net (or `caffe train`)
    would end the process there. The message starts with `reader` (default: which pycaffe
    cannot read the net); accept_v1: as parse_net's."""
    try:
        net, _ = parse_net(text, protos or load_protos(), str(prototxt),
                           fork_advice=OTHER_PYCAFFE_ADVICE, accept_v1=accept_v1)
        return net
    except ConversionError as exc:
        reader = f"{caffe_label(caffe)} cannot read the net" if reader is None else reader
        raise ConversionError(f"{reader}: {exc}") from None


def check_net_layers(prototxt, text, caffe, python_form="tools/convert_net.py NET --to python"):
    """Raise MissingLayerTypes when `caffe` (pycaffe) lacks a layer type of the net `text`
    (named `prototxt` in messages), and ConversionError when the text does not parse with its
    caffe.proto, before caffe.Net would end the process. The types are not checked where
    pycaffe cannot list them (layer_type_list, missing in pycaffe before 2016)."""
    list_types = getattr(caffe, "layer_type_list", None)
    layers = [(layer.name, layer.type) for layer in check_net_parses(prototxt, text, caffe).layer]
    if list_types is None:
        return
    missing = missing_types(layers, list_types())
    if missing:
        raise MissingLayerTypes(
            f"{prototxt}: {advice(missing, caffe_label(caffe), python_form, list_types())}")


_TEST_PHASE = 1  # caffe.proto's Phase TEST


def _meets(rule, level, stages):
    """Caffe's Net::StateMeetsRule for the TEST phase at the net's level and stages."""
    return not ((rule.HasField("phase") and rule.phase != _TEST_PHASE)
                or (rule.HasField("min_level") and level < rule.min_level)
                or (rule.HasField("max_level") and level > rule.max_level)
                or any(stage not in stages for stage in rule.stage)
                or any(stage in stages for stage in rule.not_stage))


def layers_in_test_phase(net) -> list:
    """The layers of a NetParameter that Caffe keeps in the TEST phase (Net::FilterNet)."""
    level, stages = net.state.level, set(net.state.stage)
    if any(layer.include for layer in net.layer) or any(layer.exclude for layer in net.layer):
        return [layer for layer in net.layer
                if (any(_meets(r, level, stages) for r in layer.include) if layer.include
                    else not any(_meets(r, level, stages) for r in layer.exclude))]
    return list(net.layer)


def _kind(layer) -> str:
    if layer.type == PYTHON_TYPE and layer.python_param.layer:
        return f"{layer.type}: {layer.python_param.layer}"
    return layer.type


def check_test_net(prototxt, net, input_blob="data"):
    """Refuse, before Caffe builds it, a test-form net (CONTRACT: `input_blob` is an input of the
    net) that Caffe would end the process on or that is not a test form: a bottom no earlier layer
    makes (Caffe: `Unknown bottom blob`), named with the layer and the closest blob names; a train
    net (its data layer makes `input_blob`), pointed to the test form beside it."""
    layers = layers_in_test_phase(net)
    made = {}
    for layer in layers:
        for top in layer.top:
            made.setdefault(top, layer)
    inputs = list(net.input) + [top for layer in layers if layer.type == "Input"
                                for top in layer.top]
    maker = made.get(input_blob)
    if input_blob not in inputs and maker is not None and not maker.bottom:
        test_form = Path(prototxt).with_name("test.prototxt")
        where = (f"give its test form, {test_form}" if test_form.is_file() and
                 test_form.resolve() != Path(prototxt).resolve()
                 else "give the net's test form (test.prototxt: tools/generate_prototxt.py "
                      "writes one beside each train.prototxt)")
        raise ValueError(f"{prototxt} is a train net: its layer {maker.name!r} "
                         f"({_kind(maker)}) reads the data, while a test net takes "
                         f"{input_blob!r} as an input (an Input layer, see the CONTRACT's test "
                         f"form); {where}")
    available = list(dict.fromkeys(net.input))
    for layer in layers:
        for bottom in layer.bottom:
            if bottom in available:
                continue
            close = difflib.get_close_matches(bottom, available, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            later = made.get(bottom)
            if later is not None and later is not layer:
                hint += (f" (layer {later.name!r} makes it further down: Caffe builds the layers "
                         "in file order)")
            raise ValueError(f"{prototxt}: layer {layer.name!r} ({_kind(layer)}) takes bottom "
                             f"{bottom!r}, which no layer before it makes and which is not an "
                             f"input of the net{hint}{'' if hint.endswith('?') else '.'} Caffe "
                             f"would end the process on this (Unknown bottom blob): fix the name "
                             f"in the prototxt")
        available += [top for top in layer.top if top not in available]


def failure_advice(fatal_lines: Iterable[str], caffe_label: str,
                   python_form: str = "tools/convert_net.py NET --to python") -> Optional[str]:
    """The advice for the first `Unknown layer type: T` among Caffe's fatal lines, for a GPU
    asked of a CPU_ONLY build, or for its Python not finding this package; else None.
    python_form: how to run the net in the Python form of the layers, as advice's."""
    for line in fatal_lines:
        match = _UNKNOWN_TYPE.search(line)
        if match:
            known = _KNOWN_TYPES.search(line)
            return advice({match.group(1): None}, caffe_label, python_form,
                          known=known.group(1).split(", ") if known else ())
        if _CPU_ONLY in line:
            return (f"{caffe_label} was built CPU_ONLY: leave --gpu out, or use a CUDA build "
                    "(`bash tools/setup.sh --cuda`)")
        if _MULTI_GPU in line:
            return ("Caffe's multi-GPU training does not run Python layers, and the train nets "
                    "read their data with SegmentationData, a Python layer: train on one GPU "
                    "(-gpu 0)")
        match = _NO_PACKAGE.search(line)
        if match:
            return (f"the Python inside {caffe_label} cannot import {match.group(1)} (the data "
                    "layer, or the Python form of the layers): `pip install .` from this "
                    "repository into the Python that Caffe was built against, or use the caffe "
                    "of `bash tools/setup.sh` (.venv/bin/caffe)")
    return None


def shorten_known_types(line: str, limit: int = 200) -> str:
    """A fatal line with its `(known types: ...)` list cut after the last name that fits in
    `limit` characters."""
    head, sep, tail = line.partition("(known types: ")
    if not sep or len(tail) <= limit:
        return line
    cut = tail.rfind(", ", 0, limit)
    return f"{head}{sep}{tail[:cut if cut > 0 else limit]}, ...)"
