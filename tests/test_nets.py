"""The paper's networks: names, shapes, weight sharing, learning rates, the checked-in prototxt,
and the two layer forms computing the same thing.

Expected sizes are worked out by hand from SPEC section 3 (321 crop: 41 x 41 at scale 1,
241 -> 31 at 0.75, 161 -> 21 at 0.5; 513 -> 65), not from the builder's own arithmetic.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from attention_scale.errors import LayerConfigError
from attention_scale.nets import backbones, builder, generate, naming, variants
from attention_scale.pycaffe import net_from_text
from pyhelpers import import_caffe

import_caffe()  # first import, with glog quiet (the builder imports caffe too)
REPO = Path(__file__).resolve().parents[1]
VARIANTS = variants.paper_variants()
IDS = [v.folder for v in VARIANTS]


def load_net(text, phase="TRAIN", weights=None):
    caffe = import_caffe()
    return net_from_text(caffe, text, getattr(caffe, phase), weights)


def parse(path_or_text):
    caffe_pb2 = import_caffe().proto.caffe_pb2
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    net = caffe_pb2.NetParameter()
    text_format.Parse(text, net)
    return net


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

def test_scale_suffixes_by_hand():
    assert naming.scale_suffix(1) == ""
    assert naming.scale_suffix(0.75) == "_res075"
    assert naming.scale_suffix(0.5) == "_res05"
    assert naming.scale_suffix(0.25) == "_res025"
    assert naming.scales_slug((1, 0.75, 0.5)) == "scales-1-0.75-0.5"


@pytest.mark.parametrize("scales,pattern", [
    ((0.5, 1), "first scale must be 1"),
    ((1, 0.5, 0.5), "once"),
    ((1, 1.5), r"\(0, 1\)"),
    ((1, 0.123456), "4 decimal digits"),
])
def test_bad_scales_are_refused(scales, pattern):
    with pytest.raises(LayerConfigError, match=pattern):
        builder.NetOptions(scales=scales, merge="MAX")


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(scales=(1, 0.5)), "merge must be one of"),
    (dict(scales=(1,), merge="MAX"), "needs more than one scale"),
    (dict(scales=(1,), esupv=True), "E-Supv"),
    (dict(scales=(1, 0.5), merge="MAX", form="lua"), "form"),
    (dict(backbone="resnet"), "unknown backbone"),
])
def test_bad_options_are_refused(kwargs, pattern):
    with pytest.raises(LayerConfigError, match=pattern):
        builder.NetOptions(**kwargs)


def test_backbone_arithmetic_by_hand():
    # VGG-16 / DeepLab-LargeFOV: three stride-2 pools (3x3, pad 1): 321 -> 161 -> 81 -> 41.
    assert backbones.VGG16.output_stride == 8
    assert [backbones.VGG16.output_size(n) for n in (321, 241, 161, 513)] == [41, 31, 21, 65]
    # The small one of DEMO-FACTS: 2x2 pools, 97 -> 48 -> 24? No: Caffe pools in ceil mode,
    # (97 - 2) / 2 rounded up + 1 = 49, then 25; receptive field 3 +1 +4 +2 +8 +8 +8 = 34.
    assert backbones.SMALL.output_size(97) == 25
    assert backbones.SMALL.receptive_field() == 34


# ---------------------------------------------------------------------------------------------
# The checked-in prototxt
# ---------------------------------------------------------------------------------------------

def test_checked_in_prototxt_is_what_the_generator_writes():
    files = generate.all_files(generate.GeneratorOptions())
    stale = generate.differences(files, REPO)
    assert not stale, ("prototxt/ differs from tools/generate_prototxt.py's output (run it): "
                       f"{stale[:10]}")
    assert len([f for f in files if f.endswith(".prototxt")]) == 13 * 4 + 1


def test_generate_prototxt_check_passes_on_the_clone():
    import subprocess
    import sys
    res = subprocess.run([sys.executable, str(REPO / "tools/generate_prototxt.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "66 files up to date with the generator" in res.stdout


def test_other_options_may_not_rewrite_the_checked_in_nets():
    """--backbone small (or any option off its default) without --output-dir would rewrite
    prototxt/ and with it prototxt/solver.prototxt; refused before anything is written."""
    import subprocess
    import sys
    for args in (["--backbone", "small", "--num-classes", "4"],
                 ["--output-dir", "./prototxt/", "--random-scale", "0.5", "1.5"],
                 ["--output-dir", str(REPO / "prototxt"), "--snapshot", "5"],
                 ["--output-dir", f"../{REPO.name}/prototxt", "--num-classes", "5"]):
        res = subprocess.run([sys.executable, str(REPO / "tools/generate_prototxt.py"), *args],
                             capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "would rewrite the checked-in nets in prototxt/" in res.stderr
        assert "give an --output-dir of their own" in res.stderr
    assert "--backbone, --num-classes would" in subprocess.run(
        [sys.executable, str(REPO / "tools/generate_prototxt.py"), "--backbone", "small",
         "--num-classes", "4"], capture_output=True, text=True, cwd=REPO).stderr


def test_another_output_dir_gets_its_own_snapshot_folders(tmp_path):
    """A small-backbone (or Python-form) copy snapshots under snapshots/<its folder name>/, not
    into the paper nets' snapshots/<variant>/: train.py resumes from the latest snapshot under a
    solver's prefix, and the small net's snapshot resumed into VGG-16 aborted Caffe."""
    import subprocess
    import sys
    for extra, prefix in (([], "snapshots/prototxt-small/scales-1-0.75-0.5/attention-esupv/"),
                          (["--snapshot-root", "mine"], "mine/scales-1-0.75-0.5/attention-esupv/")):
        res = subprocess.run([sys.executable, str(REPO / "tools/generate_prototxt.py"),
                              "--backbone", "small", "--output-dir", "prototxt-small", *extra],
                             capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        solver = (tmp_path / "prototxt-small/solver.prototxt").read_text()
        assert f'snapshot_prefix: "{prefix}train"' in solver, solver
        assert (tmp_path / prefix).is_dir()


def test_lr_policies_get_the_fields_they_need(tmp_path):
    """Caffe reads a missing power or stepvalue as 0 / none: poly and inv kept base_lr to the
    end and multistep never stepped, in silence. Each policy's fields are written, the missing
    ones refused, and the ones a policy would ignore refused too."""
    import subprocess
    import sys

    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    def generate(*args):
        return subprocess.run([sys.executable, str(REPO / "tools/generate_prototxt.py"),
                               "--backbone", "small", "--output-dir", "nets", *args],
                              capture_output=True, text=True, cwd=tmp_path)

    def solver():
        text = (tmp_path / "nets/solver.prototxt").read_text()
        return text_format.Parse(text, caffe_pb2.SolverParameter())

    assert generate("--lr-policy", "poly", "--power", "0.9").returncode == 0
    s = solver()
    assert (s.lr_policy, s.power, s.HasField("stepsize")) == ("poly", pytest.approx(0.9), False)
    assert generate("--lr-policy", "multistep", "--stepvalue", "100", "250",
                    "--gamma", "0.5").returncode == 0
    s = solver()
    assert (list(s.stepvalue), s.gamma, s.HasField("power")) == ([100, 250], 0.5, False)
    assert generate("--lr-policy", "sigmoid", "--stepsize", "300").returncode == 0
    assert solver().stepsize == 300
    for args, said in ((["--lr-policy", "poly"], "--lr-policy poly needs --power"),
                       (["--lr-policy", "inv"], "--lr-policy inv needs --power"),
                       (["--lr-policy", "multistep"], "needs --stepvalue"),
                       (["--power", "0.9"], "--lr-policy step would ignore it"),
                       (["--lr-policy", "poly", "--power", "1", "--stepvalue", "5"],
                        "--stepvalue is for --lr-policy multistep"),
                       (["--lr-policy", "multistep", "--stepvalue", "200", "100"],
                        "give increasing iterations")):
        res = generate(*args)
        assert res.returncode == 2 and said in res.stderr, (args, res.stderr)


def test_the_generator_check_fails_on_an_edited_file(tmp_path):
    files = generate.all_files(generate.GeneratorOptions())
    generate.write(files, tmp_path)
    assert generate.differences(files, tmp_path) == []
    edited = tmp_path / "prototxt/baseline/train.prototxt"
    edited.write_text(edited.read_text().replace("num_output: 1024", "num_output: 512", 1))
    (tmp_path / "prototxt/stray.prototxt").write_text("")
    assert generate.differences(files, tmp_path) == ["prototxt/baseline/train.prototxt",
                                                     "prototxt/stray.prototxt"]


def test_solver_prototxt_is_the_papers_best_and_paths_are_repository_relative():
    best = (REPO / "prototxt/solver.prototxt").read_text()
    assert best == (REPO / "prototxt/scales-1-0.75-0.5/attention-esupv/solver.prototxt").read_text()
    caffe_pb2 = import_caffe().proto.caffe_pb2
    solver = caffe_pb2.SolverParameter()
    text_format.Parse(best, solver)
    assert solver.net == "prototxt/scales-1-0.75-0.5/attention-esupv/train.prototxt"
    assert solver.snapshot_prefix == "snapshots/scales-1-0.75-0.5/attention-esupv/train"
    assert (REPO / "snapshots/scales-1-0.75-0.5/attention-esupv").is_dir()
    # SPEC section 3 / DeepLab-LargeFOV: lr 0.001, x0.1 every 2000, 6000 iterations, momentum
    # 0.9, weight decay 5e-4; the paper's mini-batch of 30 = 10 x iter_size 3.
    assert (solver.base_lr, solver.lr_policy, solver.gamma, solver.stepsize, solver.max_iter) == (
        pytest.approx(0.001), "step", pytest.approx(0.1), 2000, 6000)
    assert (solver.momentum, solver.weight_decay, solver.iter_size) == (
        pytest.approx(0.9), pytest.approx(0.0005), 3)
    train = parse(REPO / solver.net)
    data = train.layer[0]
    assert data.python_param.module == "attention_scale.data"
    assert 'source: "data/voc/lists/train_aug.txt"' in data.python_param.param_str
    assert 'root: "data/voc"' in data.python_param.param_str
    assert "batch_size: 10" in data.python_param.param_str
    assert "crop_size: 321" in data.python_param.param_str


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_learning_rate_multipliers_and_shared_param_names(variant):
    net = parse(REPO / "prototxt" / variant.folder / "train.prototxt")
    multi = variant.merge is not None
    convs = [layer for layer in net.layer if layer.type == "Convolution"]
    assert convs
    for layer in convs:
        head = layer.name.startswith(("fc8", "att_"))
        assert [p.lr_mult for p in layer.param] == ([10, 20] if head else [1, 2]), layer.name
        assert [p.decay_mult for p in layer.param] == [1, 0], layer.name
        if multi and not layer.name.startswith("att_"):
            base = re.sub(r"_res0\d+$", "", layer.name)
            assert [p.name for p in layer.param] == [f"{base}_w", f"{base}_b"], layer.name
    names = {layer.name for layer in net.layer}
    for scale in variant.scales:
        t = naming.scale_suffix(scale)
        assert {f"conv1_1{t}", f"fc6{t}", f"fc7{t}", f"fc8{t}"} <= names
        if t:
            assert {f"data{t}", f"fc8{t}_interp"} <= names
    if variant.merge == "ATTENTION":
        assert {"fc7_concat", "att_conv1", "att_conv2", "attention", "fc8_fusion"} <= names
    losses = sorted(layer.name for layer in net.layer if layer.type == "SoftmaxWithLoss")
    expected = ["loss"] + (sorted(f"loss{naming.scale_suffix(s) or '_res1'}" for s in variant.scales)
                           if variant.esupv else [])
    assert losses == sorted(expected)
    for layer in net.layer:
        if layer.type == "SoftmaxWithLoss":
            assert layer.loss_param.ignore_label == 255
            assert list(layer.propagate_down) == [True, False]  # no gradient into labels


# ---------------------------------------------------------------------------------------------
# The VGG-16 nets: construct, shapes at 321, one forward/backward on a small input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_vgg16_train_net_shapes_and_one_forward_backward(variant):
    options = generate.net_options(variant, generate.GeneratorOptions()).with_(batch_size=1)
    net = load_net(builder.to_text(options, "train"))
    shape = lambda name: tuple(net.blobs[name].shape)  # noqa: E731  (no data is allocated)
    expected_side = {1.0: 41, 0.75: 31, 0.5: 21}
    for scale in variant.scales:
        t = naming.scale_suffix(scale)
        assert shape(f"fc8{t}") == (1, 21, expected_side[scale], expected_side[scale])
        assert shape(f"fc7{t}") == (1, 1024, expected_side[scale], expected_side[scale])
        if t:
            assert shape(f"data{t}") == (1, 3) + (
                {0.75: 241, 0.5: 161}[scale],) * 2
            assert shape(f"fc8{t}_interp") == (1, 21, 41, 41)
    assert shape("label_shrink") == (1, 1, 41, 41)
    if variant.merge:
        assert shape("fc8_fusion") == (1, 21, 41, 41)
    if variant.merge == "ATTENTION":
        num = len(variant.scales)
        assert shape("fc7_concat") == (1, 1024 * num, 41, 41)
        assert shape("attention") == (1, num, 41, 41)
    if len(variant.scales) > 1:  # branches share the scale-1 weights, not copies of them
        last = naming.scale_suffix(variant.scales[-1])
        assert np.shares_memory(net.params["conv1_1"][0].data,
                                net.params[f"conv1_1{last}"][0].data)
        assert np.shares_memory(net.params["fc8"][0].data, net.params[f"fc8{last}"][0].data)

    side = 41  # small input: 41 -> 6 x 6 scores at scale 1
    net.blobs["data"].reshape(1, 3, side, side)
    net.blobs["label"].reshape(1, 1, side, side)
    net.reshape()
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 50, (1, 3, side, side))
    net.blobs["label"].data[...] = rng.integers(0, 21, (1, 1, side, side))
    out = net.forward()
    net.backward()
    assert shape("fc8") == (1, 21, 6, 6) and shape("label_shrink") == (1, 1, 6, 6)
    assert np.isfinite(float(out["loss"])) and float(out["loss"]) > 0
    assert np.abs(net.params["conv1_1"][0].diff).sum() > 0
    if variant.merge == "ATTENTION":
        assert np.abs(net.params["att_conv1"][0].diff).sum() > 0
        np.testing.assert_allclose(net.blobs["attention"].data.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("folder", ["baseline", "scales-1-0.5/max",
                                    "scales-1-0.75-0.5/attention-esupv"])
def test_vgg16_test_and_deploy_nets_resize_scores_to_the_input(folder):
    deploy = load_net((REPO / "prototxt" / folder / "deploy.prototxt").read_text(), "TEST")
    assert tuple(deploy.blobs["data"].shape) == (1, 3, 513, 513)
    assert tuple(deploy.blobs["score"].shape) == (1, 21, 513, 513)
    assert tuple(deploy.blobs["fc8"].shape) == (1, 21, 65, 65)
    deploy.blobs["data"].reshape(1, 3, 57, 45)  # any size: every resize follows the input
    deploy.reshape()
    deploy.blobs["data"].data[...] = np.random.default_rng(1).normal(0, 50, (1, 3, 57, 45))
    out = deploy.forward()
    assert out["prob"].shape == (1, 21, 57, 45)
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1, rtol=1e-5)
    assert deploy.blobs["score"].data.shape == (1, 21, 57, 45)
    if "attention" in folder:
        # Caffe pools in ceil mode: 57 -> 29 -> 15 -> 8, 45 -> 23 -> 12 -> 7
        assert deploy.blobs["attention"].data.shape == (1, 3, 8, 7)
    test = parse(REPO / "prototxt" / folder / "test.prototxt")
    assert [layer.name for layer in test.layer][-1] == "score"
    score = test.layer[-1]
    assert score.type == "ScaleInterp" and list(score.bottom)[1] == "data"


# ---------------------------------------------------------------------------------------------
# C++ and Python layer forms compute the same net
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("merge,esupv", [("ATTENTION", True), ("MAX", False), ("AVERAGE", True)])
def test_python_form_matches_cpp_form(merge, esupv):
    options = builder.NetOptions(scales=(1, 0.75, 0.5), merge=merge, esupv=esupv,
                                 backbone=backbones.small_backbone(dropout=0), num_classes=5,
                                 crop_size=49, batch_size=2, attention_dropout=0)
    cpp_text = builder.to_text(options, "train")
    python_text = builder.to_text(options.with_(form="python"), "train")
    assert '"ScaleInterp"' in cpp_text and '"ScaleInterp"' not in python_text.replace(
        'layer: "ScaleInterp"', "")
    cpp, python = load_net(cpp_text), load_net(python_text)
    rng = np.random.default_rng(2)
    for name in cpp.params:
        for k in range(len(cpp.params[name])):
            python.params[name][k].data[...] = cpp.params[name][k].data
    inputs = {"data": rng.normal(0, 50, (2, 3, 49, 49)),
              "label": rng.integers(0, 5, (2, 1, 49, 49)).astype(float)}
    for net in (cpp, python):
        for name, value in inputs.items():
            net.blobs[name].data[...] = value
        net.forward()
        net.backward()
    for blob in ("loss", "fc8_fusion", "label_shrink", "data_res075"):
        np.testing.assert_allclose(python.blobs[blob].data, cpp.blobs[blob].data, rtol=2e-4,
                                   atol=2e-5, err_msg=blob)
    np.testing.assert_allclose(python.params["conv1_1"][0].diff, cpp.params["conv1_1"][0].diff,
                               rtol=2e-3, atol=1e-5)


def test_python_form_has_no_cpp_layer_types():
    options = builder.NetOptions(scales=(1, 0.5), merge="ATTENTION", form="python")
    net = parse(builder.to_text(options, "train"))
    types = {layer.type for layer in net.layer}
    assert not types & {"ScaleInterp", "SoftmaxOverScales", "WeightedScaleSum"}
    ours = [layer.python_param.layer for layer in net.layer if layer.type == "Python"
            and layer.python_param.module == "attention_scale.layers"]
    assert sorted(set(ours)) == ["ScaleInterp", "SoftmaxOverScales", "WeightedScaleSum"]


# --- audit s9b: the generator's --check, values, and absolute output folders -----------------

def _generate(*args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(REPO / "tools/generate_prototxt.py"), *args],
                          capture_output=True, text=True, cwd=cwd)


def test_check_of_an_absolute_missing_folder_says_so_with_the_options(tmp_path):
    """--check --output-dir /abs walked the filesystem from / and ended in a traceback (TB-2);
    the hint left out the options, so running it rewrote prototxt/ instead (MSG-5)."""
    out = tmp_path / "nonexist"
    res = _generate("--check", "--output-dir", str(out), "--backbone", "small", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert f"{out}: no such folder" in res.stderr
    assert f"run: python tools/generate_prototxt.py --output-dir {out} --backbone small" \
        in res.stderr


def test_nested_output_folders_are_not_each_others_differences(tmp_path):
    """prototxt/mine inside prototxt/: neither --check calls the other's files "differs" (MSG-5);
    a stray .prototxt in a folder the generator writes still fails it."""
    small = ["--backbone", "small", "--crop-size", "65", "--num-classes", "4"]
    assert _generate(cwd=tmp_path).returncode == 0
    assert _generate("--output-dir", "prototxt/mine", *small, cwd=tmp_path).returncode == 0
    res = _generate("--check", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not compared (not a folder the generator writes): prototxt/mine/" in res.stdout
    res = _generate("--check", "--output-dir", "prototxt/mine", *small, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "66 files up to date" in res.stdout
    (tmp_path / "prototxt/mine/baseline/old.prototxt").write_text("")
    (tmp_path / "prototxt/mine/baseline/train.prototxt").write_text("")
    res = _generate("--check", "--output-dir", "prototxt/mine", *small, cwd=tmp_path)
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        "differs from the generator: prototxt/mine/baseline/train.prototxt",
        "not written by the generator: prototxt/mine/baseline/old.prototxt"]
    assert ("run: python tools/generate_prototxt.py --output-dir prototxt/mine --backbone small "
            "--crop-size 65 --num-classes 4 and remove the files not written by the generator"
            in res.stderr)


@pytest.mark.parametrize("args, pattern", [
    (["--num-classes", "0"], r"--num-classes: .*must be at least 1, got 0"),
    (["--batch-size", "0"], r"--batch-size: .*must be at least 1, got 0"),
    (["--solver-type", "Foo"], r"--solver-type: invalid choice: 'Foo' \(choose from 'SGD', "),
    (["--lr-policy", "stepp"], r"--lr-policy: invalid choice: 'stepp'"),
    (["--base-lr", "-1"], r"--base-lr: .*must be a number above 0, got -1"),
    (["--base-lr", "0"], r"--base-lr: .*above 0, got 0"),
    (["--max-iter", "0"], r"--max-iter: .*must be at least 1, got 0"),
    (["--random-scale", "2", "1"], r"--random-scale 2 1: MIN is above MAX"),
    (["--num-classes", "300"], r"generate_prototxt.py: error: num_classes must lie in 1..255"),
])
def test_values_caffe_or_the_layers_refuse_are_usage_errors(tmp_path, args, pattern):
    """Written out before and refused only by Caffe at train time, or a traceback (TB-3, MSG-6)."""
    res = _generate("--output-dir", "x", *args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert re.search(pattern, res.stderr), res.stderr
    assert not (tmp_path / "x").exists()


def test_adagrad_gets_no_momentum(tmp_path):
    """Caffe's AdaGrad and RMSProp abort on a momentum (CHECK_EQ(0, momentum))."""
    res = _generate("--output-dir", "x", "--solver-type", "RMSProp", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    solver = (tmp_path / "x/solver.prototxt").read_text()
    assert 'type: "RMSProp"' in solver and "momentum: 0.0" in solver


def test_an_absolute_output_dir_keeps_its_snapshots_inside(tmp_path):
    """An absolute --output-dir had absolute net paths but snapshot_prefix snapshots/<name>
    relative to the working folder, where .gitkeep folders appeared (DOC-4)."""
    cwd = tmp_path / "repo"
    cwd.mkdir()
    out = tmp_path / "nets"
    for given in (str(out), "../nets"):
        res = _generate("--output-dir", given, "--backbone", "small", cwd=cwd)
        assert res.returncode == 0, res.stderr
        solver = (out / "solver.prototxt").read_text()
        assert (f'snapshot_prefix: "{given}/snapshots/scales-1-0.75-0.5/attention-esupv/train"'
                in solver), solver
        assert f'net: "{given}/scales-1-0.75-0.5/attention-esupv/train.prototxt"' in solver
        assert (out / "snapshots/scales-1-0.75-0.5/attention-esupv/.gitkeep").is_file()
        assert list(cwd.iterdir()) == []
        assert _generate("--check", "--output-dir", given, "--backbone", "small",
                         cwd=cwd).returncode == 0


def test_check_of_a_python_form_folder_without_its_form_does_not_advise_a_rewrite(tmp_path):
    """--check of a folder made with --form python, the --form left out: its hint, the same
    options without --check, would rewrite the fallback user's nets with the C++ layers their
    Caffe lacks; the folder's form is named instead. And the other way round."""
    small = ["--output-dir", "nets", "--backbone", "small", "--crop-size", "65"]
    assert _generate(*small, "--form", "python", cwd=tmp_path).returncode == 0
    assert _generate("--check", *small, "--form", "python", cwd=tmp_path).returncode == 0
    res = _generate("--check", *small, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "differs from the generator: nets/scales-1-0.5/max/train.prototxt" in res.stdout
    assert "run: " not in res.stderr
    assert ("nets was generated with --form python (the files' headers say so), not --form cpp: "
            "check it with the options it was made with") in res.stderr
    assert _generate(*small, cwd=tmp_path).returncode == 0  # now the C++ form
    res = _generate("--check", *small, "--form", "python", cwd=tmp_path)
    assert res.returncode == 1 and "run: " not in res.stderr
    assert "nets was generated with --form cpp" in res.stderr
    # an edited file of the right form still gets the command that rewrites it
    edited = tmp_path / "nets/scales-1-0.5/max/train.prototxt"
    edited.write_text(edited.read_text() + "# edited\n")
    res = _generate("--check", *small, cwd=tmp_path)
    assert res.returncode == 1 and "run: python tools/generate_prototxt.py" in res.stderr
