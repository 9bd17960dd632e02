"""The paper's networks with pycaffe's NetSpec: DeepLab-LargeFOV branches per scale, merged.

    data -> [ScaleInterp to each scale s] -> backbone{t} -> fc8{t} -> ScaleInterp to fc8's size
         -> WeightedScaleSum (MAX | AVERAGE | ATTENTION)                          -> fc8_fusion
    attention head: fc7{t} resized to fc7's size, concatenated, att_conv1 3x3 + ReLU + dropout,
                    att_conv2 1x1 (S outputs), SoftmaxOverScales                  -> attention
    train: label_shrink (ScaleInterp NEAREST of label to fc8's size), SoftmaxWithLoss `loss` on the
           merged scores, and with E-Supv one loss per scale; `accuracy` (pixel accuracy)
    test/deploy: Input `data` 1 x 3 x 513 x 513, `score` = merged scores resized to the input;
           deploy adds `prob` (softmax over classes)

Names follow nets/naming.py and the CONTRACT. Every branch shares its weights with the scale-1
branch through `param { name: ... }`; learning-rate multipliers are DeepLab's (weights 1x, biases
2x with no weight decay; fc8 and the attention head 10x / 20x).

The net is built in the Python-layer form (our three layers as `type: "Python"`), which any
pycaffe can represent, and turned into the C++ form by nets.convert, whose protos know our fields
even when this pycaffe's caffe.proto does not.
"""

import math
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

from google.protobuf import text_format

from .. import attention_scale_pb2 as pb2
from ..errors import LayerConfigError
from . import naming
from .backbones import Backbone, get_backbone

MERGES = ("MAX", "AVERAGE", "ATTENTION")
STAGES = ("train", "test", "deploy")
FORMS = ("cpp", "python")
LAYERS_MODULE = "attention_scale.layers"
DATA_MODULE = "attention_scale.data"
IGNORE_LABEL = 255

# (lr_mult, decay_mult) of weights and biases
BACKBONE_LR = ((1, 1), (2, 0))
HEAD_LR = ((10, 1), (20, 0))


@dataclass(frozen=True)
class NetOptions:
    """What distinguishes one network of the project from another.

    scales:      (1,) for the single-scale baseline, e.g. (1, 0.75, 0.5) for three branches
    merge:       None (single scale) or "MAX", "AVERAGE", "ATTENTION"
    esupv:       extra supervision: a loss on every scale's own (resized) scores
    crop_size, batch_size: the training input (the test form takes test_size, batch 1)
    form:        "cpp" (our layers as C++ types) or "python" (type "Python" fallbacks)
    backbone:    "vgg16", "small" or a backbones.Backbone
    """
    scales: Tuple[float, ...] = (1.0,)
    merge: Optional[str] = None
    esupv: bool = False
    num_classes: int = 21
    crop_size: int = 321
    batch_size: int = 10
    test_size: int = 513
    form: str = "cpp"
    backbone: Union[str, Backbone] = "vgg16"
    attention_channels: int = 512
    attention_dropout: float = 0.5
    input_scale: float = 1.0   # != 1: a Power layer `data_scaled` multiplies `data` by it first

    def __post_init__(self):
        object.__setattr__(self, "scales", naming.check_scales(self.scales))
        object.__setattr__(self, "backbone", get_backbone(self.backbone))
        multi = len(self.scales) > 1
        if multi and self.merge not in MERGES:
            raise LayerConfigError(f"scales {self.scales}: merge must be one of {MERGES}, "
                                   f"got {self.merge!r}")
        if not multi and self.merge is not None:
            raise LayerConfigError(f"merge {self.merge!r} needs more than one scale "
                                   f"(scales {self.scales})")
        if self.esupv and not multi:
            raise LayerConfigError("E-Supv (a loss per scale) needs more than one scale")
        if self.form not in FORMS:
            raise LayerConfigError(f"form must be one of {FORMS}, got {self.form!r}")
        if not 1 <= self.num_classes <= 255:
            raise LayerConfigError(f"num_classes must lie in 1..255, got {self.num_classes}")
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise LayerConfigError(f"input_scale must be a positive number, got {self.input_scale}")
        for name in ("crop_size", "batch_size", "test_size", "attention_channels"):
            if getattr(self, name) < 1:
                raise LayerConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def multi_scale(self) -> bool:
        return len(self.scales) > 1

    @property
    def suffixes(self):
        return [naming.scale_suffix(s) for s in self.scales]

    def score_sizes(self, size=None):
        """{suffix: score-map side} for an input side (default crop_size)."""
        size = self.crop_size if size is None else size
        return {naming.scale_suffix(s): self.backbone.output_size(_scaled(size, s))
                for s in self.scales}

    def with_(self, **changes) -> "NetOptions":
        return replace(self, **changes)


def _scaled(size, scale):
    """ScaleInterp's `scale` output size: floor((size - 1) * scale + 1e-4) + 1."""
    return size if scale == 1 else math.floor((size - 1) * scale + 1e-4) + 1


# ---------------------------------------------------------------------------------------------
# Layer helpers
# ---------------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, options: NetOptions):
        import caffe  # noqa: F401  (NetSpec needs pycaffe; imported late so the module imports without it)
        from caffe import layers, net_spec
        self.L = layers
        self.n = net_spec.NetSpec()
        self.o = options
        self.share = options.multi_scale  # named params only where branches share them

    def ours(self, layer_type, bottoms, message):
        """One of our three layers (Python form; nets.convert makes the C++ form)."""
        param_str = text_format.MessageToString(message, as_one_line=True)
        python_param = {"module": LAYERS_MODULE, "layer": layer_type}
        if param_str:
            python_param["param_str"] = param_str
        return self.L.Python(*bottoms, python_param=python_param)

    def conv(self, name, bottom, num_output, kernel, dilation=1, lr=BACKBONE_LR,
             filler=None, base=None):
        """Convolution with DeepLab's multipliers; `base` is the scale-1 layer whose weights it
        shares (its own name for scale 1)."""
        pad = dilation * (kernel - 1) // 2
        kwargs = dict(num_output=num_output, kernel_size=kernel,
                      weight_filler=filler or dict(self.o.backbone.conv_filler),
                      bias_filler=dict(type="constant", value=0))
        if pad:
            kwargs["pad"] = pad
        if dilation != 1:
            kwargs["dilation"] = dilation
        params = [dict(lr_mult=lr[0][0], decay_mult=lr[0][1]),
                  dict(lr_mult=lr[1][0], decay_mult=lr[1][1])]
        if self.share:
            for spec, shared in zip(params, naming.param_names(base or name)):
                spec["name"] = shared
        top = self.L.Convolution(bottom, param=params, **kwargs)
        self.n[name] = top
        return top

    def relu(self, name, bottom):
        self.n[name] = self.L.ReLU(bottom, in_place=True)
        return self.n[name]

    def dropout(self, name, bottom, ratio):
        if ratio <= 0:
            return bottom
        self.n[name] = self.L.Dropout(bottom, dropout_ratio=ratio, in_place=True)
        return self.n[name]

    def pool(self, name, bottom, stride):
        bb = self.o.backbone
        kwargs = dict(pool=self._pool_max(), kernel_size=bb.pool_kernel, stride=stride)
        if bb.pool_pad:
            kwargs["pad"] = bb.pool_pad
        self.n[name] = self.L.Pooling(bottom, **kwargs)
        return self.n[name]

    @staticmethod
    def _pool_max():
        from caffe import params
        return params.Pooling.MAX

    def interp(self, name, bottom, reference=None, scale=None, nearest=False):
        message = pb2.ScaleInterpParameter()
        if scale is not None:
            message.scale = scale
        if nearest:
            message.interpolation = pb2.ScaleInterpParameter.NEAREST
        bottoms = (bottom,) if reference is None else (bottom, reference)
        self.n[name] = self.ours("ScaleInterp", bottoms, message)
        return self.n[name]

    # -----------------------------------------------------------------------------------------

    def branch(self, data, t, with_fc8=True):
        """One scale's backbone and fc8; returns (fc7, fc8) tops (fc8 None without it)."""
        bb = self.o.backbone
        top = data
        for s, (widths, pool_stride, dilation) in enumerate(
                zip(bb.stages, bb.pool_strides, bb.stage_dilations), start=1):
            for i, width in enumerate(widths, start=1):
                top = self.conv(f"conv{s}_{i}{t}", top, width, 3, dilation, base=f"conv{s}_{i}")
                top = self.relu(f"relu{s}_{i}{t}", top)
            if pool_stride:
                top = self.pool(f"pool{s}{t}", top, pool_stride)
        top = self.conv(f"fc6{t}", top, bb.fc6_channels, bb.fc6_kernel, bb.fc6_dilation, base="fc6")
        top = self.relu(f"relu6{t}", top)
        top = self.dropout(f"drop6{t}", top, bb.dropout)
        top = self.conv(f"fc7{t}", top, bb.fc7_channels, 1, base="fc7")
        top = self.relu(f"relu7{t}", top)
        fc7 = self.dropout(f"drop7{t}", top, bb.dropout)
        if not with_fc8:
            return fc7, None
        fc8 = self.conv(f"fc8{t}", fc7, self.o.num_classes, 1, lr=HEAD_LR,
                        filler=dict(type="gaussian", std=0.01), base="fc8")
        return fc7, fc8

    def attention_head(self, fc7s):
        """fc7 of every scale at the scale-1 fc7 size, concatenated -> S weights per pixel."""
        suffixes = self.o.suffixes
        resized = [fc7s[""]]
        for t in suffixes[1:]:
            resized.append(self.interp(f"fc7{t}_interp", fc7s[t], reference=fc7s[""]))
        self.n.fc7_concat = self.L.Concat(*resized)
        # No sharing: one attention head. msra for the ReLU layer; att_conv2 starts near zero so
        # the first weights are about uniform (the net starts as an average merge).
        saved, self.share = self.share, False
        top = self.conv("att_conv1", self.n.fc7_concat, self.o.attention_channels, 3, lr=HEAD_LR,
                        filler=dict(type="msra"))
        top = self.relu("att_relu1", top)
        top = self.dropout("att_drop1", top, self.o.attention_dropout)
        top = self.conv("att_conv2", top, len(suffixes), 1, lr=HEAD_LR,
                        filler=dict(type="gaussian", std=0.01))
        self.share = saved
        self.n.attention = self.ours("SoftmaxOverScales", (top,), pb2.SoftmaxOverScalesParameter())
        return self.n.attention

    def scores(self, data):
        """Every branch; returns the merged scores (fc8 for one scale) and the per-scale ones."""
        o = self.o
        if o.input_scale != 1:
            # Mean-subtracted pixels span about +-128; small nets trained from scratch (the demo)
            # want inputs of order 1, or the 10x head learning rates make the first steps huge.
            self.n.data_scaled = self.L.Power(data, power_param=dict(scale=o.input_scale))
            data = self.n.data_scaled
        fc7s, fc8s = {}, {}
        for scale, t in zip(o.scales, o.suffixes):
            branch_data = data if t == "" else self.interp(f"data{t}", data, scale=scale)
            fc7s[t], fc8s[t] = self.branch(branch_data, t)
        return self.merge(fc7s, fc8s)

    def merge(self, fc7s, fc8s):
        """{suffix: fc7 top}, {suffix: fc8 top} -> (merged scores, {suffix: scores resized to
        the scale-1 ones}); nets.multiscale calls it on stand-ins for a user's branches."""
        o = self.o
        per_scale = {"": fc8s[""]}
        for t in o.suffixes[1:]:
            per_scale[t] = self.interp(f"fc8{t}_interp", fc8s[t], reference=fc8s[""])
        if not o.multi_scale:
            return fc8s[""], per_scale
        bottoms = [per_scale[t] for t in o.suffixes]
        message = pb2.WeightedScaleSumParameter()
        message.merge = pb2.WeightedScaleSumParameter.MergeMethod.Value(o.merge)
        if o.merge == "ATTENTION":
            bottoms.append(self.attention_head(fc7s))
        self.n.fc8_fusion = self.ours("WeightedScaleSum", bottoms, message)
        return self.n.fc8_fusion, per_scale

    def loss(self, name, scores, label):
        # label_shrink takes fc8 as its size reference, so Caffe would mark it as needing a
        # gradient: propagate_down says the labels get none.
        self.n[name] = self.L.SoftmaxWithLoss(scores, label, propagate_down=[True, False],
                                              loss_param=dict(ignore_label=IGNORE_LABEL))

    def train(self, data_param):
        o, n = self.o, self.n
        if data_param is None:  # Input blobs: tests and benchmarks fill them
            n.data, n.label = self.L.Input(ntop=2, shape=[
                dict(dim=[o.batch_size, 3, o.crop_size, o.crop_size]),
                dict(dim=[o.batch_size, 1, o.crop_size, o.crop_size])])
        else:
            from ..data import data_params
            if data_param.mode == data_params.AUTO:
                # Said, not left to the net's phase: a Caffe from before 2016 (DeepLab-v2)
                # does not tell its Python layers their phase.
                explicit = type(data_param)()
                explicit.CopyFrom(data_param)
                explicit.mode = data_params.TRAIN
                data_param = explicit
            n.data, n.label = self.L.Python(ntop=2, python_param=dict(
                module=DATA_MODULE, layer="SegmentationData",
                param_str=data_params.to_text(data_param)))
        merged, per_scale = self.scores(n.data)
        self.interp("label_shrink", n.label, reference=per_scale[""], nearest=True)
        self.loss("loss", merged, n.label_shrink)
        if o.esupv:
            for t in o.suffixes:
                self.loss(f"loss{t or '_res1'}", per_scale[t], n.label_shrink)
        n.accuracy = self.L.Accuracy(merged, n.label_shrink,
                                     accuracy_param=dict(ignore_label=IGNORE_LABEL))

    def test(self, deploy):
        o, n = self.o, self.n
        n.data = self.L.Input(shape=[dict(dim=[1, 3, o.test_size, o.test_size])])
        merged, _ = self.scores(n.data)
        self.interp("score", merged, reference=n.data)
        if deploy:
            n.prob = self.L.Softmax(n.score)


def build(options: NetOptions, stage="train", data_param=None, name=None):
    """The network as a caffe_pb2.NetParameter in the Python-layer form.

    stage "train" reads data_param (a data_params SegmentationDataParameter) with the
    SegmentationData layer, or, with None, has Input blobs `data` and `label`.
    """
    if stage not in STAGES:
        raise LayerConfigError(f"stage must be one of {STAGES}, got {stage!r}")
    builder = _Builder(options)
    if stage == "train":
        builder.train(data_param)
    else:
        builder.test(deploy=stage == "deploy")
    net = builder.n.to_proto()
    net.name = name or default_name(options)
    return net


def backbone_net(backbone="vgg16", input_size=65):
    """Input `data` (1 x 3 x input_size^2) and the scale-1 backbone up to fc7, no fc8: the layers
    an initial-weights .caffemodel holds (tools/init_from_vgg16.py)."""
    builder = _Builder(NetOptions(backbone=backbone))
    builder.n.data = builder.L.Input(shape=[dict(dim=[1, 3, input_size, input_size])])
    builder.branch(builder.n.data, "", with_fc8=False)
    net = builder.n.to_proto()
    net.name = f"{builder.o.backbone.name}-backbone"
    return net


def default_name(options: NetOptions) -> str:
    parts = ["deeplab-largefov" if options.backbone.name == "vgg16" else options.backbone.name]
    if options.multi_scale:
        parts += [naming.scales_slug(options.scales), options.merge.lower()]
        if options.esupv:
            parts.append("esupv")
    return "-".join(parts)


def to_text(options: NetOptions, stage="train", data_param=None, name=None, protos=None) -> str:
    """The network as prototxt text in options.form."""
    from . import convert
    net = build(options, stage, data_param, name)
    text = text_format.MessageToString(net)
    if options.form == "cpp":
        text, _ = convert.convert_text(text, "cpp", protos or convert.load_protos())
    return text
