"""Importing pycaffe the way every part of this package wants it.

glog reads GLOG_minloglevel once, when libcaffe loads: the first import decides whether a net's
long construction log is printed. The import here keeps it quiet unless the caller's environment
says otherwise, and leaves the environment as it found it, so that a `caffe train` child process
started later still logs its INFO lines (the training runner reads them).
"""

import os
import tempfile


class GpuUnavailable(ValueError):
    """A GPU was asked for where pycaffe cannot use one; the message says why."""


def import_caffe(gpu=None):
    """pycaffe, in CPU mode or in GPU mode on device `gpu`. A GPU that pycaffe cannot use (a
    CPU_ONLY build, no such device) raises GpuUnavailable: Caffe itself would end the process."""
    previous = os.environ.get("GLOG_minloglevel")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe
    finally:
        if previous is None:
            del os.environ["GLOG_minloglevel"]
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        from .caffe_runtime import gpu_unavailable_reason
        reason = gpu_unavailable_reason(int(gpu))
        if reason:
            raise GpuUnavailable(f"--gpu {gpu}: pycaffe cannot run on a GPU here: {reason}; "
                                 "leave --gpu out to run on the CPU")
        caffe.set_device(int(gpu))
        caffe.set_mode_gpu()
    return caffe


def net_from_text(caffe, text, phase=None, weights=None):
    """A pycaffe Net from prototxt text (TEST phase unless given), with `weights` copied in when
    given. Caffe reads nets from files only: the text goes through a temporary file, removed
    again whatever happens."""
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text)
    try:
        phase = caffe.TEST if phase is None else phase
        if weights is None:
            return caffe.Net(handle.name, phase)
        return caffe.Net(handle.name, phase, weights=str(weights))
    finally:
        os.unlink(handle.name)
