"""A user's single-scale net -> the paper's multi-scale net (tools/make_multiscale.py).

The branch is every layer that reads the data blob, directly or through other layers, and that
the score blob depends on. It is kept as it is for scale 1 and copied for every other scale s:
layer and blob names get the scale's suffix (nets/naming.py: conv1_1 -> conv1_1_res075), the
data blob becomes the ScaleInterp `<data><suffix>`, and every learnable blob is shared by
`param { name }` (the scale-1 layer's name + _w/_b, BatchNorm _mean/_var/_count), with the user's
lr_mult / decay_mult kept. Then, as the generator writes them (builder._Builder.merge, reused
here): each scale's scores resized to the scale-1 scores, the attention head on the features, and
the merge `<score>_fusion`. After the branches, every reader of the scores reads the merged ones,
except a size reference (the second bottom of ScaleInterp / Interp / Crop: the scale-1 scores
have the merged size); with E-Supv each loss on the scores gets a copy per scale
(`<loss>_res1`, `<loss>_res075`, ...), right after it.

Applied to the generator's own single-scale baseline this gives the generator's multi-scale net.
Refused by name: a missing blob, a branch layer whose blobs could not be shared (a type of unknown
learnable blobs, a `param { name }` also used outside the branch), a branch layer that writes the
data blob in place, a name the new layers would take that the net already uses.
"""

import difflib

from google.protobuf import text_format

from . import naming
from .caffe_proto import ConversionError, load_protos
from .prototxt import parse_net, read_prototxt

__all__ = ["MERGES", "make_multiscale", "make_multiscale_text", "make_multiscale_file"]

MERGES = ("ATTENTION", "MAX", "AVERAGE")

# Types without learnable blobs (copied per scale as they are).
PARAM_FREE = {
    "AbsVal", "ArgMax", "BNLL", "Clip", "Concat", "Crop", "Dropout", "ELU", "Eltwise", "Exp",
    "Flatten", "Interp", "Log", "LRN", "MVN", "Pooling", "Power", "ReLU", "Reshape",
    "ScaleInterp", "Sigmoid", "Silence", "Slice", "Softmax", "Split", "SPP", "Swish", "TanH",
    "Threshold", "Tile", "Permute",
}
# Python-form layers of the project (parameter-free); any other Python layer may hold blobs.
_OUR_PYTHON = {("attention_scale.layers", "ScaleInterp"),
               ("attention_scale.layers.python_layers", "ScaleInterp")}
# Layers whose second bottom only gives an output size.
_SIZE_REFERENCE = {"ScaleInterp", "Interp", "Crop"}
# Layers that make a net multi-scale already.
_MERGE_TYPES = {"WeightedScaleSum", "SoftmaxOverScales"}


def _blob_suffixes(layer):
    """Suffixes of the shared names of the layer's learnable blobs, in blob order; None when
    the type's blobs are unknown."""
    t = layer.type
    if t in PARAM_FREE:
        return ()
    if t == "Python":
        key = (layer.python_param.module, layer.python_param.layer)
        return () if key in _OUR_PYTHON else None
    if t in ("Convolution", "Deconvolution"):
        return ("_w", "_b") if layer.convolution_param.bias_term else ("_w",)
    if t == "InnerProduct":
        return ("_w", "_b") if layer.inner_product_param.bias_term else ("_w",)
    if t == "Embed":
        return ("_w", "_b") if layer.embed_param.bias_term else ("_w",)
    if t == "BatchNorm":
        return ("_mean", "_var", "_count")
    if t == "Scale":
        # With two bottoms the scale comes from the second bottom: only the bias is a blob.
        bias = ("_b",) if layer.scale_param.bias_term else ()
        return bias if len(layer.bottom) > 1 else ("_w",) + bias
    if t == "Bias":
        return () if len(layer.bottom) > 1 else ("_b",)
    if t == "PReLU":
        return ("_w",)
    return None


def _param_names(layer, suffixes):
    w, b = naming.param_names(layer.name)
    known = {"_w": w, "_b": b}
    return [known.get(s, layer.name + s) for s in suffixes]


class _Graph:
    """Who writes and reads which blob, layer by layer (in-place layers write their bottom)."""

    def __init__(self, net):
        self.net = net
        self.writers = {}  # blob -> [layer index]
        self.deps = []  # layer index -> indices of the layers whose outputs it reads
        latest = {}
        for i, layer in enumerate(net.layer):
            self.deps.append({latest[b] for b in layer.bottom if b in latest})
            for top in layer.top:
                self.writers.setdefault(top, []).append(i)
                latest[top] = i
        self.inputs = set(net.input)

    def has(self, blob):
        return blob in self.writers or blob in self.inputs

    def last_writer(self, blob):
        return self.writers[blob][-1] if blob in self.writers else None


def _missing(graph, blob, what, option):
    known = sorted(set(graph.writers) | graph.inputs)
    close = difflib.get_close_matches(blob, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConversionError(f"no layer of the net writes the {what} blob {blob!r} ({option}){hint} "
                           f"blobs: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}")


def _branch(graph, data, scores):
    """Indices of the layers between data and scores (in net order)."""
    net = graph.net
    from_data = set()
    for i, layer in enumerate(net.layer):
        if data in layer.bottom or graph.deps[i] & from_data:
            from_data.add(i)
    end = graph.last_writer(scores)
    needed, stack = set(), [end]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(graph.deps[i])
    return sorted(from_data & needed)


def _check_inputs(graph, data, features, scores, merge):
    for blob, what, option in ((data, "data", "--data"), (scores, "score", "--scores")):
        if not graph.has(blob):
            raise _missing(graph, blob, what, option)
    if merge == "ATTENTION" and not graph.has(features):
        raise _missing(graph, features, "feature", "--features")
    for layer in graph.net.layer:
        if layer.type in _MERGE_TYPES or (layer.type == "Python"
                                          and layer.python_param.layer in _MERGE_TYPES):
            raise ConversionError(f"layer {layer.name!r} ({layer.type}) merges scales already: "
                                  "the net is multi-scale; start from its single-scale form")


def _shared_names(net, branch):
    """{param name: [layer names]} of the named params of layers outside the branch."""
    outside = {}
    for i, layer in enumerate(net.layer):
        if i not in branch:
            for spec in layer.param:
                if spec.name:
                    outside.setdefault(spec.name, []).append(layer.name)
    return outside


def _share_params(net, branch):
    """In place: every learnable blob of the branch's layers gets a `param { name }`."""
    outside = _shared_names(net, branch)
    for i in sorted(branch):
        layer = net.layer[i]
        suffixes = _blob_suffixes(layer)
        if suffixes is None:
            what = (f"Python layer {layer.python_param.module}.{layer.python_param.layer}"
                    if layer.type == "Python" else f"type {layer.type!r}")
            raise ConversionError(
                f"layer {layer.name!r} ({what}) lies between data and the scores, and its "
                "learnable blobs (if any) are not known here, so they cannot be shared across "
                "the scales; replace it with a known type or leave it out of the branch")
        if len(layer.param) > len(suffixes):
            raise ConversionError(f"layer {layer.name!r} ({layer.type}) has {len(layer.param)} "
                                  f"param blocks for {len(suffixes)} learnable blob(s)")
        for spec in layer.param:
            if spec.name in outside:
                raise ConversionError(
                    f"layer {layer.name!r} shares param {spec.name!r} with layer(s) "
                    f"{', '.join(repr(n) for n in outside[spec.name])} outside the branch "
                    "between data and the scores; the copies for the other scales would share "
                    "it too: give the branch its own parameters")
        while len(layer.param) < len(suffixes):
            spec = layer.param.add()  # a ParamSpec's defaults (lr 1, decay 1), as no block
            if layer.type == "BatchNorm":
                spec.lr_mult = 0  # what Caffe's BatchNorm sets itself; it refuses any other
        for spec, name in zip(layer.param, _param_names(layer, suffixes)):
            if not spec.name:  # a name the user gave (shared inside the branch) is kept
                spec.name = name


def _scaled_copy(layer, suffix, rename):
    copy = type(layer)()
    copy.CopyFrom(layer)
    copy.name = layer.name + suffix
    copy.bottom[:] = [rename.get(b, b) for b in layer.bottom]
    copy.top[:] = [rename.get(t, t) for t in layer.top]
    return copy


def _merge_layers(protos, scales, merge, data, features, scores, attention_channels,
                  attention_dropout):
    """The generator's data ScaleInterps and merge for stand-in blobs, renamed to the user's, as
    C++ layer types: ({suffix: data ScaleInterp layer}, [the merge layers in order])."""
    from . import builder, convert
    options = builder.NetOptions(scales=scales, merge=merge, attention_channels=attention_channels,
                                 attention_dropout=attention_dropout)
    b = builder._Builder(options)
    b.n.data = b.L.Input(shape=[dict(dim=[1, 3, 9, 9])])
    fc7s, fc8s = {}, {}
    for t in options.suffixes:
        fc7s[t] = b.n[f"fc7{t}"] = b.L.Input(shape=[dict(dim=[1, 1, 1, 1])])
        fc8s[t] = b.n[f"fc8{t}"] = b.L.Input(shape=[dict(dim=[1, 1, 1, 1])])
    for scale, t in zip(options.scales[1:], options.suffixes[1:]):
        b.interp(f"data{t}", b.n.data, scale=scale)
    b.merge(fc7s, fc8s)
    generated = protos.net_parameter()
    text_format.Parse(text_format.MessageToString(b.n.to_proto()), generated)
    convert.to_cpp(generated, protos)
    rename = {"data": data, "fc7_concat": f"{features}_concat", "fc8_fusion": f"{scores}_fusion"}
    for t in options.suffixes:
        rename.update({f"data{t}": f"{data}{t}", f"fc7{t}": f"{features}{t}",
                       f"fc8{t}": f"{scores}{t}", f"fc7{t}_interp": f"{features}{t}_interp",
                       f"fc8{t}_interp": f"{scores}{t}_interp"})
    interps, merged = {}, []
    for layer in generated.layer:
        if layer.type == "Input":
            continue
        layer.name = rename.get(layer.name, layer.name)
        layer.bottom[:] = [rename.get(x, x) for x in layer.bottom]
        layer.top[:] = [rename.get(x, x) for x in layer.top]
        if layer.top[0] in {f"{data}{t}" for t in options.suffixes[1:]}:
            interps[layer.top[0][len(data):]] = layer
        else:
            merged.append(layer)
    return interps, merged


def _is_loss(layer):
    return layer.type.endswith("Loss") or any(w > 0 for w in layer.loss_weight)


def _reads_scores_as(layer, index):
    """True when bottom `index` is data to the layer (not only a size reference)."""
    is_interp = layer.type in _SIZE_REFERENCE or (
        layer.type == "Python" and (layer.python_param.module, layer.python_param.layer)
        in _OUR_PYTHON)
    return not (is_interp and index >= 1)


def make_multiscale(net, scales=(1, 0.75, 0.5), merge="ATTENTION", data="data", features="fc7",
                    scores="fc8", esupv=False, form="cpp", protos=None, name=None,
                    attention_channels=512, attention_dropout=0.5):
    """The multi-scale NetParameter of a single-scale one (left unchanged); see the module doc.

    Returns (net, notes): notes say what the user should know (e.g. E-Supv on a net without a
    loss on the scores)."""
    protos = protos or load_protos()
    merge = str(merge).upper()
    if merge not in MERGES:
        raise ConversionError(f"merge must be one of {', '.join(m.lower() for m in MERGES)}, "
                              f"got {merge.lower()!r}")
    if form not in ("cpp", "python"):
        raise ConversionError(f"form must be cpp or python, got {form!r}")
    scales = naming.check_scales(scales)
    if len(scales) < 2:
        raise ConversionError(f"scales {scales}: a multi-scale net needs at least two scales")
    suffixes = [naming.scale_suffix(s) for s in scales]
    source = protos.net_parameter()
    if type(net) is type(source):
        source.CopyFrom(net)
    else:  # another Caffe's message class (pycaffe's caffe_pb2): by text
        text_format.Parse(text_format.MessageToString(net), source)
    graph = _Graph(source)
    _check_inputs(graph, data, features, scores, merge)
    branch = _branch(graph, data, scores)
    if not branch:
        raise ConversionError(f"the score blob {scores!r} does not depend on the data blob "
                              f"{data!r}: nothing lies between them to run at several scales")
    in_branch = set(branch)
    for i in branch:
        layer = source.layer[i]
        if data in layer.top:
            raise ConversionError(
                f"layer {layer.name!r} ({layer.type}) writes the data blob {data!r} in place; the "
                "other scales' ScaleInterp would read the changed blob: give it its own top")
        # A copy would write `<blob><suffix>`, which nothing outside the branch makes.
        for top in layer.top:
            first = graph.writers[top][0]
            maker = ("the net's input" if top in graph.inputs else
                     None if first in in_branch else f"layer {source.layer[first].name!r}")
            if maker:
                raise ConversionError(
                    f"layer {layer.name!r} ({layer.type}) writes blob {top!r} in place, which "
                    f"{maker} outside the branch between data and the scores makes; the other "
                    "scales have no copy of it: give it its own top")
    branch_blobs = {top for i in branch for top in source.layer[i].top}
    if merge == "ATTENTION" and features not in branch_blobs:
        raise ConversionError(
            f"the feature blob {features!r} is not computed between {data!r} and {scores!r} "
            "(--features must be a blob of the branch, e.g. fc7)")
    _share_params(source, in_branch)
    interps, merged = _merge_layers(protos, scales, merge, data, features, scores,
                                    attention_channels, attention_dropout)

    # The new layers and blobs must not take a name the net already has.
    copies = {}
    for t in suffixes[1:]:
        rename = {blob: blob + t for blob in branch_blobs}
        rename[data] = f"{data}{t}"
        copies[t] = [interps[t]] + [_scaled_copy(source.layer[i], t, rename) for i in branch]
    new_layers = [layer for t in suffixes[1:] for layer in copies[t]] + merged
    taken_layers = {layer.name for layer in source.layer}
    taken_blobs = set(graph.writers) | graph.inputs
    for layer in new_layers:
        clash = [x for x in layer.top if x in taken_blobs and x not in layer.bottom]
        if layer.name in taken_layers or clash:
            what = f"layer {layer.name!r}" if layer.name in taken_layers else f"blob {clash[0]!r}"
            raise ConversionError(f"the multi-scale net needs the name of {what}, which the net "
                                  "already uses; rename it there first")

    out = protos.net_parameter()
    out.CopyFrom(source)
    del out.layer[:]
    out.name = name or "-".join(
        [source.name or "net", naming.scales_slug(scales), merge.lower()]
        + (["esupv"] if esupv else []))
    fused = f"{scores}_fusion"
    per_scale = {t: scores if t == "" else f"{scores}{t}_interp" for t in suffixes}
    end = branch[-1]
    notes = []
    losses = 0
    for i, layer in enumerate(source.layer):
        if i <= end:
            out.layer.add().CopyFrom(layer)
            if i == end:
                out.layer.extend(new_layers)
            continue
        reads = [k for k, b in enumerate(layer.bottom)
                 if b == scores and _reads_scores_as(layer, k)]
        if not reads:
            out.layer.add().CopyFrom(layer)
            continue
        if scores in layer.top:
            raise ConversionError(f"layer {layer.name!r} ({layer.type}) changes the scores "
                                  f"{scores!r} in place after the branch; give it its own top")
        merged_reader = out.layer.add()
        merged_reader.CopyFrom(layer)
        for k in reads:
            merged_reader.bottom[k] = fused
        if esupv and _is_loss(layer):
            losses += 1
            for t in suffixes:  # one loss per scale on its own scores, as the generator's
                extra = out.layer.add()
                extra.CopyFrom(layer)
                extra.name = f"{layer.name}{t or '_res1'}"
                extra.top[:] = [f"{top}{t or '_res1'}" for top in layer.top]
                for k in reads:
                    extra.bottom[k] = per_scale[t]
    if esupv and not losses:
        notes.append(f"E-Supv: no loss layer reads {scores!r} (a test or deploy net?), so no "
                     "per-scale losses were added")
    if form == "python":
        # For a Caffe without the C++ layers the whole net must do without them: the added
        # layers, the net's own ScaleInterp (the baseline's `score`) and DeepLab Interp layers,
        # and their copies. (The added layers come as C++ types: the form is decided here only.)
        from . import convert
        convert.to_python(out, protos, notes)
    return out, notes


def make_multiscale_text(text, source="the network", protos=None, **options):
    """(prototxt text of the multi-scale net, notes) from the text of a single-scale one."""
    protos = protos or load_protos()
    net, note = parse_net(text, protos, source)
    result, notes = make_multiscale(net, protos=protos, **options)
    return text_format.MessageToString(result), ([note] if note else []) + notes


def make_multiscale_file(src, dst, caffe_proto=None, **options):
    """Read the prototxt at src, write the multi-scale net to dst whole (or nothing); notes."""
    from pathlib import Path
    from ..files import atomic_write
    protos = load_protos(caffe_proto)
    text, notes = make_multiscale_text(read_prototxt(src, protos), source=str(src),
                                       protos=protos, **options)
    atomic_write(Path(dst), text)
    return notes
