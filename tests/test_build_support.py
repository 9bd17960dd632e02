"""The pieces of tools/build_caffe.py that do not need a Caffe build: mirrors, fixes, cache
keys, the verified source routes (a local HTTP server stands in for GitHub), the optional
libraries of a fork, the protobuf runtime, and --caffe-root on a synthetic fork-like tree."""
import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from pyhelpers import extract_all

REPO = Path(__file__).resolve().parents[1]
from attention_scale.caffe_build import (builder, caffe_source, compat, debian_source,
                                         toolchain, tree_copy)
from attention_scale.caffe_build import tree_features as tf
from attention_scale.caffe_build import tree_injection as ti


def build_cli(*args, env=None):
    return subprocess.run([sys.executable, str(REPO / "tools/build_caffe.py"), *map(str, args)],
                          capture_output=True, text=True, env=env)


def shell_content_hash(root: Path) -> str:
    """BUILD-FACTS.md's pipeline, run by the shell: the reference for content_digest."""
    out = subprocess.run("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum "
                         "| sha256sum", shell=True, cwd=root, capture_output=True, text=True,
                         check=True).stdout
    return out.split()[0]


# --- where the source comes from ---------------------------------------------------------------

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
    # An Ubuntu-style apt configuration names no Debian archive.
    (tmp_path / "sources.list").write_text(
        "deb http://archive.ubuntu.example/ubuntu jammy main universe\n")
    assert debian_source.debian_mirrors(tmp_path) == []


FAKE_APT_GET = """#!/bin/sh
# apt-get as a mirror that has lost bullseye would answer, and archive.debian.org as it would.
for arg; do case "$arg" in -oDir::Etc::SourceList=*) list=${arg#*=} ;; esac; done
echo "$*" >>"$APT_CALLS"
if ! grep -q archive.debian.org "$list"; then
  echo "E: The repository 'mirror bullseye Release' does not have a Release file." >&2; exit 100
fi
case "$*" in
  *" source "*) printf 'caffe source' >caffe_1.0.0+git20180821.99bd997.orig.tar.gz ;;
esac
"""


def test_debian_source_falls_back_to_archive_debian_org(tmp_path, monkeypatch):
    # Debian moves old releases off its mirrors to archive.debian.org: bullseye will go.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT_GET)
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("APT_CALLS", str(tmp_path / "calls"))
    monkeypatch.setattr(debian_source, "ORIG_SHA256",
                        hashlib.sha256(b"caffe source").hexdigest())
    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    downloads = tmp_path / "downloads"
    got = debian_source.fetch_orig_tarball(downloads, log=lambda *_: None, etc_apt=etc)
    assert got == downloads / debian_source.ORIG_TARBALL and got.read_bytes() == b"caffe source"
    calls = (tmp_path / "calls").read_text().splitlines()
    # the system's mirror first (update fails there), then the archive: update and source,
    # the archive's expired Valid-Until accepted (the signature and SHA-256 are still checked)
    assert len(calls) == 3 and calls[0].endswith("update")
    assert all("Check-Valid-Until=false" in c for c in calls[1:])
    assert sorted(p.name for p in downloads.iterdir()) == [debian_source.ORIG_TARBALL]


def test_debian_source_failure_names_every_mirror_tried(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'E: no network' >&2\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    with pytest.raises(debian_source.SourceUnavailable) as err:
        debian_source.fetch_orig_tarball(tmp_path / "dl", log=lambda *_: None, etc_apt=etc)
    assert "from http://mirror.example/debian:" in str(err.value)
    assert f"from {debian_source.ARCHIVE_MIRROR}:" in str(err.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_content_digest_is_the_documented_shell_pipeline(tmp_path):
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x.txt").write_bytes(b"x\n")
    (tmp_path / "B").write_bytes(b"")
    (tmp_path / "a.cpp").write_bytes(bytes(range(256)) * 50)
    (tmp_path / "deep/er").mkdir(parents=True)
    (tmp_path / "deep/er/z").write_text("z")
    assert caffe_source.content_digest(tmp_path) == shell_content_hash(tmp_path)


@pytest.fixture(scope="module")
def debian_tarball():
    """The Debian orig tarball that tools/setup.sh fetched into the build cache."""
    path = builder.cache_root() / "downloads" / debian_source.ORIG_TARBALL
    if not path.is_file():
        pytest.skip(f"{path} is not there (this cache was built from another source)")
    return path


def _retar(src: Path, dest: Path, top: str, change=None) -> Path:
    """A tarball in GitHub's layout (everything under `top`/) with the files of `src`."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w:gz", compresslevel=1) as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name in ("", "."):
                continue
            member.name = f"{top}/{name}"
            if data is not None and change is not None and name == change[0]:
                data = change[1](data)
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    return dest


@pytest.fixture(scope="module")
def github_layout(debian_tarball, tmp_path_factory):
    folder = tmp_path_factory.mktemp("github")
    top = f"caffe-{caffe_source.COMMIT}"
    good = _retar(debian_tarball, folder / caffe_source.GITHUB_TARBALL, top)
    bad = _retar(debian_tarball, folder / "tampered.tar.gz", top,
                 change=("src/caffe/net.cpp", lambda data: data + b"// one more line\n"))
    return good, bad


@pytest.fixture()
def http_server(github_layout):
    """Serves the two tarballs on 127.0.0.1, as GitHub would serve its archive."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(github_layout[0].parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_github_archive_through_a_local_server(http_server, tmp_path):
    no_apt = tmp_path / "etc-apt"
    no_apt.mkdir()
    dest, downloads = tmp_path / "src", tmp_path / "downloads"
    where = caffe_source.obtain_bvlc_tree(
        dest, downloads, url=f"{http_server}/{caffe_source.GITHUB_TARBALL}", etc_apt=no_apt,
        log=lambda msg: None)
    assert http_server in where
    assert shell_content_hash(dest) == caffe_source.CONTENT_SHA256
    assert (dest / "src/caffe/net.cpp").is_file() and not (dest / caffe_source.COMMIT).exists()
    assert (downloads / caffe_source.GITHUB_TARBALL).is_file()   # kept for the next run
    # A second tree comes from the cached download, without the server.
    where = caffe_source.obtain_bvlc_tree(tmp_path / "src2", downloads, url="http://127.0.0.1:9/x",
                                          etc_apt=no_apt, log=lambda msg: None)
    assert "cached" in where


def test_tampered_download_is_refused_with_both_hashes(http_server, github_layout, tmp_path):
    env = dict(os.environ, ATTENTION_SCALE_CACHE=str(tmp_path / "cache"),
               ATTENTION_SCALE_CAFFE_URL=f"{http_server}/tampered.tar.gz")
    res = build_cli("--fetch-source", tmp_path / "src", "--source-route", "download", env=env)
    assert res.returncode == 1
    unpacked = tmp_path / "check"
    with tarfile.open(github_layout[1]) as tar:
        extract_all(tar, unpacked, "data")
    got = shell_content_hash(unpacked / f"caffe-{caffe_source.COMMIT}")
    assert got in res.stderr and caffe_source.CONTENT_SHA256 in res.stderr, res.stderr
    assert not (tmp_path / "src").exists() and not (tmp_path / "src.partial").exists()
    # The bad download is not kept for the next run.
    assert not list((tmp_path / "cache" / "downloads").glob("*.tar.gz"))


def test_source_tarball_file(github_layout, debian_tarball, tmp_path):
    env = dict(os.environ, ATTENTION_SCALE_CACHE=str(tmp_path / "cache"))
    for n, tarball in enumerate((github_layout[0], debian_tarball)):
        res = build_cli("--fetch-source", tmp_path / f"src{n}", "--source-tarball", tarball,
                        env=env)
        assert res.returncode == 0, res.stderr
        assert shell_content_hash(tmp_path / f"src{n}") == caffe_source.CONTENT_SHA256
    res = build_cli("--fetch-source", tmp_path / "bad", "--source-tarball", github_layout[1],
                    env=env)
    assert res.returncode == 1 and "expected" in res.stderr
    assert caffe_source.CONTENT_SHA256 in res.stderr and not (tmp_path / "bad").exists()


def test_no_route_says_what_to_do(tmp_path):
    no_apt = tmp_path / "etc-apt"
    no_apt.mkdir()
    with pytest.raises(debian_source.SourceUnavailable) as err:
        caffe_source.obtain_bvlc_tree(tmp_path / "src", tmp_path / "dl",
                                      url="http://127.0.0.1:9/none.tar.gz", etc_apt=no_apt,
                                      log=lambda msg: None)
    text = str(err.value)
    assert "no Debian mirror" in text and "127.0.0.1:9" in text and "--source-tarball" in text
    assert not (tmp_path / "src").exists()


# --- toolchain ---------------------------------------------------------------------------------

@pytest.mark.parametrize("protoc,requirement", [
    ("libprotoc 3.12.4", "protobuf>=3.12,<3.21"),   # Ubuntu 22.04: old-style generated code
    ("libprotoc 3.20.3", "protobuf>=3.20"),
    ("libprotoc 3.21.12", "protobuf>=4.21"),        # Debian 12 and 13, Ubuntu 24.04
    ("libprotoc 25.3", "protobuf>=4.25"),
    ("libprotoc 28.2", "protobuf>=5.28"),
    ("libprotoc 31.1", "protobuf>=6.31"),
])
def test_protobuf_runtime_follows_protoc(protoc, requirement):
    assert toolchain.protobuf_requirement(toolchain.parse_version(protoc)) == requirement


def test_installed_runtime_loads_what_protoc_generates(tmp_path):
    proto = tmp_path / "t.proto"
    proto.write_text('syntax = "proto2";\npackage t;\nmessage M { optional int32 x = 1; }\n')
    subprocess.run(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(proto)],
                   check=True)
    res = subprocess.run([sys.executable, "-c", "import t_pb2; print(t_pb2.M(x=3).x)"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.stdout.strip() == "3", res.stderr
    res = build_cli("--print-protobuf-requirement")
    assert res.returncode == 0 and res.stdout.startswith("protobuf")


def _config_vars(**values):
    return lambda name: values.get(name)


def test_python_library_in_the_multiarch_folder(tmp_path):
    # Debian 11's Python 3.9 says LIBDIR=/usr/lib, LDLIBRARY=libpython3.9.so, but python3.9-dev
    # puts the library in /usr/lib/x86_64-linux-gnu (and links it from the config folder LIBPL).
    lib, multiarch = tmp_path / "usr/lib", tmp_path / "usr/lib/x86_64-linux-gnu"
    libpl = lib / "python3.9/config-3.9-x86_64-linux-gnu"
    libpl.mkdir(parents=True)
    multiarch.mkdir(parents=True, exist_ok=True)
    bullseye = _config_vars(LIBDIR=str(lib), LDLIBRARY="libpython3.9.so",
                            MULTIARCH="x86_64-linux-gnu", LIBPL=str(libpl))
    assert toolchain.python_library_candidates(bullseye) == [
        lib / "libpython3.9.so", multiarch / "libpython3.9.so", libpl / "libpython3.9.so"]
    # without python3.9-dev: none exists, the message names LIBDIR's
    assert toolchain.python_library(bullseye) == lib / "libpython3.9.so"
    (libpl / "libpython3.9.so").touch()
    assert toolchain.python_library(bullseye) == libpl / "libpython3.9.so"
    (multiarch / "libpython3.9.so").touch()
    assert toolchain.python_library(bullseye) == multiarch / "libpython3.9.so"
    # Debian 12's 3.11 names the multiarch folder as LIBDIR: it is looked at once, first
    bookworm = _config_vars(LIBDIR=str(multiarch), LDLIBRARY="libpython3.9.so",
                            MULTIARCH="x86_64-linux-gnu")
    assert toolchain.python_library_candidates(bookworm)[0] == multiarch / "libpython3.9.so"
    assert toolchain.python_library(_config_vars()) is None
    # and the interpreter running the tests has its library where pycaffe was linked against it
    assert Path(builder.python_facts()["library"]).exists()


def test_cmake_4_gets_the_policy_minimum():
    assert toolchain.cmake_policy_args((4, 0, 2)) == ["-DCMAKE_POLICY_VERSION_MINIMUM=3.5"]
    assert toolchain.cmake_policy_args((3, 25, 1)) == []
    cfg = builder.BuildConfig(project_root=REPO)
    py = builder.python_facts()
    args = builder.cmake_args(cfg, py, Path("/py"), Path("/p"), cmake_version=(4, 1, 0))
    assert "-DCMAKE_POLICY_VERSION_MINIMUM=3.5" in args
    assert "-DCMAKE_POLICY_VERSION_MINIMUM=3.5" not in builder.cmake_args(
        cfg, py, Path("/py"), Path("/p"), cmake_version=(3, 31, 6))


def test_cache_key_covers_the_build_inputs():
    cfg = builder.BuildConfig(project_root=REPO)
    py = builder.python_facts()
    cpu = builder.cmake_args(cfg, py, Path("/py"), Path("/prefix"))
    assert "-DCPU_ONLY=ON" in cpu and "-DBUILD_python_layer=ON" in cpu
    assert "-DUSE_OPENCV=OFF" in cpu and "-DUSE_LMDB=OFF" in cpu
    cuda = builder.cmake_args(builder.BuildConfig(project_root=REPO, cuda=True, cuda_archs=["90"]),
                              py, Path("/py"), Path("/prefix"))
    assert "-DCPU_ONLY=OFF" in cuda and "-DCUDA_ARCH_BIN=90" in cuda
    assert "-DUSE_CUDNN=OFF" in cuda
    assert py["library"].endswith((".so", ".a")) and Path(py["include"]).is_dir()
    # Pass-through options come last, so they win over the build's own.
    mine = builder.BuildConfig(project_root=REPO, extra_cmake_args=["-DUSE_LMDB=ON", "-DX=1"])
    assert builder.cmake_args(mine, py, Path("/py"), Path("/p"))[-2:] == ["-DUSE_LMDB=ON",
                                                                          "-DX=1"]


def test_cache_key_follows_the_compiler_cmake_will_use(tmp_path):
    """CMake compiles with $CXX / $CC where set: the key's compiler facts come from them, and
    without them stay the default c++'s alone (so the default build keeps its key)."""
    fake = tmp_path / "my-clang++"
    fake.write_text("#!/bin/sh\necho 'fake clang version 99.1'\n")
    fake.chmod(0o755)
    default = builder.compiler_facts({})
    assert list(default) == ["cxx"] and default["cxx"] != "missing"
    named = builder.compiler_facts({"CXX": str(fake), "CC": f"env {fake}"})
    assert named == {"cxx": "fake clang version 99.1", "cc": "fake clang version 99.1"}
    assert builder.compiler_facts({"CXX": str(tmp_path / "absent")})["cxx"] == "missing"


# --- compatibility fixes -----------------------------------------------------------------------

IO_CPP = "  coded_input->SetTotalBytesLimit(kProtoReadBytesLimit, 536870912);\n"


def test_compat_fixes_apply_once(tmp_path):
    (tmp_path / "src/caffe/util").mkdir(parents=True)
    io_cpp = tmp_path / "src/caffe/util/io.cpp"
    io_cpp.write_text(IO_CPP + "  cv::Mat m = cv::imread(f, CV_LOAD_IMAGE_COLOR);\n"
                      "  int k = CV_LOAD_IMAGE_COLORFUL;  // another name: left alone\n")
    applied = compat.apply_fixes(tmp_path, cuda=False)
    assert len(applied) == 2 and "SetTotalBytesLimit" in applied[0]
    assert io_cpp.read_text() == (
        "  coded_input->SetTotalBytesLimit(kProtoReadBytesLimit);\n"
        "  cv::Mat m = cv::imread(f, cv::IMREAD_COLOR);\n"
        "  int k = CV_LOAD_IMAGE_COLORFUL;  // another name: left alone\n")
    assert compat.apply_fixes(tmp_path, cuda=False) == []


def test_cuda_fixes_only_with_cuda(caffe_paths):
    # The cached Debian tree has had every fix applied: none of the old text is left.
    tree = Path(caffe_paths["CAFFE_SOURCE_DIR"])
    assert compat.apply_fixes(tree, cuda=True) == []


# --- what a fork needs -------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fork_like_tree(root: Path, proto: str = None) -> Path:
    """A DeepLab-v2-like tree: OpenCV used outside any #ifdef USE_OPENCV, matio included, LMDB
    and LevelDB guarded as in BVLC; io.cpp with the protobuf and OpenCV 4 incompatibilities.
    Its CMakeLists mimics Caffe's options and builds a stand-in `caffe` tool."""
    proto = proto or (Path(__file__).parent / "data/deeplab_like_caffe.proto").read_text()
    write(root / ti.PROTO_REL, proto)
    write(root / "include/caffe/layer.hpp", "#pragma once\n")
    write(root / "include/caffe/data_transformer.hpp",
          "#ifdef USE_OPENCV\n#include <opencv2/core/core.hpp>\n#endif\n"
          "void Transform(const cv::Mat& cv_img);  // unguarded use\n")
    write(root / "include/caffe/util/db_lmdb.hpp", "#ifdef USE_LMDB\n#include \"lmdb.h\"\n#endif\n")
    write(root / "src/caffe/util/db_leveldb.cpp",
          "#if defined(USE_LEVELDB) && 1\n#include <leveldb/db.h>\n#endif\n")
    write(root / "src/caffe/util/matio_io.cpp", '#include "matio.h"\n')
    write(root / "src/caffe/util/io.cpp", IO_CPP + "int flag = CV_LOAD_IMAGE_COLOR;\n")
    write(root / "tools/caffe.cpp", "#include <cstdio>\nint main() { std::puts(VERSION); }\n")
    write(root / "CMakeLists.txt", """cmake_minimum_required(VERSION 3.10)
project(FakeCaffe CXX)
option(USE_OPENCV "" ON)
option(USE_LMDB "" ON)
option(USE_LEVELDB "" ON)
if(NOT USE_OPENCV)
  message(FATAL_ERROR "this fork needs OpenCV")
endif()
file(READ ${PROJECT_SOURCE_DIR}/version.txt VERSION)
string(STRIP "${VERSION}" VERSION)
add_executable(caffe tools/caffe.cpp)
target_compile_definitions(caffe PRIVATE VERSION="${VERSION}")
install(TARGETS caffe DESTINATION bin)
file(WRITE ${PROJECT_BINARY_DIR}/options.txt "${USE_OPENCV} ${USE_LMDB} ${USE_LEVELDB}")
""")
    write(root / "version.txt", "one\n")
    write(root / ".git/HEAD", "ref: refs/heads/master\n")           # never copied
    write(root / "models/big.caffemodel", "weights")                  # never copied
    return root


def test_fork_needs_opencv_and_matio_and_bvlc_nothing(tmp_path, caffe_paths):
    tree = fork_like_tree(tmp_path / "fork")
    required = tf.required_features(tree)
    assert sorted(required) == ["OpenCV", "matio"]
    assert required["OpenCV"].where == "include/caffe/data_transformer.hpp:4"
    assert required["matio"].where == "src/caffe/util/matio_io.cpp:1"
    assert builder.system_packages(tree) == ["libopencv-dev", "libmatio-dev"]
    assert tf.required_features(Path(caffe_paths["CAFFE_SOURCE_DIR"])) == {}
    args = builder.feature_args(required)
    assert args == ["-DUSE_OPENCV=ON", "-DUSE_LMDB=OFF", "-DUSE_LEVELDB=OFF"]
    res = build_cli("--print-system-packages", "--caffe-root", tree)
    assert res.stdout.split() == ["libopencv-dev", "libmatio-dev"]


def test_missing_library_is_named_before_building(tmp_path, monkeypatch):
    tree = fork_like_tree(tmp_path / "fork")
    monkeypatch.setattr(builder, "include_dirs", lambda: [tmp_path / "no-headers"])
    with pytest.raises(builder.BuildError) as err:
        builder.check_features(tf.required_features(tree), [])
    text = str(err.value)
    assert "OpenCV" in text and "libopencv-dev" in text and "data_transformer.hpp:4" in text
    assert "matio" in text and "libmatio-dev" in text
    builder.check_features(tf.required_features(tree), ["-DOpenCV_DIR=/opt/cv", "-Dmatio=x"])


@pytest.mark.parametrize("line,named", [
    ("src/caffe/data_transformer.cpp:251:18: error: 'CV_8U' was not declared in this scope",
     "OpenCV"),
    ("io.cpp:6:10: fatal error: opencv2/core/core.hpp: No such file or directory", "OpenCV"),
    ("matio_io.cpp:10:10: fatal error: matio.h: No such file or directory", "matio"),
    ("/usr/bin/ld: cannot find -lmatio: No such file or directory", "libmatio"),
    # Clang's wording of the same
    ("io.cpp:6:10: fatal error: 'opencv2/core/core.hpp' file not found", "OpenCV's headers "
     "(opencv2/core/core.hpp)"),
    ("io.cpp:70:37: error: use of undeclared identifier 'CV_LOAD_IMAGE_COLOR'",
     "OpenCV: CV_LOAD_IMAGE_COLOR is used"),
    ("io.cpp:9:3: error: unknown type name 'IplImage'", "OpenCV: IplImage is used"),
    ("db.cpp:1:10: fatal error: 'lmdb.h' file not found", "LMDB's headers (lmdb.h)"),
    ("x.cpp:1:10: fatal error: 'no_such_lib/x.h' file not found", "the header no_such_lib/x.h"),
    ("x.cpp:1:10: fatal error: no_such_lib/x.h: No such file or directory",
     "the header no_such_lib/x.h"),
])
def test_build_failures_name_the_missing_piece(line, named):
    assert named in tf.diagnose(["[ 40%] Building CXX object x.o", line])


# --- --caffe-root: a build copy, rebuilt after an edit --------------------------------------------

def snapshot(tree: Path):
    return {str(p.relative_to(tree)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(tree.rglob("*")) if p.is_file()}


def test_sync_copies_only_what_changed(tmp_path):
    src = fork_like_tree(tmp_path / "fork")
    dst = tmp_path / "copy"
    first = tree_copy.sync_tree(src, dst, tmp_path)
    assert "src/caffe/util/io.cpp" in first.copied
    assert not (dst / ".git").exists() and not (dst / "models/big.caffemodel").exists()
    assert ".git/" in first.skipped and "models/big.caffemodel" in first.skipped
    compat.apply_fixes(dst, cuda=False)                     # the copy is fixed...
    fixed = (dst / "src/caffe/util/io.cpp").read_bytes()
    (dst / "src/caffe/layers").mkdir(parents=True)
    (dst / "src/caffe/layers/injected.cpp").write_text("ours")
    again = tree_copy.sync_tree(src, dst, tmp_path)
    assert not again.changed and again.digest == first.digest
    assert (dst / "src/caffe/util/io.cpp").read_bytes() == fixed   # ...and stays fixed
    write(src / "version.txt", "two\n")
    (src / "tools/caffe.cpp").unlink()
    edited = tree_copy.sync_tree(src, dst, tmp_path)
    assert edited.copied == ["version.txt"] and edited.deleted == ["tools/caffe.cpp"]
    assert edited.digest != first.digest and not (dst / "tools/caffe.cpp").exists()
    assert (dst / "src/caffe/layers/injected.cpp").read_text() == "ours"


def test_sync_copies_what_symlinks_out_of_the_tree_point_to(tmp_path):
    """A caffe.proto or a folder linked from outside the tree is copied as content, so the fixes
    and the layers written into the copy leave the user's files alone; links inside stay links."""
    src = fork_like_tree(tmp_path / "fork")
    outside = tmp_path / "outside"
    (outside / "util").mkdir(parents=True)
    (src / ti.PROTO_REL).rename(outside / "caffe.proto")
    (src / ti.PROTO_REL).symlink_to(outside / "caffe.proto")            # absolute
    (src / "src/caffe/util/io.cpp").rename(outside / "util/io.cpp")
    shutil.rmtree(src / "src/caffe/util")
    (src / "src/caffe/util").symlink_to("../../../outside/util")          # relative, leads out
    (src / "include/caffe/alias.hpp").symlink_to("layer.hpp")            # stays inside
    (src / "loop").symlink_to(tmp_path)                                  # back to an ancestor
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    dst = tmp_path / "copy"
    first = tree_copy.sync_tree(src, dst, tmp_path)
    assert not (dst / ti.PROTO_REL).is_symlink() and not (dst / "src/caffe/util").is_symlink()
    assert (dst / ti.PROTO_REL).read_bytes() == before[outside / "caffe.proto"]
    assert (dst / "src/caffe/util/io.cpp").read_bytes() == before[outside / "util/io.cpp"]
    assert os.readlink(dst / "include/caffe/alias.hpp") == "layer.hpp"
    assert not (dst / "loop").exists() and any(s.startswith("loop/") for s in first.skipped)
    assert compat.apply_fixes(dst, cuda=False)                         # io.cpp fixed in the copy
    ti.apply_plan(dst, ti.plan_injection(dst, REPO))
    assert "scale_interp_param" in (dst / ti.PROTO_REL).read_text()
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
    assert not tree_copy.sync_tree(src, dst, tmp_path).changed
    (outside / "util/io.cpp").write_text("edited outside\n")             # followed: recopied
    assert tree_copy.sync_tree(src, dst, tmp_path).copied == ["src/caffe/util/io.cpp"]


@pytest.fixture()
def fork_build(tmp_path, monkeypatch):
    """builder.build on the synthetic fork, in a private cache (numpy from this venv)."""
    cache = tmp_path / "cache"
    py = builder.python_facts()
    env = cache / f"buildenv-py{py['version']}"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (env / "bin" / "python").chmod(0o755)
    (env / ".ready").write_text("ok\n")
    headers = tmp_path / "include"
    write(headers / "opencv2/core/core.hpp", "")
    write(headers / "matio.h", "")
    monkeypatch.setattr(builder, "include_dirs", lambda: [headers])
    tree = fork_like_tree(tmp_path / "fork")

    def run():
        cfg = builder.BuildConfig(project_root=REPO, caffe_root=tree, cache=cache, jobs=1)
        return builder.build(cfg)
    return tree, run


def test_caffe_root_builds_a_copy_and_rebuilds_after_an_edit(fork_build, capfd):
    tree, run = fork_build
    before = snapshot(tree)
    first = run()
    assert first.rebuilt
    copy = first.source_dir
    assert copy != tree and (first.prefix / "bin/caffe").is_file()
    assert snapshot(tree) == before                           # the user's tree is untouched
    assert not (tree / ti.MANIFEST_REL).exists()
    # The copy has the fixes and the layers; OpenCV was switched on, LMDB/LevelDB off.
    assert "SetTotalBytesLimit(kProtoReadBytesLimit);" in (copy / "src/caffe/util/io.cpp").read_text()
    assert "cv::IMREAD_COLOR" in (copy / "src/caffe/util/io.cpp").read_text()
    assert "scale_interp_param" in (copy / ti.PROTO_REL).read_text()
    assert set(ti.project_files(REPO)) <= {str(p.relative_to(copy)) for p in copy.rglob("*")}
    assert (first.build_dir / "options.txt").read_text() == "ON OFF OFF"
    out = subprocess.run([str(first.prefix / "bin/caffe")], capture_output=True, text=True)
    assert out.stdout.strip() == "one"
    capfd.readouterr()
    assert not run().rebuilt                                  # warm: nothing to do
    assert "is up to date" in capfd.readouterr().err
    write(tree / "version.txt", "two\n")                     # an edit in the user's tree
    third = run()
    assert third.rebuilt and third.prefix == first.prefix     # same cache entry, incremental
    out = subprocess.run([str(third.prefix / "bin/caffe")], capture_output=True, text=True)
    assert out.stdout.strip() == "two"
    assert not run().rebuilt


def test_caffe_root_proto_clash_names_the_users_file_before_copying(fork_build):
    tree, run = fork_build
    proto = tree / ti.PROTO_REL
    proto.write_text(proto.read_text().replace(
        "message LayerParameter {\n",
        "message LayerParameter {\n  optional InterpParameter fork_param = 2016002;\n", 1))
    with pytest.raises(ti.InjectionConflict) as err:
        run()
    text = str(err.value)
    assert f"{proto} clashes" in text and "2016002" in text and "'fork_param'" in text
    cache = tree.parent / "cache"
    assert not any(p.name.startswith("caffe-") for p in cache.iterdir())   # nothing copied


def test_caffe_root_with_an_edited_injection_is_refused_in_its_terms(fork_build):
    """A tree injected by hand and then edited: the copy would build the checkout's layer instead
    of the edit; refused, naming the user's file, with a remedy this tool has (no --force)."""
    tree, run = fork_build
    ti.apply_plan(tree, ti.plan_injection(tree, REPO))
    rel = "src/caffe/layers/scale_interp_layer.cpp"
    with open(tree / rel, "a") as f:
        f.write("// my tweak\n")
    with pytest.raises(ti.InjectionConflict) as err:
        run()
    text = str(err.value)
    assert text.startswith(f"refusing to build {tree}:") and f"{rel} was edited after" in text
    assert "would not be built" in text and "run again with --force" not in text
    assert not any(p.name.startswith("caffe-") for p in (tree.parent / "cache").iterdir())
    (tree / rel).write_bytes((REPO / "caffe_layers/src/scale_interp_layer.cpp").read_bytes())
    assert run().rebuilt                                    # the edit undone: it builds


def test_caffe_root_build_failure_names_the_missing_piece(fork_build):
    tree, run = fork_build
    write(tree / "tools/caffe.cpp", '#include <no_such_lib/x.h>\nint main() {}\n')
    with pytest.raises(builder.BuildError) as err:
        run()
    assert "missing or incompatible: the header no_such_lib/x.h" in str(err.value)


# --- the cached build ----------------------------------------------------------------------------

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
    res = build_cli("--print-env")
    assert res.returncode == 0
    assert "is up to date" in res.stderr and "caffe build" not in res.stderr
    stamp = json.loads((Path(caffe_paths["CAFFE_PREFIX"]).parent / "stamp.json").read_text())
    assert stamp["layers"] == builder._injected_digest(REPO)
    assert stamp["source"] == {"bvlc": caffe_source.CONTENT_SHA256}


def test_bad_caffe_root_is_reported(tmp_path):
    res = build_cli("--caffe-root", tmp_path,
                    env={"ATTENTION_SCALE_CACHE": str(tmp_path / "cache"),
                         "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 1
    assert "is not a Caffe source tree" in res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_docs_makefile_config_sets_the_values_it_shows(tmp_path):
    """docs/build.md's Makefile.config, read by make itself: Caffe's Makefile compares with
    ifeq ($(OPENCV_VERSION), 3), which spaces kept before a trailing comment would fail."""
    text = (REPO / "docs/build.md").read_text()
    block = re.search(r"```make\n(.*?)```", text, re.S).group(1)
    (tmp_path / "Makefile.config").write_text(block)
    (tmp_path / "probe.mk").write_text(
        "include Makefile.config\nall:\n\t@echo '[$(CPU_ONLY)][$(BLAS)][$(USE_LMDB)]"
        "[$(USE_LEVELDB)][$(OPENCV_VERSION)][$(WITH_PYTHON_LAYER)][$(BUILD_DIR)]'\n")
    out = subprocess.run(["make", "-s", "-f", "probe.mk"], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[1][open][0][0][3][1][build]"


def test_compat_patch_for_building_by_hand(tmp_path):
    tree = fork_like_tree(tmp_path / "fork")
    original = (tree / "src/caffe/util/io.cpp").read_bytes()
    res = build_cli("--compat-patch", tree)
    assert res.returncode == 0 and "+++ b/src/caffe/util/io.cpp" in res.stdout
    assert (tree / "src/caffe/util/io.cpp").read_bytes() == original   # printed, not applied
    subprocess.run(["patch", "-p1", "-s"], input=res.stdout, text=True, cwd=tree, check=True)
    fixed = (tree / "src/caffe/util/io.cpp").read_text()
    assert "SetTotalBytesLimit(kProtoReadBytesLimit);" in fixed and "cv::IMREAD_COLOR" in fixed
    assert build_cli("--compat-patch", tree).stdout == ""               # nothing left to fix
    subprocess.run(["patch", "-R", "-p1", "-s"], input=res.stdout, text=True, cwd=tree,
                   check=True)
    assert (tree / "src/caffe/util/io.cpp").read_bytes() == original


# --- the top-level CMakeLists against both styles of CaffeConfig.cmake ---------------------------

def _configure(tmp_path, caffe_dir, source_dir, *extra):
    build = tmp_path / "b"
    res = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), f"-DCaffe_DIR={caffe_dir}",
                          f"-DCAFFE_SOURCE_DIR={source_dir}", *extra],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return build


def _flags(build: Path, target: str) -> str:
    return "".join(p.read_text() for p in (build / "CMakeFiles" / f"{target}.dir").glob("flags.make"))


def test_cmakelists_with_a_2016_style_caffe_config(caffe_paths, tmp_path):
    prefix, source = Path(caffe_paths["CAFFE_PREFIX"]), caffe_paths["CAFFE_SOURCE_DIR"]
    # What DeepLab-v2's installed CaffeConfig.cmake gives: an imported target with nothing
    # attached, and the include folders and definitions in variables.
    config = tmp_path / "old-config"
    write(config / "CaffeConfig.cmake", f"""
add_library(caffe SHARED IMPORTED)
set_target_properties(caffe PROPERTIES IMPORTED_LOCATION "{prefix}/lib/libcaffe.so")
set(Caffe_INCLUDE_DIRS "{prefix}/include;/usr/include/hdf5/serial")
set(Caffe_DEFINITIONS "-DCPU_ONLY;-DUSE_MATIO")
set(Caffe_LIBRARIES caffe)
set(Caffe_CPU_ONLY ON)
""")
    extra = []
    if shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists():
        nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
        extra = ["-DATTENTION_SCALE_CUDA_CHECK=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    build = _configure(tmp_path, config, source, *extra)
    flags = _flags(build, "attention_scale_tests")
    assert f"-I{prefix}/include" in flags and "-DCPU_ONLY" in flags and "-DUSE_MATIO" in flags
    if extra:   # the CUDA check finds Caffe's headers too (no "AS_CAFFE_INCLUDES-NOTFOUND")
        assert f"{prefix}/include" in _flags(build, "attention_scale_cuda_check")
        assert "NOTFOUND" not in _flags(build, "attention_scale_cuda_check")


def test_cmakelists_with_the_installed_bvlc_config(caffe_paths, tmp_path):
    prefix = Path(caffe_paths["CAFFE_PREFIX"])
    build = _configure(tmp_path, prefix / "share/Caffe", caffe_paths["CAFFE_SOURCE_DIR"])
    flags = _flags(build, "attention_scale_tests")
    assert f"{prefix}/include" in flags and "-DCPU_ONLY" in flags


# --- tools/install_system_deps.sh on a system without dpkg ----------------------------------------

def _path_without_dpkg(tmp_path, leave_out=()):
    """A PATH holding only the commands the script may use, dpkg and apt not among them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "grep", "cmake", "make", "c++", "protoc", "id", "sed", "cat"):
        found = shutil.which(tool)
        if found and tool not in leave_out:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_without_dpkg_packages_are_not_all_reported_missing(tmp_path):
    env = {"PATH": _path_without_dpkg(tmp_path), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    res = subprocess.run(["bash", str(REPO / "tools/install_system_deps.sh")], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "no dpkg here" in res.stderr and "libboost" not in res.stderr
    assert "missing" not in res.stderr


def test_without_dpkg_a_missing_tool_is_named(tmp_path):
    env = {"PATH": _path_without_dpkg(tmp_path, leave_out=("cmake",)), "PYTHON": sys.executable,
           "HOME": str(tmp_path)}
    res = subprocess.run(["bash", str(REPO / "tools/install_system_deps.sh"), "libmatio-dev"],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 1
    assert "missing commands: cmake" in res.stderr and "libmatio-dev" in res.stderr


# --- tools/cpp_tests.sh with an older CMake ----------------------------------------------------

def test_cpp_tests_run_ctest_where_cmake_3_18_finds_them(tmp_path):
    # CMake 3.18's ctest (Debian 11, Ubuntu 22.04 ships 3.22) ignores --test-dir: it looked in
    # the current folder, found no tests and exited 0, so the layers' C++ tests never ran. The
    # fake ctest below does the same; the script must run it inside the build folder and make
    # "no tests" a failure.
    (tmp_path / "tools").mkdir()
    shutil.copy(REPO / "tools/cpp_tests.sh", tmp_path / "tools/cpp_tests.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "mkdir", "nproc", "dirname", "touch"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "ctest.log"
    fakes = {
        "python3": 'echo "CAFFE_PREFIX=/p; CAFFE_SOURCE_DIR=/s"',
        # cmake -S . -B DIR ... configures DIR (with its CTestTestfile.cmake); --build does nothing
        "cmake": 'if [ "$1" = -S ]; then mkdir -p "$4"; touch "$4/CTestTestfile.cmake"; fi',
        "ctest": f'echo "$PWD $*" >> {log}\n'
                 'if [ -f CTestTestfile.cmake ]; then echo "100% tests passed"; exit 0; fi\n'
                 'echo "No tests were found!!!"\n'
                 'case " $* " in *" --no-tests=error "*) exit 8 ;; esac\nexit 0',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    res = subprocess.run(["bash", str(tmp_path / "tools/cpp_tests.sh")],
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "100% tests passed" in res.stdout
    cwd, args = log.read_text().strip().split(" ", 1)
    assert cwd == str(tmp_path / "build/cpp") and "--no-tests=error" in args


# --- protobuf 3.x's C++ extension in the caffe tool's embedded Python ---------------------------

@pytest.mark.parametrize("extension,preset,expected", [
    ("_message.cpython-39-x86_64-linux-gnu.so", None, "python"),  # pip's protobuf 3.20
    (None, None, ""),                                              # upb (>= 4.21): left alone
    ("_message.cpython-39-x86_64-linux-gnu.so", "cpp", "cpp"),     # the caller's choice stands
])
def test_caffe_wrapper_keeps_protobuf_3_cpp_out_of_the_tool(tmp_path, extension, preset,
                                                             expected):
    # On Debian 11 the tool's embedded Python segfaulted importing protobuf 3.20's C++
    # extension (PyInit__message), which bound to the system libprotobuf the tool had loaded.
    from attention_scale.caffe_build import venv_wiring
    site = tmp_path / "site"
    (site / "google/protobuf/pyext").mkdir(parents=True)
    if extension:
        (site / "google/protobuf/pyext" / extension).touch()
    tool = tmp_path / "tool"
    tool.write_text('#!/bin/sh\necho "impl=${PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION:-} '
                    'path=$PYTHONPATH args=$*"\n')
    tool.chmod(0o755)
    wrapper = tmp_path / "caffe"
    wrapper.write_text(venv_wiring._WRAPPER.format(site=site, pycaffe="/pycaffe", tool=tool))
    env = {"PATH": os.environ["PATH"]}
    if preset:
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = preset
    out = subprocess.run(["sh", str(wrapper), "train", "-solver", "s"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"impl={expected} path={site}:/pycaffe args=train -solver s"


def test_train_py_gives_a_caffe_of_the_users_pure_python_protobuf_for_a_cpp_runtime(
        monkeypatch):
    from google.protobuf.internal import api_implementation

    from attention_scale.training import runner
    monkeypatch.setattr(api_implementation, "Type", lambda: "cpp")
    assert runner.embedded_protobuf_env({}) == {
        "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    assert runner.embedded_protobuf_env({"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "cpp"}) == {}
    monkeypatch.setattr(api_implementation, "Type", lambda: "upb")
    assert runner.embedded_protobuf_env({}) == {}
