"""Make a virtual environment use the Caffe that was just built.

pycaffe is put on the venv's path with a .pth file (nothing is copied, so a rebuild is seen at
once), and `<venv>/bin/caffe` becomes a small wrapper around the built tool that lets the tool's
embedded Python (used by `type: "Python"` layers) import from the same venv.
"""
import subprocess
from pathlib import Path

from ..files import atomic_write

PTH_NAME = "caffe_built_from_source.pth"

# protobuf 3.x's C++ extension (pip's 3.20, the runtime for protoc 3.12: Debian 11, Ubuntu
# 22.04) carries its own copy of libprotobuf's C++ code, which binds to the system libprotobuf
# that the caffe tool has already loaded: importing it in the tool's embedded Python ends in a
# segfault (InitDescriptor, PyInit__message). Such an environment gets protobuf's pure-Python
# implementation there. protobuf >= 4.21 (upb) has no such extension and is left as it is.
# A shell snippet: {site} is the site-packages folder that holds `google/`.
PURE_PYTHON_PROTOBUF_SH = """if ls "{site}"/google/protobuf/pyext/_message*.so >/dev/null 2>&1; then
  : "${{PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION:=python}}"
  export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION
fi
"""

_WRAPPER = """#!/bin/sh
# The caffe tool built by tools/build_caffe.py. Its embedded Python runs `type: "Python"`
# layers: give it this environment's packages and pycaffe.
""" + PURE_PYTHON_PROTOBUF_SH + """\
PYTHONPATH="{site}:{pycaffe}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{tool}" "$@"
"""


class VenvError(RuntimeError):
    pass


def _venv_python_facts(venv: Path):
    python = venv / "bin" / "python"
    if not python.exists():
        raise VenvError(f"{venv} is not a virtual environment ({python} is missing)")
    out = subprocess.run([str(python), "-c", "import sys, sysconfig; "
                          "print(sysconfig.get_python_version()); "
                          "print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return out[0].strip(), Path(out[1].strip())


def wire_venv(venv: Path, prefix: Path, python_version: str) -> None:
    version, site = _venv_python_facts(venv)
    if version != python_version:
        raise VenvError(f"{venv} runs Python {version} but pycaffe was built for "
                        f"{python_version}; recreate the venv with python{python_version}")
    pycaffe = prefix / "python"
    (site / PTH_NAME).write_text(f"{pycaffe}\n")
    wrapper = venv / "bin" / "caffe"
    text = _WRAPPER.format(site=site, pycaffe=pycaffe, tool=prefix / "bin" / "caffe")
    atomic_write(wrapper, text, mode=0o755)
