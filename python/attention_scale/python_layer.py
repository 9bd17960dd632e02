"""The base of every Python layer of the project: errors that reach the user under any driver.

In pycaffe an exception raised by a layer's setup/reshape/forward/backward comes back to the
caller's Python as usual. Under the `caffe` tool (train/test/time), the layer runs in an embedded
interpreter and the exception leaves it as a C++ `boost::python::error_already_set`; in the builds
where nothing catches that, the process aborts with only "terminate called after throwing an
instance of 'boost::python::error_already_set'". So when the process is not a Python interpreter,
the message is written to stderr before the exception goes on.

Under the tool, the first layer set up also says when the installed package differs from the
checkout the tool runs in (`caffe train` from the repository root after an edit or a pull
without `tools/setup.sh`): the nets would run the installed, older code.
"""

import functools
import os
import sys
from pathlib import Path

import caffe

from attention_scale.installed_sources import stale_message

_METHODS = ("setup", "reshape", "forward", "backward")


def _embedded() -> bool:
    """True when this interpreter is embedded in another program (the caffe tool)."""
    try:
        exe = os.path.basename(os.path.realpath("/proc/self/exe"))
    except OSError:  # no procfs: say it, a duplicate line costs less than a lost one
        return True
    return not exe.startswith("python")


_stale_checked = False


def _warn_if_stale():
    """Once per process: a warning when the current directory is a checkout whose sources
    differ from the installed package's."""
    global _stale_checked
    if _stale_checked:
        return
    _stale_checked = True
    message = stale_message(Path(__file__).resolve().parent, Path.cwd())
    if message:
        print(f"attention_scale: warning: {message}", file=sys.stderr, flush=True)


def _reporting(method):
    @functools.wraps(method)
    def wrapper(self, *args):
        if method.__name__ == "setup" and _embedded():
            _warn_if_stale()
        try:
            return method(self, *args)
        except Exception as exc:
            if _embedded():
                print(f"Python layer {type(self).__name__}.{method.__name__} failed: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise
    return wrapper


class ReportingLayer(caffe.Layer):
    """caffe.Layer whose subclasses' setup/reshape/forward/backward report their errors."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _METHODS:
            if name in vars(cls):
                setattr(cls, name, _reporting(vars(cls)[name]))
