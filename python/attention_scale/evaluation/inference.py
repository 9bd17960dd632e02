"""Running a test-form network on one image (the CONTRACT's test form, DeepLab's test protocol).

The net takes `data` (1 x 3 x H x W: BGR minus the mean) and gives `score` (1 x C x H x W, the
merged scores resized to the input) and, for attention nets, `attention` (1 x S x h x w at the
scale-1 score resolution). The image, minus the mean, is padded with zeros at the bottom and right
to the net's input size (513 x 513 in the paper's nets); a larger image grows the input to the
next size of the form step * k + 1 that covers it. The prediction is read from the top-left
H x W of the outputs. Test-time augmentation (extra scales, mirroring) averages the softmax
probabilities of every pass, each resized back to the image.

pycaffe is imported only when a net is loaded, so evaluating a folder of predictions needs none.
"""

import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..files import file_sha256
from ..layers import scale_interp
from ..pycaffe import import_caffe, net_from_text

DEEPLAB_MEAN_BGR = (104.008, 116.669, 122.675)
LAYER_FORMS = ("cpp", "python")
_BRANCH_BLOB = re.compile(r"^fc8_res(\d+)_interp$")
# Caffe's Blob::Reshape: CHECK_LE(count_, INT_MAX) << "blob size exceeds INT_MAX".
BLOB_LIMIT = 2**31 - 1


class InputTooLarge(ValueError):
    """A test-time scale would make one of the net's blobs larger than Caffe allows."""


def check_scales(scales, what="test scales"):
    """Each scale a finite number > 0 (a ValueError naming `what` otherwise)."""
    bad = [s for s in scales if not (math.isfinite(s) and s > 0)]
    if not scales or bad:
        raise ValueError(f"{what} must be finite numbers > 0, got "
                         f"{' '.join(f'{s:g}' for s in scales) or 'none'}")


def padded_size(n, minimum, step=8):
    """The input extent for an image side of n: the net's own size, or step * k + 1 >= n."""
    return max(minimum, step * math.ceil((n - 1) / step) + 1)


def net_input(image_bgr, mean_bgr, size_hw) -> np.ndarray:
    """3 x H x W float32: the image minus the mean, zero-padded at the bottom and right."""
    h, w = image_bgr.shape[:2]
    if h > size_hw[0] or w > size_hw[1]:
        raise ValueError(f"image {h}x{w} does not fit the input {size_hw[0]}x{size_hw[1]}")
    out = np.zeros((3,) + tuple(size_hw), np.float32)
    out[:, :h, :w] = (image_bgr.astype(np.float32) - np.float32(mean_bgr)).transpose(2, 0, 1)
    return out


def resize_maps(maps, out_hw, nearest=False) -> np.ndarray:
    """C x h x w -> C x H x W on ScaleInterp's corner-aligned grid (the nets' own resize)."""
    maps = np.ascontiguousarray(maps, np.float32)
    if maps.shape[1:] == tuple(out_hw):
        return maps.copy()
    return scale_interp.forward(maps[None], tuple(out_hw), nearest=nearest)[0]


def softmax(scores, axis=0) -> np.ndarray:
    shifted = scores - scores.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def branch_blobs(blob_names) -> list:
    """[(scale name, blob)] of a multi-scale net's per-scale scores at the scale-1 score
    resolution (CONTRACT: `fc8` for scale 1, `fc8_res<digits>_interp` for the others); [] for a
    net without such branches."""
    names = list(blob_names)
    others = [(f"{m.group(1)[0]}.{m.group(1)[1:]}", m.group(0))
              for m in map(_BRANCH_BLOB.match, names) if m]
    if "fc8" not in names or not others:
        return []
    return [("1", "fc8")] + [(f"{float(scale):g}", blob) for scale, blob in others]


def scale_names_from_blobs(blob_names, num_scales) -> list:
    """The attention maps' scales from the CONTRACT's branch names: scale 1 first, then each
    `fc8_res<digits>_interp` in net order, the digits being the scale without its point
    ("_res075" -> 0.75, "_res05" -> 0.5). Generic names when they do not fit."""
    found = ["1"] + [f"{m.group(1)[0]}.{m.group(1)[1:]}"
                     for m in map(_BRANCH_BLOB.match, blob_names) if m]
    if len(found) == num_scales:
        return [f"{float(s):g}" for s in found]
    return [f"scale {i + 1}" for i in range(num_scales)]


@dataclass
class Prediction:
    """A network's output for one image, at the image's own size."""
    probabilities: np.ndarray            # C x H x W float32, sums to 1 over C
    attention: Optional[np.ndarray]      # S x H x W float32, or None for nets without attention
    branches: dict = None                # scale name -> C x H x W probabilities of that branch

    @property
    def label(self) -> np.ndarray:
        return self.probabilities.argmax(axis=0).astype(np.uint8)


@dataclass
class InferenceOptions:
    """How an image is fed: mean, test-time scales and mirroring, input growth step."""
    mean_bgr: Sequence[float] = DEEPLAB_MEAN_BGR
    scales: Sequence[float] = (1.0,)
    flip: bool = False
    size_step: int = 8
    score_blob: str = "score"
    attention_blob: str = "attention"
    branches: bool = False  # also predict from each scale's own scores (fc8, fc8_res..._interp)

    def settings(self):
        """JSON-ready description (goes into the metrics file)."""
        return {"mean_bgr": [float(m) for m in self.mean_bgr],
                "test_scales": [float(s) for s in self.scales], "flip": self.flip,
                "size_step": self.size_step, "branches": self.branches}


class NetPredictor:
    """A test-form Caffe net with its weights, giving a Prediction per BGR image."""

    def __init__(self, prototxt, weights, options: InferenceOptions = None, layer_form="cpp",
                 gpu=None):
        if layer_form not in LAYER_FORMS:
            raise ValueError(f"layer_form must be one of {LAYER_FORMS}, got {layer_form!r}")
        for what, path in (("network prototxt", prototxt), ("weights", weights)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{what} {path}: no such file")
        self.options = options or InferenceOptions()
        check_scales(list(self.options.scales))
        self.prototxt, self.weights, self.layer_form = str(prototxt), str(weights), layer_form
        caffe = import_caffe(gpu)
        self.net = self._load(caffe)
        blobs = self.net.blobs
        for name in ("data", self.options.score_blob):
            if name not in blobs:
                raise ValueError(f"{prototxt}: the test net has no blob {name!r} (blobs: "
                                 f"{', '.join(blobs.keys())}); see a variant's test.prototxt, "
                                 f"docs/training.md, Networks")
        self.base_hw = tuple(blobs["data"].data.shape[2:])
        # Each 4-D blob's (name, batch x channels, height and width per input pixel row/column),
        # for the size it takes at another input size (the net's layers keep these ratios).
        self._blob_growth = [(name, blob.data.shape[0] * blob.data.shape[1],
                              blob.data.shape[2] / self.base_hw[0],
                              blob.data.shape[3] / self.base_hw[1])
                             for name, blob in blobs.items() if blob.data.ndim == 4]
        self._check_input_size(self.base_hw, max(self.options.scales), nominal=True)
        self.num_classes = blobs[self.options.score_blob].data.shape[1]
        self.has_attention = self.options.attention_blob in blobs
        self.scale_names = (scale_names_from_blobs(list(blobs.keys()),
                                                   blobs[self.options.attention_blob].data.shape[1])
                            if self.has_attention else [])
        # the scales the net merges inside, recorded so that compare_results can tell a
        # multi-scale net run at input scale 1 from a single-scale one
        self.net_scales = [name for name, _ in branch_blobs(blobs.keys())] or ["1"]
        self.branches = branch_blobs(blobs.keys()) if self.options.branches else []
        if self.options.branches and not self.branches:
            raise ValueError(f"{prototxt}: per-scale branches asked for, but the net has no "
                             f"`fc8` and `fc8_res..._interp` blobs (a multi-scale net has them)")

    def _load(self, caffe):
        # What would end the process inside Caffe (LOG(FATAL): text its caffe.proto cannot
        # parse, a bottom no layer makes, a layer type this pycaffe lacks, a saved blob of another
        # shape) or pass in silence (a layer the weights do not reach) is refused here first,
        # with what to do; so is a train net (its data layer would start reading).
        from google.protobuf import text_format

        from ..nets.caffe_proto import load_protos
        from ..nets.convert import convert_net
        from ..nets.layer_support import (check_net_layers, check_net_parses, check_test_net,
                                          lacks_input_layer)
        from ..nets.prototxt import NotAPrototxt, read_prototxt
        protos = load_protos()
        try:
            text = read_prototxt(self.prototxt, protos)
        except NotAPrototxt as exc:
            if not exc.weights:
                raise
            raise ValueError(f"--net {self.prototxt} is a .caffemodel (trained weights), not a "
                             "network definition: give it as --weights, and the variant's "
                             "test.prototxt as --net") from None
        parsed = check_net_parses(self.prototxt, text, caffe, protos)
        check_test_net(self.prototxt, parsed)
        # The net's identity for the output folder's run.json: its content as parsed (comments
        # and layout aside), and the weights file's bytes (0.16 s for 150 MB here).
        self.net_sha256 = hashlib.sha256(
            text_format.MessageToString(parsed).encode()).hexdigest()
        self.weights_sha256 = file_sha256(self.weights)
        # Converted here, never written next to the input: the Python-layer form (our layers as
        # `type: "Python"`, for a pycaffe whose Caffe was not rebuilt with them), and the Input
        # layers as the net's input fields where this Caffe predates them (DeepLab-v2).
        target = "python" if self.layer_form == "python" else None
        input_fields = lacks_input_layer(caffe)
        if target or input_fields:
            text = convert_net(text, target, protos, self.prototxt, input_fields).text
        check_net_layers(self.prototxt, text, caffe,
                         python_form="--layer-form python" if self.layer_form == "cpp"
                         else "tools/convert_net.py NET --to python")
        net = net_from_text(caffe, text)
        from ..nets.caffemodel import INFERENCE_MISMATCH_ADVICE, check_net_weights
        for note in check_net_weights(net, text, self.weights, self.prototxt,
                                      INFERENCE_MISMATCH_ADVICE, refuse_unused=True):
            warnings.warn(note)
        net.copy_from(self.weights)
        return net

    def settings(self):
        return {"net": self.prototxt, "weights": self.weights, "layer_form": self.layer_form,
                "net_sha256": self.net_sha256, "weights_sha256": self.weights_sha256,
                "net_scales": self.net_scales, **self.options.settings()}

    def _largest_blob(self, size_hw):
        """(blob name, channels, height, width) of the largest blob at input size size_hw; an
        upper estimate (+2 per side covers the layers' rounding)."""
        def extent(name, nc, fh, fw):
            return (name, nc, math.ceil(fh * size_hw[0]) + 2, math.ceil(fw * size_hw[1]) + 2)
        return max((extent(*growth) for growth in self._blob_growth),
                   key=lambda e: e[1] * e[2] * e[3])

    def _fits(self, image_hw, scale):
        size = [padded_size(scale_interp.scaled_size(n, scale), base, self.options.size_step)
                for n, base in zip(image_hw, self.base_hw)]
        _, nc, h, w = self._largest_blob(size)
        return nc * h * w <= BLOB_LIMIT, size

    def _check_input_size(self, image_hw, scale, nominal=False):
        """InputTooLarge when the image at `scale` would make a blob of the net exceed Caffe's
        INT_MAX values, which Caffe answers by ending the process (checked before the image is
        resized, which would itself take that much memory)."""
        fits, size = self._fits(image_hw, scale)
        if fits:
            return
        name, nc, h, w = self._largest_blob(size)
        low, high = 0.0, scale  # the largest scale that fits, for the message
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (middle, high) if self._fits(image_hw, middle)[0] else (low, middle)
        image = (f"an image of the net's input size ({image_hw[0]}x{image_hw[1]})" if nominal
                 else f"this {image_hw[0]}x{image_hw[1]} image")
        raise InputTooLarge(
            f"--scales {scale:g}: {image} needs a {size[0]}x{size[1]} input at that scale, where "
            f"blob {name!r} of {self.prototxt} would hold about {nc} x {h} x {w} = "
            f"{nc * h * w:.3g} values, over Caffe's limit of 2^31 - 1 per blob (Caffe would end "
            f"the process); use scales up to {math.floor(low * 100) / 100:g} for it")

    @property
    def branch_names(self):
        return [name for name, _ in self.branches]

    def forward(self, image_bgr):
        """One pass: (scores C x h x w, attention S x h x w or None, {branch: scores}) at the
        image's size."""
        h, w = image_bgr.shape[:2]
        size = tuple(padded_size(n, base, self.options.size_step)
                     for n, base in zip((h, w), self.base_hw))
        data = self.net.blobs["data"]
        if tuple(data.data.shape) != (1, 3) + size:
            data.reshape(1, 3, *size)
            self.net.reshape()
        data.data[0] = net_input(image_bgr, self.options.mean_bgr, size)
        self.net.forward()
        score = self.net.blobs[self.options.score_blob].data[0]
        if score.shape[1:] != size:
            raise ValueError(f"{self.prototxt}: blob {self.options.score_blob!r} is "
                             f"{score.shape[1]}x{score.shape[2]} for a {size[0]}x{size[1]} input; "
                             f"the test form resizes the scores to the input "
                             f"(docs/training.md, Networks)")
        score = score[:, :h, :w].copy()
        attention = None
        if self.has_attention:
            # At the scale-1 score resolution, which the input's H x W maps onto corner to corner.
            full = resize_maps(self.net.blobs[self.options.attention_blob].data[0], size)
            attention = full[:, :h, :w].copy()
        branches = {name: resize_maps(self.net.blobs[blob].data[0], size)[:, :h, :w].copy()
                    for name, blob in self.branches}
        return score, attention, branches

    def predict(self, image_bgr) -> Prediction:
        """Average of softmax(score) (and of the attention and the branches' softmax) over test
        scales and mirroring, each pass resized back to the image."""
        h, w = image_bgr.shape[:2]
        self._check_input_size((h, w), max(self.options.scales))
        image = image_bgr.astype(np.float32)
        sums, att_sum, passes = {}, None, 0
        for scale in self.options.scales:
            if scale == 1:
                scaled = image
            else:
                size = (scale_interp.scaled_size(h, scale), scale_interp.scaled_size(w, scale))
                scaled = resize_maps(image.transpose(2, 0, 1), size).transpose(1, 2, 0)
            for mirror in ((False, True) if self.options.flip else (False,)):
                source = scaled[:, ::-1] if mirror else scaled
                score, attention, branches = self.forward(np.ascontiguousarray(source))
                for key, scores in [(None, score)] + list(branches.items()):
                    prob = softmax(scores.astype(np.float64)).astype(np.float32)
                    prob = resize_maps(prob[:, :, ::-1] if mirror else prob, (h, w))
                    sums[key] = prob if key not in sums else sums[key] + prob
                if attention is not None:
                    attention = resize_maps(attention[:, :, ::-1] if mirror else attention, (h, w))
                    att_sum = attention if att_sum is None else att_sum + attention
                passes += 1
        return Prediction(sums.pop(None) / passes,
                          None if att_sum is None else att_sum / passes,
                          {name: total / passes for name, total in sums.items()})
