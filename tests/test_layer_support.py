"""A net whose layer types the Caffe at hand lacks: refused before Caffe ends the process, with
the cause and the fix (attention_scale.nets.layer_support), in test_voc's predictor and in the
training runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attention_scale.nets import layer_support
from attention_scale.nets.layer_support import MissingLayerTypes

REPO = Path(__file__).resolve().parents[1]
ATTENTION_TEST = REPO / "prototxt" / "scales-1-0.5" / "attention" / "test.prototxt"
OURS = ("ScaleInterp", "SoftmaxOverScales", "WeightedScaleSum")


def test_missing_types_lists_layers_by_type_in_net_order():
    layers = [("data", "Input"), ("a", "ScaleInterp"), ("b", "Foo"), ("c", "ScaleInterp"),
              ("d", "Python")]
    missing = layer_support.missing_types(layers, ["Input", "Python"])
    assert missing == {"ScaleInterp": ["a", "c"], "Foo": ["b"]}
    assert list(missing) == ["ScaleInterp", "Foo"]
    assert layer_support.missing_types(layers, ["Input", "Python", "Foo", "ScaleInterp"]) == {}


def test_advice_gives_each_cause_its_fix():
    text = layer_support.advice({"WeightedScaleSum": ["fc8_fusion"],
                                 "ScaleInterp": ["s1", "s2", "s3", "s4", "s5", "s6"]},
                                "this pycaffe (X)", "--layer-form python")
    assert text.startswith("this pycaffe (X) has no WeightedScaleSum (layer 'fc8_fusion') and "
                           "ScaleInterp (layers 's1', 's2', 's3', 's4' and 2 more)")
    for fix in ("tools/setup.sh", "tools/inject_layers.py CAFFE_ROOT", "--layer-form python"):
        assert fix in text
    python = layer_support.advice({"Python": ["data"]}, "the caffe tool Y")
    assert "without Python layers" in python and "layer 'data' need" in python
    assert "WITH_PYTHON_LAYER" in python
    interp = layer_support.advice({"Interp": None}, "Z")
    assert "DeepLab's resize layer" in interp and "--to cpp" in interp
    other = layer_support.advice({"Foo": ["f"], "Bar": None}, "Z")
    assert other == ("Z has no layer type Foo (layer 'f') and Bar: the net needs a Caffe (or "
                     "fork) that registers it")
    # several causes: one sentence each, in the order above
    both = layer_support.advice({"Foo": None, "Python": None, "ScaleInterp": ["s"]}, "Z")
    assert both.index("project's layers") < both.index("Python layers") < both.index("Foo")


def test_net_layers_reads_a_net_of_our_layers():
    layers = layer_support.net_layers(ATTENTION_TEST.read_text())
    types = {t for _, t in layers}
    assert {"Input", "Convolution", "ScaleInterp", "WeightedScaleSum",
            "SoftmaxOverScales"} <= types
    assert layers[0] == ("data", "Input")
    assert ("fc8_fusion", "WeightedScaleSum") in layers


# glog before 0.6 writes `F1126 ...`; 0.6 and later (this build's) `F20261126 ...`.
GLOG_PREFIXES = ["F1126 10:00:00.000000  1 ", "F20261126 10:00:00.000000  1 "]


@pytest.mark.parametrize("prefix", GLOG_PREFIXES, ids=["glog-MMDD", "glog-YYYYMMDD"])
def test_failure_advice_reads_caffes_fatal_line(prefix):
    """Through the training log parser, as the runner reads Caffe's output: the lines without
    "Check failed" or "Error" (CPU-only, multi-GPU) are caught by their glog prefix alone."""
    from attention_scale.training import caffe_log

    def advice(line, label="c"):
        fatal = caffe_log.parse_text(prefix + line + "\n").fatal
        assert fatal == [prefix + line]
        return layer_support.failure_advice(fatal, label)

    known = ", ".join(f"Layer{i}" for i in range(80))
    fatal = [f"{prefix}layer_factory.hpp:81] Check failed: registry.count(type) == 1 "
             f"(0 vs. 1) Unknown layer type: SoftmaxOverScales (known types: {known})"]
    hint = advice(fatal[0][len(prefix):], "the caffe tool /x/caffe")
    assert hint.startswith("the caffe tool /x/caffe has no SoftmaxOverScales: it was built "
                           "without this project's layers")
    assert advice("net.cpp:1] Check failed: x") is None
    python = layer_support.failure_advice(
        ["ModuleNotFoundError: No module named 'attention_scale'"], "the caffe tool /x/caffe")
    assert python.startswith("the Python inside the caffe tool /x/caffe cannot import "
                             "attention_scale") and "pip install ." in python
    cpu = advice("common.cpp:66] Cannot use GPU in CPU-only Caffe: check mode.",
                 "the caffe tool c")
    assert cpu.startswith("the caffe tool c was built CPU_ONLY: leave --gpu out")
    multi = advice("python_layer.hpp:25] PythonLayer does not support CLI Multi-GPU, use "
                   "train.py")
    assert multi.endswith("train on one GPU (-gpu 0)")
    short = layer_support.shorten_known_types(fatal[0])
    assert short.endswith(", ...)") and len(short) < len(fatal[0])
    assert short.split("(known types: ")[1].split(", ")[-2].startswith("Layer")  # whole names
    assert layer_support.shorten_known_types("F] other") == "F] other"


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"")  # never read: the net is refused before it is built
    return path


def _without(caffe, monkeypatch, types):
    known = [t for t in caffe.layer_type_list() if t not in types]
    monkeypatch.setattr(caffe, "layer_type_list", lambda: known)


def test_predictor_refuses_a_net_this_pycaffe_lacks_layers_for(monkeypatch, weights):
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.pycaffe import import_caffe

    _without(import_caffe(), monkeypatch, OURS)
    with pytest.raises(MissingLayerTypes) as error:
        NetPredictor(ATTENTION_TEST, weights)
    message = str(error.value)
    assert message.startswith(f"{ATTENTION_TEST}: this pycaffe (")
    assert "has no ScaleInterp (layers 'data_res05'" in message
    assert "WeightedScaleSum (layer 'fc8_fusion')" in message
    assert "--layer-form python" in message


def test_predictor_in_python_form_needs_python_layers(monkeypatch, weights):
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.pycaffe import import_caffe

    _without(import_caffe(), monkeypatch, ("Python",))
    with pytest.raises(MissingLayerTypes, match=r"without Python layers \(type \"Python\"\), which "
                                                r"layers 'data_res05', 'fc8_res05_interp', "
                                                r"'fc7_res05_interp', 'attention' and 2 more "
                                                r"need: .*WITH_PYTHON_LAYER"):
        NetPredictor(ATTENTION_TEST, weights, layer_form="python")


def test_test_voc_ends_with_a_message_not_an_abort(tmp_path, weights):
    """A type no Caffe has: without the check, caffe.Net would end the process with SIGABRT."""
    net = tmp_path / "odd.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" '
                   'input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }\n'
                   'layer { name: "score" type: "NoSuchLayer" bottom: "data" top: "score" }\n')
    (tmp_path / "list.txt").write_text("a.jpg a.png\n")
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "test_voc.py"), "--net", str(net), "--weights",
         str(weights), "--list", str(tmp_path / "list.txt"), "--root", str(tmp_path),
         "--output", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert f"test_voc: {net}: this pycaffe (" in proc.stderr
    assert "has no layer type NoSuchLayer (layer 'score')" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _training_failure(tmp_path, caffe_tool, net_text="", solver_extra=""):
    """The TrainingError message of runner.train with `caffe_tool` on a one-net solver."""
    from attention_scale.training import runner

    (tmp_path / "net.prototxt").write_text(net_text)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path}/net.prototxt"\nmax_iter: 1\n'
                      f'snapshot_prefix: "{tmp_path}/s/x"\n{solver_extra}')
    with pytest.raises(runner.TrainingError) as error:
        runner.train(solver, caffe=str(caffe_tool), resume=False, progress=False, plot=False)
    return str(error.value)


def test_training_runner_explains_an_unknown_layer_type(tmp_path):
    known = ", ".join(f"Layer{i}" for i in range(80))
    fake = tmp_path / "caffe"
    fake.write_text("#!/bin/sh\n"
                    "echo 'F1126 10:00:00.000000 1 layer_factory.hpp:81] Check failed: "
                    "registry.count(type) == 1 (0 vs. 1) Unknown layer type: WeightedScaleSum "
                    f"(known types: {known})' >&2\nexit 134\n")
    fake.chmod(0o755)
    message = _training_failure(tmp_path, fake)
    assert "exited with code 134" in message
    assert "Unknown layer type: WeightedScaleSum (known types: Layer0," in message
    assert "Layer79" not in message  # the list of every known type is cut
    assert f"the caffe tool {fake} has no WeightedScaleSum: it was built without" in message
    assert "tools/inject_layers.py" in message and "full log:" in message


@pytest.mark.parametrize("prefix", GLOG_PREFIXES, ids=["glog-MMDD", "glog-YYYYMMDD"])
def test_training_runner_names_a_fatal_line_without_check_failed(tmp_path, prefix):
    """A LOG(FATAL) line holds neither "Check failed" nor "Error": its glog prefix alone marks
    it, in either glog's format."""
    fake = tmp_path / "caffe"
    fake.write_text("#!/bin/sh\n"
                    f"echo '{prefix}common.cpp:66] Cannot use GPU in CPU-only Caffe: check "
                    "mode.' >&2\necho '*** Check failure stack trace: ***' >&2\nexit 134\n")
    fake.chmod(0o755)
    message = _training_failure(tmp_path, fake)
    assert f"{prefix}common.cpp:66] Cannot use GPU in CPU-only Caffe" in message
    assert f"the caffe tool {fake} was built CPU_ONLY: leave --gpu out" in message


def test_training_runner_explains_a_python_that_lacks_the_package(tmp_path):
    """The real caffe tool, a Python layer whose module its Python cannot import."""
    caffe_tool = REPO / ".venv" / "bin" / "caffe"
    message = _training_failure(
        tmp_path, caffe_tool,
        'layer { name: "data" type: "Python" top: "data" top: "label" '
        'python_param { module: "attention_scale.no_such_module" layer: "SegmentationData" } }\n',
        "base_lr: 0.01\nsolver_mode: CPU\n")
    assert "No module named 'attention_scale.no_such_module'" in message
    assert (f"the Python inside the caffe tool {caffe_tool} cannot import "
            "attention_scale.no_such_module") in message


def test_a_gpu_asked_of_a_cpu_only_pycaffe_ends_with_a_message(tmp_path, weights):
    """Caffe's set_device on a CPU_ONLY build ends the process (LOG(FATAL))."""
    from attention_scale.caffe_runtime import gpu_unavailable_reason
    from attention_scale.pycaffe import import_caffe

    import_caffe()
    reason = gpu_unavailable_reason(0)
    if reason is None:
        pytest.skip("pycaffe can use GPU 0 here")
    (tmp_path / "list.txt").write_text("a.jpg a.png\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "test_voc.py"), "--net", str(ATTENTION_TEST),
         "--weights", str(weights), "--list", str(tmp_path / "list.txt"), "--root",
         str(tmp_path), "--output", str(tmp_path / "out"), "--quiet", "--gpu", "0"],
        capture_output=True, text=True, env=dict(os.environ, GLOG_minloglevel="2"), timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert f"test_voc: --gpu 0: pycaffe cannot run on a GPU here: {reason}; leave --gpu out" \
        in proc.stderr


def test_a_net_this_pycaffe_cannot_parse_is_refused_not_aborted(weights, tmp_path):
    """caffe.Net would end the process on a field its caffe.proto lacks (a fork's prototxt)."""
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.nets.caffe_proto import ConversionError

    net = tmp_path / "fork.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" '
                   'input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }\n'
                   'layer { name: "d" type: "ImageSegData" top: "x" '
                   'image_data_param { label_type: PIXEL } }\n')
    for form in ("cpp", "python"):
        with pytest.raises(ConversionError, match=r"this pycaffe \(.*\) cannot read the net: "
                                                  r".*label_type.* Run it with that Caffe's "
                                                  r"pycaffe"):
            NetPredictor(net, weights, layer_form=form)


def test_a_misspelt_layer_type_gets_the_likely_one():
    text = layer_support.advice({"ScaleInterpp": ["up"], "Convolutoin": None}, "this pycaffe",
                                known=["Convolution", "ScaleInterp", "ReLU"])
    assert ("has no layer type ScaleInterpp (layer 'up') and Convolutoin (a misspelling? "
            "ScaleInterpp -> ScaleInterp, Convolutoin -> Convolution)") in text
    line = ("F20261126 10:00:00.000 1 layer_factory.hpp:81] Check failed: registry.count(type) "
            "== 1 (0 vs. 1) Unknown layer type: ScaleInterpp (known types: AbsVal, ScaleInterp, "
            "Softmax)")
    assert "(a misspelling? ScaleInterpp -> ScaleInterp)" in \
        layer_support.failure_advice([line], "the caffe tool")
    assert "misspelling" not in layer_support.advice({"NoSuchLayer": None}, "x",
                                                     known=["Convolution"])


BASELINE_TEST = REPO / "prototxt" / "baseline" / "test.prototxt"


def _deeplab_interp_net(tmp_path):
    """The baseline test net with DeepLab's Interp as its final resize (as in DeepLab's nets)."""
    text = BASELINE_TEST.read_text()
    cpp = 'type: "ScaleInterp"\n  bottom: "fc8"\n  bottom: "data"\n  top: "score"\n'
    assert cpp in text
    net = tmp_path / "deeplab.prototxt"
    net.write_text(text.replace(cpp, 'type: "Interp"\n  bottom: "fc8"\n  top: "score"\n'
                                '  interp_param { zoom_factor: 8 }\n'))
    return net


def test_interp_advice_fits_a_caffe_without_scale_interp():
    """Converting Interp to the C++ ScaleInterp only helps a Caffe that has ScaleInterp; one
    without it (as the types it lists or the net's other missing layers show) needs the
    Python form."""
    has_ours = layer_support.advice({"Interp": ["score"]}, "Z",
                                    known=["Convolution", "ScaleInterp"])
    assert "--to cpp" in has_ours and "--to python" not in has_ours
    for missing, known in (({"Interp": ["score"]}, ["Convolution", "Python"]),
                           ({"Interp": ["score"], "ScaleInterp": ["s"]}, ())):
        text = layer_support.advice(missing, "Z", known=known)
        assert "--to cpp" not in text, text
        assert ("has no Interp (layer 'score'), DeepLab's resize layer: the Python form "
                "(tools/convert_net.py NET --to python) makes each a ScaleInterp Python "
                "layer") in text
    line = ("F1126 10:00:00.000 1 layer_factory.hpp:81] Check failed: registry.count(type) == 1 "
            "(0 vs. 1) Unknown layer type: Interp (known types: AbsVal, Python, Softmax)")
    hint = layer_support.failure_advice([line], "the caffe tool c")
    assert "--to cpp" not in hint and "NET --to python" in hint


def test_predictor_advises_the_python_form_for_interp_on_a_caffe_without_ours(
        monkeypatch, weights, tmp_path):
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.pycaffe import import_caffe

    net = _deeplab_interp_net(tmp_path)
    _without(import_caffe(), monkeypatch, OURS + ("Interp",))
    with pytest.raises(MissingLayerTypes) as error:
        NetPredictor(net, weights)
    message = str(error.value)
    assert "has no Interp (layer 'score')" in message
    assert "the Python form (--layer-form python)" in message and "--to cpp" not in message


def test_training_runner_names_the_train_net_to_convert(tmp_path):
    """`caffe train` without the project's layers: the Python-form advice names the net the
    solver trains (convert_net refuses the solver itself, and a copy beside it would not be
    what the solver runs), converted in place so that the solver runs it."""
    fake = tmp_path / "caffe"
    fake.write_text("#!/bin/sh\n"
                    "echo 'F1126 10:00:00.000000 1 layer_factory.hpp:81] Check failed: "
                    "registry.count(type) == 1 (0 vs. 1) Unknown layer type: ScaleInterp "
                    "(known types: Convolution, Python)' >&2\nexit 134\n")
    fake.chmod(0o755)
    message = _training_failure(tmp_path, fake)
    net = tmp_path / "net.prototxt"
    assert (f"run their Python form on this Caffe (`python tools/convert_net.py {net} --to "
            "python --in-place`, the net this solver trains;") in message
    assert "generate_prototxt.py --form python" in message
    assert "NET --to python" not in message
