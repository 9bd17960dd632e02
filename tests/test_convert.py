"""The prototxt converter: C++ <-> Python forms, DeepLab Interp, unpatched and patched caffe.proto."""

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, text_format

from attention_scale.nets import caffe_proto, convert
from pyhelpers import import_caffe, make_net

REPO = Path(__file__).resolve().parents[1]

CPP_NET = """
name: "net"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
layer { name: "small" type: "ScaleInterp" bottom: "data" top: "small"
        scale_interp_param { scale: 0.75 pad_beg: -1 interpolation: NEAREST } }
layer { name: "back" type: "ScaleInterp" bottom: "small" bottom: "data" top: "back" }
layer { name: "w" type: "SoftmaxOverScales" bottom: "data" top: "w" }
layer { name: "g" type: "WeightedScaleSum" bottom: "data" bottom: "back" bottom: "w" top: "g"
        weighted_scale_sum_param { merge: MAX } propagate_down: true }
layer { name: "other" type: "Python" bottom: "g" top: "o"
        python_param { module: "my.layers" layer: "ScaleInterp" param_str: "x" } }
"""

# A minimal unpatched caffe.proto: none of our messages or fields, no interp_param.
PLAIN_PROTO = """
syntax = "proto2";
package caffe;
message BlobShape { repeated int64 dim = 1 [packed = true]; }
message InputParameter { repeated BlobShape shape = 1; }
message PythonParameter {
  optional string module = 1; optional string layer = 2; optional string param_str = 3 [default = ''];
}
message LayerParameter {
  optional string name = 1; optional string type = 2; repeated string bottom = 3; repeated string top = 4;
  repeated bool propagate_down = 11;
  optional PythonParameter python_param = 130; optional InputParameter input_param = 143;
}
message NetParameter { optional string name = 1; repeated LayerParameter layer = 100; }
"""

DEEPLAB_PROTO = PLAIN_PROTO.replace(
    "optional InputParameter input_param = 143;",
    "optional InputParameter input_param = 142; optional InterpParameter interp_param = 143;") + """
message InterpParameter {
  optional int32 height = 1 [default = 0]; optional int32 width = 2 [default = 0];
  optional int32 zoom_factor = 3 [default = 1]; optional int32 shrink_factor = 4 [default = 1];
  optional int32 pad_beg = 5 [default = 0]; optional int32 pad_end = 6 [default = 0];
}
"""

DEEPLAB_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
layer { name: "up" type: "Interp" bottom: "data" top: "up" interp_param { zoom_factor: 8 pad_end: -1 } }
"""


@pytest.fixture
def plain_proto(tmp_path):
    path = tmp_path / "caffe.proto"
    path.write_text(PLAIN_PROTO)
    return path


def _layers(protos, text):
    net = protos.net_parameter()
    text_format.Parse(text, net)
    return {layer.name: layer for layer in net.layer}


def _check_python_form(layers):
    small = layers["small"]
    assert small.type == "Python" and not small.HasField("scale_interp_param")
    assert small.python_param.module == "attention_scale.layers"
    assert small.python_param.layer == "ScaleInterp"
    assert small.python_param.param_str == "pad_beg: -1 scale: 0.75 interpolation: NEAREST"
    assert layers["back"].python_param.param_str == ""
    assert layers["w"].python_param.layer == "SoftmaxOverScales"
    assert layers["g"].python_param.param_str == "merge: MAX"
    assert list(layers["g"].bottom) == ["data", "back", "w"]
    assert list(layers["g"].propagate_down) == [True]
    assert layers["other"].python_param.module == "my.layers"  # not ours: untouched


def test_round_trip_with_pycaffe_caffe_pb2():
    import_caffe()  # loads pycaffe's (patched) caffe_pb2, which the converter then uses
    from caffe.proto import caffe_pb2
    assert "scale_interp_param" in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    protos = convert.load_protos()
    python_text, count = convert.convert_text(CPP_NET, "python", protos)
    assert count == 4
    _check_python_form(_layers(protos, python_text))
    cpp_text, count = convert.convert_text(python_text, "cpp", protos)
    assert count == 4
    original, back = protos.net_parameter(), protos.net_parameter()
    text_format.Parse(CPP_NET, original)
    text_format.Parse(cpp_text, back)
    assert back == original
    # The Python form parses with pycaffe's own NetParameter too.
    text_format.Parse(python_text, caffe_pb2.NetParameter())


def test_a_caffe_pb2_with_everything_is_used_directly(tmp_path, monkeypatch):
    # A stand-in for a patched DeepLab pycaffe: its caffe_pb2 already has our fields and
    # interp_param, so the converter must use its classes as they are.
    deeplab = tmp_path / "deeplab.proto"
    deeplab.write_text(DEEPLAB_PROTO.replace("package caffe;", "package patchedcaffe;"))
    fdp, changed = convert.extend_caffe_descriptor(convert.caffe_file_descriptor(deeplab))
    assert changed
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    module = types.ModuleType("caffe_pb2")
    module.DESCRIPTOR = pool.FindFileByName(fdp.name)
    # caffe_proto's helper: protobuf 3.20 (protoc 3.12's runtime) has no GetMessageClass
    module.NetParameter = caffe_proto.message_class(
        pool.FindMessageTypeByName("patchedcaffe.NetParameter"))
    monkeypatch.setitem(sys.modules, "caffe.proto.caffe_pb2", module)
    protos = convert.load_protos()
    assert not protos.extended and protos.net_parameter is module.NetParameter
    text, count = convert.convert_text(CPP_NET + DEEPLAB_NET.replace('"data"', '"d2"'), "python",
                                       protos)
    assert count == 5
    _check_python_form(_layers(protos, text))


def test_unpatched_caffe_proto_is_extended(plain_proto):
    protos = convert.load_protos(plain_proto)
    assert protos.extended
    fields = protos.net_parameter.DESCRIPTOR.fields_by_name["layer"].message_type.fields_by_name
    assert fields["scale_interp_param"].number == 2016001
    assert fields["softmax_over_scales_param"].number == 2016002
    assert fields["weighted_scale_sum_param"].number == 2016003
    assert fields["scale_interp_param"].message_type.full_name == "caffe.ScaleInterpParameter"
    python_text, _ = convert.convert_text(CPP_NET, "python", protos)
    _check_python_form(_layers(protos, python_text))
    cpp_text, _ = convert.convert_text(python_text, "cpp", protos)
    assert _layers(protos, cpp_text)["small"].scale_interp_param.scale == 0.75


def test_generated_caffe_pb2_source_is_read_without_import(plain_proto, tmp_path):
    subprocess.run(["protoc", f"--proto_path={plain_proto.parent}", f"--python_out={tmp_path}",
                    plain_proto.name], check=True)
    pb2 = tmp_path / "caffe_pb2.py"
    protos = convert.load_protos(pb2)
    text, count = convert.convert_text(CPP_NET, "python", protos)
    assert count == 4
    # protoc before 3.20 wrote the descriptor as serialized_pb=_b('...') (latin-1 text).
    data = caffe_proto._descriptor_from_pb2_source(pb2).SerializeToString()
    old = tmp_path / "old_caffe_pb2.py"
    old.write_text("_b = lambda s: s.encode('latin1')\nDESCRIPTOR = _descriptor.FileDescriptor(\n"
                   f"  name='caffe.proto', serialized_pb=_b({data.decode('latin-1')!r}))\n")
    assert caffe_proto._descriptor_from_pb2_source(old) == caffe_proto._descriptor_from_pb2_source(pb2)


def test_deeplab_interp_with_and_without_interp_param(tmp_path, plain_proto):
    deeplab = tmp_path / "deeplab.proto"
    deeplab.write_text(DEEPLAB_PROTO)
    for proto in (deeplab, plain_proto):
        protos = convert.load_protos(proto)
        for target in convert.TARGETS:
            text, count = convert.convert_text(DEEPLAB_NET, target, protos)
            assert count == 1
            up = _layers(protos, text)["up"]
            if target == "cpp":
                assert up.type == "ScaleInterp" and not up.HasField("interp_param")
                assert text_format.MessageToString(up.scale_interp_param, as_one_line=True) == \
                    "zoom_factor: 8 pad_end: -1"
            else:
                assert up.type == "Python"
                assert up.python_param.param_str == "zoom_factor: 8 pad_end: -1"


def test_field_number_collision_is_refused(tmp_path):
    clash = tmp_path / "clash.proto"
    clash.write_text(PLAIN_PROTO.replace("repeated bool propagate_down = 11;",
                                         "repeated bool propagate_down = 11; optional int32 mine = 2016002;"))
    with pytest.raises(convert.ConversionError, match="2016002 for mine"):
        convert.load_protos(clash)


def test_bad_input_names_the_layer(plain_proto):
    protos = convert.load_protos(plain_proto)
    bad_param = ('layer { name: "r" type: "Python" python_param { module: "attention_scale.layers" '
                 'layer: "ScaleInterp" param_str: "zoom: 2" } }')
    with pytest.raises(convert.ConversionError, match="layer 'r' .*no field named \"zoom\""):
        convert.convert_text(bad_param, "cpp", protos)
    with pytest.raises(convert.ConversionError, match="cannot parse the network"):
        convert.convert_text('layer { name: "a" foo: 1 }', "python", protos)
    with pytest.raises(ValueError, match="target"):
        convert.convert_text("", "java", protos)
    with pytest.raises(convert.ConversionError, match="compile"):
        bad = plain_proto.with_name("bad.proto")
        bad.write_text("message {")
        convert.load_protos(bad)


def _tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "convert_net.py"), *args],
                          capture_output=True, text=True, env=dict(os.environ))


def test_command_line_tool(tmp_path, plain_proto):
    assert "--to" in _tool("--help").stdout
    src = tmp_path / "net.prototxt"
    src.write_text(CPP_NET)
    result = _tool(str(src), "--to", "python", "-o", str(tmp_path / "py.prototxt"),
                   "--caffe-proto", str(plain_proto))
    assert result.returncode == 0, result.stderr
    assert "4 layer(s)" in result.stdout
    result = _tool(str(tmp_path / "py.prototxt"), "--to", "cpp", "--in-place",
                   "--caffe-proto", str(plain_proto))
    assert result.returncode == 0, result.stderr
    protos = convert.load_protos(plain_proto)
    assert _layers(protos, (tmp_path / "py.prototxt").read_text()) == _layers(protos, CPP_NET)
    result = _tool(str(tmp_path / "missing.prototxt"), "--to", "cpp", "--in-place")
    assert result.returncode != 0 and "convert_net:" in result.stderr


# ---------------------------------------------------------------------------------------------
# Hardening: what a user gets for input the converter cannot take as it is
# ---------------------------------------------------------------------------------------------

def _message_of(protos, text):
    net = protos.net_parameter()
    text_format.Parse(text, net)
    return net


# Every way a block can be present: with fields, empty, absent; param_str set, "" and absent.
ROUND_TRIP_CPP = CPP_NET + """
layer { name: "w_empty" type: "SoftmaxOverScales" bottom: "data" top: "w2" softmax_over_scales_param { } }
layer { name: "g_empty" type: "WeightedScaleSum" bottom: "data" bottom: "w2" top: "g2" weighted_scale_sum_param { } }
layer { name: "g_bare" type: "WeightedScaleSum" bottom: "data" bottom: "w2" top: "g3" }
layer { name: "i_empty" type: "ScaleInterp" bottom: "data" bottom: "g3" top: "i2" scale_interp_param { } }
"""
ROUND_TRIP_PYTHON = """
layer { name: "a" type: "Python" bottom: "x" top: "a" python_param { module: "attention_scale.layers" layer: "SoftmaxOverScales" } }
layer { name: "b" type: "Python" bottom: "x" top: "b" python_param { module: "attention_scale.layers" layer: "SoftmaxOverScales" param_str: "" } }
layer { name: "c" type: "Python" bottom: "x" top: "c" python_param { module: "attention_scale.layers" layer: "ScaleInterp" param_str: "zoom_factor: 2 pad_beg: -1" } }
layer { name: "d" type: "Python" bottom: "x" bottom: "c" top: "d" python_param { module: "attention_scale.layers" layer: "WeightedScaleSum" param_str: "merge: AVERAGE" } }
layer { name: "e" type: "Python" bottom: "x" top: "e" python_param { module: "my.layers" layer: "ScaleInterp" param_str: "anything" } }
"""


@pytest.mark.parametrize("which", ["pycaffe", "plain"])
def test_round_trips_give_back_the_same_message(which, plain_proto):
    if which == "pycaffe":
        import_caffe()
        protos = convert.load_protos()
    else:
        protos = convert.load_protos(plain_proto)
    # C++ -> Python -> C++
    python_text, count = convert.convert_text(ROUND_TRIP_CPP, "python", protos)
    assert count == 8
    python = _layers(protos, python_text)
    assert python["w_empty"].python_param.HasField("param_str")
    assert python["w_empty"].python_param.param_str == ""
    assert not python["g_bare"].python_param.HasField("param_str")
    back, _ = convert.convert_text(python_text, "cpp", protos)
    assert _message_of(protos, back) == _message_of(protos, ROUND_TRIP_CPP)
    # Python -> C++ -> Python
    cpp_text, count = convert.convert_text(ROUND_TRIP_PYTHON, "cpp", protos)
    assert count == 4
    cpp = _layers(protos, cpp_text)
    assert not cpp["a"].HasField("softmax_over_scales_param")
    assert cpp["b"].HasField("softmax_over_scales_param")
    assert cpp["c"].scale_interp_param.zoom_factor == 2
    back, _ = convert.convert_text(cpp_text, "python", protos)
    assert _message_of(protos, back) == _message_of(protos, ROUND_TRIP_PYTHON)


def test_the_python_layers_own_module_path_is_recognized(plain_proto):
    protos = convert.load_protos(plain_proto)
    text = ROUND_TRIP_PYTHON.replace('"attention_scale.layers" layer: "ScaleInterp"',
                                     '"attention_scale.layers.python_layers" layer: "ScaleInterp"')
    cpp_text, count = convert.convert_text(text, "cpp", protos)
    assert count == 4 and _layers(protos, cpp_text)["c"].type == "ScaleInterp"


def test_param_str_and_a_conflicting_block_are_not_merged(plain_proto):
    protos = convert.load_protos(plain_proto)
    both = ('layer { name: "r" type: "Python" bottom: "x" top: "y" python_param { module: '
            '"attention_scale.layers" layer: "ScaleInterp" param_str: "scale: 0.5" } '
            'scale_interp_param { %s } }')
    # Caffe reads only one of them (the C++ layer the block, the Python layer the param_str), so
    # a block that says anything else, even an empty one (all defaults), is refused.
    for block in ("scale: 0.75", "pad_beg: -1 scale: 0.5", ""):
        with pytest.raises(convert.ConversionError,
                           match=r"layer 'r' \(Python\) has both param_str 'scale: 0.5' and a "
                                 r"scale_interp_param block \{ " + re.escape(block)):
            convert.convert_text(both % block, "cpp", protos)
    # The same parameters twice are no conflict.
    text, _ = convert.convert_text(both % "scale: 0.5", "cpp", protos)
    assert _layers(protos, text)["r"].scale_interp_param.scale == 0.5
    # The other direction: a C++ layer with a python_param that the Python form would replace.
    stale = ('layer { name: "s" type: "ScaleInterp" bottom: "x" bottom: "z" top: "y" '
             'python_param { param_str: "scale: 2" } }')
    with pytest.raises(convert.ConversionError, match=r"layer 's' \(ScaleInterp\) already has a "
                                                      r"python_param block .*scale: 2"):
        convert.convert_text(stale, "python", protos)
    # Fields of python_param that the C++ form cannot carry are named, not dropped.
    shared = ('layer { name: "t" type: "Python" python_param { module: "attention_scale.layers" '
              'layer: "SoftmaxOverScales" share_in_parallel: true } }')
    import_caffe()
    with pytest.raises(convert.ConversionError, match="layer 't'.*share_in_parallel"):
        convert.convert_text(shared, "cpp", convert.load_protos())


def test_a_caffemodel_is_refused_with_what_it_is(tmp_path):
    import_caffe()
    net = make_net('layer { name: "data" type: "Input" top: "data" '
                   'input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n'
                   'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
                   'convolution_param { num_output: 2 kernel_size: 3 } }\n')
    model = tmp_path / "weights.caffemodel"
    net.save(str(model))
    out = tmp_path / "out.prototxt"
    with pytest.raises(convert.ConversionError,
                       match=r"weights.caffemodel: this is a binary NetParameter .* 'conv1'.*"
                             r"\.caffemodel \(trained weights\), not a network definition"):
        convert.convert_file(model, out, "python")
    assert not out.exists()
    # Other binary data, and text that is not UTF-8.
    junk = tmp_path / "junk.prototxt"
    junk.write_bytes(bytes(range(256)))
    with pytest.raises(convert.ConversionError, match=r"junk.prototxt: this is not a text "
                                                      r"prototxt: it holds binary data \(byte 0\)"):
        convert.convert_file(junk, out, "python")
    latin = tmp_path / "latin.prototxt"
    latin.write_bytes('# caf\xe9\nname: "n"\n'.encode("latin-1"))
    with pytest.raises(convert.ConversionError, match=r"latin.prototxt: not UTF-8 text \(byte 5\)"):
        convert.convert_file(latin, out, "python")
    assert not out.exists()
    result = _tool(str(model), "--to", "cpp", "-o", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "binary NetParameter" in result.stderr and not out.exists()


V1_NET = """name: "v1"
input: "data" input_dim: 1 input_dim: 3 input_dim: 9 input_dim: 9
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
"""


def test_a_v1_net_is_refused_by_name_with_the_upgrade_command(tmp_path, plain_proto):
    import_caffe()
    src = tmp_path / "v1.prototxt"
    src.write_text(V1_NET)
    out = tmp_path / "out.prototxt"
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_file(src, out, "python")
    message = str(info.value)
    assert re.search(r"v1.prototxt uses the V1 `layers \{ \}` format \(2 layer\(s\): 'conv1' "
                     r"\(CONVOLUTION\), 'relu1' \(RELU\)\)", message), message
    assert not out.exists()
    # The command it names works, and its output converts.
    command = re.search(r"`(\S+upgrade_net_proto_text) IN.prototxt OUT.prototxt`", message)
    assert command, message
    upgraded = tmp_path / "v2.prototxt"
    subprocess.run([command.group(1), str(src), str(upgraded)], check=True, capture_output=True)
    convert.convert_file(upgraded, out, "python")
    assert _layers(convert.load_protos(), out.read_text())["conv1"].type == "Convolution"
    # A caffe.proto without V1 support: the parse error says what the `layers` field is.
    with pytest.raises(convert.ConversionError,
                       match=r'no field named "layers".*Upgrade it first with Caffe'):
        convert.convert_text(V1_NET.replace("input:", "# input:"), "python",
                             convert.load_protos(plain_proto))


def test_a_caffe_proto_with_its_own_scale_interp_parameter_is_refused(tmp_path):
    own = tmp_path / "own.proto"
    own.write_text(PLAIN_PROTO + "message ScaleInterpParameter { optional float factor = 1; }\n")
    with pytest.raises(convert.ConversionError) as info:
        convert.load_protos(own)
    message = str(info.value)
    assert f"--caffe-proto {own} defines its own message ScaleInterpParameter" in message
    assert "lacks zoom_factor = 3 (int32)" in message
    assert "has factor = 1 (float), which the project's lacks" in message
    # An injection from an older project version (no `scale`, no NEAREST) is told apart the same
    # way, with the way out.
    ours = (REPO / "caffe_layers/proto/attention_scale.proto").read_text()
    body = ours[ours.index("message ScaleInterpParameter"):ours.index("// Softmax over")]
    old = body.replace("optional float scale = 7;", "").replace("NEAREST = 1;", "")
    outdated = tmp_path / "outdated.proto"
    outdated.write_text(PLAIN_PROTO + old)
    with pytest.raises(convert.ConversionError,
                       match=r"lacks scale = 7 \(float\).*enum Interpolation is \[\('BILINEAR', 0\)\]"
                             r".*injection is out of date: run `tools/inject_layers.py"):
        convert.load_protos(outdated)
    # The current injection's message is the project's: accepted as it is.
    current = tmp_path / "current.proto"
    current.write_text(PLAIN_PROTO + body)
    assert convert.load_protos(current).extended
    # A field of ours typed with another message.
    typed = tmp_path / "typed.proto"
    typed.write_text(PLAIN_PROTO.replace(
        "repeated bool propagate_down = 11;",
        "repeated bool propagate_down = 11; optional InputParameter scale_interp_param = 2016001;"))
    with pytest.raises(convert.ConversionError,
                       match=r"declares LayerParameter.scale_interp_param with type "
                             r"\.caffe\.InputParameter, but the project's is "
                             r"\.caffe\.ScaleInterpParameter"):
        convert.load_protos(typed)


FORK_PROTO = DEEPLAB_PROTO.replace(
    "optional InputParameter input_param = 142;",
    "optional InputParameter input_param = 142; optional ImageDataParameter image_data_param = 115;"
    " optional ConvolutionParameter convolution_param = 106;") + """
message ImageDataParameter {
  optional string source = 1;
  enum LabelType { NONE = 0; IMAGE = 1; PIXEL = 2; }
  optional LabelType label_type = 16 [default = IMAGE];
}
message ConvolutionParameter { optional uint32 num_output = 1; }
"""

FORK_NET = """name: "${NET_ID}"
layer { name: "data" type: "ImageSegData" top: "data"
        image_data_param { source: "${EXP}/list/${TRAIN_SET}.txt" label_type: PIXEL } }
# a comment: ${NOT_A_PLACEHOLDER}
layer { name: "fc8" type: "Convolution" bottom: "data" top: "fc8"
        convolution_param { num_output: ${NUM_LABELS} } }
layer { name: "fc8_up" type: "Interp" bottom: "fc8" top: "fc8_up"
        interp_param { zoom_factor: 8 } }
layer { name: "fc8b" type: "Convolution" bottom: "data" top: "fc8b"
        convolution_param { num_output: $NUM_LABELS } }
"""


def test_a_forks_prototxt_asks_for_its_caffe_proto_and_its_template_values(tmp_path):
    import_caffe()
    fork_proto = tmp_path / "fork" / "caffe.proto"
    fork_proto.parent.mkdir()
    fork_proto.write_text(FORK_PROTO)
    src = tmp_path / "train.prototxt"
    src.write_text(FORK_NET)
    out = tmp_path / "out.prototxt"
    # A template: the placeholders standing where values go are named with their lines.
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_file(src, out, "cpp", caffe_proto=fork_proto)
    message = str(info.value)
    assert re.search(r"train.prototxt is a template: \$\{NUM_LABELS\} \(line 6\), \$NUM_LABELS "
                     r"\(line 10\) must be filled in first", message), message
    assert "NOT_A_PLACEHOLDER" not in message and "${EXP}" not in message
    # Filled in: pycaffe's stock caffe.proto lacks the fork's fields, and the message says what
    # to pass; with it the conversion works.
    src.write_text(FORK_NET.replace("${NUM_LABELS}", "21").replace("$NUM_LABELS", "21"))
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_file(src, out, "cpp")
    message = str(info.value)
    assert 'has no field named "label_type"' in message
    assert "pycaffe's caffe_pb2" in message and "--caffe-proto PATH" in message
    assert not out.exists()
    result = convert.convert_file(src, out, "cpp", caffe_proto=fork_proto)
    assert result.count == 1
    # Placeholders left inside strings parse; they are kept and reported.
    assert result.notes == [f"{src} still holds template placeholders inside strings, kept as "
                            "they are: ${NET_ID} (line 1), ${EXP} (line 3), ${TRAIN_SET} (line 3)"]
    layers = _layers(convert.load_protos(fork_proto), out.read_text())
    assert layers["fc8_up"].type == "ScaleInterp"
    assert layers["fc8_up"].scale_interp_param.zoom_factor == 8
    assert layers["data"].image_data_param.label_type == 2
    # The given caffe.proto lacks a field: the message asks whether it is the right one.
    src.write_text('layer { name: "x" type: "Input" input_param { bogus: 1 } }')
    with pytest.raises(convert.ConversionError,
                       match=rf"--caffe-proto {re.escape(str(fork_proto))} lacks that field: is "
                             "it the caffe.proto of the Caffe"):
        convert.convert_file(src, out, "cpp", caffe_proto=fork_proto)
    # Through the tool: the message and the note reach the terminal, exit status 1 on error.
    src.write_text(FORK_NET.replace("${NUM_LABELS}", "21").replace("$NUM_LABELS", "21"))
    result = _tool(str(src), "--to", "cpp", "-o", str(out))
    assert result.returncode == 1 and "--caffe-proto PATH" in result.stderr
    result = _tool(str(src), "--to", "python", "-o", str(out), "--caffe-proto", str(fork_proto))
    assert result.returncode == 0, result.stderr
    assert "convert_net: note: " in result.stderr and "${TRAIN_SET}" in result.stderr


def test_a_solver_is_recognized(plain_proto):
    solver = 'net: "train.prototxt"\nbase_lr: 0.001\nlr_policy: "poly"\n'
    with pytest.raises(convert.ConversionError,
                       match=r"looks like a solver prototxt: convert the network file it names"):
        convert.convert_text(solver, "python", convert.load_protos(plain_proto))


def test_deeplab_interp_keeps_deeplabs_precedence(plain_proto):
    # DeepLab's Interp takes the factors when one is set and ignores height/width; ScaleInterp
    # refuses two size rules, so the converted layer leaves out what DeepLab ignored.
    protos = convert.load_protos(plain_proto)
    cases = [  # interp_param, the ScaleInterp's block, the note
        ("height: 5 width: 7 zoom_factor: 8 pad_end: -1", "zoom_factor: 8 pad_end: -1",
         "ignores height and width when zoom_factor is set, so the ScaleInterp leaves them out"),
        # Both factors and both sides: DeepLab takes height and width (that rule comes first).
        ("zoom_factor: 3 shrink_factor: 4 height: 50 width: 70", "height: 50 width: 70",
         "ignores zoom_factor and shrink_factor when height and width are set, so the "
         "ScaleInterp leaves them out"),
        # Both factors and one side: no height-and-width rule, so the factors.
        ("zoom_factor: 3 shrink_factor: 4 height: 50", "zoom_factor: 3 shrink_factor: 4",
         "ignores height when zoom_factor and shrink_factor are set, so the ScaleInterp "
         "leaves it out"),
    ]
    for interp, block, note in cases:
        text = (f'layer {{ name: "up" type: "Interp" bottom: "x" top: "y" '
                f'interp_param {{ {interp} }} }}')
        result = convert.convert_net(text, "cpp", protos)
        up = _layers(protos, result.text)["up"]
        assert text_format.MessageToString(up.scale_interp_param, as_one_line=True) == block
        assert result.notes == [f"layer 'up': DeepLab's Interp {note}"]
    # Without a factor, height and width stay; an empty interp_param stays an (empty) block.
    text = 'layer { name: "up" type: "Interp" interp_param { height: 5 width: 7 } }'
    assert _layers(protos, convert.convert_text(text, "cpp", protos)[0])["up"] \
        .scale_interp_param.height == 5
    text = 'layer { name: "up" type: "Interp" interp_param { } }'
    assert _layers(protos, convert.convert_text(text, "cpp", protos)[0])["up"] \
        .HasField("scale_interp_param")
    # interp_param beside a scale_interp_param that says something else: refused.
    text = ('layer { name: "up" type: "Interp" interp_param { zoom_factor: 2 } '
            'scale_interp_param { zoom_factor: 4 } }')
    with pytest.raises(convert.ConversionError,
                       match=r"layer 'up' \(Interp\) has both interp_param \{ zoom_factor: 2 \} "
                             r"and a scale_interp_param block \{ zoom_factor: 4 \}"):
        convert.convert_text(text, "python", protos)


def test_a_failed_conversion_in_place_leaves_the_file_as_it_was(tmp_path, plain_proto):
    src = tmp_path / "net.prototxt"
    original = (CPP_NET + 'layer { name: "bad" type: "Python" python_param { module: '
                '"attention_scale.layers" layer: "ScaleInterp" param_str: "zoom: 2" } }\n')
    src.write_text(original)
    result = _tool(str(src), "--to", "cpp", "--in-place", "--caffe-proto", str(plain_proto))
    assert result.returncode == 1
    assert "layer 'bad' (Python): cannot read param_str 'zoom: 2'" in result.stderr
    assert src.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caffe.proto", "net.prototxt"]


# ---------------------------------------------------------------------------------------------
# Input layers -> the net's input fields, for a Caffe from before the Input layer (DeepLab-v2)
# ---------------------------------------------------------------------------------------------

# As DeepLab-v2's caffe.proto: BlobShape and the net's input fields, no Input layer.
PRE_INPUT_PROTO = """
syntax = "proto2";
package caffe;
message BlobShape { repeated int64 dim = 1 [packed = true]; }
message LayerParameter {
  optional string name = 1; optional string type = 2; repeated string bottom = 3; repeated string top = 4;
  repeated NetStateRule include = 8;
}
message NetStateRule { optional int32 phase = 1; }
message NetParameter {
  optional string name = 1; repeated string input = 3; repeated BlobShape input_shape = 8;
  repeated int32 input_dim = 4; repeated LayerParameter layer = 100;
}
"""

INPUT_NET = """
name: "inputs"
layer { name: "pair" type: "Input" top: "a" top: "b"
        input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } shape { dim: 1 dim: 1 dim: 9 dim: 9 } } }
layer { name: "one" type: "Input" top: "c" top: "d" input_param { shape { dim: 2 dim: 5 } } }
layer { name: "up" type: "ScaleInterp" bottom: "a" top: "up" scale_interp_param { zoom_factor: 2 } }
"""


def _shapes(net):
    return [list(shape.dim) for shape in net.input_shape]


def test_input_layers_become_the_nets_input_fields():
    import_caffe()
    protos = convert.load_protos()
    assert protos.has_input_layer  # BVLC's pycaffe
    result = convert.convert_net(INPUT_NET, None, protos, input_fields=True)
    assert result.count == 2
    net = _message_of(protos, result.text)
    assert list(net.input) == ["a", "b", "c", "d"]
    assert _shapes(net) == [[1, 3, 9, 9], [1, 1, 9, 9], [2, 5], [2, 5]]
    assert [layer.name for layer in net.layer] == ["up"]
    assert net.layer[0].type == "ScaleInterp"  # the layers' form is left as it was
    assert result.notes[0] == "Input layer 'pair' -> net input 'a' (1x3x9x9)"
    # BVLC Caffe reads the fields: the same blobs with the same shapes as from the Input layers.
    caffe = import_caffe()
    from attention_scale.pycaffe import net_from_text
    original, older = net_from_text(caffe, INPUT_NET), net_from_text(caffe, result.text)
    assert {k: v.data.shape for k, v in older.blobs.items()} == \
        {k: v.data.shape for k, v in original.blobs.items()}


@pytest.mark.parametrize("layer, message", [
    ('layer { name: "i" type: "Input" bottom: "x" top: "y" '
     'input_param { shape { dim: 1 } } }', r"Input layer 'i' has bottoms \['x'\]: not an input"),
    ('layer { name: "i" type: "Input" top: "y" }',
     r"Input layer 'i' gives no shape; the net's input_shape needs one"),
    ('layer { name: "i" type: "Input" top: "y" top: "z" top: "w" '
     'input_param { shape { dim: 1 } shape { dim: 2 } } }',
     r"Input layer 'i' has 3 tops and 2 shapes \(Caffe wants one shape, or one per top\)"),
    ('layer { name: "i" type: "Input" top: "y" include { phase: TEST } '
     'input_param { shape { dim: 1 } } }', r"Input layer 'i' has include/exclude rules"),
    ('input: "old" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4 '
     'layer { name: "i" type: "Input" top: "y" input_param { shape { dim: 1 } } }',
     r"the net declares inputs \['old'\] by input_dim"),
], ids=["bottoms", "no-shape", "shape-count", "phase-rule", "input-dim"])
def test_input_layers_that_have_no_field_form_are_refused(layer, message):
    import_caffe()
    with pytest.raises(convert.ConversionError, match=message):
        convert.convert_net(layer, "cpp", input_fields=True)


def test_a_caffe_proto_from_before_the_input_layer(tmp_path):
    proto = tmp_path / "caffe.proto"
    proto.write_text(PRE_INPUT_PROTO)
    protos = convert.load_protos(proto)
    assert not protos.has_input_layer
    # The net's Input layers parse (input_param added for parsing only) ...
    result = convert.convert_net(INPUT_NET, "cpp", protos)
    assert any("predates the Input layer" in note and "--input-fields" in note
               for note in result.notes)
    # ... and with input_fields the text parses with that caffe.proto as it is.
    result = convert.convert_net(INPUT_NET, "cpp", protos, input_fields=True)
    assert not any("predates" in note for note in result.notes)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(convert.caffe_file_descriptor(proto))
    plain = caffe_proto.message_class(pool.FindMessageTypeByName("caffe.NetParameter"))
    inputs_only = INPUT_NET.split('layer { name: "up"')[0]
    with pytest.raises(text_format.ParseError, match="input_param"):
        text_format.Parse(inputs_only, plain())  # as that Caffe would
    converted = convert.convert_net(inputs_only, None, protos, input_fields=True).text
    net = text_format.Parse(converted, plain())
    assert list(net.input) == ["a", "b", "c", "d"] and _shapes(net)[2] == [2, 5]


def test_command_line_input_fields(tmp_path):
    src, dst = tmp_path / "net.prototxt", tmp_path / "fields.prototxt"
    src.write_text(INPUT_NET)
    result = _tool(str(src), "--input-fields", "-o", str(dst))
    assert result.returncode == 0, result.stderr
    assert f"{dst}: 2 layer(s) converted to input fields" in result.stdout
    assert 'input: "a"' in dst.read_text() and "Input" not in dst.read_text()
    result = _tool(str(src), "-o", str(dst))
    assert result.returncode == 2
    assert "nothing to do: give --to python|cpp, --input-fields, or both" in result.stderr


def test_a_misspelt_field_or_enum_value_gets_the_likely_name(plain_proto):
    import_caffe()
    protos = convert.load_protos()
    text = ('layer { name: "c" type: "Convolution" bottom: "x" top: "y" '
            'convolution_param { kernal_size: 3 num_output: 2 } }')
    with pytest.raises(convert.ConversionError,
                       match=r"has no field named \"kernal_size\"\. Did you mean 'kernel_size'\? "
                             r"\(If not, the network was written for another Caffe's "
                             r"caffe\.proto\.\)"):
        convert.convert_text(text, "python", protos)
    text = ('layer { name: "m" type: "WeightedScaleSum" bottom: "x" top: "y" '
            'weighted_scale_sum_param { merge: ATTENTON } }')
    with pytest.raises(convert.ConversionError,
                       match=r"has no value named ATTENTON\. Its values: ATTENTION, AVERAGE, MAX\. "
                             r"Did you mean ATTENTION\?"):
        convert.convert_text(text, "python", protos)
    # A field no name is close to: still the advice for a fork's prototxt.
    text = 'layer { name: "d" type: "ImageData" top: "x" image_data_param { label_type: PIXEL } }'
    with pytest.raises(convert.ConversionError, match=r"--caffe-proto PATH$") as error:
        convert.convert_text(text, "python", protos)
    assert "Did you mean" not in str(error.value)


# --- audit s9b: wrong kinds of --caffe-proto and -o -----------------------------------------

def test_a_binary_or_net_file_as_caffe_proto_is_refused_before_protoc(tmp_path):
    """A .caffemodel given as --caffe-proto once ran protoc for minutes, its error text kept in
    memory without bound (ABRT-1); a net prototxt got protoc's raw syntax errors (MSG-8)."""
    model = tmp_path / "model.caffemodel"
    model.write_bytes(b"\n\x05VGG16\x12" + bytes(range(256)) * 64)
    net = tmp_path / "own.prototxt"
    net.write_text(CPP_NET)
    for given, kind in ((model, "a binary file"), (net, "a network prototxt")):
        with pytest.raises(caffe_proto.ConversionError,
                           match=rf"--caffe-proto {re.escape(str(given))}: {kind} .*not a "
                                 "caffe.proto"):
            caffe_proto.caffe_file_descriptor(given)
    result = _tool(str(net), "--to", "python", "-o", str(tmp_path / "out.prototxt"),
                   "--caffe-proto", str(model))
    assert result.returncode == 1 and "a binary file" in result.stderr, result.stderr
    assert not (tmp_path / "out.prototxt").exists()


def test_protoc_complaints_are_cut_short(tmp_path):
    """A text file with a message in it goes to protoc; what protoc says is kept to its start."""
    if shutil.which("protoc") is None:
        pytest.skip("no protoc")
    bad = tmp_path / "caffe.proto"
    bad.write_text("message A {\n" + "} junk ;\n" * 20000)
    with pytest.raises(caffe_proto.ConversionError) as err:
        caffe_proto.caffe_file_descriptor(bad)
    message = str(err.value)
    assert message.startswith(f"protoc could not compile {bad}")
    assert len(message) < caffe_proto._PROTOC_ERROR_CHARS + 200
    assert message.endswith("(protoc's further output left out)")


def test_output_folder_problems_name_the_path_given(tmp_path):
    """-o a folder named the temporary file (TB-4); a missing folder was created silently, at /
    even (DOC-5): both refused, nothing written."""
    src = tmp_path / "net.prototxt"
    src.write_text(CPP_NET)
    result = _tool(str(src), "--to", "python", "-o", str(tmp_path))
    assert result.returncode == 1
    assert f"-o {tmp_path}: a folder; give the file to write" in result.stderr, result.stderr
    assert ".net" not in result.stderr and "Errno" not in result.stderr
    missing = tmp_path / "nope" / "deeper" / "x.prototxt"
    result = _tool(str(src), "--to", "python", "-o", str(missing))
    assert result.returncode == 1
    assert f"no folder {missing.parent} to write into" in result.stderr, result.stderr
    assert not (tmp_path / "nope").exists()
