"""The prototxt converter: C++ <-> Python forms, DeepLab Interp, unpatched and patched caffe.proto."""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, message_factory, text_format

from attention_scale.nets import convert
from pyhelpers import import_caffe

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
    module.NetParameter = message_factory.GetMessageClass(
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
    data = convert._descriptor_from_pb2_source(pb2).SerializeToString()
    old = tmp_path / "old_caffe_pb2.py"
    old.write_text("_b = lambda s: s.encode('latin1')\nDESCRIPTOR = _descriptor.FileDescriptor(\n"
                   f"  name='caffe.proto', serialized_pb=_b({data.decode('latin-1')!r}))\n")
    assert convert._descriptor_from_pb2_source(old) == convert._descriptor_from_pb2_source(pb2)


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
