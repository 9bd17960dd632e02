"""The pieces of tools/build_caffe.py that do not need a build: mirrors, fixes, cache keys."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from attention_scale.caffe_build import builder, compat, debian_source


def test_mirrors_from_deb822_and_legacy_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://other.example/debian/ bookworm main\n"
        "deb http://mirror.example/debian bookworm-updates main\n")
    assert debian_source.debian_mirrors(tmp_path) == ["http://mirror.example/debian",
                                                      "http://other.example/debian"]


def test_no_mirror_configured(tmp_path):
    assert debian_source.debian_mirrors(tmp_path) == []


IO_CPP = "  coded_input->SetTotalBytesLimit(kProtoReadBytesLimit, 536870912);\n"


def test_compat_fixes_apply_once(tmp_path):
    (tmp_path / "src/caffe/util").mkdir(parents=True)
    io_cpp = tmp_path / "src/caffe/util/io.cpp"
    io_cpp.write_text(IO_CPP)
    applied = compat.apply_fixes(tmp_path, cuda=False)
    assert len(applied) == 1 and "SetTotalBytesLimit" in applied[0]
    assert io_cpp.read_text() == "  coded_input->SetTotalBytesLimit(kProtoReadBytesLimit);\n"
    assert compat.apply_fixes(tmp_path, cuda=False) == []


def test_cuda_fixes_only_with_cuda(caffe_paths, tmp_path):
    # The cached Debian tree has had every fix applied: none of the old text is left.
    tree = Path(caffe_paths["CAFFE_SOURCE_DIR"])
    for fix in compat.FIXES:
        assert fix.old not in (tree / fix.path).read_text(), fix.why


def test_cache_key_covers_the_build_inputs(monkeypatch):
    cfg = builder.BuildConfig(project_root=REPO)
    py = builder.python_facts()
    cpu = builder.cmake_args(cfg, py, Path("/py"), Path("/prefix"))
    assert "-DCPU_ONLY=ON" in cpu and "-DBUILD_python_layer=ON" in cpu
    cuda = builder.cmake_args(builder.BuildConfig(project_root=REPO, cuda=True, cuda_archs=["90"]), py,
                              Path("/py"), Path("/prefix"))
    assert "-DCPU_ONLY=OFF" in cuda and "-DCUDA_ARCH_BIN=90" in cuda
    assert "-DUSE_CUDNN=OFF" in cuda
    assert py["library"].endswith((".so", ".a")) and Path(py["include"]).is_dir()


def test_layer_digest_follows_the_sources(tmp_path):
    # Same files -> same digest; one changed byte -> another digest.
    root = tmp_path / "repo"
    for rel in ("caffe_layers/include/caffe/layers", "caffe_layers/src", "caffe_layers/test",
                "cuda", "caffe_layers/proto"):
        (root / rel).mkdir(parents=True)
    (root / "caffe_layers/proto/attention_scale.proto").write_text("// proto\n")
    cu = root / "cuda/x_layer.cu"
    cu.write_text("// Attention to Scale for Caffe: x\n")
    first = builder._injected_digest(root)
    assert builder._injected_digest(root) == first
    cu.write_text("// Attention to Scale for Caffe: y\n")
    assert builder._injected_digest(root) != first


def test_warm_build_is_a_no_op(caffe_paths):
    res = subprocess.run([sys.executable, str(REPO / "tools/build_caffe.py"), "--print-env"],
                         capture_output=True, text=True)
    assert res.returncode == 0
    assert "is up to date" in res.stderr and "caffe build" not in res.stderr
    stamp = json.loads((Path(caffe_paths["CAFFE_PREFIX"]).parent / "stamp.json").read_text())
    assert stamp["layers"] == builder._injected_digest(REPO)


def test_bad_caffe_root_is_reported(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "tools/build_caffe.py"),
                          "--caffe-root", str(tmp_path)], capture_output=True, text=True,
                         env={"ATTENTION_SCALE_CACHE": str(tmp_path / "cache"),
                              "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 1
    assert "is not a Caffe source tree" in res.stderr
