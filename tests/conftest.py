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


# Tests write into temporary folders, never into the checkout: a file a test leaves in the
# repository (a log in the working directory, say) would end up committed. The repository's
# `git status` is compared at the end of the session with its state at the start.
_STATUS_KEY = pytest.StashKey()


def _repo_status():
    """The set of `git status --porcelain` lines of the checkout; None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                              "--untracked-files=all"], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


def pytest_sessionstart(session):
    session.config.stash[_STATUS_KEY] = _repo_status()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_STATUS_KEY, None)
    after = _repo_status() if before is not None else None
    if after is None:
        return
    new = sorted(after - before)
    if new:
        print("\nthe tests changed the checkout (a test must write under tmp_path):\n  "
              + "\n  ".join(new), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
