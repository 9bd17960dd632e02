"""tools/pack_portable.py: the stand-ins for pycaffe's unpacked image helpers, and a bundle that
runs pycaffe and a net with this project's layers from its own Python, with no venv."""

import subprocess
import sys
import tarfile
from pathlib import Path

from pyhelpers import extract_all

from attention_scale.caffe_build.portable import (PYCAFFE_STUBS, distribution_folders, pack,
                                                  stub_files)

REPO = Path(__file__).resolve().parents[1]


def test_stand_ins_import_and_raise_on_use(tmp_path):
    files = stub_files(PYCAFFE_STUBS, packages={"numpy"})
    assert sorted(files) == ["site/scipy/__init__.py", "site/scipy/ndimage.py",
                             "site/skimage/__init__.py", "site/skimage/io.py",
                             "site/skimage/transform.py"]
    assert stub_files(PYCAFFE_STUBS, packages={"skimage", "scipy"}) == {}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    code = ("import skimage.io\nfrom scipy.ndimage import zoom\n"
            "try:\n    zoom(1)\nexcept ImportError as err:\n    print(err)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site")})
    assert res.returncode == 0, res.stderr
    assert "scipy.ndimage.zoom: scipy was left out of this bundle" in res.stdout


def test_distribution_folders_follow_the_packed_packages(tmp_path):
    site = tmp_path / "site-packages"
    for folder, name, text in [("foo-1.0.dist-info", "top_level.txt", "foo\n_foo_c\n"),
                               ("bar_dist-2.1.dist-info", "RECORD",
                                "bar.py,sha256=x,10\nbar_dist-2.1.dist-info/METADATA,,\n"),
                               ("baz-3.dist-info", "top_level.txt", "baz\n"),
                               ("empty-1.dist-info", "METADATA", "")]:
        (site / folder).mkdir(parents=True)
        (site / folder / name).write_text(text)
    assert [p.name for p in distribution_folders(site, ["foo", "bar"])] == \
        ["bar_dist-2.1.dist-info", "foo-1.0.dist-info"]
    assert distribution_folders(site, ["_foo_c"])[0].name == "foo-1.0.dist-info"
    assert distribution_folders(site, ["qux"]) == []


def test_bundle_runs_a_net_of_the_layers_without_the_venv(tmp_path, caffe_paths):
    bundle = tmp_path / "b.tar.xz"
    libs = pack(bundle, caffe_paths["CAFFE_PREFIX"],
                next(p for p in sys.path if p.endswith("site-packages")),
                ["numpy", "google", "six"], preset=0)
    assert not any(Path(name).name.startswith(("libc.", "libcuda.", "libcublas"))
                   for name in libs)
    with tarfile.open(bundle) as tar:
        assert any(name.startswith("site/numpy-") and name.endswith(".dist-info")
                   for name in tar.getnames())
        extract_all(tar, tmp_path / "x", "tar")
    net = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
           'dim: 2 dim: 2 } } }\nlayer { name: "up" type: "ScaleInterp" bottom: "x" top: "y" '
           'scale_interp_param { height: 3 width: 3 } }\n')
    (tmp_path / "net.prototxt").write_text(net)
    code = ("import caffe, numpy as np, sys\n"
            "assert caffe.__file__.startswith(sys.argv[1]), caffe.__file__\n"
            "from importlib.metadata import version\n"
            "assert version('numpy') == np.__version__\n"
            "n = caffe.Net(sys.argv[2], caffe.TEST)\n"
            "n.blobs['x'].data[...] = [[[[0, 2], [4, 6]]]]\n"
            "n.forward()\nprint(n.blobs['y'].data.ravel().tolist())\n")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    res = subprocess.run(
        ["bash", "-c", f'source {tmp_path}/x/env.sh && GLOG_minloglevel=2 '
         f'python{version} -c "$0" {tmp_path}/x {tmp_path}/net.prototxt', code],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120)
    assert res.returncode == 0, res.stderr
    # corner-aligned 2 -> 3: the middle row and column are the means of their neighbours
    assert res.stdout.split("\n")[-2] == str([0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0])


def test_tool_refuses_bad_arguments(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "tools/pack_portable.py"),
                          str(tmp_path / "out.zip"), "--caffe-prefix", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no lib/ folder" in res.stderr
    (tmp_path / "lib").mkdir()
    res = subprocess.run([sys.executable, str(REPO / "tools/pack_portable.py"),
                          str(tmp_path / "out.zip"), "--caffe-prefix", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "must end in .tar.xz" in res.stderr
    assert not (tmp_path / "out.zip").exists()
