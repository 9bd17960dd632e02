"""Worker processes that make SegmentationData's batches ahead of the net, in shared memory.

Why processes, not a thread: under the `caffe` tool the embedded interpreter's main thread holds
the GIL for the whole run, also while the C++ layers compute, so a Python prefetch thread only
runs while Python code runs (benchmarks/data.md measures it). Separate processes overlap with
the net under both the caffe tool and pycaffe.

Why `python -m attention_scale.data.prefetch` started with subprocess, not multiprocessing:
inside the caffe tool sys.executable is not a Python interpreter (multiprocessing's spawn would
run the wrong program, and its resource tracker with it), and forking a process that has loaded
OpenBLAS and OpenCV thread pools is not safe. The workers are fresh interpreters (the running
one's, found by find_python) with the parent's sys.path.

Protocol: batch k goes to worker k mod W, into slot (k div W) mod depth of that worker's depth
slots of one shared-memory block (memfd; never a named file that could be left behind). Each
worker has a pipe pair: the parent sends ("batch", k, slot) or ("stop",); the worker answers
("ready", pid), ("done", k, slot) or ("error", k, type, message, traceback). A worker exits
when its pipe from the parent closes, so workers never outlive the net or a killed parent; they
ignore SIGINT (Ctrl-C is the parent's to handle: Caffe stops cleanly and snapshots).
"""

import mmap
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..errors import DataError
from .batches import BatchMaker, BatchSpec, Sample

PYTHON_ENV = "ATTENTION_SCALE_PYTHON"
READY_TIMEOUT_S = 120


class PrefetchError(RuntimeError):
    """A worker could not be started, or died; the message says which and how."""


def _running_in_python() -> bool:
    try:
        exe = os.path.basename(os.path.realpath("/proc/self/exe"))
    except OSError:
        exe = os.path.basename(sys.executable or "")
    return exe.startswith("python")


def find_python() -> str:
    """A Python interpreter of the running version: $ATTENTION_SCALE_PYTHON, sys.executable when
    this process is Python, else <prefix>/bin/pythonX.Y of the embedded interpreter's install."""
    override = os.environ.get(PYTHON_ENV)
    if override:
        return override
    if _running_in_python() and sys.executable:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in dict.fromkeys((sys.exec_prefix, sys.base_exec_prefix)):
        candidate = Path(prefix) / "bin" / f"python{version}"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise PrefetchError(
        f"no Python {version} interpreter found for the prefetch workers (this process, "
        f"{sys.executable}, is not one): set {PYTHON_ENV} to one, or use workers: 0")


def _shared_memory(size):
    """(fd, mmap) of an anonymous shared file: nothing to clean up however the process ends."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("attention_scale_prefetch")
    else:  # unlinked at once; the fd keeps it alive
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle = tempfile.TemporaryFile(dir=shm)
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, max(size, 1))
    return fd, mmap.mmap(fd, max(size, 1))


class SlotLayout:
    """Where slot i's data and label arrays lie in the shared block."""

    def __init__(self, spec: BatchSpec, count):
        self.data_shape, self.label_shape = spec.data_shape, spec.label_shape
        self.data_bytes = int(np.prod(self.data_shape)) * 4
        self.slot_bytes = self.data_bytes + int(np.prod(self.label_shape)) * 4
        self.count = count

    @property
    def size(self):
        return self.slot_bytes * self.count

    def views(self, buffer, slot):
        offset = slot * self.slot_bytes
        data = np.ndarray(self.data_shape, np.float32, buffer=buffer, offset=offset)
        label = np.ndarray(self.label_shape, np.float32, buffer=buffer,
                           offset=offset + self.data_bytes)
        return data, label


class WorkerPool:
    """Batches start, start + 1, ... made by `workers` processes, `depth` batches ahead each."""

    def __init__(self, spec: BatchSpec, samples, workers, depth, name="SegmentationData",
                 start=0):
        if workers < 1 or depth < 1:
            raise ValueError("WorkerPool needs workers >= 1 and depth >= 1")
        self.spec, self.workers, self.depth, self.name = spec, workers, depth, name
        self.layout = SlotLayout(spec, workers * depth)
        self._fd, self._buffer = _shared_memory(self.layout.size)
        self._procs, self._to_worker, self._from_worker = [], [], []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._to_worker,
                                           self._from_worker, self._fd)
        python = find_python()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = "1"
        config = {"spec": asdict(spec), "samples": [asdict(s) for s in samples],
                  "slots": self.layout.count, "fd": self._fd, "name": name}
        try:
            for worker in range(workers):
                self._start(python, env, dict(config, worker=worker))
            self.pids = [self._expect_ready(w) for w in range(workers)]
        except BaseException:
            self.close()
            raise
        self._next = start
        for k in range(start, start + self.layout.count):
            self._submit(k)

    def _start(self, python, env, config):
        from_child, child_out = os.pipe()
        child_in, to_child = os.pipe()
        try:
            proc = subprocess.Popen(
                [python, "-m", "attention_scale.data.prefetch", str(child_in), str(child_out)],
                pass_fds=(child_in, child_out, self._fd), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            for fd in (from_child, child_out, child_in, to_child):
                os.close(fd)
            raise PrefetchError(f"{self.name}: cannot start a prefetch worker with {python}: "
                                f"{exc}") from None
        os.close(child_in)
        os.close(child_out)  # so that the worker's death reads as end-of-file here
        self._procs.append(proc)
        self._to_worker.append(Connection(to_child, readable=False))
        self._from_worker.append(Connection(from_child, writable=False))
        self._to_worker[-1].send(config)

    def _died(self, worker, doing):
        proc = self._procs[worker]
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = "unknown (still running)"
        return PrefetchError(f"{self.name}: prefetch worker {worker} (pid {proc.pid}) exited "
                             f"with code {code} {doing}; its error, if any, is printed above")

    def _receive(self, worker, doing, timeout=None):
        conn = self._from_worker[worker]
        try:
            if timeout is not None and not conn.poll(timeout):
                raise PrefetchError(f"{self.name}: prefetch worker {worker} gave no answer in "
                                    f"{timeout} s {doing}")
            return conn.recv()
        except (EOFError, OSError):
            raise self._died(worker, doing) from None

    def _expect_ready(self, worker):
        message = self._receive(worker, "while starting", timeout=READY_TIMEOUT_S)
        if message[0] == "error":
            raise PrefetchError(f"{self.name}: prefetch worker {worker} failed to start: "
                                f"{message[2]}: {message[3]}")
        return message[1]

    def _slot(self, k):
        worker = k % self.workers
        return worker, worker * self.depth + (k // self.workers) % self.depth

    def _submit(self, k):
        worker, slot = self._slot(k)
        try:
            self._to_worker[worker].send(("batch", k, slot))
        except (BrokenPipeError, OSError):
            raise self._died(worker, f"before batch {k}") from None

    def next_batch(self, data_out, label_out) -> int:
        """Copy the next batch into data_out and label_out; returns its index."""
        k = self._next
        worker, slot = self._slot(k)
        message = self._receive(worker, f"while making batch {k}")
        if message[0] == "error":
            _, _, kind, text, trace = message
            if kind == "DataError":
                raise DataError(text)
            raise PrefetchError(f"{self.name}: prefetch worker {worker} failed on batch {k}: "
                                f"{kind}: {text}\n{trace}")
        if message[:3] != ("done", k, slot):
            raise PrefetchError(f"{self.name}: worker {worker} answered {message!r} for batch {k}")
        data, label = self.layout.views(self._buffer, slot)
        data_out[...] = data
        label_out[...] = label
        self._next = k + 1
        self._submit(k + self.layout.count)
        return k

    def close(self):
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def _shutdown(procs, to_worker, from_worker, fd):
    """Ask every worker to stop, reap it (kill after 5 s), close the pipes and the block."""
    for conn in to_worker:
        try:
            conn.send(("stop",))
        except OSError:
            pass
        conn.close()
    deadline = time.monotonic() + 5
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for conn in from_worker:
        conn.close()
    try:
        os.close(fd)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# The worker process: python -m attention_scale.data.prefetch IN_FD OUT_FD
# ---------------------------------------------------------------------------------------------

def worker_main(in_fd, out_fd) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import cv2
    cv2.setNumThreads(1)
    receive = Connection(in_fd, writable=False)
    send = Connection(out_fd, readable=False)
    try:
        config = receive.recv()
        spec = BatchSpec(**config["spec"])
        layout = SlotLayout(spec, config["slots"])
        buffer = mmap.mmap(config["fd"], max(layout.size, 1))
        maker = BatchMaker(spec, [Sample(**s) for s in config["samples"]])
        send.send(("ready", os.getpid()))
        while True:
            message = receive.recv()
            if message[0] == "stop":
                return 0
            _, k, slot = message
            data, label = layout.views(buffer, slot)
            try:
                maker.make(k, data, label)
            except Exception as exc:  # reported to the parent, which raises it in forward()
                send.send(("error", k, type(exc).__name__, str(exc), traceback.format_exc()))
                continue
            send.send(("done", k, slot))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return 0  # the parent is gone or closed the pool


if __name__ == "__main__":
    sys.exit(worker_main(int(sys.argv[1]), int(sys.argv[2])))
