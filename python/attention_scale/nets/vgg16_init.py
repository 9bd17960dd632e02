"""DeepLab-LargeFOV's initial weights from an ImageNet VGG-16 .caffemodel, as DeepLab made them.

    conv1_1 ... conv5_3   copied unchanged
    fc6                   VGG's 4096 x (512*7*7) inner product, seen as 4096 filters of 512 x 7 x 7,
                          decimated to 1024 filters (every 4th: 0, 4, 8, ...) and 3 x 3 taps
                          (rows and columns 0, 3, 6); in the net it is a 3x3 conv with dilation 12
    fc7                   4096 x 4096 decimated to 1024 x 1024 (every 4th output and input, the
                          inputs being fc6's kept filters), a 1x1 conv
    fc8, attention head   not written: the train nets initialise them from their fillers

The source is read by pycaffe (Caffe upgrades the V1 format of VGG_ILSVRC_16_layers.caffemodel
itself) through a VGG-16 classifier net made here, so no VGG prototxt is needed; the result is
written by pycaffe from the DeepLab-LargeFOV backbone net, so its layer names and shapes are
exactly what the train nets load by name (`caffe train ... -weights init.caffemodel`).
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ..errors import LayerConfigError
from ..files import output_file_problem
from ..pycaffe import net_from_text
from .caffemodel import WeightsMismatch, check_net_weights
from .backbones import VGG16, Backbone

VGG_FC_CHANNELS = 4096
VGG_FC6_SIDE = 7  # pool5 of a 224 x 224 input


def vgg16_classifier_text(backbone: Backbone = VGG16, fc_channels=VGG_FC_CHANNELS, side=224):
    """Prototxt of the ImageNet VGG-16 up to fc7 (2x2 pools, inner-product fc6/fc7), with the
    layer names of the released model; `backbone` gives the conv widths."""
    import caffe  # noqa: F401
    from caffe import layers as L, net_spec, params as P

    n = net_spec.NetSpec()
    n.data = L.Input(shape=[dict(dim=[1, 3, side, side])])
    top = n.data
    for s, widths in enumerate(backbone.stages, start=1):
        for i, width in enumerate(widths, start=1):
            n[f"conv{s}_{i}"] = top = L.Convolution(top, num_output=width, kernel_size=3, pad=1)
            n[f"relu{s}_{i}"] = top = L.ReLU(top, in_place=True)
        n[f"pool{s}"] = top = L.Pooling(top, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc6 = L.InnerProduct(top, num_output=fc_channels)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.fc7 = L.InnerProduct(n.relu6, num_output=fc_channels)
    net = n.to_proto()
    net.name = "VGG_ILSVRC_16_layers"
    return text_format.MessageToString(net)


def decimation(source, target):
    """Indices keeping `target` of `source` evenly: every (source-1)/(target-1)-th for taps
    (7 -> 0, 3, 6), every source/target-th for channels (4096 -> 0, 4, ..., 4092)."""
    if target == source:
        return np.arange(source)
    if target > source:  # (a 1 x 1 map cannot give 3 x 3 taps; 1 - 1 would divide by zero)
        raise LayerConfigError(f"cannot take {target} of {source}: fewer than needed")
    if source % target == 0:
        return np.arange(0, source, source // target)
    if target > 1 and (source - 1) % (target - 1) == 0:
        return np.arange(0, source, (source - 1) // (target - 1))
    raise LayerConfigError(f"cannot decimate {source} evenly to {target}")


def convert_params(source, backbone: Backbone = VGG16):
    """{layer: [weights, bias]} of the DeepLab backbone from VGG-16's {layer: [weights, bias]}.

    source's fc6 weights may be 2-D (inner product, 4096 x 25088) or 4-D (4096 x 512 x 7 x 7).
    """
    out = {}
    for s, widths in enumerate(backbone.stages, start=1):
        for i in range(1, len(widths) + 1):
            name = f"conv{s}_{i}"
            if name not in source:
                raise LayerConfigError(f"the VGG-16 model has no layer {name}")
            out[name] = [np.array(source[name][0]), np.array(source[name][1])]
    for name in ("fc6", "fc7"):
        if name not in source:
            raise LayerConfigError(f"the VGG-16 model has no layer {name}")
    w6, b6 = (np.asarray(a) for a in source["fc6"])
    channels = backbone.stages[-1][-1]
    if w6.ndim == 2:
        side = int(round((w6.shape[1] / channels) ** 0.5))
        if channels * side * side != w6.shape[1]:
            raise LayerConfigError(f"fc6 has {w6.shape[1]} inputs, not {channels} x k x k")
        w6 = w6.reshape(w6.shape[0], channels, side, side)
    if w6.ndim != 4 or w6.shape[2] < backbone.fc6_kernel or w6.shape[3] != w6.shape[2]:
        seen = "x".join(map(str, w6.shape[2:])) or "no"
        raise LayerConfigError(
            f"fc6 sees a {seen} map of conv5_3's output, and its {backbone.fc6_kernel} x "
            f"{backbone.fc6_kernel} taps are taken from a square map of at least that size "
            f"(VGG-16's 7 x 7 of a 224 x 224 input): is --source-prototxt's input that of the "
            "ImageNet VGG-16 (224 x 224)?")
    keep = decimation(w6.shape[0], backbone.fc6_channels)
    taps = decimation(w6.shape[2], backbone.fc6_kernel)
    out["fc6"] = [w6[keep][:, :, taps][:, :, :, taps], b6[keep]]
    w7, b7 = (np.asarray(a) for a in source["fc7"])
    w7 = w7.reshape(w7.shape[0], -1)
    keep7 = decimation(w7.shape[0], backbone.fc7_channels)
    out["fc7"] = [w7[keep7][:, keep][:, :, None, None], b7[keep7]]
    return out


def _vgg16_layers(backbone: Backbone):
    return [f"conv{s}_{i}" for s, widths in enumerate(backbone.stages, start=1)
            for i in range(1, len(widths) + 1)] + ["fc6", "fc7"]


def _check_vgg16_names(caffemodel, backbone: Backbone):
    """Refuse a model without VGG-16's layer names before the net made here is compared with it:
    that comparison ends in advice to rename layers in a prototxt the user never gave."""
    from .caffe_proto import load_protos
    from .caffemodel import read_saved_shapes

    saved = read_saved_shapes(caffemodel, load_protos().net_parameter)
    names = _vgg16_layers(backbone)
    missing = [name for name in names if name not in saved]
    others = [name for name in saved if name not in names + ["fc8"]]
    if missing and others:  # (only missing ones: a cut-short VGG, named by the fit check)
        held = ", ".join(list(saved)[:8]) + (", ..." if len(saved) > 8 else "")
        raise LayerConfigError(
            f"{caffemodel} has no layer(s) {', '.join(missing[:6])}"
            f"{', ...' if len(missing) > 6 else ''} of the released VGG-16 (it holds {held}). "
            "Is it the ImageNet VGG-16 (VGG_ILSVRC_16_layers.caffemodel)? A VGG-16 saved with "
            "other layer names is read with its own deploy prototxt: --source-prototxt")


def read_vgg16(caffemodel, source_prototxt=None, backbone: Backbone = VGG16,
               fc_channels=VGG_FC_CHANNELS):
    """{layer: [weights, bias]} (numpy copies) of a VGG-16 .caffemodel, read with pycaffe."""
    import caffe
    caffemodel = Path(caffemodel)
    if not caffemodel.is_file():
        raise LayerConfigError(f"{caffemodel}: no such file")
    if not source_prototxt:
        _check_vgg16_names(caffemodel, backbone)
    if source_prototxt:
        text, where = Path(source_prototxt).read_text(), str(source_prototxt)
    else:
        text, where = vgg16_classifier_text(backbone, fc_channels), "the VGG-16 classifier net"
    net = net_from_text(caffe, text)
    try:  # Caffe would abort on a shape that differs
        check_net_weights(net, text, caffemodel, where, _vgg16_advice(backbone))
    except WeightsMismatch as exc:
        raise LayerConfigError(str(exc)) from None
    net.copy_from(str(caffemodel))
    return {name: [np.array(blob.data) for blob in blobs] for name, blobs in net.params.items()}


def _vgg16_advice(backbone: Backbone):
    """What to say when a model does not fit the VGG-16 classifier net (a function of the saved
    shapes, for check_net_weights)."""
    converted = (backbone.fc6_channels, backbone.stages[-1][-1], backbone.fc6_kernel,
                 backbone.fc6_kernel)

    def advice(saved):
        fc6 = saved.get("fc6", [None])[0]
        # DeepLab-LargeFOV's fc6 exactly (1024 x 512 x 3 x 3 for VGG-16); another net with an
        # fc6 convolution (the small backbone's 32 x 32 x 3 x 3) is no VGG-16 at all
        if fc6 is not None and tuple(fc6.dims) == converted:
            return (f"Its fc6 is a {fc6} convolution, as in DeepLab-LargeFOV: it is already "
                    "converted; give it to the training as --weights directly.")
        return "Is it the ImageNet VGG-16 (VGG_ILSVRC_16_layers.caffemodel)?"
    return advice


def write_init(params, output, backbone: Backbone = VGG16):
    """Write params into the backbone net (up to fc7) and save it as a .caffemodel (atomically)."""
    import caffe
    from .builder import backbone_net

    net = net_from_text(caffe, text_format.MessageToString(backbone_net(backbone)))
    for name, blobs in net.params.items():
        if name not in params:
            raise LayerConfigError(f"no weights for layer {name}")
        for k, blob in enumerate(blobs):
            value = params[name][k]
            if value.shape != blob.data.shape:
                raise LayerConfigError(f"{name} blob {k}: converted shape {value.shape}, the "
                                       f"net expects {blob.data.shape}")
            blob.data[...] = value
    output = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    try:
        net.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return output


def init_from_vgg16(caffemodel, output, source_prototxt=None, backbone: Backbone = VGG16,
                    fc_channels=VGG_FC_CHANNELS):
    """The whole conversion; returns {layer: (shapes...)} of what was written. backbone and
    fc_channels describe other widths than VGG-16's (the tests use a narrow one)."""
    output_problem = output_file_problem(
        output, "a folder; give the .caffemodel file to write (e.g. init.caffemodel)")
    if output_problem:  # before the minutes of reading a 500 MB model
        raise LayerConfigError(f"-o {output}: {output_problem}")
    params = convert_params(read_vgg16(caffemodel, source_prototxt, backbone, fc_channels),
                            backbone)
    write_init(params, output, backbone)
    return {name: tuple(a.shape for a in blobs) for name, blobs in params.items()}
