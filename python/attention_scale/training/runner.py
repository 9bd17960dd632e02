"""Run `caffe train` the way a researcher wants it run: resumed from the latest snapshot, logged
to a file, with a progress bar (iterations per second, ETA, loss) and a loss-curve PNG.

The real tool does the training (`.venv/bin/caffe`, a --caffe path, or `caffe` on PATH), so a
run here is exactly `caffe train -solver ...` as a user types it; this module only adds
arguments (-snapshot / -weights / -gpu) and reads its output.

Files (solver's snapshot_prefix P, e.g. snapshots/<variant>/train, relative to the working dir;
without one, Caffe's default: the solver's path without its extension):
    P_iter_N.caffemodel / .solverstate   Caffe's snapshots; the latest .solverstate is resumed
    <P's folder>/train.log               Caffe's output, appended run after run
    <P's folder>/loss.png                the curves, redrawn at every snapshot and at the end
Ctrl-C (SIGINT) or SIGTERM: Caffe stops after the current iteration and snapshots (the runner
sends Caffe a SIGINT: its -sigint_effect stop); this runner waits for that and reports where to
resume from. A second one kills Caffe. SIGHUP is passed on to Caffe (its -sighup_effect
snapshot: a snapshot, and training goes on). See _Signals.
"""

import codecs
import errno
import io
import locale
import math
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .caffe_log import LogParser, TrainingLog

SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.solverstate$")


class TrainingError(RuntimeError):
    """caffe train failed; the message holds its fatal lines and the log's path."""


@dataclass
class SolverInfo:
    path: Path
    net: Optional[str]
    max_iter: int
    snapshot: int
    snapshot_prefix: str  # as Caffe uses it (caffe_snapshot_prefix), never empty
    iter_size: int = 1  # forward passes (data batches) an iteration


# Progress, the loss curve and the resume point are read from glog's INFO lines on stderr: keep
# them on whatever the caller's environment says (GLOG_minloglevel=2 is a common way to quiet
# pycaffe, and the process that calls this may have set it).
_CAFFE_LOG_ENV = {"GLOG_minloglevel": "0", "GLOG_logtostderr": "1"}
PROTOBUF_IMPLEMENTATION_ENV = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


def embedded_protobuf_env(environ=None) -> dict:
    """What the caffe tool's embedded Python needs in its environment to import protobuf.
    protobuf 3.x's C++ implementation (pip's 3.20, the runtime for protoc 3.12: Debian 11,
    Ubuntu 22.04) carries its own libprotobuf C++ code, which binds to the libprotobuf the
    tool has already loaded and segfaults at import: such a runtime runs as pure Python there
    (.venv/bin/caffe does the same; this covers a --caffe tool of the user's). upb (protobuf
    >= 4.21) and an implementation the caller chose are left alone."""
    if PROTOBUF_IMPLEMENTATION_ENV in (os.environ if environ is None else environ):
        return {}
    try:
        from google.protobuf.internal import api_implementation
    except ImportError:
        return {}
    return {PROTOBUF_IMPLEMENTATION_ENV: "python"} if api_implementation.Type() == "cpp" else {}


def read_solver(path) -> SolverInfo:
    """The fields of a solver prototxt that running it needs (parsed as caffe.SolverParameter)."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TrainingError(f"cannot read the solver {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        kind = ("a .caffemodel (weights)" if path.suffix == ".caffemodel" else
                "a .solverstate (a snapshot: --resume takes it)" if path.suffix == ".solverstate"
                else "a binary file")
        raise TrainingError(f"{path} is not a solver prototxt: it is {kind}; give the "
                            "solver.prototxt (text) that names the net") from None
    solver = caffe_pb2.SolverParameter()
    try:
        text_format.Parse(text, solver)
    except text_format.ParseError as exc:
        from ..nets.prototxt import misspelling_hint
        hint = misspelling_hint(str(exc), caffe_pb2.SolverParameter.DESCRIPTOR.file.pool)
        raise TrainingError(f"{path} is not a solver prototxt: {str(exc).rstrip('.')}{hint}") \
            from None
    return SolverInfo(path, solver.net or solver.train_net or None, solver.max_iter,
                      solver.snapshot, caffe_snapshot_prefix(path, solver), solver.iter_size or 1)


def caffe_snapshot_prefix(solver_path, solver) -> str:
    """The snapshot prefix Caffe uses (UpgradeSnapshotPrefixProperty in upgrade_proto.cpp): a
    solver without snapshot_prefix gets the solver file's path without its extension; a prefix
    that is a folder gets the solver file's stem inside it. A prefix ending in "/" counts as a
    folder here even before it exists: train() makes it before Caffe starts."""
    stem = Path(solver_path).stem
    if not solver.HasField("snapshot_prefix"):
        return str(Path(solver_path).with_suffix(""))
    prefix = solver.snapshot_prefix
    if prefix.endswith("/") or os.path.isdir(prefix):
        return os.path.join(prefix, stem)
    return prefix


def _prefix_folder(snapshot_prefix) -> Path:
    """The folder Caffe's <prefix>_iter_N files go to (os.path: a Path would drop a trailing /)."""
    return Path(os.path.dirname(str(snapshot_prefix)) or ".")


def latest_solverstate(snapshot_prefix) -> Optional[Path]:
    """The <prefix>_iter_N.solverstate with the largest N, or None."""
    states = [path for path in earlier_snapshots(snapshot_prefix) if path.suffix == ".solverstate"]
    return states[-1] if states else None


def earlier_snapshots(snapshot_prefix) -> List[Path]:
    """Every <prefix>_iter_N.caffemodel / .solverstate, by iteration."""
    folder = _prefix_folder(snapshot_prefix)
    if not folder.is_dir():
        return []
    name = re.compile(re.escape(os.path.basename(str(snapshot_prefix)))
                      + r"_iter_(\d+)\.(?:caffemodel|solverstate)")
    found = [(int(match.group(1)), path.name, path) for path in folder.iterdir()
             for match in [name.fullmatch(path.name)] if match and path.is_file()]
    return [path for _, _, path in sorted(found)]


def set_aside(snapshot_prefix, also=(), stamp=None, after=None):
    """Move the earlier run's snapshots of `snapshot_prefix` (and the files in `also` that exist:
    its log and curves) into a new folder beside them named for the time, e.g.
    snapshots/x/earlier-20261126-095604/ (nothing is deleted). Returns (folder, snapshots moved,
    other files moved), or None when there was nothing to move. after: only the snapshots of
    later iterations (those a run resumed from iteration `after` would overwrite)."""
    snapshots = [path for path in earlier_snapshots(snapshot_prefix)
                 if after is None or _file_iteration(path) > after]
    others = [Path(p) for p in also if Path(p).is_file()]
    if not snapshots and not others:
        return None
    folder = _prefix_folder(snapshot_prefix)
    name = f"earlier-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
    target, k = folder / name, 1
    while target.exists():
        k += 1
        target = folder / f"{name}-{k}"
    try:
        target.mkdir()
        for path in snapshots + others:
            path.rename(target / path.name)
    except OSError as exc:
        raise TrainingError(f"cannot move the earlier run's files from {folder} to "
                            f"{target} ({exc.strerror}); move or delete them yourself") from None
    return target, snapshots, others


def put_back(moved, log_path=None, option="--restart"):
    """Undo set_aside (a --restart whose Caffe ended before its first iteration): the files go
    back where they were and the folder is removed. A log written since at the same path (that
    try's output) is appended to the earlier one. Returns a sentence saying what happened, also
    when a file could not be moved back (then the folder keeps it)."""
    folder, snapshots, others = moved
    try:
        for path in snapshots + others:
            moved_to = folder / path.name
            if log_path is not None and path == Path(log_path) and path.exists():
                this_try = path.read_bytes()
                os.replace(moved_to, path)
                with open(path, "ab") as log:
                    log.write(this_try)
            elif path.exists():
                raise FileExistsError(errno.EEXIST, "a file of that name was written since",
                                      str(path))
            else:
                moved_to.rename(path)
        folder.rmdir()
    except OSError as exc:
        return (f"{option}: Caffe ended before its first iteration, but the earlier run's files "
                f"could not all be moved back ({exc.filename or folder}: {exc.strerror}): what "
                f"is left of them is in {folder}/")
    log_note = (f"; this try's output follows the earlier run's in {log_path}"
                if log_path is not None and Path(log_path) in others else "")
    return (f"{option}: Caffe ended before its first iteration, so the earlier run's files are "
            f"back where they were ({folder} removed){log_note}")


def _file_iteration(path) -> int:
    return int(re.search(r"_iter_(\d+)\.\w+$", Path(path).name).group(1))


def _set_aside_message(moved, resumed_at=None):
    folder, snapshots, others = moved
    iterations = sorted({_file_iteration(p) for p in snapshots})
    listed = (", ".join(map(str, iterations)) if len(iterations) <= 4 else
              f"{iterations[0]}, {iterations[1]}, ..., {iterations[-1]}")
    what = [f"snapshots (iteration{'s' if len(iterations) > 1 else ''} {listed}; "
            f"{len(snapshots)} file{'s' if len(snapshots) > 1 else ''})"] if snapshots else []
    what += [p.name for p in others]
    what = ", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0]
    if resumed_at is not None:
        return (f"--resume: moved the later {what} to {folder}/ (nothing was deleted): this "
                f"run goes on from iteration {resumed_at} and would overwrite them")
    return (f"--restart: moved the earlier run's {what} to {folder}/ (nothing was deleted); "
            "this run starts from iteration 0")


def snapshot_iteration(path) -> Optional[int]:
    match = SNAPSHOT_ITER.search(str(path))
    return int(match.group(1)) if match else None


def find_caffe(explicit=None) -> str:
    """--caffe, else the caffe beside this Python (.venv/bin/caffe), else caffe on PATH."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise TrainingError(f"--caffe {explicit}: not an executable file")
        return explicit
    beside = Path(sys.prefix) / "bin" / "caffe"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("caffe")
    if on_path:
        return on_path
    raise TrainingError("no caffe tool found: run `bash tools/setup.sh` (it makes "
                        ".venv/bin/caffe), put caffe on PATH or pass --caffe PATH")


@dataclass
class TrainResult:
    returncode: int
    command: List[str]
    log_path: Path
    plot_path: Optional[Path]
    resumed_from: Optional[Path]
    log: TrainingLog
    snapshots: List[str] = field(default_factory=list)
    stop_signal: Optional[int] = None  # the signal (SIGINT, SIGTERM) that asked for the stop
    killed: bool = False  # Caffe was killed by a second stop signal

    @property
    def stopped(self):
        """Caffe stopped before max_iter: asked to (a signal), or killed."""
        return bool(self.log.stopped_early or self.stop_signal or self.killed)

    @property
    def last_iteration(self):
        return self.log.last_iteration

    @property
    def snapshot_iteration(self):
        """Iteration of the latest snapshot written (where a resumed run continues)."""
        return snapshot_iteration(self.log.solverstates[-1]) if self.log.solverstates else None


def _solverstate_iteration(path) -> int:
    """The iteration a .solverstate was written at (its `iter` field), for a file whose name
    does not say it."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(Path(path).read_bytes())
    except (OSError, DecodeError) as exc:
        raise TrainingError(f"--resume {path}: not a readable .solverstate ({exc})") from None
    return state.iter


MULTI_GPU_ADVICE = ("Caffe's multi-GPU training (`caffe train -gpu` with several ids) stops at "
                    "the first Python layer (PythonLayer: \"does not support CLI Multi-GPU\"), "
                    "and the train nets read their data with SegmentationData, a Python layer: "
                    "train on one GPU (--gpu 0)")


def read_train_net(info):
    """The solver's train net (net: / train_net:, a path from the working directory, as Caffe
    reads it) parsed with pycaffe's caffe.proto (extended by this project's parameters), or
    None when the solver has none of those fields; TrainingError with the file, line and
    likely name where it does not parse: `caffe train` would abort there with protobuf's bare
    message. The SegmentationData layers' param_str is checked too (the layer would stop Caffe
    at setup). V1 `layers { }` nets pass: Caffe upgrades them itself."""
    if not info.net:
        return None
    from ..nets.caffe_proto import ConversionError, load_protos
    from ..nets.layer_support import check_net_parses
    from ..nets.prototxt import read_prototxt

    protos = load_protos()
    reader = f"{info.path}: its net does not parse (`caffe train` would stop there)"
    try:
        text = read_prototxt(info.net, protos)
        net = check_net_parses(info.net, text, None, protos, reader=reader, accept_v1=True)
    except ConversionError as exc:
        raise TrainingError(str(exc)) from None
    except OSError as exc:
        raise TrainingError(f"{info.path}: cannot read its net {info.net} ({exc.strerror})") \
            from None
    _check_data_layers(info.net, text, net)
    return net


def _missing_net_message(solver, net_path):
    """The solver's net does not exist. Caffe resolves the path from where it runs, not from
    the solver's folder: where a relative path would exist from a folder above the solver (the
    repository root for prototxt/), that folder is named; otherwise it simply does not exist."""
    if not os.path.isabs(net_path):
        here = Path.cwd().resolve()
        for folder in Path(solver).resolve().parents:
            if folder != here and (folder / net_path).is_file():
                return (f"{solver}: its net {net_path} is not there from {here}: the path is "
                        f"relative to {folder}; run from there")
    return f"{solver}: its net {net_path} does not exist"


def _check_weights(weights):
    """TrainingError for a --weights that is missing or no .caffemodel (a prototxt or a
    .solverstate given by mistake): Caffe would abort in its setup with a Check failure."""
    if not Path(weights).is_file():
        raise TrainingError(f"--weights {weights}: no such file")
    from caffe.proto import caffe_pb2

    from ..nets.caffemodel import WeightsMismatch, read_saved_shapes
    try:
        read_saved_shapes(weights, caffe_pb2.NetParameter)
    except WeightsMismatch as exc:
        raise TrainingError(f"--weights {weights}: {exc}") from None


_FILTER_TYPES = ("Convolution", "InnerProduct")  # weights (num_output, ...): checkable from text


# Caffe's fatal lines when a resumed snapshot's weights or history do not fit the net.
_OTHER_NETS_SNAPSHOT = ("Cannot copy param", "Incorrect length of history blobs")


def solverstate_problem(path) -> Optional[str]:
    """Why `path` cannot be resumed from, in words that follow its name, or None. Caffe's own
    aborts say neither: a .caffemodel given as the snapshot ends in "history_size 0 vs. N", and
    a snapshot cut short (a full disk, a run killed while it snapshotted) in "Incorrect length
    of history blobs", both of which read as another net's snapshot. Caffe's HDF5 form
    (.solverstate.h5) is left to Caffe."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    path = Path(path)
    if path.name.endswith(".h5"):
        return None
    if path.suffix == ".caffemodel":
        return "is a .caffemodel (the weights alone), not a .solverstate"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    damaged = ("is damaged: {} (cut short, as by a full disk or a run stopped while it "
               "snapshotted)")
    if not data:
        return damaged.format("it is empty")
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(data)
    except DecodeError:
        if _looks_like_text(data):
            return "is a text file (a prototxt?), not a .solverstate"
        return damaged.format("it does not parse as a solver state")
    model = _snapshot_model(path, state)
    if model is None:
        return None  # Caffe restores the history only; it names a missing learned_net itself
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(model.read_bytes())
    except (OSError, DecodeError):
        return damaged.format(f"its weights {model} do not parse")
    if not model.stat().st_size:
        return damaged.format(f"its weights {model} are empty")
    return None


def _looks_like_text(data) -> bool:
    """UTF-8 without control characters but tabs and line ends: a protobuf's field tags are
    control characters, and a cut-short .solverstate of a small iteration can be valid UTF-8."""
    import codecs
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096])  # a cut char: fine
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r" for c in text)


def _snapshot_model(solverstate, state) -> Optional[Path]:
    """The .caffemodel a parsed SolverState restores its weights from: its learned_net, or the
    one beside it of the same name (a snapshot folder moved since), or None."""
    model = Path(state.learned_net) if state.learned_net else None
    if model is None or not model.is_file():
        model = Path(solverstate).with_suffix(".caffemodel")
    return model if model.is_file() else None


def _damaged_advice(solverstate, prefix) -> str:
    """What to do about a damaged latest snapshot: resume from the sound one before it."""
    n = snapshot_iteration(solverstate)
    earlier = [p for p in earlier_snapshots(prefix) if p.suffix == ".solverstate"
               and n is not None and (snapshot_iteration(p) or 0) < n]
    sound = next((p for p in reversed(earlier) if solverstate_problem(p) is None), None)
    pair = f"{solverstate} and {Path(solverstate).with_suffix('.caffemodel').name}"
    if sound is None:
        return (f"no earlier snapshot of {prefix} to resume from: delete {pair} (or --restart "
                "sets them aside) to start afresh")
    return (f"resume from the snapshot before it: --resume {sound} (or delete {pair}, and "
            f"the same command resumes from iteration {snapshot_iteration(sound)})")


def _check_resume_file(resume_from, explicit, prefix):
    """TrainingError for a snapshot Caffe cannot resume from (solverstate_problem), with what
    to do instead: a .caffemodel's .solverstate, or the sound snapshot before a damaged one."""
    problem = solverstate_problem(resume_from)
    if problem is None:
        return
    if explicit:
        if Path(resume_from).suffix == ".caffemodel":
            state = Path(resume_from).with_suffix(".solverstate")
            advice = ((f"--resume {state} resumes that snapshot; " if state.is_file() else "")
                      + f"--restart --weights {resume_from} starts afresh from its weights")
        elif problem.startswith("is damaged"):
            advice = _damaged_advice(resume_from, prefix)
        else:
            advice = "--resume takes a <snapshot_prefix>_iter_N.solverstate"
        raise TrainingError(f"--resume {resume_from} {problem}: {advice}")
    raise TrainingError(f"the latest snapshot {resume_from} {problem}: "
                        + _damaged_advice(resume_from, prefix))


def _layer_outputs(layer):
    return (layer.convolution_param.num_output if layer.type == "Convolution"
            else layer.inner_product_param.num_output)


def _output_misfits(layers, saved) -> List[str]:
    """'name (S saved, N outputs in the net)' for each Convolution / InnerProduct of `layers`
    whose saved weights (read_saved_shapes) have another output count: what the text of the net
    alone decides (input channels need the blob shapes: Caffe checks those itself)."""
    return [f"{layer.name} ({saved[layer.name][0]} saved, {_layer_outputs(layer)} outputs in "
            "the net)" for layer in layers if layer.type in _FILTER_TYPES
            and layer.name in saved and not saved[layer.name][0].legacy
            and saved[layer.name][0].dims[:1] != (_layer_outputs(layer),)]


def _listed(names, most=4):
    names = list(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most
                                      else "")


def check_snapshot_fits(solverstate, net, found):
    """TrainingError when the weights saved with `solverstate` cannot belong to the train net
    `net` (a NetParameter): a learned layer the net has that the snapshot lacks, a
    Convolution / InnerProduct whose saved outputs differ from its num_output, or a layer saved
    in the snapshot that the train net does not have (a snapshot holds every train layer with
    weights of the net that wrote it, and nothing else: Caffe would abort with "Incorrect
    length of history blobs"). Resuming another net's snapshot ended in Caffe's abort
    ("Cannot copy param ... shape mismatch", or the history's length), whose advice to rename
    the layer is wrong here. found: how the snapshot was chosen, for the message."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    from ..nets.caffemodel import WeightsMismatch, read_saved_shapes
    train = _train_layers(net)
    if not train:
        return  # a V1 net (`layers`): Caffe upgrades it and checks for itself
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(Path(solverstate).read_bytes())
    except (OSError, DecodeError):  # unreadable: solverstate_problem named it already
        return
    model = _snapshot_model(solverstate, state)
    if model is None:
        return
    try:
        saved = read_saved_shapes(model, caffe_pb2.NetParameter)
    except WeightsMismatch:
        return  # unreadable or empty: Caffe names it when it restores
    names = {layer.name for layer in train}
    wrong = [f"{layer.name} (not in the snapshot)" for layer in train
             if layer.type in _FILTER_TYPES and layer.name not in saved]
    wrong += _output_misfits(train, saved)
    wrong += [f"{name} (in the snapshot, not in the net)" for name in saved if name not in names]
    if wrong:
        raise TrainingError(
            f"{found} {solverstate}: written by another net than this solver's: "
            f"{_listed(wrong)}. Start afresh with --restart (it sets the earlier snapshots "
            "aside, deleting nothing), or give this solver a snapshot_prefix of its own")


# Layer types that hold learned weights (what a .caffemodel saves of them).
_LEARNED_TYPES = ("Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale", "Bias",
                  "PReLU", "Embed", "RNN", "LSTM")


def check_weights_fit(weights, net):
    """TrainingError when --weights cannot initialise the train net `net` (a NetParameter):
    - no learned layer of the net is in the weights (the names differ: the weights of another
      net, or the layers renamed). Caffe copies by name and would train from the fillers with
      no word but "Ignoring source layer" in the log. Layers of the net absent from the weights
      are otherwise normal (DeepLab's fc8 and the attention head are new to a VGG-16 init).
    - a Convolution / InnerProduct of both whose output counts differ: Caffe would abort with
      "Cannot copy param ... rename the layer"."""
    from caffe.proto import caffe_pb2

    from ..nets.caffemodel import WeightsMismatch, read_saved_shapes
    train = _train_layers(net)
    learned = [layer.name for layer in train if layer.type in _LEARNED_TYPES or layer.param]
    if not learned:
        return  # a V1 net, or one with no learned layer: nothing to compare
    try:
        saved = read_saved_shapes(weights, caffe_pb2.NetParameter)
    except WeightsMismatch as exc:
        raise TrainingError(f"--weights {weights}: {exc}") from None
    if not set(learned) & set(saved):
        raise TrainingError(
            f"--weights {weights} shares no learned layer with the train net: it has "
            f"{_listed(saved)}; the net has {_listed(learned)}. Caffe copies weights by layer "
            "name and would train from the random fillers; give the weights of this net (or "
            "one whose layer names it shares), or leave --weights out to start from the "
            "fillers on purpose")
    wrong = _output_misfits(train, saved)
    if wrong:
        raise TrainingError(
            f"--weights {weights} do not fit the train net: {_listed(wrong)}; Caffe would "
            "abort copying them. These are weights for another net (ImageNet VGG-16's, whose "
            "fc6/fc7 tools/init_from_vgg16.py converts first? VGG-16's for a small backbone?); "
            "a layer that is to be learned afresh instead needs a name of its own in the train "
            "net")


def _train_layers(net):
    """The layers of a NetParameter that are not TEST-only."""
    test = net.DESCRIPTOR.file.enum_types_by_name["Phase"].values_by_name["TEST"].number
    return [layer for layer in net.layer
            if not (layer.include and all(rule.HasField("phase") and rule.phase == test
                                          for rule in layer.include))]


def _check_data_layers(net_path, text, net):
    """TrainingError naming the file, line and layer for a train-phase SegmentationData layer
    whose param_str does not parse or holds values it refuses."""
    from ..data import data_params
    from ..errors import LayerConfigError

    for layer in _train_layers(net):
        python = layer.python_param
        if not (layer.type == "Python" and python.layer == data_params.LAYER
                and python.module.split(".")[:2] == ["attention_scale", "data"]):
            continue
        try:
            data_params.validate(data_params.parse(python.param_str), python.param_str)
        except LayerConfigError as exc:
            named = re.compile(r'^\s*name\s*:\s*["\']' + re.escape(layer.name) + r'["\']',
                               re.M)
            lines = [text.count("\n", 0, m.start()) + 1 for m in named.finditer(text)]
            where = f"{net_path} line {lines[0]}" if len(lines) == 1 else str(net_path)
            raise TrainingError(f"{where}: layer {layer.name!r}: {exc}") from None


def _train_python_layers(net) -> List[str]:
    """Names of the Python layers the TRAIN phase of a NetParameter has."""
    return [layer.name for layer in _train_layers(net) if layer.type == "Python"]


def _check_gpus(gpu, info, net):
    """Several GPU ids with a train net that has Python layers: Caffe would abort."""
    ids = [part for part in str(gpu).split(",") if part.strip()]
    if len(ids) > 1 and net is not None:
        python_layers = _train_python_layers(net)
        if python_layers:
            raise TrainingError(f"--gpu {gpu}: {MULTI_GPU_ADVICE} ({info.net}: Python layer(s) "
                                f"{', '.join(repr(n) for n in python_layers)})")


def _gpu_ids(gpu) -> str:
    """--gpu as Caffe's -gpu takes it (spaces dropped), or TrainingError: Caffe would abort on
    anything but non-negative integers (boost::bad_lexical_cast, no message of its own)."""
    text = str(gpu).replace(" ", "")
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", text) or \
            any(int(i) > 2**31 - 1 for i in text.split(",")):
        raise TrainingError(f"--gpu {gpu}: not a GPU id; GPU ids are non-negative integers, "
                            "comma-separated (e.g. --gpu 0); leave --gpu out to use the "
                            "solver's solver_mode")
    return text


def _check_writable(path, what, fix, folder=False):
    """TrainingError naming `what` unless a file can be written at `path` (folders made where
    missing; `folder`: only path's folder matters, nothing is left there)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if not folder and path.exists():
            with open(path, "ab"):
                pass
    except OSError as exc:
        raise TrainingError(f"{what}: cannot write it ({exc.strerror}); {fix}") from None


def build_command(caffe, solver, weights=None, resume_from=None, gpu=None, extra=()):
    command = [caffe, "train", "-solver", str(solver)]
    if resume_from is not None:
        command += ["-snapshot", str(resume_from)]
    elif weights:
        command += ["-weights", str(weights)]
    if gpu is not None:
        command += ["-gpu", str(gpu)]
    return command + list(extra)


class _Progress:
    """tqdm bar driven by the log's display lines (or silent). A terminal that goes away (a
    hangup: writes fail with EIO) ends the display, not the run."""

    def __init__(self, enabled, total, initial):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, initial=initial, unit="iter", dynamic_ncols=True,
                            desc="caffe train", file=sys.stderr)
        self.position = initial
        self.quiet = False

    def _show(self, action):
        if self.quiet:
            return
        try:
            action()
        except OSError:
            self.quiet = True

    def update(self, iteration, loss=None, lr=None):
        if self.bar is None:
            return
        if iteration > self.position:
            self._show(lambda: self.bar.update(iteration - self.position))
            self.position = iteration
        postfix = {}
        if loss is not None:
            postfix["loss"] = f"{loss:.4g}"
        if lr is not None:
            postfix["lr"] = f"{lr:.3g}"
        if postfix:
            self._show(lambda: self.bar.set_postfix(postfix, refresh=False))

    def set_total(self, total):
        if self.bar is not None and total and self.bar.total != total:
            self.bar.total = total
            self._show(self.bar.refresh)

    def write(self, text):
        if self.bar is not None:
            self._show(lambda: self.bar.write(text, file=sys.stderr))
        else:
            self._show(lambda: print(text, file=sys.stderr, flush=True))

    def close(self):
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:
                pass


def _echo_worthy(line):
    return ("SegmentationData:" in line or "Snapshotting to" in line or "Resuming from" in line
            or line.startswith("F") or "Check failed" in line or "Error" in line
            or "Traceback" in line or "failed" in line)


def train(solver, weights=None, resume=True, gpu=None, caffe=None, log_path=None,
          plot_path=None, progress=True, verbose=False, extra_args=(), env=None,
          plot=True, stop_on_nan=True, on_event=None, echo=True,
          set_aside_earlier=False) -> TrainResult:
    """Run caffe train on `solver` from the current directory; see the module's documentation.

    stop_on_nan: a NaN loss means training diverged; Caffe would go on (and BVLC Caffe's max
    pooling then writes out of bounds: "double free or corruption"), so Caffe is stopped and
    TrainingError names the iteration.

    resume: True resumes from the latest <snapshot_prefix>_iter_N.solverstate when one exists
    (then `weights` is not used: the snapshot holds the weights); False starts afresh; a path
    resumes from that .solverstate.

    set_aside_earlier (tools/train.py --restart): with resume=False, the earlier run's snapshots
    of this snapshot_prefix, and the default log and curves, are moved to a new folder beside
    them (set_aside) first, so that they are neither resumed from later nor mixed into this
    run's log; if Caffe ends before its first iteration they are put back (put_back).

    on_event: called with every caffe_log.Event as it is read (e.g. a caller's own progress
    display for several trainings at once); echo=False keeps Caffe's notable lines (data layer,
    snapshots, errors) out of the terminal, which such a caller draws on (the log has them).
    """
    info = read_solver(solver)
    if info.net and not Path(info.net).is_file():
        raise TrainingError(_missing_net_message(solver, info.net))
    net = read_train_net(info)
    if gpu is not None:
        gpu = _gpu_ids(gpu)
        _check_gpus(gpu, info, net)
    caffe = find_caffe(caffe)
    resume_from = None
    if resume is True:
        resume_from = latest_solverstate(info.snapshot_prefix)
    elif resume not in (True, False, None):
        resume_from = Path(resume)
        if not resume_from.is_file():
            raise TrainingError(f"--resume {resume_from}: no such .solverstate")
    if resume_from:
        _check_resume_file(resume_from, resume is not True, info.snapshot_prefix)
    if weights and not resume_from:
        _check_weights(weights)
        if net is not None:
            check_weights_fit(weights, net)
    if resume_from and net is not None:
        check_snapshot_fits(resume_from, net, "resuming from" if resume is True else "--resume")
    # Beside the snapshots, also for a solver without snapshot_prefix (Caffe's default prefix).
    out_dir = _prefix_folder(info.snapshot_prefix)
    # Caffe refuses to start when it cannot write there; the log and curves are written while it
    # runs: a path that cannot be written is named now, not in a traceback later.
    _check_writable(out_dir / ".train-write-check", f"the snapshot folder {out_dir} (from "
                    f"snapshot_prefix in {solver})", "change snapshot_prefix or run from a "
                    "folder where it can be written", folder=True)
    given_log, given_plot = log_path, plot_path
    log_path = Path(log_path) if log_path else out_dir / "train.log"
    plot_path = (Path(plot_path) if plot_path else out_dir / "loss.png") if plot else None
    _check_writable(log_path, f"--log {log_path}" if given_log else f"the log {log_path}",
                    "give a --log FILE that can be written")
    if plot_path:
        _check_writable(plot_path, f"--plot {plot_path}" if given_plot else
                        f"the curves {plot_path}", "give a --plot FILE that can be written")
    command = build_command(caffe, solver, weights, resume_from, gpu, extra_args)

    start_iter = snapshot_iteration(resume_from) if resume_from else 0
    if resume_from and start_iter is None:
        start_iter = _solverstate_iteration(resume_from)
    bar = _Progress(progress, info.max_iter, start_iter or 0)
    moved = None
    option = "--restart" if resume is False else "--resume"
    if resume is False and set_aside_earlier:
        # The runner's own log and curves describe the earlier run too; a --log / --plot of the
        # caller's is theirs (the log is appended to, as always).
        moved = set_aside(info.snapshot_prefix, [p for p, given in ((log_path, given_log),
                                                                    (plot_path, given_plot))
                                                 if p is not None and not given])
        if moved:
            bar.write(_set_aside_message(moved))
    elif resume_from and resume is not True:
        # An older snapshot resumed: the later ones of this prefix would be overwritten one by
        # one as the run passes their iterations (a mix of two runs); they are kept aside as
        # --restart keeps a whole run (the log stays: it is appended to, and plots the latest).
        moved = set_aside(info.snapshot_prefix, after=start_iter)
        if moved:
            bar.write(_set_aside_message(moved, start_iter))
    if resume_from:
        bar.write(f"resuming from {resume_from} (iteration {start_iter})")
        if weights:
            bar.write(f"--weights {weights}: " + ("ignored: " if Path(weights).is_file() else
                                                  "no such file, and ignored anyway: ")
                      + f"the weights come from the snapshot {resume_from} (--restart starts "
                      "from --weights instead)")
    caffe_env = {**os.environ, **_CAFFE_LOG_ENV, **embedded_protobuf_env()}
    # The data layer goes on with the batch an uninterrupted run would read next (and a fresh run
    # starts at the first, whatever the caller's environment holds).
    from ..data.data_params import START_BATCH_ENV
    caffe_env.pop(START_BATCH_ENV, None)
    if resume_from:
        caffe_env[START_BATCH_ENV] = str(start_iter * info.iter_size)
    caffe_env.update(env or {})
    parser = LogParser()
    try:
        returncode, diverged, signals = _run_caffe(
            command, caffe_env, log_path, plot_path, parser, bar, verbose, echo, on_event,
            stop_on_nan)
    except BaseException:
        if moved and not parser.log.started and not parser.log.snapshots:
            bar.write(put_back(moved, log_path, option))
        raise
    bar.close()
    log = parser.log
    restored = None
    if moved and not log.started and not log.snapshots:
        # Caffe ended during its setup (the net, the weights, a signal): nothing of this try is
        # worth keeping but its log, and a retry of the same command should find the folder as
        # the first try did, not set aside one more folder of failed tries.
        restored = put_back(moved, log_path, option)
    if plot_path:
        _plot(log_path, plot_path)
    result = TrainResult(returncode, command, log_path, plot_path if plot_path and
                         plot_path.exists() else None, resume_from, log, list(log.snapshots),
                         signals.stop_signal, signals.killed)
    if diverged is not None:
        raise TrainingError(f"the loss became NaN at iteration {diverged}: training diverged "
                            f"(lower base_lr?); Caffe was stopped. Full log: {log_path}")
    if returncode != 0 and not (signals.stop_signal and returncode in (-signal.SIGINT,
                                                                       -signal.SIGKILL)):
        # (After a stop was asked for, Caffe killed by the second signal, or ended by the SIGINT
        # that arrived before its handler was set up or after it was removed, only stopped.)
        from ..nets.layer_support import failure_advice, shorten_known_types
        fatal = "\n".join(shorten_known_types(line) for line in log.fatal[-10:]) or \
            "(no fatal line; see the log)"
        hint = failure_advice(log.fatal, f"the caffe tool {caffe}", _python_form(info.net))
        if resume_from and any(text in line for line in log.fatal
                               for text in _OTHER_NETS_SNAPSHOT):
            # Caffe's own advice (rename the layer) is for fine-tuning, not for a resume. What
            # the net's text shows (and a damaged file) was refused before Caffe started; the
            # history's length also depends on the solver type (Adam keeps two blobs a weight).
            hint = (f"the snapshot {resume_from} was written by another net than this "
                    "solver's" + (", or under another solver type" if any(
                        _OTHER_NETS_SNAPSHOT[1] in line for line in log.fatal) else "")
                    + ": --restart sets it aside and starts afresh, or give the solver "
                    "a snapshot_prefix of its own")
        raise TrainingError(f"caffe train exited with code {returncode}:\n{fatal}\n"
                            + (f"{hint}\n" if hint else "")
                            + (f"{restored}\n" if restored else "") + f"full log: {log_path}")
    if restored:
        bar.write(restored)
    return result


def _python_form(net) -> str:
    """How to train the solver's net with the Python form of the layers, for the advice on a
    Caffe without them: the net's own path, which the solver keeps naming."""
    if not net:
        return "tools/convert_net.py NET --to python"
    return (f"`python tools/convert_net.py {shlex.quote(str(net))} --to python --in-place`, the "
            "net this solver trains; for the generated nets, `python tools/generate_prototxt.py "
            "--form python --output-dir DIR` writes the Python form with its own solvers")


def _run_caffe(command, caffe_env, log_path, plot_path, parser, bar, verbose, echo, on_event,
               stop_on_nan):
    """Run Caffe, its output appended to log_path and fed to parser; (return code, iteration
    of a NaN loss or None, _Signals)."""
    try:
        log_file = open(log_path, "a")
    except OSError as exc:
        raise TrainingError(f"--log {log_path}: cannot write it ({exc.strerror})") from None
    with log_file:
        log_file.write(f"# tools/train.py {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                       f"{' '.join(command)}\n")
        log_file.flush()
        in_main = threading.current_thread() is threading.main_thread()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                bufsize=0, env=caffe_env,
                                preexec_fn=_caffe_child_setup(own_group=in_main))
        diverged = None
        signals = _Signals(proc, lambda: parser.log.stopped_early)
        try:
            with signals:
                lr = None
                for line in output_lines(proc.stdout.fileno()):
                    log_file.write(line)
                    if verbose or (echo and _echo_worthy(line)):
                        bar.write(line.rstrip("\n"))
                    for event in parser.feed(line):
                        if on_event is not None:
                            on_event(event)
                        if event.kind == "max_iter":
                            bar.set_total(int(event.value))
                        elif event.kind == "lr":
                            lr = event.value
                        elif event.kind == "display":
                            bar.update(event.iteration, event.value, lr)
                            if stop_on_nan and diverged is None and math.isnan(event.value):
                                diverged = event.iteration
                                proc.kill()
                        elif (event.kind == "snapshot" and event.text.endswith(".caffemodel")
                              and plot_path):
                            log_file.flush()
                            _plot(log_path, plot_path)
                returncode = proc.wait()
        finally:
            # Whatever went wrong here, Caffe is not left running without this process reading
            # its output (its embedded Python ignores SIGPIPE: it would train on, unseen).
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    return returncode, diverged, signals


def output_lines(fd, wake_every=0.5):
    """The lines a child writes to the pipe `fd`, as text (the locale's encoding, undecodable
    bytes replaced, newlines translated: what Popen's text mode gives), until it closes.

    Not `for line in proc.stdout`: a signal that arrives just before a blocking read() starts
    sets Python's flag but interrupts nothing, so its handler (Ctrl-C: stop Caffe) would wait for
    Caffe's next line, which a quiet Caffe may never write. Here the thread waits in select()
    for at most `wake_every` seconds at a time and reads only what is there, so a pending
    handler runs within that time at worst (at once, as before, when the signal interrupts the
    wait itself)."""
    decoder = io.IncrementalNewlineDecoder(
        codecs.getincrementaldecoder(locale.getpreferredencoding(False))(errors="replace"),
        translate=True)
    pending = ""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not selector.select(wake_every):
                continue  # back in Python: a pending signal handler runs here
            chunk = os.read(fd, 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
            if not chunk:
                if pending:
                    yield pending
                return


def _caffe_child_setup(own_group=True):
    """What the caffe child does before it runs (Popen's preexec_fn). own_group (where this
    process handles the signals: the main thread): a process group of its own, so that what a
    terminal or a scheduler sends to this tool's group (Ctrl-C, a hangup when the terminal
    closes, `kill -- -PGID`, scancel, systemd's stop) reaches this process only, which tells
    Caffe in the way it can take (_Signals): Caffe handles SIGINT and SIGHUP only and died at
    once of a group SIGTERM, and the data layer's prefetch workers died of a hangup. (In another
    thread nothing is caught here, so Caffe stays in the caller's group and gets a terminal's
    Ctrl-C itself, as the demo's parallel trainings rely on.) And, on Linux, a SIGINT when
    this process dies (even of SIGKILL), so that Caffe snapshots and stops instead of training
    on unseen."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    parent = os.getpid()

    def setup():
        if own_group:
            os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
            if os.getppid() != parent:  # the parent died before the line above took effect
                os.kill(os.getpid(), signal.SIGINT)
    return setup


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Signals:
    """While Caffe runs, the signals that would end this process are handled so that Caffe is
    never left running on its own:

    SIGINT (Ctrl-C) or SIGTERM (`kill`, a scheduler, systemd), the first: Caffe is sent a SIGINT
    (its -sigint_effect, `stop` by default: it finishes the iteration, snapshots and exits) and
    the output is read to the end; `stop_signal` keeps which signal it was. Caffe runs in a
    process group of its own (_caffe_child_setup), so what is sent to this tool's group reaches
    it through here only: one stop, one snapshot. The second SIGINT or SIGTERM kills Caffe
    (`killed`).
    SIGHUP: passed on to Caffe (its -sighup_effect, `snapshot` by default: a snapshot, and
    training goes on, still read and logged here; a closed terminal does not end the run).

    Outside the main thread signals cannot be caught: nothing changes there."""

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}

    def __init__(self, proc, stopped=lambda: False):
        self.proc, self.count, self.previous = proc, 0, {}
        self.stopped = stopped  # Caffe has said it stopped (its snapshot is written)
        self.stop_signal, self.killed = None, False

    @staticmethod
    def _say(message):
        # Straight to the file descriptor: the handler may interrupt a print() to stderr,
        # and re-entering that buffered stream raises RuntimeError (seen on Python 3.13).
        try:
            os.write(sys.stderr.fileno(), message.encode())
        except (OSError, ValueError):
            pass  # no usable stderr (e.g. a closed terminal): the message is a courtesy

    def _send(self, signum):
        try:
            self.proc.send_signal(signum)  # nothing when Caffe has already been waited for
        except ProcessLookupError:
            pass  # it has just ended

    def _handler(self, signum, frame):
        name = self.NAMES.get(signum, f"signal {signum}")
        if signum == signal.SIGHUP:
            self._send(signal.SIGHUP)
            self._say(f"\n{name}: passed on to Caffe, which snapshots after this iteration and "
                      "goes on\n")
            return
        self.count += 1
        if self.count == 1:
            self.stop_signal = signum
            self._send(signal.SIGINT)
            self._say(f"\n{name}: Caffe finishes this iteration, snapshots and stops "
                      f"({'Ctrl-C' if signum == signal.SIGINT else name} again to kill it)\n")
        elif self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
            self._say(f"\n{name} again: Caffe killed " + (
                "as it exited (its stop snapshot was written)\n" if self.stopped() else
                "(no snapshot of this iteration)\n"))

    def __enter__(self):
        for signum in self.HANDLED:
            try:
                self.previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self.previous = {}
        return False


def _plot(log_path, plot_path):
    from .plots import plot_logs
    try:
        plot_logs([log_path], plot_path)
    except ValueError:
        pass  # no iteration logged yet
    except OSError as exc:  # e.g. a full disk: the curves are a courtesy, training goes on
        try:
            print(f"cannot write the curves {plot_path} ({exc.strerror}); training goes on",
                  file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
