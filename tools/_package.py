"""Imported first by the tools that run the installed attention_scale package.

Instead of a traceback, a Python without the package is told where to get it; an install older
than the checkout (edited or pulled since `tools/setup.sh`) is named with a warning, since the
tools would run the installed code, not the files the user sees. The tools that build or run nets
with the setup's Caffe (or pack it) call uses_caffe() right after the import: they also warn when
its layers were compiled from other sources than the checkout's (the others never load Caffe).

Ctrl-C while the tool is still loading ends it with one line and exit status 130 (_ctrl_c).
"""
from _ctrl_c import TOOL as _TOOL  # first: it installs the Ctrl-C hook

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    import attention_scale
except ImportError:
    sys.exit(f"{_TOOL}: this Python ({sys.executable}) cannot import the attention_scale package. "
             f"Run the tools in the environment tools/setup.sh makes: `source .venv/bin/activate` "
             f"(or `.venv/bin/python tools/{_TOOL} ...`); for a Python of your own, "
             f"`python -m pip install {REPO}` (it needs pycaffe for the nets: docs/build.md)")

try:
    from attention_scale.installed_sources import stale_message
except ImportError:  # an install from before the record existed
    def stale_message(installed, repo):
        return (f"the attention_scale package in {installed} predates this checkout: run "
                "`bash tools/setup.sh` again")

_message = stale_message(Path(attention_scale.__file__).parent, REPO)
if _message:
    print(f"{_TOOL}: warning: {_message}", file=sys.stderr)


def _stale_layers():
    """The same for the layers compiled into the setup's Caffe (found without importing it)."""
    import importlib.util
    try:
        from attention_scale.caffe_build.builder import stale_layers_message
        spec = importlib.util.find_spec("caffe")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return stale_layers_message(spec.origin, REPO)


def uses_caffe():
    """For a tool that uses the setup's Caffe: a warning when its layers are not the checkout's."""
    message = _stale_layers()
    if message:
        print(f"{_TOOL}: warning: {message}", file=sys.stderr)
