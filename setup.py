"""Build and install the `attention_scale` package: `pip install .` in the repository root.

Besides the pure-Python modules under python/, the build
  * generates attention_scale/attention_scale_pb2.py from caffe_layers/proto/attention_scale.proto
    with protoc (Debian: protobuf-compiler), so the parameters are declared in one place only,
    and attention_scale/data/segmentation_data_pb2.py from the data layer's own .proto;
  * compiles the cython extension attention_scale.evaluation._confusion (confusion-matrix
    accumulation);
  * records a digest of every source file in the built package
    (attention_scale/installed_sources.py): the tools tell an install older than the checkout.
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO = ROOT / "caffe_layers" / "proto" / "attention_scale.proto"
PACKAGE_SRC = ROOT / "python" / "attention_scale"
# (.proto, subpackage of attention_scale its _pb2 module goes to)
PROTOS = [(PROTO, ""), (PACKAGE_SRC / "data" / "segmentation_data.proto", "data")]


def _installed_sources():
    """attention_scale/installed_sources.py, loaded by path: the package is not built yet."""
    spec = importlib.util.spec_from_file_location("_installed_sources",
                                                  PACKAGE_SRC / "installed_sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_pb2(package_dir):
    """Run protoc on every .proto of PROTOS, writing each _pb2.py into its place under package_dir."""
    for proto, subpackage in PROTOS:
        _protoc(proto, Path(package_dir) / subpackage)


def _protoc(proto, dest):
    protoc = shutil.which(os.environ.get("PROTOC", "protoc"))
    if protoc is None:
        raise SystemExit(
            f"setup.py: `protoc` not found on PATH; it generates {proto.stem}_pb2.py from "
            f"{proto.relative_to(ROOT)}. Install it (Debian/Ubuntu: apt-get install "
            "protobuf-compiler) or point the PROTOC environment variable at it.")
    if not proto.is_file():
        raise SystemExit(f"setup.py: {proto} is missing")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([protoc, f"--proto_path={proto.parent}", f"--python_out={dest}", proto.name],
                   check=True)


class BuildPyWithProto(build_py):
    """build_py that also generates the protobuf modules into the built package and records
    which sources it was built from."""

    def run(self):
        super().run()
        generate_pb2(Path(self.build_lib) / "attention_scale")
        if not getattr(self, "editable_mode", False):  # an editable install is never stale
            _installed_sources().write_record(Path(self.build_lib) / "attention_scale", ROOT)
        if getattr(self, "editable_mode", False):  # `pip install -e .` imports from python/
            generate_pb2(PACKAGE_SRC)


extensions = cythonize(
    [Extension("attention_scale.evaluation._confusion", ["python/attention_scale/evaluation/_confusion.pyx"],
               include_dirs=[numpy.get_include()],
               define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])],
    compiler_directives={"language_level": "3"},
)

setup(
    name="attention_scale",
    version="0.1.0",
    description="Attention to Scale (Chen et al., CVPR 2016) for Caffe: Python layers and tools",
    package_dir={"": "python"},
    packages=find_packages("python"),
    include_package_data=True,
    ext_modules=extensions,
    cmdclass={"build_py": BuildPyWithProto},
    python_requires=">=3.9",
    install_requires=["numpy>=2", "protobuf", "tqdm"],
    zip_safe=False,
)
