"""Timing primitives of the speed benchmark: nets and plain callables timed in alternating rounds
(time_rounds: a change of machine load hits every contender alike; warm and cold runs recorded
apart) on the host's or the GPU's clock, and the copy bandwidth of the same process. What the
running pycaffe was built with is attention_scale.caffe_runtime.
"""

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..pycaffe import net_from_text
from .speed_nets import TOP, copy_net


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


class HostClock:
    """Laps of the host's wall clock, each mark after a `sync()` (the CPU needs none)."""

    def __init__(self, sync=None):
        self.sync = sync or no_sync
        self._marks = []

    def start(self, lead=None):
        """Begin a timed run (`lead`, one untimed pass for a GPU clock, is not run here)."""
        self.sync()
        self._marks = [time.perf_counter()]

    def mark(self):
        self.sync()
        self._marks.append(time.perf_counter())

    def laps_ms(self):
        return [1e3 * (b - a) for a, b in zip(self._marks, self._marks[1:])]


class EventClock:
    """Laps of the GPU's own clock: CUDA events recorded on the stream Caffe launches on.
    start(lead) launches `lead` (one untimed pass) before recording the first event, so the GPU
    is still busy when it reaches that event and the passes after it run back to back: the laps
    are what the GPU sustains, as in training, without the first launch's latency or the host's
    wait for a synchronization (which a wall clock would spread over the passes)."""

    def __init__(self, runtime, marks=3):
        self.runtime = runtime
        self._events = [runtime.event_create() for _ in range(marks)]
        self._count = 0

    def start(self, lead=None):
        self.runtime.synchronize()
        if lead is not None:
            lead()
        self._count = 0
        self.mark()

    def mark(self):
        if self._count == len(self._events):
            self._events.append(self.runtime.event_create())
        self.runtime.event_record(self._events[self._count])
        self._count += 1

    def laps_ms(self):
        events = self._events[:self._count]
        self.runtime.event_synchronize(events[-1])
        return [self.runtime.event_elapsed_ms(a, b) for a, b in zip(events, events[1:])]

    def close(self):
        for event in self._events:
            self.runtime.event_destroy(event)
        self._events = []


@dataclass
class NetRun:
    """A net with its inputs and top diff, timed forward and backward."""
    net: object
    inputs: dict
    top_diff: np.ndarray = None
    backward: bool = True
    forward_ms: list = field(default_factory=list)  # warm runs (see time_rounds)
    backward_ms: list = field(default_factory=list)
    cold_forward_ms: list = field(default_factory=list)  # first run of each round
    cold_backward_ms: list = field(default_factory=list)
    # Passes back to back per timed run (time / passes is recorded). On a GPU, kernel launches
    # return at once: several passes in one timed run measure what the kernels sustain, as in
    # training, rather than one launch's latency (see EventClock).
    passes: int = 1

    def prepare(self):
        for name, value in self.inputs.items():
            self.net.blobs[name].data[...] = value
        if self.backward:
            self.net.blobs[TOP].diff[...] = self.top_diff

    def run(self, clock, record=None):
        """One timed forward (+ backward) of `passes` passes each on `clock` (HostClock or
        EventClock); record: None, "warm" or "cold"."""
        last = len(self.net.layers) - 1

        def forward():
            self.net._forward(0, last)

        clock.start(lead=forward)
        for _ in range(self.passes):
            forward()
        clock.mark()
        if self.backward:
            for _ in range(self.passes):
                self.net._backward(last, 0)
            clock.mark()
        laps = clock.laps_ms()
        if record:
            prefix = "cold_" if record == "cold" else ""
            getattr(self, prefix + "forward_ms").append(laps[0] / self.passes)
            getattr(self, prefix + "backward_ms").append(
                laps[1] / self.passes if self.backward else 0.0)

    def results(self):
        """Copies of the top data and of every input's diff (after a backward)."""
        out = {"out": self.net.blobs[TOP].data.copy()}
        if self.backward:
            out.update({f"d{name}": self.net.blobs[name].diff.copy() for name in self.inputs})
        return out


@dataclass
class CallRun:
    """A plain callable (e.g. cv2.resize over the planes), timed as a forward."""
    call: object
    forward_ms: list = field(default_factory=list)
    cold_forward_ms: list = field(default_factory=list)

    def prepare(self):
        pass

    def run(self, clock, record=None):
        start = time.perf_counter()
        self.call()
        elapsed = 1e3 * (time.perf_counter() - start)
        if record:
            (self.cold_forward_ms if record == "cold" else self.forward_ms).append(elapsed)


def no_sync():
    pass


BLOCK = 3  # warm runs back to back per contender and round


def time_rounds(runs, repeats, block=BLOCK, warmup=2, clock=None):
    """Time every run of `runs` in rounds. After `warmup` untimed runs each, every round runs
    each contender in turn: one "cold" run (the other contenders ran just before it, so it
    starts from the caches they left) and then `block` "warm" runs back to back (each starts
    from the caches its own previous run left, as repeated runs of one net do). Rounds repeat
    until every run has `repeats` warm times; alternating the contenders round by round makes a
    change of the machine's load hit them alike. Returns, per run with results(), whether its
    results after the first and the last warm run were bit-identical. clock: HostClock (the
    default) or EventClock."""
    clock = clock or HostClock()
    for run in runs:
        run.prepare()
    for _ in range(warmup):
        for run in runs:
            run.run(clock)
    first = {}
    done = 0
    while done < repeats:
        count = min(block, repeats - done)
        for k, run in enumerate(runs):
            run.run(clock, "cold")
            for j in range(count):
                run.run(clock, "warm")
                if done == 0 and j == 0 and hasattr(run, "results"):
                    first[k] = run.results()
        done += count
    identical = {}
    for k, run in enumerate(runs):
        if k in first:
            last = run.results()
            identical[k] = all(np.array_equal(first[k][key], last[key], equal_nan=True)
                               for key in first[k])
    return identical


def median(values):
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# Copy bandwidth
# ---------------------------------------------------------------------------------------------


@dataclass
class Bandwidth:
    mode: str  # "cpu" or "gpu"
    mib: float  # size of the copied blob
    caffe_copy_gbs: float  # 2 x bytes / median time of the Power layer's caffe_copy
    numpy_copy_gbs: float = None  # CPU only: np.copyto of the same size, for comparison
    caffe_copy_ms: list = field(default_factory=list)
    numpy_copy_ms: list = field(default_factory=list)

    @property
    def reference_gbs(self):
        """The figure the memory-bound cases are compared with: Caffe's own copy."""
        return self.caffe_copy_gbs


def copy_bandwidth(caffe, mode="cpu", mib=256, repeats=10, clock=None, passes=1):
    """Copy bandwidth of this process: a Power layer (its forward is one caffe_copy: memcpy on the
    CPU, cudaMemcpy device to device on a GPU) of `mib` MiB, 2 x bytes (read + written) over the
    median time; on the CPU also numpy's copy of the same size."""
    count = int(mib * 2**20) // 4
    net = net_from_text(caffe, copy_net(count))
    data = np.random.default_rng(0).standard_normal(count, dtype=np.float32)
    run = NetRun(net, {"x": data.reshape(1, 1, 1, count)}, backward=False, passes=passes)
    runs = [run]
    numpy_run = None
    if mode == "cpu":
        source, target = data.copy(), np.empty_like(data)
        numpy_run = CallRun(lambda: np.copyto(target, source))
        runs.append(numpy_run)
    time_rounds(runs, repeats, clock=clock)
    if not np.array_equal(net.blobs[TOP].data.ravel(), data):
        raise AssertionError("the copy net did not copy its input")
    nbytes = 2 * 4 * count
    result = Bandwidth(mode, mib, nbytes / median(run.forward_ms) / 1e6,
                       caffe_copy_ms=[round(t, 3) for t in run.forward_ms])
    if numpy_run is not None:
        result.numpy_copy_gbs = nbytes / median(numpy_run.forward_ms) / 1e6
        result.numpy_copy_ms = [round(t, 3) for t in numpy_run.forward_ms]
    del net
    return result
