"""Reading Caffe's training log (glog lines of `caffe train`), as a whole or line by line.

The lines it understands (BVLC Caffe; forks such as DeepLab's print the same without "iter/s"):

    solver.cpp:239] Iteration 20 (2.5 iter/s, 8s/20 iters), loss = 1.23     display (smoothed;
    solver.cpp:327] Iteration 6000, loss = 0.4                               also the last one)
    solver.cpp:258]     Train net output #0: loss = 1.1 (* 1 = 1.1 loss)    that iteration's outputs
    sgd_solver.cpp:112] Iteration 20, lr = 0.001
    solver.cpp:330] Iteration 100, Testing net (#0)
    solver.cpp:397]     Test net output #0: accuracy = 0.87
    Snapshotting to binary proto file snapshots/x/train_iter_2000.caffemodel
    Resuming from snapshots/x/train_iter_2000.solverstate
    Optimization Done. / Optimization stopped early.
    max_iter: 6000                  (in the solver parameters printed at start)
    caffe.cpp:239] Starting Optimization / solver.cpp:289] Solving NAME   (the net is built,
                                    the weights loaded: the first iteration begins)

Where a log holds an iteration twice (a run resumed from an earlier snapshot than where the last
one stopped) the later value wins.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|-?inf))"
DISPLAY = re.compile(r"\] Iteration (\d+)(?: \(([^ ]+) iter/s, [^)]*\))?, loss = " + _NUMBER)
TRAIN_OUTPUT = re.compile(r"Train net output #\d+: (\S+) = " + _NUMBER)
TEST_START = re.compile(r"\] Iteration (\d+), Testing net \(#(\d+)\)")
TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = " + _NUMBER)
LEARNING_RATE = re.compile(r"\] Iteration (\d+), lr = " + _NUMBER)
SNAPSHOT = re.compile(r"Snapshotting to binary proto file (\S+)")
SOLVERSTATE = re.compile(r"Snapshotting solver state to binary proto file (\S+)")
RESTORE = re.compile(r"(?:Resuming from|Restoring previous solver status from) (\S+)")
MAX_ITER = re.compile(r"^\s*max_iter: (\d+)\s*$")
STARTED = re.compile(r"\] (?:Starting Optimization|Solving \S*)\s*$")
# glog's FATAL prefix: F + MMDD (glog before 0.6, e.g. `F1126 09:56:04.1 ...`) or YYYYMMDD (0.6
# and later, whose log_year_in_prefix is on by default: `F20261126 09:56:04.1 ...`), then the time.
FATAL = re.compile(r"^F(?:\d{4}|\d{8}) \d|Check failed|\*\*\* Check failure|Error|error:")


def _float(text):
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class Event:
    """What one line said, for a live display: kind is one of display, output, lr, test, snapshot,
    restore, done, stopped, fatal, max_iter."""
    kind: str
    iteration: Optional[int] = None
    name: Optional[str] = None
    value: Optional[float] = None
    text: str = ""


@dataclass
class TrainingLog:
    """Everything a log says, as series of (iteration, value)."""
    display_loss: Dict[int, float] = field(default_factory=dict)  # smoothed, as displayed
    iter_per_s: Dict[int, float] = field(default_factory=dict)
    outputs: Dict[str, Dict[int, float]] = field(default_factory=dict)  # Train net output
    test_outputs: Dict[str, Dict[int, float]] = field(default_factory=dict)
    learning_rate: Dict[int, float] = field(default_factory=dict)
    snapshots: List[str] = field(default_factory=list)
    solverstates: List[str] = field(default_factory=list)
    restored_from: List[str] = field(default_factory=list)
    max_iter: Optional[int] = None
    done: bool = False
    stopped_early: bool = False
    started: bool = False  # Caffe got past its setup (net, weights) to the iterations
    fatal: List[str] = field(default_factory=list)

    @property
    def last_iteration(self) -> Optional[int]:
        iterations = list(self.display_loss) + [i for s in self.outputs.values() for i in s]
        return max(iterations) if iterations else None

    def series(self, name, test=False) -> Tuple[List[int], List[float]]:
        """Sorted iterations and values of one output ("loss", "accuracy", ...)."""
        values = (self.test_outputs if test else self.outputs).get(name, {})
        iterations = sorted(values)
        return iterations, [values[i] for i in iterations]

    def loss_names(self):
        return [name for name in self.outputs if "loss" in name]

    def accuracy_names(self, test=False):
        source = self.test_outputs if test else self.outputs
        return [name for name in source if "acc" in name]


class LogParser:
    """Feed lines one at a time (a running training), or use parse_text/parse_file."""

    def __init__(self):
        self.log = TrainingLog()
        self._iteration = None  # of the last display line: the outputs that follow belong to it
        self._test_iteration = None
        self._in_solver_params = False

    def feed(self, line) -> List[Event]:
        log, events = self.log, []
        if "Initializing solver from parameters" in line:
            self._in_solver_params = True
        elif self._in_solver_params:
            match = MAX_ITER.match(line)
            if match:
                log.max_iter = int(match.group(1))
                events.append(Event("max_iter", value=log.max_iter))
            if line.startswith(("I", "W", "E", "F")) and "]" in line:
                self._in_solver_params = False
        if STARTED.search(line):
            log.started = True
        match = DISPLAY.search(line)
        if match:
            log.started = True
            iteration = self._iteration = int(match.group(1))
            log.display_loss[iteration] = _float(match.group(3))
            if match.group(2) is not None:
                log.iter_per_s[iteration] = _float(match.group(2))
            events.append(Event("display", iteration, "loss", log.display_loss[iteration], line))
            return events
        match = TRAIN_OUTPUT.search(line)
        if match and self._iteration is not None:
            name, value = match.group(1), _float(match.group(2))
            log.outputs.setdefault(name, {})[self._iteration] = value
            events.append(Event("output", self._iteration, name, value, line))
            return events
        match = TEST_START.search(line)
        if match:
            self._test_iteration = int(match.group(1))
            return events
        match = TEST_OUTPUT.search(line)
        if match and self._test_iteration is not None:
            name, value = match.group(1), _float(match.group(2))
            log.test_outputs.setdefault(name, {})[self._test_iteration] = value
            events.append(Event("test", self._test_iteration, name, value, line))
            return events
        match = LEARNING_RATE.search(line)
        if match:
            log.learning_rate[int(match.group(1))] = _float(match.group(2))
            events.append(Event("lr", int(match.group(1)), "lr", _float(match.group(2)), line))
            return events
        for pattern, store, kind in ((SNAPSHOT, log.snapshots, "snapshot"),
                                     (SOLVERSTATE, log.solverstates, "snapshot"),
                                     (RESTORE, log.restored_from, "restore")):
            match = pattern.search(line)
            if match:
                store.append(match.group(1))
                events.append(Event(kind, text=match.group(1)))
                return events
        if "Optimization Done." in line:
            log.done = True
            events.append(Event("done", text=line))
        elif "Optimization stopped early." in line:
            log.stopped_early = True
            events.append(Event("stopped", text=line))
        elif FATAL.search(line):
            log.fatal.append(line.rstrip("\n"))
            events.append(Event("fatal", text=line))
        return events


def parse_text(text) -> TrainingLog:
    parser = LogParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.log


def parse_file(path) -> TrainingLog:
    with open(path, errors="replace") as handle:
        parser = LogParser()
        for line in handle:
            parser.feed(line)
    return parser.log
