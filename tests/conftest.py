"""Shared fixtures: where tools/build_caffe.py put the patched Caffe."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def caffe_paths():
    """CAFFE_PREFIX, CAFFE_SOURCE_DIR, CAFFE_BUILD_DIR of the (cached, up to date) build."""
    out = subprocess.run([sys.executable, str(REPO / "tools/build_caffe.py"), "--print-env"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines())
