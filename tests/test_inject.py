"""tools/inject_layers.py and the proto injection, on synthetic BVLC- and DeepLab-style trees."""
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
from attention_scale.caffe_build import proto_injection as pi
from attention_scale.caffe_build import tree_injection as ti

OUR_FIELDS = {"scale_interp_param": (2016001, ".caffe.ScaleInterpParameter"),
              "softmax_over_scales_param": (2016002, ".caffe.SoftmaxOverScalesParameter"),
              "weighted_scale_sum_param": (2016003, ".caffe.WeightedScaleSumParameter")}


def make_tree(tmp_path: Path, proto: str) -> Path:
    tree = tmp_path / "caffe"
    (tree / "src/caffe/proto").mkdir(parents=True)
    (tree / "src/caffe/layers").mkdir(parents=True)
    (tree / "src/caffe/test").mkdir(parents=True)
    (tree / "include/caffe/layers").mkdir(parents=True)
    (tree / "include/caffe/layer.hpp").write_text("// Caffe's layer.hpp\n")
    (tree / ti.PROTO_REL).write_text(proto)
    return tree


def inject_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "tools/inject_layers.py"), *map(str, args)],
                          capture_output=True, text=True)


def compile_proto(tree: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "set.pb"
    subprocess.run(["protoc", f"-I{tree / 'src/caffe/proto'}", f"--descriptor_set_out={out}",
                    str(tree / ti.PROTO_REL)], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


def layer_fields(fds):
    (file,) = fds.file
    layer = next(m for m in file.message_type if m.name == "LayerParameter")
    return {f.name: (f.number, f.type_name) for f in layer.field}


def snapshot(tree: Path):
    return {str(p.relative_to(tree)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(tree.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("proto", ["bvlc_like_caffe.proto", "deeplab_like_caffe.proto"])
def test_inject_compiles_and_adds_fields(tmp_path, proto):
    original = (DATA / proto).read_text()
    tree = make_tree(tmp_path, original)
    assert inject_cli("--check", tree).returncode == 1
    res = inject_cli(tree)
    assert res.returncode == 0, res.stderr
    fields = layer_fields(compile_proto(tree, tmp_path))
    for name, want in OUR_FIELDS.items():
        assert fields[name] == want
    if "deeplab" in proto:  # the fork's own fields survive untouched
        assert fields["interp_param"] == (143, ".caffe.InterpParameter")
    (file,) = compile_proto(tree, tmp_path).file
    merge = next(m for m in file.message_type if m.name == "WeightedScaleSumParameter")
    assert [v.name for v in merge.enum_type[0].value] == ["ATTENTION", "AVERAGE", "MAX"]
    for rel, src in ti.project_files(REPO).items():
        assert (tree / rel).read_bytes() == src.read_bytes()
    assert inject_cli("--check", tree).returncode == 0


def test_second_run_changes_nothing_and_remove_restores(tmp_path):
    original = (DATA / "deeplab_like_caffe.proto").read_text()
    tree = make_tree(tmp_path, original)
    assert inject_cli(tree).returncode == 0
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 0 and "nothing to do" in res.stdout
    assert snapshot(tree) == before
    res = inject_cli("--remove", tree)
    assert res.returncode == 0, res.stderr
    assert (tree / ti.PROTO_REL).read_text() == original
    left = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}
    assert left == {ti.PROTO_REL, "include/caffe/layer.hpp"}


def test_outdated_injection_is_replaced(tmp_path):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    assert inject_cli(tree).returncode == 0
    proto = tree / ti.PROTO_REL
    proto.write_text(proto.read_text().replace("[default = ATTENTION]", "[default = MAX]"))
    hpp = next(rel for rel in ti.project_files(REPO) if rel.endswith(".hpp"))
    (tree / hpp).write_bytes(ti.FILE_MARKER + b"an older version\n")
    res = inject_cli("--check", tree)
    assert res.returncode == 1 and "outdated" in res.stdout
    assert inject_cli(tree).returncode == 0
    assert inject_cli("--check", tree).returncode == 0
    assert "[default = ATTENTION]" in proto.read_text()
    assert proto.read_text().count(pi.MESSAGES_BEGIN) == 1


CONFLICTS = [
    ("optional string my_field = 2016001;", "2016001 .* already used by 'my_field'"),
    ("optional int32 scale_interp_param = 900;", "already has a field named 'scale_interp_param'"),
    ("extensions 1000000 to max;", "reserves numbers 1000000-536870911"),
    ("reserved 2016002 to 2016010;", "reserves numbers 2016002-2016010"),
]


@pytest.mark.parametrize("line,message", CONFLICTS)
def test_refuses_a_proto_that_uses_our_numbers_or_names(tmp_path, line, message):
    proto = (DATA / "deeplab_like_caffe.proto").read_text().replace(
        "  optional InterpParameter interp_param = 143;\n",
        f"  optional InterpParameter interp_param = 143;\n  {line}\n")
    tree = make_tree(tmp_path, proto)
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 2
    assert "refusing" in res.stderr
    import re
    assert re.search(message, res.stderr), res.stderr
    assert snapshot(tree) == before  # nothing written
    assert inject_cli("--check", tree).returncode == 2


def test_refuses_a_foreign_message_with_our_name(tmp_path):
    proto = (DATA / "bvlc_like_caffe.proto").read_text() + (
        "\nmessage ScaleInterpParameter {\n  optional int32 factor = 1;\n}\n")
    tree = make_tree(tmp_path, proto)
    res = inject_cli(tree)
    assert res.returncode == 2
    assert "message ScaleInterpParameter is already defined (line" in res.stderr


def test_refuses_to_overwrite_a_file_it_did_not_write(tmp_path):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    rel = next(iter(ti.project_files(REPO)))
    (tree / rel).parent.mkdir(parents=True, exist_ok=True)
    (tree / rel).write_text("// somebody else's file\n")
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 2 and f"{rel} exists and was not written by this tool" in res.stderr
    assert snapshot(tree) == before


def test_files_no_longer_shipped_are_removed(tmp_path):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    assert inject_cli(tree).returncode == 0
    stale = "src/caffe/layers/old_attention_layer.cpp"
    (tree / stale).write_bytes(ti.FILE_MARKER + b"gone from the project\n")
    manifest = tree / ti.MANIFEST_REL
    manifest.write_text(manifest.read_text() + stale + "\n")
    res = inject_cli(tree)
    assert res.returncode == 0 and f"removed   {stale}" in res.stdout
    assert not (tree / stale).exists()


def test_not_a_caffe_tree(tmp_path):
    res = inject_cli(tmp_path)
    assert res.returncode == 2 and "is not a Caffe source tree" in res.stderr


def test_every_shipped_source_carries_the_marker():
    files = ti.project_files(REPO)
    assert any(rel.endswith(".cu") for rel in files)
    assert any(rel.startswith("src/caffe/test/") for rel in files)
    for rel, src in files.items():
        assert src.read_bytes().startswith(ti.FILE_MARKER), src


def test_project_proto_parses_and_lists_three_fields():
    project = ti.load_project(REPO)
    assert project.message_names == ["ScaleInterpParameter", "SoftmaxOverScalesParameter",
                                     "WeightedScaleSumParameter"]
    assert [(f.name, f.number) for f in project.fields] == [
        (name, num) for name, (num, _) in OUR_FIELDS.items()]


def test_real_caffe_tree_is_injected(caffe_paths):
    res = inject_cli("--check", caffe_paths["CAFFE_SOURCE_DIR"])
    assert res.returncode == 0, res.stdout
