"""Command-line pieces shared by tools/test_voc.py, tools/visualize_attention.py,
tools/segment.py and tools/compare_results.py: the data and network arguments, what they build
and how an error ends the tool (the tools stay argument parsing and printing)."""

import argparse
import math
import sys
from contextlib import contextmanager
from pathlib import Path

from ..data.lists import read_list
from ..errors import DataError
from ..files import folder_problem
from . import crf as dense_crf
from .inference import DEEPLAB_MEAN_BGR, LAYER_FORMS, NetPredictor, InferenceOptions
from .metrics import VOC_CLASSES
from .runner import Evaluation
from .segment_images import IMAGE_SUFFIXES, gather_inputs, list_inputs, unique_inputs
from .segments import DEFAULT_AREA_BINS, DEFAULT_DISTANCE_BINS, parse_edges


def _edges(bins):
    return ",".join(f"{e:g}" for e in bins.edges)


def add_data_arguments(parser, required=True):
    """--list, --root, --classes, --limit and the bins: shared with visualize_attention.py.
    required=False: --list is one way to name the images (check_list_arguments)."""
    parser.add_argument("--list", required=required,
                        help="DeepLab list file (image and label paths)" if required else
                        "DeepLab list file (image paths, with or without label paths)")
    parser.add_argument("--root", required=required,
                        help="folder the list's paths are relative to")
    parser.add_argument("--classes", metavar="FILE",
                        help="class names, one per line (default: the 21 VOC classes)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    parser.add_argument("--area-bins", default=_edges(DEFAULT_AREA_BINS), metavar="EDGES",
                        help="object-area bin edges in pixels, comma separated "
                             "(default %(default)s: log-scale, factor 4)")
    parser.add_argument("--distance-bins", default=_edges(DEFAULT_DISTANCE_BINS), metavar="EDGES",
                        help="distance-from-edge bin edges in pixels (default %(default)s)")


def _scale(text):
    """argparse type of --scales: a finite number > 0 (argparse names the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a scale is a finite number > 0, e.g. 0.75")
    return value


def add_net_arguments(parser, required=False, output="<output>", branches="evaluate"):
    """--net, --weights and the test-time options; `output` names the folder the results go to
    in the help (the tool's own option), `branches` what --branches does with each scale's own
    scores (segment.py has no labels to evaluate them against)."""
    group = parser.add_argument_group("network")
    group.add_argument("--net", required=required,
                       help="test-form prototxt: a variant's test.prototxt (Input `data`, "
                            "scores `score` at the input's size; docs/training.md, Networks)")
    group.add_argument("--weights", help=".caffemodel for --net")
    group.add_argument("--gpu", type=int, metavar="ID", help="run on this GPU (default: CPU)")
    group.add_argument("--layer-form", choices=LAYER_FORMS, default="cpp",
                       help="python: convert the net to the Python-layer form at load time, "
                            "for a pycaffe without the C++ layers (default %(default)s)")
    group.add_argument("--mean", type=float, nargs=3, default=DEEPLAB_MEAN_BGR,
                       metavar=("B", "G", "R"), help="mean subtracted from the image")
    group.add_argument("--scales", type=_scale, nargs="+", default=[1.0], metavar="S",
                       help="test-time image scales whose probabilities are averaged "
                            "(e.g. 0.75 1 1.25; default 1)")
    group.add_argument("--flip", action="store_true",
                       help="also average the mirrored image's probabilities")
    group.add_argument("--branches", action="store_true",
                       help=f"also {branches} each scale's own scores (fc8, fc8_res..._interp) "
                            f"of a multi-scale net, stored under {output}/branches/")
    return group


def add_crf_arguments(parser):
    """--crf and DeepLab-LargeFOV's CRF settings (test_voc.py, segment.py)."""
    crf = parser.add_argument_group("dense CRF (DeepLab-LargeFOV's settings by default)")
    defaults = dense_crf.CrfParams()
    crf.add_argument("--crf", action="store_true", help="refine each prediction with a dense CRF")
    for name in ("bi_w", "bi_xy_std", "bi_rgb_std", "pos_w", "pos_xy_std"):
        crf.add_argument(f"--crf-{name.replace('_', '-')}", dest=name, type=float,
                         default=getattr(defaults, name), help="default %(default)s")
    crf.add_argument("--crf-iterations", dest="iterations", type=int,
                     default=defaults.iterations, help="default %(default)s")
    return crf


def make_crf(args):
    """The DenseCRF the --crf options ask for, or None."""
    if not args.crf:
        return None
    return dense_crf.DenseCRF(dense_crf.CrfParams(args.bi_w, args.bi_xy_std, args.bi_rgb_std,
                                                  args.pos_w, args.pos_xy_std, args.iterations))


def read_class_names(path):
    if path is None:
        return list(VOC_CLASSES)
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(f"cannot read class names from {path}: {exc.strerror}") from None
    if len(names) < 2:
        raise DataError(f"{path}: needs at least two class names, one per line")
    return names


def make_evaluation(args):
    return Evaluation(read_class_names(args.classes), parse_edges(args.area_bins, " px"),
                      parse_edges(args.distance_bins, " px"))


def make_predictor(args):
    if args.weights is None:
        raise ValueError("--net needs --weights (the .caffemodel)")
    options = InferenceOptions(mean_bgr=args.mean, scales=args.scales, flip=args.flip,
                               branches=getattr(args, "branches", False))
    return NetPredictor(args.net, args.weights, options, args.layer_form, args.gpu)


def check_output_folder(path, option):
    """A ValueError naming `option` when files cannot be written in the folder `path` (created
    when missing), before any work: a file there or on the way, no permission, a read-only or
    virtual file system. Nothing is created."""
    problem = folder_problem(path)
    if problem:
        raise ValueError(f"{option} {path}: {problem}")


def _limited(entries, limit):
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    return entries[:limit] if limit is not None else entries


def read_entries(args, labels="required"):
    """The list's entries (up to --limit). labels="required": a line without a label path is
    refused with a pointer to tools/segment.py (metrics need ground truth); "optional": lines
    may lack them."""
    entries = _limited(read_list(args.list, args.root, require_labels=False), args.limit)
    if labels == "required":
        for entry in entries:
            if entry.label is None:
                raise DataError(f"{entry.where}: no label path after the image "
                                f"{entry.image}: metrics need ground-truth labels; to "
                                "segment images without them (e.g. the VOC 2012 test set for "
                                "the evaluation server) use tools/segment.py")
    return entries


def add_input_arguments(parser):
    """Image files and folders as positional arguments (tools/segment.py, visualize_attention)."""
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER",
                        help="image files, and folders whose image files (" +
                        " ".join(s.lstrip(".") for s in IMAGE_SUFFIXES) + ", any case; not "
                        "their subfolders) are all taken")


def check_list_arguments(parser, args):
    """--list and --root go together; some images must be named."""
    if (args.list is None) != (args.root is None):
        parser.error("--list and --root go together (the list's paths are relative to --root)")
    if args.list is None and not args.inputs:
        parser.error("name the images: image files or folders, and/or --list LIST --root ROOT")


def read_inputs(args):
    """ImageInputs of --list (labels ignored) and the positional files and folders, up to
    --limit, a file named twice taken once; DataError for two images with one name."""
    inputs = list_inputs(args.list, args.root) if args.list is not None else []
    inputs += gather_inputs(args.inputs)
    return _limited(unique_inputs(inputs), args.limit)


# Errors whose message already names what is wrong and where: DataError and ValueError, the
# FileNotFoundError inference raises for a missing net or weights file, the ImportError of a
# missing optional part (the CRF's install hint). Printed as they are.
MESSAGE_ERRORS = (DataError, ValueError, FileNotFoundError, ImportError)


@contextmanager
def errors_end_in_one_line(tool, path, resumable=True, messages=MESSAGE_ERRORS):
    """The tool's work runs in this block; an error ends the process with one line on stderr
    instead of a traceback:
      Ctrl-C: `<tool>: stopped`, with `; run the same command again to continue` when the tool
        resumes (resumable), exit status 130;
      one of `messages`: `<tool>: <message>`, exit status 1;
      any other OSError (writing the results): `<tool>: <its file, else path>: <the reason>`,
        exit status 1.
    Other exceptions pass (a bug's traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        # Every file is written whole (or not at all): the next run reuses what is there.
        hint = "; run the same command again to continue" if resumable else ""
        print(f"{tool}: stopped{hint}", file=sys.stderr)
        sys.exit(130)
    except messages as exc:
        sys.exit(f"{tool}: {exc}")
    except OSError as exc:
        sys.exit(f"{tool}: {exc.filename or path}: {exc.strerror or exc}")
