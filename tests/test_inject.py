"""tools/inject_layers.py and the proto injection, on synthetic BVLC- and DeepLab-style trees."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
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
    older = ti.FILE_MARKER + b"an older version\n"
    (tree / hpp).write_bytes(older)
    # as an older project version would have left it: its own bytes' hash in the manifest
    manifest = tree / ti.MANIFEST_REL
    manifest.write_text("".join(
        ti.manifest_text({hpp: older}) if line.split()[0] == hpp else line + "\n"
        for line in manifest.read_text().splitlines()))
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
    ('reserved "softmax_over_scales_param";', "reserves the name 'softmax_over_scales_param'"),
    ("optional group Legacy = 2016003 { optional int32 x = 1; }",
     "2016003 .* already used by 'legacy'"),
    ("message ScaleInterpParameter { optional int32 factor = 1; }",
     "LayerParameter defines its own ScaleInterpParameter inside it"),
]

# Injected regardless, each of these fails in protoc or compiles to a field of another type.
PROTOC_VERDICTS = [
    ('reserved "softmax_over_scales_param";', 'Field name "softmax_over_scales_param" is reserved'),
    ("optional group Legacy = 2016003 { optional int32 x = 1; }",
     "Field number 2016003 has already been used"),
    ("message ScaleInterpParameter { optional int32 factor = 1; }",
     ".caffe.LayerParameter.ScaleInterpParameter"),
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
    check = inject_cli("--check", tree)
    assert check.returncode == 2 and re.search(message, check.stderr), check.stderr


@pytest.mark.parametrize("change,message", [
    (lambda t: re.sub(r"(message LayerParameter \{.*?);\n\}", r"\1; }", t, count=1, flags=re.S),
     r"LayerParameter's closing '\}' \(line \d+\) must stand on a line of its own"),
    (lambda t: t.replace("message LayerParameter {", "message LayerParameter { \u00a7", 1),
     "unexpected character '\u00a7' at line \\d+"),
])
def test_a_proto_it_cannot_read_is_named_with_the_line(tmp_path, change, message):
    proto = (DATA / "deeplab_like_caffe.proto").read_text()
    tree = make_tree(tmp_path, change(proto))
    before = snapshot(tree)
    named = f"^inject_layers: {re.escape(str(tree / ti.PROTO_REL))}: {message}"
    res = inject_cli(tree)
    assert res.returncode == 2 and re.search(named, res.stderr), res.stderr
    assert snapshot(tree) == before
    if "unexpected" in message:   # --check reads the whole file too
        res = inject_cli("--check", tree)
        assert res.returncode == 2 and re.search(named, res.stderr), res.stderr


@pytest.mark.parametrize("line,verdict", PROTOC_VERDICTS)
def test_what_protoc_makes_of_those_clashes(tmp_path, line, verdict, monkeypatch):
    proto = (DATA / "deeplab_like_caffe.proto").read_text().replace(
        "  optional InterpParameter interp_param = 143;\n",
        f"  optional InterpParameter interp_param = 143;\n  {line}\n")
    monkeypatch.setattr(pi, "find_conflicts", lambda base, project: [])
    tree = make_tree(tmp_path, pi.inject(proto, ti.load_project(REPO)))
    res = subprocess.run(["protoc", f"-I{tree / 'src/caffe/proto'}",
                          f"--descriptor_set_out={tmp_path / 'set.pb'}", str(tree / ti.PROTO_REL)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        assert verdict in res.stderr, res.stderr
    else:
        fds = compile_proto(tree, tmp_path)
        assert layer_fields(fds)["scale_interp_param"][1] == verdict


@pytest.mark.parametrize("definition", ["enum ScaleInterpParameter { A = 0; }",
                                        "service ScaleInterpParameter { }"])
def test_refuses_a_foreign_top_level_definition_with_our_name(tmp_path, definition):
    proto = (DATA / "bvlc_like_caffe.proto").read_text() + f"\n{definition}\n"
    tree = make_tree(tmp_path, proto)
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 2
    kind = definition.split()[0]
    assert f"{kind} ScaleInterpParameter is already defined (line" in res.stderr, res.stderr
    assert snapshot(tree) == before


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
    check = inject_cli("--check", tree)
    assert check.returncode == 2 and f"conflict     {rel}" in check.stdout
    assert f"{rel} exists and was not written by this tool" in check.stderr


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


# --- hardening: pre-flight, rollback, the manifest, symlinks, line endings, oneof ----------------

def test_every_file_under_caffe_layers_include_is_copied(tmp_path):
    # A synthetic project whose headers include a util/ folder (and a .cuh).
    root = tmp_path / "project"
    marker = ti.FILE_MARKER.decode()
    for rel in ("caffe_layers/include/caffe/layers/a_layer.hpp",
                "caffe_layers/include/caffe/util/a_math.hpp",
                "caffe_layers/include/caffe/util/a_kernels.cuh",
                "caffe_layers/src/a_layer.cpp", "cuda/a_layer.cu",
                "caffe_layers/test/test_a_layer.cpp"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{marker}{rel}\n")
    (root / "caffe_layers/proto").mkdir(parents=True)
    (root / ti.PROJECT_PROTO_REL).write_bytes((REPO / ti.PROJECT_PROTO_REL).read_bytes())
    assert sorted(ti.project_files(root)) == [
        "include/caffe/layers/a_layer.hpp", "include/caffe/util/a_kernels.cuh",
        "include/caffe/util/a_math.hpp", "src/caffe/layers/a_layer.cpp",
        "src/caffe/layers/a_layer.cu", "src/caffe/test/test_a_layer.cpp"]
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    ti.apply_plan(tree, ti.plan_injection(tree, root))
    assert (tree / "include/caffe/util/a_math.hpp").read_text().endswith(
        "caffe_layers/include/caffe/util/a_math.hpp\n")
    assert "include/caffe/util/a_kernels.cuh" in (tree / ti.MANIFEST_REL).read_text().split()


def _unprivileged():
    """A command prefix that runs as nobody when this process is root (root ignores permission
    bits, and the read-only case must fail for real), or [] when not root."""
    if os.geteuid() != 0:
        return []
    for python in ("/usr/bin/python3", sys.executable):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python]
        probe = subprocess.run(cmd + ["-c", f"import os; os.stat({str(REPO / 'tools')!r})"],
                               capture_output=True)
        if probe.returncode == 0:
            return cmd
    pytest.skip("cannot run a process as nobody here (setpriv, or a Python nobody can run)")


def test_read_only_proto_folder_writes_nothing(tmp_path):
    prefix = _unprivileged()
    base = Path(tempfile.mkdtemp(prefix="as-readonly-", dir="/tmp"))
    try:
        tree = make_tree(base, (DATA / "deeplab_like_caffe.proto").read_text())
        for p in [base, *tree.rglob("*"), tree]:
            if p.is_dir():
                p.chmod(0o755)
        if prefix:
            subprocess.run(["chown", "-R", "65534:65534", str(tree)], check=True)
        (tree / "src/caffe/proto").chmod(0o555)
        before = snapshot(tree)
        res = subprocess.run([*(prefix or [sys.executable]), str(REPO / "tools/inject_layers.py"),
                              str(tree)], capture_output=True, text=True)
        assert res.returncode == 3, (res.stdout, res.stderr)
        assert "nothing was changed" in res.stderr and "src/caffe/proto" in res.stderr
        assert "Traceback" not in res.stderr
        assert snapshot(tree) == before
        assert not (tree / ti.MANIFEST_REL).exists()
    finally:
        (base / "caffe/src/caffe/proto").chmod(0o755)
        shutil.rmtree(base)


def test_a_write_that_fails_midway_is_undone(tmp_path, monkeypatch):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    (tree / "include/caffe/layers").rmdir()          # a folder the injection has to create
    before = snapshot(tree)
    dirs_before = sorted(str(p) for p in tree.rglob("*") if p.is_dir())
    real_write = ti.atomic_write
    calls = []

    def flaky(path, data, mode=None):
        calls.append(path)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_write(path, data, mode)
    monkeypatch.setattr(ti, "atomic_write", flaky)
    with pytest.raises(ti.CannotWrite) as err:
        ti.apply_plan(tree, ti.plan_injection(tree, REPO))
    assert "No space left" in str(err.value) and "undone" in str(err.value)
    assert {k: v[0] for k, v in snapshot(tree).items()} == {k: v[0] for k, v in before.items()}
    assert sorted(str(p) for p in tree.rglob("*") if p.is_dir()) == dirs_before


@pytest.mark.parametrize("entry", ["../outside.cpp", "{outside}", "src/caffe/../../outside.cpp",
                                   "src/caffe/layers/link/outside.cpp"])
def test_manifest_entries_outside_the_tree_are_refused(tmp_path, entry):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    outside = tmp_path / "outside.cpp"
    outside.write_bytes(ti.FILE_MARKER + b"not in the tree\n")
    (tree / "src/caffe/layers/link").symlink_to(tmp_path)
    assert inject_cli(tree).returncode == 0
    manifest = tree / ti.MANIFEST_REL
    manifest.write_text(manifest.read_text() + entry.format(outside=outside) + "\n")
    for args in ((tree,), ("--remove", tree)):
        res = inject_cli(*args)
        assert res.returncode == 2, res.stdout
        assert ti.MANIFEST_REL in res.stderr and "outside" in res.stderr
        assert outside.read_bytes().startswith(ti.FILE_MARKER)
    assert inject_cli("--check", tree).returncode == 2


def test_symlinked_proto_is_patched_at_its_target(tmp_path):
    original = (DATA / "deeplab_like_caffe.proto").read_bytes()
    shared = tmp_path / "shared" / "caffe.proto"
    shared.parent.mkdir()
    shared.write_bytes(original)
    tree = make_tree(tmp_path, "")
    (tree / ti.PROTO_REL).unlink()
    (tree / ti.PROTO_REL).symlink_to(shared)
    res = inject_cli(tree)
    assert res.returncode == 0 and f"patched {shared}" in res.stdout, res.stdout
    assert (tree / ti.PROTO_REL).is_symlink()
    assert layer_fields(compile_proto(tree, tmp_path))["scale_interp_param"][0] == 2016001
    assert inject_cli("--check", tree).returncode == 0
    assert inject_cli("--remove", tree).returncode == 0
    assert (tree / ti.PROTO_REL).is_symlink() and shared.read_bytes() == original


def test_dangling_proto_symlink_is_refused(tmp_path):
    tree = make_tree(tmp_path, "")
    (tree / ti.PROTO_REL).unlink()
    (tree / ti.PROTO_REL).symlink_to(tmp_path / "gone.proto")
    (tmp_path / "gone.proto").write_text("")   # check_tree needs it; then it goes
    (tmp_path / "gone.proto").unlink()
    res = inject_cli(tree)
    assert res.returncode == 2 and "is not a Caffe source tree" in res.stderr


@pytest.mark.parametrize("bom,crlf", [(True, True), (False, True), (True, False)])
def test_bom_and_crlf_are_kept_and_remove_restores_the_bytes(tmp_path, bom, crlf):
    text = (DATA / "deeplab_like_caffe.proto").read_text()
    original = (b"\xef\xbb\xbf" if bom else b"") + (text.replace("\n", "\r\n") if crlf
                                                      else text).encode()
    tree = make_tree(tmp_path, "")
    (tree / ti.PROTO_REL).write_bytes(original)
    assert inject_cli(tree).returncode == 0
    patched = (tree / ti.PROTO_REL).read_bytes()
    assert patched.startswith(b"\xef\xbb\xbf") == bom
    if crlf:
        assert patched.count(b"\n") == patched.count(b"\r\n")
    assert b"scale_interp_param" in patched
    assert inject_cli("--check", tree).returncode == 0
    assert inject_cli(tree).stdout.strip().endswith("nothing to do")
    assert inject_cli("--remove", tree).returncode == 0
    assert (tree / ti.PROTO_REL).read_bytes() == original


@pytest.mark.parametrize("block,number", [
    ("  oneof source {\n    string path = 2016002;\n    bytes data = 2016003;\n  }\n", 2016002),
    ("  map<string, int32> counts = 2016001;\n", 2016001),
])
def test_clash_inside_a_oneof_or_map_is_found_before_protoc(tmp_path, block, number):
    proto = (DATA / "bvlc_like_caffe.proto").read_text()
    layer_end = proto.index("\n}\n", proto.index("message LayerParameter")) + 1
    proto = proto[:layer_end] + block + proto[layer_end:]
    tree = make_tree(tmp_path, proto)
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 2 and f"field number {number}" in res.stderr, res.stderr
    assert snapshot(tree) == before


def test_a_symlinked_destination_is_refused(tmp_path):
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    rel = next(r for r in ti.project_files(REPO) if r.startswith("src/caffe/layers/"))
    elsewhere = tmp_path / "elsewhere.cpp"
    elsewhere.write_text("// a file of the user's\n")
    (tree / rel).symlink_to(elsewhere)
    before = elsewhere.read_text()
    res = inject_cli(tree)
    assert res.returncode == 2 and f"{rel} is a symlink" in res.stderr
    assert elsewhere.read_text() == before


@pytest.mark.parametrize("declaration, named", [
    ('syntax = "proto3";', 'syntax = "proto3" (line 2)'),
    ("syntax = 'proto3';", 'syntax = "proto3" (line 2)'),
    ('edition = "2023";', 'edition = "2023" (line 2)'),
])
def test_refuses_a_proto3_or_editions_caffe_proto_before_writing(tmp_path, declaration, named):
    # Our fields and messages are proto2 (optional, [default = ...]): injected into such a file
    # they made protoc fail at build time, inside our block. Refused first, naming the file.
    proto = (DATA / "bvlc_like_caffe.proto").read_text().replace('syntax = "proto2";', declaration)
    assert proto != (DATA / "bvlc_like_caffe.proto").read_text()
    tree = make_tree(tmp_path, proto)
    before = snapshot(tree)
    res = inject_cli(tree)
    assert res.returncode == 2, res.stdout + res.stderr
    target = tree / ti.PROTO_REL
    assert f"{target} clashes with the attention-to-scale parameters" in res.stderr
    assert f"it declares {named}, but the attention-to-scale fields and messages are proto2" \
        in res.stderr
    assert snapshot(tree) == before  # nothing written
    check = inject_cli("--check", tree)
    assert check.returncode == 2 and "conflict" in check.stdout, check.stdout + check.stderr
    with pytest.raises(pi.ProtoConflict,
                       match=f"^caffe.proto clashes .*\n  - it declares {re.escape(named)}"):
        pi.inject(proto, ti.load_project(REPO))


def test_a_proto3_injection_would_fail_in_protoc(tmp_path):
    # What the refusal spares: the proto2 injection of a proto3 file does not compile.
    proto = (DATA / "bvlc_like_caffe.proto").read_text()
    injected = pi.inject(proto, ti.load_project(REPO)).replace(
        'syntax = "proto2";', 'syntax = "proto3";')
    tree = make_tree(tmp_path, injected)
    res = subprocess.run(["protoc", f"-I{tree / 'src/caffe/proto'}",
                          f"--descriptor_set_out={tmp_path / 'set.pb'}", str(tree / ti.PROTO_REL)],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "Explicit default values are not allowed in proto3" in res.stderr, res.stderr


def test_syntax_statement_is_read_at_the_top_level_only():
    from attention_scale.caffe_build.protofile import declared_syntax
    assert declared_syntax("package caffe;\nmessage A { optional int32 b = 1; }\n") == \
        ("syntax", "proto2", 0)
    assert declared_syntax('// syntax = "proto3";\n/* edition = "2023"; */\nsyntax = "proto2";\n'
                           'message A {}\n') == ("syntax", "proto2", 3)
    assert declared_syntax('syntax = "proto3";\n') == ("syntax", "proto3", 1)


# --- audit s9b: what --check calls things, wrong roots, edited injected files -----------------

def test_check_says_not_injected_for_a_proto_that_is_there(tmp_path):
    """--check said "missing src/caffe/proto/caffe.proto" for a file that exists (MSG-9)."""
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    res = inject_cli("--check", tree)
    assert res.returncode == 1
    assert f"not injected {ti.PROTO_REL}" in res.stdout.splitlines()
    assert f"missing      {ti.PROTO_REL}" not in res.stdout


def test_a_root_that_is_no_directory_is_named_so(tmp_path):
    """/nope and a file were both "not a Caffe source tree: src/caffe/proto/caffe.proto is
    missing" (MSG-9)."""
    res = inject_cli(tmp_path / "nope")
    assert res.returncode == 2 and f"{tmp_path / 'nope'}: no such directory" in res.stderr
    (tmp_path / "net.prototxt").write_text("")
    res = inject_cli("--check", tmp_path / "net.prototxt")
    assert res.returncode == 2
    assert f"{tmp_path / 'net.prototxt'} is not a directory" in res.stderr, res.stderr


def test_an_edited_injected_file_is_not_overwritten_without_force(tmp_path):
    """A user's edit to an injected file was "outdated" and silently overwritten (MSG-10)."""
    tree = make_tree(tmp_path, (DATA / "bvlc_like_caffe.proto").read_text())
    assert inject_cli(tree).returncode == 0
    rel = "src/caffe/layers/scale_interp_layer.cpp"
    edited = (tree / rel).read_bytes() + b"// my edit\n"
    (tree / rel).write_bytes(edited)
    res = inject_cli("--check", tree)
    assert res.returncode == 1 and f"modified     {rel}" in res.stdout.splitlines()
    for args in ([], ["--remove"]):
        res = inject_cli(*args, tree)
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"{rel} was edited after it was injected (locally modified)" in res.stderr
        assert "--force" in res.stderr
        assert (tree / rel).read_bytes() == edited
    res = inject_cli("--force", tree)
    assert res.returncode == 0 and f"wrote     {rel}" in res.stdout
    assert inject_cli("--check", tree).returncode == 0
