"""Training through the real `caffe train`: every merge, with and without E-Supv, in both layer
forms, learns a tiny VOC-layout data set (its loss falls); snapshot and resume continue at the
same iteration; Ctrl-C stops cleanly with a snapshot and no worker left behind; Caffe logs are
read and plotted.
"""

import io
import locale
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from attention_scale.data.toy_voc import make_toy_voc
from attention_scale.nets import generate, variants
from attention_scale.nets.solver import SolverOptions
from attention_scale.training import caffe_log, plots, runner
from pyhelpers import import_caffe

import_caffe()
REPO = Path(__file__).resolve().parents[1]
CAFFE = REPO / ".venv" / "bin" / "caffe"
ITERATIONS = 30
SMALL_VARIANTS = [v for v in variants.paper_variants() if v.scales in ((1.0,), (1.0, 0.75, 0.5))]
TEST_SOLVER = SolverOptions(type="Adam", base_lr=0.002, lr_policy="fixed", momentum=0.9,
                            momentum2=0.999, weight_decay=0.0005, iter_size=1,
                            max_iter=ITERATIONS, display=1, average_loss=1, snapshot=0,
                            random_seed=3)


def small_files(tmp, form, data, solver=TEST_SOLVER):
    root, train_list = data
    options = generate.GeneratorOptions(
        output_dir=str(tmp / f"prototxt-{form}"), form=form, backbone="small",
        data_root=str(root), train_list=str(train_list), snapshot_root=str(tmp / f"snap-{form}"),
        num_classes=4, batch_size=4, crop_size=49, seed=11, solver=solver)
    files = {}
    for variant in SMALL_VARIANTS:
        files.update(generate.variant_files(variant, options))
    # One prefetch worker each: two trainings run side by side on two cores.
    files = {path: text.replace("num_classes: 4", "num_classes: 4 workers: 1")
             for path, text in files.items()}
    generate.write(files, "/")
    return tmp / f"prototxt-{form}"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    train_list, _ = make_toy_voc(root, train=24, val=4, size=(56, 88), num_classes=4, seed=0)
    return root, train_list


def run_caffe_train(solver):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", GLOG_minloglevel="0")  # the log is parsed
    return subprocess.run([str(CAFFE), "train", "-solver", str(solver)], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    """{(form, variant folder): CompletedProcess} of every small variant, two at a time."""
    tmp = tmp_path_factory.mktemp("train")
    jobs = {}
    for form in ("cpp", "python"):
        folder = small_files(tmp, form, toy)
        for variant in SMALL_VARIANTS:
            if form == "python" and variant.merge is None:
                continue  # the baseline has none of our layers: its Python form is the same net
            jobs[(form, variant.folder)] = folder / variant.folder / "solver.prototxt"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(run_caffe_train, jobs.values())))
    return results


CASES = [(form, v.folder) for form in ("cpp", "python") for v in SMALL_VARIANTS
         if not (form == "python" and v.merge is None)]


@pytest.mark.parametrize("form,folder", CASES, ids=[f"{f}-{v}" for f, v in CASES])
def test_every_variant_trains_and_its_loss_falls(trained, form, folder):
    result = trained[(form, folder)]
    assert result.returncode == 0, result.stderr[-3000:]
    log = caffe_log.parse_text(result.stderr)
    assert log.done and not log.fatal, log.fatal
    iterations, loss = log.series("loss")  # the merged scores' loss
    assert iterations == list(range(ITERATIONS))
    first, last = np.mean(loss[:5]), np.mean(loss[-5:])
    assert last < 0.6 * first, f"loss {first:.3f} -> {last:.3f}"
    if "esupv" in folder:
        assert {"loss_res1", "loss_res075", "loss_res05"} <= set(log.outputs)
    if form == "python":
        assert 'module: "attention_scale.layers"' in result.stderr  # the net Caffe printed
        # Same data, seeds and numerics: the Python layers train like the C++ ones.
        _, cpp_loss = caffe_log.parse_text(trained[("cpp", folder)].stderr).series("loss")
        np.testing.assert_allclose(loss[:10], cpp_loss[:10], rtol=0.02)


# ---------------------------------------------------------------------------------------------
# Snapshot, resume, Ctrl-C
# ---------------------------------------------------------------------------------------------

def test_snapshot_then_resume_continues_at_the_same_iteration(tmp_path, toy, monkeypatch):
    # A caller that quietened glog (as pycaffe users often do) must not blind the runner, which
    # reads Caffe's INFO lines.
    monkeypatch.setenv("GLOG_minloglevel", "2")
    schedule = TEST_SOLVER.with_(type="SGD", base_lr=0.001, lr_policy="step", gamma=0.1,
                                 stepsize=15, momentum2=None, max_iter=10, snapshot=10)
    folder = small_files(tmp_path, "cpp", toy, schedule)
    solver = folder / "scales-1-0.75-0.5/attention/solver.prototxt"
    first = runner.train(solver, progress=False)
    prefix = tmp_path / "snap-cpp/scales-1-0.75-0.5/attention/train"
    assert first.last_iteration == 10
    assert Path(f"{prefix}_iter_10.solverstate").is_file()
    assert first.plot_path and first.plot_path.stat().st_size > 0

    longer = solver.with_name("solver20.prototxt")
    longer.write_text(solver.read_text().replace("max_iter: 10", "max_iter: 20"))
    second = runner.train(longer, progress=False)
    assert second.resumed_from == Path(f"{prefix}_iter_10.solverstate")
    assert "-snapshot" in second.command
    text = second.log_path.read_text().split("# tools/train.py")[-1]  # the second run's part
    resumed = caffe_log.parse_text(text)
    # the data layer goes on where the first run stopped: 10 iterations of one batch each
    assert "from batch 10 (resumed)" in text and "from batch" not in first.log_path.read_text(
        ).split("# tools/train.py")[1]
    iterations = sorted(resumed.display_loss)
    assert iterations[0] == 10 and iterations[-1] == 20
    # The restored iteration counter drives the schedule: 0.001 until 15, then 0.0001.
    assert resumed.learning_rate[14] == pytest.approx(0.001)
    assert resumed.learning_rate[15] == pytest.approx(0.0001)
    assert Path(f"{prefix}_iter_20.caffemodel").is_file()
    whole = caffe_log.parse_file(second.log_path)  # the log holds both runs
    assert sorted(whole.display_loss) == list(range(21))


def test_a_snapshot_of_another_net_is_refused_before_caffe_starts(tmp_path, toy):
    """The latest snapshot under a solver's prefix written by another net (a wider conv1_1 here;
    another variant's layers): refused with the layers and --restart named, before Caffe's
    "Cannot copy param ... shape mismatch" abort; the snapshots are left as they are."""
    folder = small_files(tmp_path, "cpp", toy, TEST_SOLVER.with_(max_iter=2))
    solver = folder / "scales-1-0.75-0.5/max/solver.prototxt"
    first = runner.train(solver, progress=False)
    state = Path(f"{tmp_path}/snap-cpp/scales-1-0.75-0.5/max/train_iter_2.solverstate")
    assert first.last_iteration == 2 and state.is_file()
    log_before = first.log_path.read_text()

    net = folder / "scales-1-0.75-0.5/max/train.prototxt"
    wider = net.with_name("wider.prototxt")
    wider.write_text(net.read_text().replace("num_output: 16", "num_output: 24", 1))
    other = solver.with_name("wider_solver.prototxt")
    other.write_text(solver.read_text().replace(str(net), str(wider)).replace(
        "max_iter: 2", "max_iter: 4"))
    assert str(wider) in other.read_text()
    with pytest.raises(runner.TrainingError) as err:
        runner.train(other, progress=False)
    message = str(err.value)
    assert message.startswith(f"resuming from {state}: written by another net"), message
    assert "conv1_1 (16 x 3 x 3 x 3 saved, 24 outputs in the net)" in message
    assert "--restart" in message
    assert first.log_path.read_text() == log_before and state.is_file()  # Caffe never ran

    # Another variant's net under the same prefix: its attention layers are not in the snapshot.
    attention = folder / "scales-1-0.75-0.5/attention/train.prototxt"
    other.write_text(solver.read_text().replace(str(net), str(attention)).replace(
        "max_iter: 2", "max_iter: 4"))
    with pytest.raises(runner.TrainingError, match=r"att_conv1 \(not in the snapshot\)"):
        runner.train(other, progress=False)
    # The net it was written by resumes (shared-parameter branches included).
    solver.write_text(solver.read_text().replace("max_iter: 2", "max_iter: 3"))
    assert runner.train(solver, progress=False).last_iteration == 3


def test_resuming_tells_the_data_layer_its_first_batch(tmp_path, monkeypatch):
    """iteration x iter_size from the snapshot's name (or, where the name lacks it, from the
    .solverstate itself); a fresh run starts at batch 0 even if the caller's environment says
    otherwise."""
    from caffe.proto import caffe_pb2

    fake = tmp_path / "caffe"
    fake.write_text('#!/bin/sh\necho "start=${ATTENTION_SCALE_DATA_START_BATCH:-unset}" >&2\n')
    fake.chmod(0o755)
    solver = tmp_path / "solver.prototxt"
    (tmp_path / "n.prototxt").write_text("")
    solver.write_text(f'net: "{tmp_path}/n.prototxt"\nmax_iter: 100\niter_size: 3\n'
                      f'snapshot_prefix: "{tmp_path}/snap/train"\n')
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap/train_iter_40.solverstate").write_bytes(
        caffe_pb2.SolverState(iter=40).SerializeToString())
    monkeypatch.setenv("ATTENTION_SCALE_DATA_START_BATCH", "7")

    def start(**kwargs):
        result = runner.train(solver, caffe=str(fake), progress=False, plot=False, **kwargs)
        return result.log_path.read_text().rsplit("start=", 1)[1].split()[0]

    assert start() == "120"  # the latest snapshot: iteration 40 x iter_size 3
    assert start(resume=False) == "unset"
    odd = tmp_path / "odd.solverstate"
    odd.write_bytes(caffe_pb2.SolverState(iter=5).SerializeToString())
    assert start(resume=odd) == "15"


def test_a_net_path_that_does_not_resolve_from_here_is_named(tmp_path, monkeypatch):
    """Caffe reads the net's path from the working directory: where it would exist from a
    folder above the solver (the repository root), that folder is named; a net that is nowhere
    simply does not exist (no word of the working directory)."""
    marker = tmp_path / "started"
    fake = tmp_path / "caffe"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    repo = tmp_path / "repo"
    (repo / "prototxt/baseline").mkdir(parents=True)
    (repo / "prototxt/baseline/train.prototxt").write_text("")
    solver = repo / "prototxt/baseline/solver.prototxt"
    solver.write_text('net: "prototxt/baseline/train.prototxt"\nmax_iter: 1\n')
    monkeypatch.chdir(tmp_path)  # not the repository root
    with pytest.raises(runner.TrainingError) as err:
        runner.train(solver, caffe=str(fake), progress=False, plot=False)
    assert str(err.value) == (f"{solver}: its net prototxt/baseline/train.prototxt is not there "
                              f"from {tmp_path.resolve()}: the path is relative to "
                              f"{repo.resolve()}; run from there")
    monkeypatch.chdir(repo)
    solver.write_text('net: "x.prototxt"\nmax_iter: 1\n')
    with pytest.raises(runner.TrainingError) as err:
        runner.train(solver, caffe=str(fake), progress=False, plot=False)
    assert str(err.value) == f"{solver}: its net x.prototxt does not exist"
    assert not marker.exists()


def test_several_gpus_with_a_python_data_layer_are_refused_before_caffe_starts(tmp_path):
    """Caffe's PythonLayer aborts under `caffe train -gpu 0,1`; a TEST-only Python layer and
    nets without Python layers do not matter."""
    marker = tmp_path / "started"
    fake = tmp_path / "caffe"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    fake.chmod(0o755)
    net = tmp_path / "net.prototxt"
    python = ('layer {{ name: "{0}" type: "Python" top: "{0}" {1}'
              'python_param {{ module: "attention_scale.data" layer: "SegmentationData" '
              'param_str: "source: \'l.txt\' root: \'r\'" }} }}\n')
    net.write_text(python.format("data", "") + python.format("val", "include { phase: TEST } "))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}"\nmax_iter: 1\nsnapshot_prefix: "{tmp_path}/s/x"\n')
    with pytest.raises(runner.TrainingError,
                       match=r"--gpu 0,1: Caffe's multi-GPU training .* train on one GPU "
                             r"\(--gpu 0\) \(.*net.prototxt: Python layer\(s\) 'data'\)"):
        runner.train(solver, caffe=str(fake), gpu="0,1", resume=False, progress=False,
                     plot=False)
    assert not marker.exists()
    runner.train(solver, caffe=str(fake), gpu="0", resume=False, progress=False, plot=False)
    assert marker.read_text().split()[-2:] == ["-gpu", "0"]
    net.write_text(python.format("val", "include { phase: TEST } "))
    runner.train(solver, caffe=str(fake), gpu="0,1", resume=False, progress=False, plot=False)
    assert marker.read_text().split()[-2:] == ["-gpu", "0,1"]


DATA_LAYER = ('layer {{\n  name: "data"\n  type: "Python"\n  top: "data"\n  top: "label"\n'
              '  python_param {{ module: "attention_scale.data" layer: "SegmentationData"\n'
              '    param_str: "{}" }}\n}}\n')
GOOD_NET = DATA_LAYER.format("source: \'l.txt\' root: \'r\' batch_size: 2") + \
    'layer {\n  name: "pool"\n  type: "Pooling"\n  bottom: "data"\n  top: "pool"\n' \
    '  pooling_param { pool: MAX kernel_size: 2 }\n}\n'


@pytest.mark.parametrize("edit,message", [
    (("kernel_size", "kernel_sise"), r"^{solver}: its net does not parse \(`caffe train` would "
     r"stop there\): cannot parse {net}: 14:29 : Message type \"caffe.PoolingParameter\" has no "
     r"field named \"kernel_sise\"\. Did you mean 'kernel_size'\?"),
    (("pool: MAX", "pool: MAXX"), r"^{solver}: its net does not parse .*: cannot parse {net}: "
     r"14:25 : .*has no value named MAXX\. Its values: MAX, AVE, STOCHASTIC\. Did you mean MAX\?$"),
    (("bottom:", "botom:"), r"^{solver}: its net does not parse .*: cannot parse {net}: 12:3 : "
     r".*\"caffe.LayerParameter\" has no field named \"botom\"\. Did you mean 'bottom'\?"),
    (("source:", "sourse:"), r"^{net} line 2: layer 'data': SegmentationData \(Python layer, "
     r"param_str .*field 'sourse' \(column 1\): .*Did you mean 'source'\?$"),
    (("batch_size: 2", "batch_size: 0"), r"^{net} line 2: layer 'data': SegmentationData .*: "
     r"batch_size must be >= 1, got 0$"),
])
def test_a_train_net_that_does_not_parse_is_named_before_caffe_starts(tmp_path, edit, message):
    """`caffe train` would abort with protobuf's bare message (or the data layer's, at setup):
    train.py names the file, the line and the likely name, and Caffe never starts."""
    marker = tmp_path / "started"
    fake = tmp_path / "caffe"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    net = tmp_path / "net.prototxt"
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'train_net: "{net}"\nmax_iter: 1\nsnapshot_prefix: "{tmp_path}/s/x"\n')
    net.write_text(GOOD_NET)
    runner.train(solver, caffe=str(fake), resume=False, progress=False, plot=False)
    assert marker.exists()  # the unedited net passes
    marker.unlink()
    log = (tmp_path / "s" / "train.log").read_text()
    net.write_text(GOOD_NET.replace(*edit))
    pattern = message.format(solver=re.escape(str(solver)), net=re.escape(str(net)))
    with pytest.raises(runner.TrainingError, match=pattern):
        runner.train(solver, caffe=str(fake), resume=False, progress=False, plot=False)
    assert not marker.exists() and (tmp_path / "s" / "train.log").read_text() == log


def test_train_py_refuses_a_misspelt_train_net_in_one_line(fake_run):
    """The net path as the solver gives it, from the working directory (as Caffe reads it)."""
    solver, prefix, run = fake_run
    net = solver.parent / "net.prototxt"
    net.write_text(GOOD_NET.replace("top: \"pool\"", "topp: \"pool\""))
    out = run()
    assert out.returncode == 1, out.stderr
    assert out.stderr == (f"train.py: {solver}: its net does not parse (`caffe train` would stop "
                          f"there): cannot parse {net}: 13:3 : Message type "
                          "\"caffe.LayerParameter\" has no field named \"topp\". Did you mean "
                          "'top'? (If not, the network was written for another Caffe's "
                          "caffe.proto.)\n")
    assert not (prefix.parent / "train.log").exists()  # caffe never started


def test_a_v1_train_net_still_reaches_caffe(tmp_path):
    """Caffe upgrades a V1 `layers { }` net when it loads it; the converter's refusal of V1
    nets does not apply to training."""
    marker = tmp_path / "started"
    fake = tmp_path / "caffe"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    net = tmp_path / "net.prototxt"
    net.write_text('layers { name: "pool" type: POOLING bottom: "data" top: "pool" }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}"\nmax_iter: 1\nsnapshot_prefix: "{tmp_path}/s/x"\n')
    runner.train(solver, caffe=str(fake), resume=False, progress=False, plot=False)
    assert marker.exists()


def _children(pid):
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# The demo's way: runner.train in a worker thread, where no signal handler can be set.
IN_A_THREAD = """import sys, threading
from attention_scale.training import runner
job = threading.Thread(target=runner.train, args=(sys.argv[1],),
                       kwargs=dict(progress=False, verbose=True))
job.start()
job.join()
"""


def _signalled_run(tmp_path, toy, steps, in_a_thread=False):
    """tools/train.py (in_a_thread: IN_A_THREAD) on a long run of the toy data, in a session of
    its own; `steps`: (regex, action) in order, each action called with (train.py's Popen, caffe
    pid) once a line of the output matches its regex (after iteration 3 for the first). Returns
    (Popen, output, snapshot folder, caffe pid, prefetch worker pids); asserts that none of them
    is left running."""
    long_run = TEST_SOLVER.with_(max_iter=100000, display=1)
    folder = small_files(tmp_path, "cpp", toy, long_run)
    solver = folder / "scales-1-0.75-0.5/max/solver.prototxt"
    command = ([sys.executable, "-c", IN_A_THREAD, str(solver)] if in_a_thread else
               [sys.executable, str(REPO / "tools/train.py"), str(solver), "--no-progress",
                "--verbose"])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pids, lines, caffe_pid = [], [], None
    # A run that never gets there must fail the test, not hang the suite.
    watchdog = threading.Timer(300, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for pattern, action in steps:
            for line in proc.stdout:
                lines.append(line)
                match = re.search(r"prefetch worker \(pid (\d+)\)", line)
                if match:
                    pids.append(int(match.group(1)))
                if re.search(pattern, line):
                    break
            assert lines and re.search(pattern, lines[-1]), "".join(lines[-30:])
            if caffe_pid is None:
                (caffe_pid,) = _children(proc.pid)
            action(proc, caffe_pid)
        rest, _ = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = "".join(lines) + rest
    (tmp_path / "output.txt").write_text(output)
    assert pids, output[-2000:]
    assert "Traceback" not in output  # the workers ignore SIGINT
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids + [caffe_pid]):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids + [caffe_pid]), "left running"
    return proc, output, tmp_path / "snap-cpp/scales-1-0.75-0.5/max", caffe_pid, pids


def _stopped_with_a_snapshot(output, snapshots):
    """Caffe stopped once, with a snapshot at the iteration train.py names."""
    assert output.count("Optimization stopped early") == 1, output[-2000:]
    stopped = re.search(r"stopped early after iteration (\d+);.*\n"
                        r"latest snapshot: \S+ \(iteration (\d+)\)", output)
    assert stopped and stopped.group(1) == stopped.group(2), output[-2000:]
    assert (snapshots / f"train_iter_{stopped.group(2)}.solverstate").is_file()
    assert "run the same command again to continue from there" in output
    return int(stopped.group(2))


def test_ctrl_c_stops_with_a_snapshot_and_leaves_no_worker(tmp_path, toy):
    """A terminal's Ctrl-C (the whole process group; Caffe, in a group of its own, is told by
    train.py): one stop, one snapshot, nothing killed; exit status 130 as a shell gives."""
    proc, output, snapshots, _, _ = _signalled_run(
        tmp_path, toy, [(r"Iteration 3\b", lambda p, _: os.killpg(p.pid, signal.SIGINT))])
    assert proc.returncode == 130, output[-1500:]
    _stopped_with_a_snapshot(output, snapshots)
    assert output.count("Ctrl-C: Caffe finishes this iteration, snapshots and stops") == 1
    assert output.count("Snapshotting solver state") == 1 and "killed" not in output


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_train_py_alone_stops_caffe_with_a_snapshot(tmp_path, toy, signum, status):
    """`kill -INT` / `kill` (SIGTERM: a scheduler, systemd) of the train.py process only: Caffe
    is told (it never gets the signal itself), snapshots and stops; train.py waits for it,
    leaves nothing running and exits 128 + the signal."""
    proc, output, snapshots, _, _ = _signalled_run(
        tmp_path, toy, [(r"Iteration 3\b", lambda p, _: os.kill(p.pid, signum))])
    assert proc.returncode == status, output[-1500:]
    _stopped_with_a_snapshot(output, snapshots)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"{name}: Caffe finishes this iteration, snapshots and stops" in output


def test_sigterm_to_the_process_group_stops_caffe_with_a_snapshot(tmp_path, toy):
    """`kill -- -PGID`, scancel, systemd's stop: the whole group. Caffe (which dies of SIGTERM
    at once) is not in it; train.py tells it, it snapshots and stops; 143."""
    proc, output, snapshots, caffe_pid, _ = _signalled_run(
        tmp_path, toy, [(r"Iteration 3\b", lambda p, _: os.killpg(p.pid, signal.SIGTERM))])
    assert proc.returncode == 143, output[-1500:]
    _stopped_with_a_snapshot(output, snapshots)
    assert "exited with code" not in output


def test_a_hangup_of_the_terminal_does_not_end_the_training(tmp_path, toy):
    """A closed terminal sends SIGHUP to the whole group: the prefetch workers died of it and
    Caffe aborted. Now only train.py gets it, passes it on (a snapshot), and training goes on
    until a later stop."""
    proc, output, snapshots, _, _ = _signalled_run(tmp_path, toy, [
        (r"Iteration 3\b", lambda p, _: os.killpg(p.pid, signal.SIGHUP)),
        (r"Snapshotting solver state to binary proto file \S+_iter_(\d+)", lambda p, _: None),
        (r"\] Iteration \d+ \(", lambda p, _: os.killpg(p.pid, signal.SIGINT))])
    assert "SIGHUP: passed on to Caffe" in output and "PrefetchError" not in output
    hup = int(re.search(r"Snapshotting solver state to binary proto file \S+_iter_(\d+)",
                        output).group(1))
    assert proc.returncode == 130, output[-1500:]
    assert _stopped_with_a_snapshot(output, snapshots) > hup


def test_caffe_does_not_outlive_a_killed_train_py(tmp_path, toy):
    """kill -9 of train.py (or a crash) cannot be forwarded: Caffe gets a SIGINT from the
    kernel when its parent dies (PR_SET_PDEATHSIG), snapshots and stops; no worker is left."""
    proc, output, snapshots, caffe_pid, _ = _signalled_run(
        tmp_path, toy, [(r"Iteration 3\b", lambda p, _: os.kill(p.pid, signal.SIGKILL))])
    assert proc.returncode == -signal.SIGKILL
    # (_signalled_run has checked that Caffe and the workers are gone.) It snapshotted:
    assert list(snapshots.glob("train_iter_*.solverstate")), sorted(snapshots.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_caffe_does_not_outlive_a_killed_process_that_trained_in_a_thread(tmp_path, toy, signum):
    """The demo's trainings run in threads, where no handler can forward a signal: a SIGTERM
    (`kill`) or SIGKILL of the demo ends it at once. Caffe still gets its SIGINT from the kernel
    (PR_SET_PDEATHSIG), snapshots and stops; nothing is left running."""
    proc, output, snapshots, _, _ = _signalled_run(
        tmp_path, toy, [(r"Iteration 3\b", lambda p, _: os.kill(p.pid, signum))],
        in_a_thread=True)
    assert proc.returncode == -signum, output[-1500:]
    assert list(snapshots.glob("train_iter_*.solverstate")), sorted(snapshots.iterdir())


def test_sighup_to_train_py_snapshots_and_training_goes_on(tmp_path, toy):
    """SIGHUP to train.py alone reaches Caffe (its -sighup_effect snapshot): a snapshot, then
    more iterations under train.py; a SIGTERM then stops it."""
    proc, output, snapshots, _, _ = _signalled_run(tmp_path, toy, [
        (r"Iteration 3\b", lambda p, _: os.kill(p.pid, signal.SIGHUP)),
        (r"Snapshotting solver state to binary proto file \S+_iter_(\d+)", lambda p, _: None),
        (r"\] Iteration \d+ \(", lambda p, _: os.kill(p.pid, signal.SIGTERM))])
    assert "SIGHUP: passed on to Caffe" in output
    hup = int(re.search(r"Snapshotting solver state to binary proto file \S+_iter_(\d+)",
                        output).group(1))
    assert (snapshots / f"train_iter_{hup}.solverstate").is_file()
    assert proc.returncode == 143, output[-1500:]
    assert _stopped_with_a_snapshot(output, snapshots) > hup  # it went on after the SIGHUP


def test_a_gpu_asked_of_a_cpu_only_caffe_is_explained(tmp_path, toy):
    """The real tools/train.py --gpu 0: a CPU_ONLY Caffe ends with a fatal line (glog's
    `F20261126 ...` here) that holds no "Check failed"; train.py names it and the fix."""
    folder = small_files(tmp_path, "cpp", toy)
    proc = subprocess.run([sys.executable, str(REPO / "tools/train.py"),
                           str(folder / "baseline/solver.prototxt"), "--gpu", "0",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    if "Cannot use GPU in CPU-only Caffe" not in proc.stderr:
        pytest.skip("this caffe tool is not CPU_ONLY")
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = proc.stderr.split("train.py: caffe train exited with code")[1]
    assert re.search(r"^F\d+ [\d:.]+ +\d+ common.cpp:\d+\] Cannot use GPU in CPU-only Caffe",
                     summary, re.M), summary
    assert "was built CPU_ONLY: leave --gpu out, or use a CUDA build" in summary
    assert "Traceback" not in proc.stderr


FAKE_CAFFE = """#!{python}
# A stand-in for `caffe train`: prints its arguments; FAKE_CAFFE=stop snapshots at iteration
# FAKE_ITER (default 146) as Caffe's SIGINT stop does, FAKE_CAFFE=wait waits for signals,
# =done is a whole run displayed at iteration 0 only, =quiet exits 0 having logged nothing.
import os, re, signal, sys, time
args = sys.argv[1:]
print("args:", " ".join(args), file=sys.stderr, flush=True)
if "-snapshot" in args:
    print("Resuming from", args[args.index("-snapshot") + 1], file=sys.stderr, flush=True)
mode = os.environ.get("FAKE_CAFFE", "stop")
if mode in ("fail", "fail-after-start"):  # Caffe's setup fails, or its first iteration does
    if mode == "fail-after-start":
        print("I1126 10:00:00.000000 1 caffe.cpp:239] Starting Optimization", file=sys.stderr)
    print("F1126 10:00:00.000000 1 net.cpp:1] Check failed: something", file=sys.stderr)
    sys.exit(1)
if mode == "fail-copy":  # the restored weights do not fit the net
    print("F1126 10:00:00.000000 1 net.cpp:759] Cannot copy param 0 weights from layer "
          "'conv1_1'; shape mismatch.  Source param shape is 16 3 3 3 (432); target param "
          "shape is 64 3 3 3 (1728). To learn this layer's parameters from scratch rather "
          "than copying from a saved net, rename the layer.", file=sys.stderr)
    sys.exit(134)
if mode == "fail-history":  # the snapshot's history does not fit (another solver type?)
    print("F1126 10:00:00.000000 1 sgd_solver.cpp:334] Check failed: state.history_size() == "
          "history_.size() (28 vs. 56) Incorrect length of history blobs.", file=sys.stderr)
    sys.exit(134)
if mode == "quiet":  # not a training at all (e.g. --caffe /bin/true)
    sys.exit(0)
if mode == "done":  # a whole run whose display (10) never reached past iteration 0
    print("I1126 10:00:00.000000 1 solver.cpp:48] Initializing solver from parameters:\\n"
          "max_iter: 4\\ndisplay: 10", file=sys.stderr)
    print("I1126 10:00:00.000000 1 solver.cpp:58] Solving net", file=sys.stderr)
    print("] Iteration 0, loss = 0.5", file=sys.stderr)
    print("] Optimization Done.", file=sys.stderr)
    sys.exit(0)
if mode == "stop":
    text = open(args[args.index("-solver") + 1]).read()
    prefix = re.search(r'snapshot_prefix: "([^"]+)"', text).group(1)
    n = os.environ.get("FAKE_ITER", "146")
    print(f"] Iteration {{n}}, loss = 0.5", file=sys.stderr)
    # what parses as Caffe's files: a NetParameter named "fake", a SolverState with iter: n
    varint = bytes(((int(n) >> s) & 0x7f) | (0x80 if int(n) >> (s + 7) else 0)
                   for s in range(0, max(int(n).bit_length(), 1), 7))
    for ext, what, data in ((".caffemodel", "binary proto file", b"\\x0a\\x04fake"),
                            (".solverstate", "solver state to binary proto file",
                             b"\\x08" + varint)):
        open(f"{{prefix}}_iter_{{n}}{{ext}}", "wb").write(data)
        print(f"] Snapshotting {{'to ' if ext == '.caffemodel' else ''}}{{what}} "
              f"{{prefix}}_iter_{{n}}{{ext}}", file=sys.stderr)
    print("] Optimization stopped early.", file=sys.stderr)
    sys.exit(0)
for signum in (signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, lambda n, f: print("got", signal.Signals(n).name, file=sys.stderr,
                                             flush=True))
print("waiting", file=sys.stderr, flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_run(tmp_path):
    """(solver, snapshot prefix, run(*args, env=...)): tools/train.py with a stand-in caffe."""
    caffe = tmp_path / "caffe"
    caffe.write_text(FAKE_CAFFE.format(python=sys.executable))
    caffe.chmod(0o755)
    (tmp_path / "net.prototxt").write_text("")
    solver = tmp_path / "solver.prototxt"
    prefix = tmp_path / "snap" / "train"
    solver.write_text(f'net: "{tmp_path}/net.prototxt"\nmax_iter: 400\n'
                      f'snapshot_prefix: "{prefix}"\n')
    prefix.parent.mkdir()

    def run(*args, env=None):
        return subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(solver),
                               "--caffe", str(caffe), "--no-progress", *map(str, args)],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, **(env or {})), cwd=REPO)
    return solver, prefix, run


def _write_weights(path):
    """A .caffemodel of one layer with one blob."""
    from caffe.proto import caffe_pb2

    model = caffe_pb2.NetParameter()
    model.layer.add(name="conv").blobs.add(data=[0.5]).shape.dim.append(1)
    path.write_bytes(model.SerializeToString())


def _snapshot_files(prefix, *iterations):
    """Sound snapshots: a .caffemodel and a .solverstate (with some history) naming it."""
    from caffe.proto import caffe_pb2

    for n in iterations:
        _write_weights(Path(f"{prefix}_iter_{n}.caffemodel"))
        state = caffe_pb2.SolverState(iter=n, learned_net=f"{prefix}_iter_{n}.caffemodel")
        state.history.add(data=[0.25] * 64).shape.dim.append(64)
        Path(f"{prefix}_iter_{n}.solverstate").write_bytes(state.SerializeToString())


def test_restart_moves_the_earlier_run_aside_and_names_the_command_that_continues(fake_run):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 200, 400)
    (prefix.parent / "train.log").write_text("the earlier run\n")
    (prefix.parent / "loss.png").write_text("png")
    (prefix.parent / "other_iter_5.solverstate").write_text("another prefix's")
    weights = prefix.parent.parent / "init.caffemodel"
    _write_weights(weights)
    out = run("--restart", "--weights", weights)
    assert out.returncode == 130, out.stderr  # Caffe stopped early: not a finished model
    (earlier,) = prefix.parent.glob("earlier-*")
    assert re.fullmatch(r"earlier-\d{8}-\d{6}", earlier.name)
    assert sorted(p.name for p in earlier.iterdir()) == [
        "loss.png", "train.log", "train_iter_200.caffemodel", "train_iter_200.solverstate",
        "train_iter_400.caffemodel", "train_iter_400.solverstate"]
    assert (earlier / "train.log").read_text() == "the earlier run\n"  # moved, not rewritten
    assert (prefix.parent / "other_iter_5.solverstate").is_file()  # not this solver's
    assert (f"--restart: moved the earlier run's snapshots (iterations 200, 400; 4 files), "
            f"train.log and loss.png to {earlier}/ (nothing was deleted)") in out.stderr
    log = (prefix.parent / "train.log").read_text()
    assert f"-weights {weights}" in log and "the earlier run" not in log  # afresh, own log
    # The hint is the command that continues: without --restart (it would start over) and
    # without --weights (ignored when resuming); other options kept.
    hint = re.search(r"^to continue from there: (.*)$", out.stdout, re.M)
    assert hint, out.stdout
    words = shlex.split(hint.group(1))
    assert words[:3] == ["python", "tools/train.py", str(solver)]
    assert "--restart" not in words and "--weights" not in words and "--resume" not in words
    assert "--caffe" in words and "--no-progress" in words
    again = subprocess.run([sys.executable] + words[1:], capture_output=True, text=True,
                           timeout=120, cwd=REPO, env=dict(os.environ, FAKE_CAFFE="stop",
                                                           FAKE_ITER="160"))
    assert f"Resuming from {prefix}_iter_146.solverstate" in again.stderr, again.stderr
    assert again.returncode == 130


def test_a_restart_whose_caffe_fails_in_its_setup_puts_the_earlier_run_back(fake_run):
    """A failed start (the net or the weights Caffe cannot load) neither leaves the earlier run's
    files set aside nor makes one more earlier-* folder at each try: they are put back, and the
    failed try's output follows the earlier log."""
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 200, 400)
    (prefix.parent / "train.log").write_text("the earlier run\n")
    (prefix.parent / "loss.png").write_text("png")
    before = sorted(p.name for p in prefix.parent.iterdir())
    state_400 = Path(f"{prefix}_iter_400.solverstate").read_bytes()
    for attempt in (1, 2):
        out = run("--restart", env={"FAKE_CAFFE": "fail"})
        assert out.returncode == 1, out.stderr
        assert "--restart: moved the earlier run's snapshots" in out.stderr
        assert re.search(r"^--restart: Caffe ended before its first iteration, so the earlier "
                         r"run's files are back where they were \(.*earlier-[\d-]+ removed\); "
                         rf"this try's output follows the earlier run's in {prefix.parent}/"
                         r"train.log$", out.stderr, re.M), out.stderr
        assert sorted(p.name for p in prefix.parent.iterdir()) == before
        assert Path(f"{prefix}_iter_400.solverstate").read_bytes() == state_400
        assert (prefix.parent / "loss.png").read_text() == "png"
        log = (prefix.parent / "train.log").read_text()
        assert log.startswith("the earlier run\n") and log.count("Check failed") == attempt
    out = run("--restart", "--log", prefix.parent / "mine.log", env={"FAKE_CAFFE": "fail"})
    assert "back where they were" in out.stderr and "this try's output" not in out.stderr
    assert (prefix.parent / "train.log").read_text().count("Check failed") == 2


def test_a_restart_whose_caffe_fails_after_starting_keeps_the_earlier_run_aside(fake_run):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 200)
    out = run("--restart", env={"FAKE_CAFFE": "fail-after-start"})
    assert out.returncode == 1, out.stderr
    (earlier,) = prefix.parent.glob("earlier-*")
    assert sorted(p.name for p in earlier.iterdir()) == ["train_iter_200.caffemodel",
                                                         "train_iter_200.solverstate"]
    assert "back where they were" not in out.stderr


@pytest.mark.parametrize("content,problem", [
    (b'net: "x.prototxt"\n', "is not a .caffemodel (a binary caffe.NetParameter)"),
    (b"", "holds no weights (no layer with blobs)")])
def test_weights_that_are_no_caffemodel_are_refused_before_caffe_starts(
        fake_run, content, problem):
    """Caffe would abort in its setup (`Check failed: ReadProtoFromBinaryFile`)."""
    solver, prefix, run = fake_run
    weights = prefix.parent.parent / "init.caffemodel"
    weights.write_bytes(content)
    out = run("--weights", weights)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"train.py: --weights {weights}: {weights} {problem}")
    assert len(out.stderr.splitlines()) == 1
    assert not (prefix.parent / "train.log").exists()  # caffe never started


def test_restart_with_nothing_earlier_moves_nothing(fake_run):
    solver, prefix, run = fake_run
    out = run("--restart")
    assert out.returncode == 130, out.stderr
    assert not list(prefix.parent.glob("earlier-*")) and "--restart: moved" not in out.stderr


def test_resume_of_an_older_snapshot_sets_the_later_ones_aside(fake_run):
    """--resume of iteration 100 while 200 and 400 exist: the run would overwrite them one by
    one as it passes their iterations, so they are moved aside first (as --restart does), and
    the run's own snapshot is then the latest: the hint drops --resume."""
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100, 200, 400)
    out = run("--resume", f"{prefix}_iter_100.solverstate")
    assert out.returncode == 130, out.stderr
    (earlier,) = prefix.parent.glob("earlier-*")
    assert sorted(p.name for p in earlier.iterdir()) == [
        f"train_iter_{n}.{ext}" for n in (200, 400) for ext in ("caffemodel", "solverstate")]
    assert (f"--resume: moved the later snapshots (iterations 200, 400; 4 files) to {earlier}/ "
            "(nothing was deleted): this run goes on from iteration 100 and would overwrite "
            "them") in out.stderr
    assert Path(f"{prefix}_iter_100.solverstate").is_file()
    hint = re.search(r"^to continue from there: (.*)$", out.stdout, re.M)
    assert hint and "--resume" not in shlex.split(hint.group(1)), out.stdout
    assert f"Resuming from {prefix}_iter_146.solverstate" in run().stderr  # the latest now


def test_a_resume_whose_caffe_fails_in_its_setup_puts_the_later_snapshots_back(fake_run):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100, 400)
    out = run("--resume", f"{prefix}_iter_100.solverstate", env={"FAKE_CAFFE": "fail"})
    assert out.returncode == 1, out.stderr
    assert "--resume: Caffe ended before its first iteration" in out.stderr
    assert Path(f"{prefix}_iter_400.solverstate").is_file()
    assert not list(prefix.parent.glob("earlier-*"))


def test_a_plain_stop_says_run_the_same_command_again(fake_run):
    solver, prefix, run = fake_run
    out = run()
    assert out.returncode == 130, out.stderr
    assert "run the same command again to continue from there" in out.stdout
    assert "stopped early after iteration 146;" in out.stdout


def test_second_stop_signal_kills_caffe_and_sighup_is_passed_on(fake_run):
    """With the stand-in caffe: SIGHUP and the first SIGINT reach it (it goes on: it ignores
    them), the second signal kills it; exit 130."""
    solver, prefix, run = fake_run
    proc = subprocess.Popen([sys.executable, str(REPO / "tools/train.py"), str(solver),
                             "--caffe", str(prefix.parent.parent / "caffe"), "--no-progress",
                             "--verbose"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, FAKE_CAFFE="wait"), cwd=REPO)
    lines = []
    # A line that never comes fails the test (its output closes) instead of hanging the run.
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()

    def wait_for(text):
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                return
        raise AssertionError("".join(lines))

    try:
        wait_for("waiting")
        (caffe_pid,) = _children(proc.pid)
        os.kill(proc.pid, signal.SIGHUP)
        wait_for("got SIGHUP")
        os.kill(proc.pid, signal.SIGINT)
        wait_for("got SIGINT")
        assert proc.poll() is None and _alive(caffe_pid)
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 130, output  # the first signal decides
    assert "SIGTERM again: Caffe killed" in output
    assert "killed before any iteration was logged" in output
    assert "this run wrote no snapshot: the same command starts where this one did" in output
    assert "Traceback" not in output and "exited with code" not in output
    assert not _alive(caffe_pid)


@pytest.mark.parametrize("gpu", ["abc", "-1", "0,", "0;1", "1.5", "all", "\uff10", "99999999999"])
def test_a_gpu_that_is_not_an_id_is_refused_before_caffe_starts(fake_run, gpu):
    """Caffe would abort with boost::bad_lexical_cast and no message of its own."""
    solver, prefix, run = fake_run
    out = run(f"--gpu={gpu}")
    assert out.returncode == 1
    assert out.stderr == (f"train.py: --gpu {gpu}: not a GPU id; GPU ids are non-negative "
                          "integers, comma-separated (e.g. --gpu 0); leave --gpu out to use "
                          "the solver's solver_mode\n")
    assert not (prefix.parent / "train.log").exists()  # caffe never started


def test_gpu_ids_are_passed_on_without_spaces():
    assert runner._gpu_ids(0) == "0" and runner._gpu_ids(" 1, 2 ") == "1,2"


def test_caffe_s_copy_failure_on_a_resume_names_the_snapshot_and_restart(fake_run):
    """A misfit the net's text cannot show (input channels): Caffe's abort advises renaming the
    layer, which is fine-tuning advice; on a resume train.py names the snapshot and --restart."""
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100)
    out = run(env={"FAKE_CAFFE": "fail-copy"})
    assert out.returncode == 1, out.stderr
    assert (f"the snapshot {prefix}_iter_100.solverstate was written by another net than this "
            "solver's: --restart sets it aside") in out.stderr
    assert "Traceback" not in out.stderr
    out = run(env={"FAKE_CAFFE": "fail-history"})
    assert (f"the snapshot {prefix}_iter_100.solverstate was written by another net than this "
            "solver's, or under another solver type: --restart sets it aside") in out.stderr


@pytest.mark.parametrize("exists", [True, False], ids=["weights-exist", "weights-missing"])
def test_weights_ignored_when_resuming_are_named(fake_run, exists):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100)
    weights = prefix.parent.parent / "init.caffemodel"
    if exists:
        weights.write_text("w")
    out = run("--weights", weights)
    assert f"resuming from {prefix}_iter_100.solverstate (iteration 100)" in out.stderr
    said = "ignored: " if exists else "no such file, and ignored anyway: "
    assert (f"--weights {weights}: {said}the weights come from the snapshot "
            f"{prefix}_iter_100.solverstate (--restart starts from --weights instead)") \
        in out.stderr
    assert "-weights" not in (prefix.parent / "train.log").read_text()


@pytest.mark.parametrize("option", ["--log", "--plot"])
@pytest.mark.parametrize("where", ["under-a-file", "sys"])
def test_an_output_that_cannot_be_written_is_one_line(fake_run, option, where):
    solver, prefix, run = fake_run
    blocker = prefix.parent.parent / "file"
    blocker.write_text("")
    name = "train.log" if option == "--log" else "loss.png"
    target = f"{blocker}/{name}" if where == "under-a-file" else f"/sys/{name}"
    out = run(option, target)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"train.py: {option} {target}: cannot write it (")
    assert f"; give a {option} FILE that can be written" in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_snapshot_folder_that_cannot_be_written_is_named(fake_run, tmp_path):
    solver, prefix, run = fake_run
    (tmp_path / "file").write_text("")
    solver.write_text(solver.read_text().replace(str(prefix), f"{tmp_path}/file/sub/train"))
    out = run()
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"train.py: the snapshot folder {tmp_path}/file/sub (from "
                                 f"snapshot_prefix in {solver}): cannot write it (")
    assert len(out.stderr.splitlines()) == 1


def test_signals_unit():
    """The handler alone: the first SIGINT/SIGTERM asks Caffe to stop with a SIGINT, SIGHUP is
    passed on as it is and counts for nothing, the second stop signal kills."""
    class Fake:
        def __init__(self):
            self.sent, self.dead = [], False

        def send_signal(self, signum):
            self.sent.append(signum)

        def poll(self):
            return -9 if self.dead else None

        def kill(self):
            self.dead = True

    fake = Fake()
    handler = runner._Signals(fake)
    handler._handler(signal.SIGHUP, None)
    handler._handler(signal.SIGTERM, None)
    assert fake.sent == [signal.SIGHUP, signal.SIGINT] and not fake.dead
    assert handler.stop_signal == signal.SIGTERM
    handler._handler(signal.SIGHUP, None)
    assert not fake.dead
    handler._handler(signal.SIGINT, None)
    assert fake.dead and handler.killed and handler.stop_signal == signal.SIGTERM


class _BusyStderr:
    """A stderr in the middle of a write: Python 3.13 raises when a signal handler re-enters
    a buffered stream that way (seen in the Debian 13 proof, where Ctrl-C arrived mid-print)."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def write(self, text):
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

    def flush(self):
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")


def test_ctrl_c_message_does_not_reenter_a_busy_stderr(monkeypatch):
    class Running:
        def poll(self):
            return None

        def send_signal(self, signum):
            assert signum == signal.SIGINT

        def kill(self):
            raise AssertionError("the first Ctrl-C must not kill Caffe")

    read_end, write_end = os.pipe()
    try:
        monkeypatch.setattr(sys, "stderr", _BusyStderr(write_end))
        runner._Signals(Running())._handler(signal.SIGINT, None)
        os.close(write_end)
        write_end = None
        with os.fdopen(read_end) as pipe:
            read_end = None
            assert "Ctrl-C: Caffe finishes this iteration, snapshots and stops" in pipe.read()
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)


def test_a_diverging_run_is_stopped_with_a_message(tmp_path, toy):
    wild = TEST_SOLVER.with_(type="SGD", base_lr=50.0, momentum2=None, max_iter=200)
    folder = small_files(tmp_path, "cpp", toy, wild)
    with pytest.raises(runner.TrainingError, match=r"loss became NaN at iteration \d+"):
        runner.train(folder / "baseline/solver.prototxt", progress=False, plot=False)


# ---------------------------------------------------------------------------------------------
# Reading and plotting logs
# ---------------------------------------------------------------------------------------------

LOG = """I1125 10:00:00.000000  1 solver.cpp:48] Initializing solver from parameters:
base_lr: 0.001
max_iter: 6000
net: "prototxt/x/train.prototxt"
I1125 10:00:01.000000  1 caffe.cpp:239] Starting Optimization
I1125 10:00:02.000000  1 solver.cpp:239] Iteration 0 (0 iter/s, 1.2s/20 iters), loss = 3.5
I1125 10:00:02.000000  1 solver.cpp:258]     Train net output #0: accuracy = 0.25
I1125 10:00:02.000000  1 solver.cpp:258]     Train net output #1: loss = 3.0 (* 1 = 3.0 loss)
I1125 10:00:02.000000  1 solver.cpp:258]     Train net output #2: loss_res1 = 0.5 (* 1 = 0.5 loss)
I1125 10:00:02.000000  1 sgd_solver.cpp:112] Iteration 0, lr = 0.001
I1125 10:00:09.000000  1 solver.cpp:239] Iteration 20 (2.5 iter/s, 8s/20 iters), loss = 1.5
I1125 10:00:09.000000  1 solver.cpp:258]     Train net output #0: accuracy = 0.75
I1125 10:00:09.000000  1 solver.cpp:258]     Train net output #1: loss = 1.25 (* 1 = 1.25 loss)
I1125 10:00:09.000000  1 solver.cpp:258]     Train net output #2: loss_res1 = nan (* 1 = nan loss)
I1125 10:00:09.000000  1 sgd_solver.cpp:112] Iteration 20, lr = 1e-05
I1125 10:00:10.000000  1 solver.cpp:330] Iteration 20, Testing net (#0)
I1125 10:00:11.000000  1 solver.cpp:397]     Test net output #0: accuracy = 0.8
I1125 10:00:12.000000  1 solver.cpp:464] Snapshotting to binary proto file snap/x_iter_20.caffemodel
I1125 10:00:12.000000  1 sgd_solver.cpp:284] Snapshotting solver state to binary proto \
file snap/x_iter_20.solverstate
# tools/train.py 2026-11-25 10:01:00: caffe train -solver s -snapshot snap/x_iter_20.solverstate
I1125 10:01:01.000000  2 caffe.cpp:235] Resuming from snap/x_iter_20.solverstate
I1125 10:01:02.000000  2 solver.cpp:239] Iteration 20, loss = 1.0
I1125 10:01:02.000000  2 solver.cpp:258]     Train net output #1: loss = 0.75 (* 1 = 0.75 loss)
I1125 10:01:03.000000  2 solver.cpp:311] Optimization stopped early.
"""


def test_log_parser_by_hand():
    log = caffe_log.parse_text(LOG)
    assert log.max_iter == 6000
    assert log.started and not caffe_log.parse_text(LOG.split("Starting")[0]).started
    assert log.display_loss == {0: 3.5, 20: 1.0}  # a repeated iteration: the later run wins
    assert log.iter_per_s == {0: 0.0, 20: 2.5}
    assert log.series("loss") == ([0, 20], [3.0, 0.75])
    assert log.series("accuracy") == ([0, 20], [0.25, 0.75])
    assert math.isnan(log.outputs["loss_res1"][20])
    assert log.series("accuracy", test=True) == ([20], [0.8])
    assert log.learning_rate == {0: 0.001, 20: 1e-05}
    assert log.snapshots == ["snap/x_iter_20.caffemodel"]
    assert log.solverstates == ["snap/x_iter_20.solverstate"]
    assert log.restored_from == ["snap/x_iter_20.solverstate"]
    assert log.stopped_early and not log.done and not log.fatal
    assert log.loss_names() == ["loss", "loss_res1"]
    fatal = caffe_log.parse_text("F1125 10:00:00.0 1 net.cpp:1] Check failed: x == y\n")
    assert fatal.fatal and fatal.last_iteration is None


def test_fatal_lines_in_both_glog_formats():
    """glog before 0.6 writes `F1126 hh:mm:ss`, 0.6 and later (this build) `F20261126 hh:mm:ss`;
    a fatal line needs no "Check failed" to be caught. I/W/E lines and text that merely starts
    with F are not fatal."""
    lines = ["F1126 09:56:04.123456  7391 common.cpp:66] Cannot use GPU in CPU-only Caffe: "
             "check mode.",
             "F20261126 09:56:04.123456  7391 common.cpp:66] Cannot use GPU in CPU-only Caffe: "
             "check mode."]
    assert caffe_log.parse_text("\n".join(lines)).fatal == lines
    harmless = ["I20261126 09:56:04.1 1 solver.cpp:1] Fine", "W1126 09:56:04.1 1 x.cpp:1] ok",
                "Finished 1126 things", "F20261126x"]
    assert caffe_log.parse_text("\n".join(harmless)).fatal == []


def test_plots_of_one_and_of_several_logs(tmp_path):
    log = caffe_log.parse_text(LOG)
    one = plots.curves_figure([log])
    loss_ax, acc_ax = one.axes
    assert [line.get_label() for line in loss_ax.lines if not line.get_label().startswith("_")] \
        == ["loss", "loss_res1"]
    assert any("test accuracy" in line.get_label() for line in acc_ax.lines)
    paths = []
    for k in range(3):
        path = tmp_path / f"run{k}.log"
        path.write_text(LOG.replace("loss = 0.75", f"loss = {0.5 + k}"))
        paths.append(path)
    out = plots.plot_logs(paths, tmp_path / "compare.png", labels=["a", "b", "c"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    several = plots.curves_figure([caffe_log.parse_file(p) for p in paths], ["a", "b", "c"])
    labels = [line.get_label() for line in several.axes[0].lines]
    assert [label for label in labels if not label.startswith("_")] == ["a", "b", "c"]


def test_plot_log_tool(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(LOG)
    out = subprocess.run([sys.executable, str(REPO / "tools/plot_log.py"), str(log), str(log),
                          "-o", str(tmp_path / "p.png"), "--labels", "x", "y"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    bad = subprocess.run([sys.executable, str(REPO / "tools/plot_log.py"), str(empty), "-o",
                          str(tmp_path / "q.png")], capture_output=True, text=True)
    assert bad.returncode == 1 and "no training iterations" in bad.stderr
    assert not (tmp_path / "q.png").exists()


def test_plot_log_skips_a_log_without_iterations_among_several(tmp_path):
    """A comparison glob that takes in a run which has not started yet (or failed at once)
    still plots the others, with a warning; all of them empty is still an error."""
    good = tmp_path / "a" / "train.log"
    good.parent.mkdir()
    good.write_text(LOG)
    empty = tmp_path / "b" / "train.log"
    empty.parent.mkdir()
    empty.write_text("# tools/train.py 2026-11-26 10:00:00: caffe train -solver s\n"
                     "F20261126 10:00:01.000000 1 common.cpp:66] Cannot use GPU in CPU-only "
                     "Caffe: check mode.\n")
    out = subprocess.run([sys.executable, str(REPO / "tools/plot_log.py"), str(good), str(empty),
                          "-o", str(tmp_path / "p.png"), "--labels", "x", "y"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"plot_log.py: warning: skipping {empty}: no training iterations found yet" \
        in out.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000
    both = subprocess.run([sys.executable, str(REPO / "tools/plot_log.py"), str(empty),
                           str(empty), "-o", str(tmp_path / "q.png")], capture_output=True,
                          text=True)
    assert both.returncode == 1 and "no training iterations found" in both.stderr


@pytest.mark.parametrize("where", ["under-a-file", "sys"])
def test_plot_log_names_the_output_it_cannot_write(tmp_path, where):
    """The -o path the user gave, not the temporary file the PNG is written through."""
    log = tmp_path / "train.log"
    log.write_text(LOG)
    (tmp_path / "file").write_text("")
    target = str(tmp_path / "file" / "p.png") if where == "under-a-file" else "/sys/p.png"
    out = subprocess.run([sys.executable, str(REPO / "tools/plot_log.py"), str(log), "-o",
                          target], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"plot_log.py: -o {target}: cannot write it (")
    assert len(out.stderr.strip().splitlines()) == 1 and ".p.png." not in out.stderr


def test_a_misspelt_solver_field_or_value_gets_the_likely_name(tmp_path):
    (tmp_path / "a.prototxt").write_text('net: "x.prototxt"\nbase_lrr: 0.1\n')
    (tmp_path / "b.prototxt").write_text('net: "x.prototxt"\nsolver_mode: CPPU\n')
    with pytest.raises(runner.TrainingError, match=r"a\.prototxt is not a solver prototxt: 2:1 : "
                                                   r".* has no field named \"base_lrr\"\. Did you "
                                                   r"mean 'base_lr'\?$"):
        runner.read_solver(tmp_path / "a.prototxt")
    with pytest.raises(runner.TrainingError, match=r"has no value named CPPU\. Its values: CPU, "
                                                   r"GPU\. Did you mean CPU\?$"):
        runner.read_solver(tmp_path / "b.prototxt")


def test_caffe_s_default_snapshot_prefix_unit(tmp_path, monkeypatch):
    """upgrade_proto.cpp's UpgradeSnapshotPrefixProperty: no snapshot_prefix gives the solver's
    path without its extension; a folder as the prefix gives the solver's stem inside it."""
    monkeypatch.chdir(tmp_path)
    solver = tmp_path / "p" / "mine.prototxt"
    solver.parent.mkdir()
    for field, prefix in (("", str(tmp_path / "p/mine")), ('snapshot_prefix: "s/x"', "s/x"),
                          ('snapshot_prefix: "s/"', "s/mine"),
                          ('snapshot_prefix: ""', "")):
        solver.write_text(f'net: "n.prototxt"\n{field}\n')
        assert runner.read_solver(solver).snapshot_prefix == prefix, field
    (tmp_path / "s/x").mkdir(parents=True)  # an existing folder, without the slash
    solver.write_text('snapshot_prefix: "s/x"\n')
    assert runner.read_solver(solver).snapshot_prefix == "s/x/mine"


def test_a_solver_without_snapshot_prefix_resumes_and_logs_beside_its_snapshots(
        tmp_path, toy, monkeypatch):
    """The real Caffe writes <solver path without extension>_iter_N (its default prefix): the
    second run resumes from there, and the log and curves go beside them, not into the working
    directory."""
    folder = small_files(tmp_path, "cpp", toy, TEST_SOLVER.with_(max_iter=2))
    generated = folder / "baseline/solver.prototxt"
    solver = tmp_path / "mine" / "nopref.prototxt"
    solver.parent.mkdir()
    solver.write_text("".join(line for line in generated.read_text().splitlines(True)
                              if not line.startswith("snapshot_prefix")))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    first = runner.train(solver, progress=False)
    assert first.last_iteration == 2 and first.resumed_from is None
    assert (tmp_path / "mine/nopref_iter_2.solverstate").is_file()
    assert first.log_path == tmp_path / "mine/train.log" and first.log_path.is_file()
    solver.write_text(solver.read_text().replace("max_iter: 2", "max_iter: 3"))
    second = runner.train(solver, progress=False)
    assert second.resumed_from == tmp_path / "mine/nopref_iter_2.solverstate"
    assert second.last_iteration == 3 and not list(work.iterdir())


def test_a_binary_file_as_the_solver_is_one_line(fake_run):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 10)
    solver.write_bytes(Path(f"{prefix}_iter_10.caffemodel").read_bytes() + b"\xa2\xff")
    out = run()
    assert out.returncode == 1, out.stderr
    assert out.stderr == (f"train.py: {solver} is not a solver prototxt: it is a binary file; "
                          "give the solver.prototxt (text) that names the net\n")


def _cut_short(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def test_a_damaged_latest_snapshot_is_named_with_the_one_before(fake_run):
    """A .solverstate cut short (a full disk, a run killed while it snapshotted): Caffe aborts
    with "Incorrect length of history blobs", which is no other net's snapshot; --restart would
    throw the run away. The advice is the sound snapshot before it."""
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100, 200)
    _cut_short(f"{prefix}_iter_200.solverstate")
    out = run()
    assert out.returncode == 1, out.stderr
    assert out.stderr == (
        f"train.py: the latest snapshot {prefix}_iter_200.solverstate is damaged: it does not "
        "parse as a solver state (cut short, as by a full disk or a run stopped while it "
        f"snapshotted): resume from the snapshot before it: --resume {prefix}_iter_100."
        f"solverstate (or delete {prefix}_iter_200.solverstate and train_iter_200.caffemodel, "
        "and the same command resumes from iteration 100)\n")
    assert not (prefix.parent / "train.log").exists()  # caffe never started
    # its .caffemodel cut short, the .solverstate sound: damaged too
    _snapshot_files(prefix, 200)
    _cut_short(f"{prefix}_iter_200.caffemodel")
    out = run()
    assert f"_iter_200.solverstate is damaged: its weights {prefix}_iter_200.caffemodel do " \
        "not parse" in out.stderr, out.stderr
    # cut after a few bytes: tags and a path, valid UTF-8 but no text file
    state = Path(f"{prefix}_iter_200.solverstate")
    state.write_bytes(state.read_bytes()[:12])
    out = run()
    assert "_iter_200.solverstate is damaged: it does not parse" in out.stderr, out.stderr
    # as --resume, and with no sound snapshot before it
    _cut_short(f"{prefix}_iter_100.solverstate")
    out = run("--resume", f"{prefix}_iter_100.solverstate")
    assert out.returncode == 1 and "another net" not in out.stderr
    assert out.stderr.startswith(f"train.py: --resume {prefix}_iter_100.solverstate is damaged")
    assert out.stderr.rstrip().endswith(
        f"no earlier snapshot of {prefix} to resume from: delete {prefix}_iter_100.solverstate "
        "and train_iter_100.caffemodel (or --restart sets them aside) to start afresh")


def test_resume_of_a_caffemodel_or_a_prototxt_is_refused_as_the_wrong_kind(fake_run):
    solver, prefix, run = fake_run
    _snapshot_files(prefix, 100)
    model = f"{prefix}_iter_100.caffemodel"
    out = run("--resume", model)
    assert out.returncode == 1, out.stderr
    assert out.stderr == (f"train.py: --resume {model} is a .caffemodel (the weights alone), "
                          f"not a .solverstate: --resume {prefix}_iter_100.solverstate resumes "
                          f"that snapshot; --restart --weights {model} starts afresh from its "
                          "weights\n")
    out = run("--resume", solver)
    assert out.stderr.startswith(f"train.py: --resume {solver} is a text file (a prototxt?), "
                                 "not a .solverstate"), out.stderr
    assert not (prefix.parent / "train.log").exists()


NET_WITH_WEIGHTS = GOOD_NET + "".join(
    f'layer {{ name: "{name}" type: "{kind}" bottom: "pool" top: "{name}" '
    f'{param} {{ num_output: {n} kernel_size: 1 }} }}\n' if kind == "Convolution" else
    f'layer {{ name: "{name}" type: "{kind}" bottom: "pool" top: "{name}" '
    f'{param} {{ num_output: {n} }} }}\n'
    for name, kind, param, n in (("conv1_1", "Convolution", "convolution_param", 16),
                                 ("fc8", "InnerProduct", "inner_product_param", 4)))


def _model(path, **layers):
    """A .caffemodel of {layer name: first blob's shape}."""
    from caffe.proto import caffe_pb2

    model = caffe_pb2.NetParameter()
    for name, shape in layers.items():
        model.layer.add(name=name).blobs.add(data=[0.0]).shape.dim.extend(shape)
    Path(path).write_bytes(model.SerializeToString())
    return path


def test_weights_that_share_no_layer_or_misfit_are_refused_but_new_layers_are_normal(fake_run):
    """Caffe copies weights by layer name: none in common trains from the fillers in silence;
    a differing output count aborts with "rename the layer". Layers the weights lack (DeepLab's
    fc8 and attention head next to a VGG-16 init) are the normal fine-tuning case."""
    solver, prefix, run = fake_run
    (solver.parent / "net.prototxt").write_text(NET_WITH_WEIGHTS)
    own = _model(solver.parent / "own.caffemodel", conv1=(8, 3, 3, 3), bn1=(8,),
                 fc8_voc12=(4, 8))
    out = run("--weights", own)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(
        f"train.py: --weights {own} shares no learned layer with the train net: it has conv1, "
        "bn1, fc8_voc12; the net has conv1_1, fc8. Caffe copies weights by layer name and "
        "would train from the random fillers"), out.stderr
    vgg = _model(solver.parent / "vgg.caffemodel", conv1_1=(64, 3, 3, 3))
    out = run("--weights", vgg)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"train.py: --weights {vgg} do not fit the train net: conv1_1 "
                                 "(64 x 3 x 3 x 3 saved, 16 outputs in the net); Caffe would "
                                 "abort"), out.stderr
    assert not (prefix.parent / "train.log").exists()
    init = _model(solver.parent / "init.caffemodel", conv1_1=(16, 3, 1, 1))  # no fc8: normal
    out = run("--weights", init)
    assert out.returncode == 130 and "--weights" not in out.stderr, out.stderr
    assert f"-weights {init}" in (prefix.parent / "train.log").read_text()


def test_a_snapshot_with_layers_the_net_lacks_is_another_net_s(tmp_path):
    """A snapshot holds every train layer with weights of the net that wrote it: one more layer
    (here the baseline's solver pointed at a bigger net's snapshots) is another net's, which
    Caffe would end with "Incorrect length of history blobs"."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = text_format.Parse(NET_WITH_WEIGHTS, caffe_pb2.NetParameter())
    _model(tmp_path / "s_iter_5.caffemodel", conv1_1=(16, 1, 1, 1), fc8=(4, 16))
    state = tmp_path / "s_iter_5.solverstate"
    state.write_bytes(caffe_pb2.SolverState(iter=5).SerializeToString())
    runner.check_snapshot_fits(state, net, "resuming from")  # the net that wrote it
    _model(tmp_path / "s_iter_5.caffemodel", conv1_1=(16, 1, 1, 1), fc8=(4, 16),
           att_conv1=(8, 16, 3, 3))
    with pytest.raises(runner.TrainingError) as err:
        runner.check_snapshot_fits(state, net, "resuming from")
    assert str(err.value).startswith(f"resuming from {state}: written by another net than this "
                                     "solver's: att_conv1 (in the snapshot, not in the net)")


def test_end_of_run_summaries(fake_run):
    """MSG-11/12: a whole run with display > max_iter is done after max_iter, not iteration 0;
    a caffe that exits 0 having logged no iteration trained nothing: exit 1."""
    solver, prefix, run = fake_run
    out = run(env={"FAKE_CAFFE": "done"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("done after iteration 4;"), out.stdout
    out = run(env={"FAKE_CAFFE": "quiet"})
    assert out.returncode == 1, out.stdout
    assert "exited with code 0 but logged no iteration: nothing was trained" in out.stderr


def test_a_second_signal_after_caffe_s_stop_snapshot_says_so():
    class Exiting:
        sent = []
        dead = False

        def send_signal(self, signum):
            self.sent.append(signum)

        def poll(self):
            return None

        def kill(self):
            self.dead = True

    said = []
    handler = runner._Signals(Exiting(), stopped=lambda: True)
    handler._say = said.append
    handler._handler(signal.SIGTERM, None)
    handler._handler(signal.SIGTERM, None)
    assert said[-1] == "\nSIGTERM again: Caffe killed as it exited (its stop snapshot was " \
        "written)\n"


# ---------------------------------------------------------------------------------------------
# Reading Caffe's output: lines as text, and signal handlers that run while Caffe is quiet
# ---------------------------------------------------------------------------------------------

def _pipe_writer(chunks, delay=0.02):
    """A pipe whose write end a thread fills with `chunks` (bytes), then closes."""
    r, w = os.pipe()

    def write():
        for chunk in chunks:
            os.write(w, chunk)
            time.sleep(delay)
        os.close(w)
    threading.Thread(target=write, daemon=True).start()
    return r


def test_output_lines_are_what_popen_text_mode_gives():
    from attention_scale.training.runner import output_lines

    accented = "caf\u00e9 \u00e9".encode()  # its last character split across two reads
    chunks = [b"I1126 solver.cpp:239] Iteration 0, loss = 1.5\r", b"\nsecond ", b"half\n",
              b"bad \xff byte\n", accented[:-1], accented[-1:], b"\nno newline at the end"]
    r = _pipe_writer(chunks)
    try:
        got = list(output_lines(r))
    finally:
        os.close(r)
    data = b"".join(chunks)
    want = io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False),
                            errors="replace").readlines()
    assert got == want
    assert got[0] == "I1126 solver.cpp:239] Iteration 0, loss = 1.5\n"
    assert got[1] == "second half\n"
    assert got[-1] == "no newline at the end"


def test_a_signal_that_interrupts_nothing_still_gets_its_handler_run_while_caffe_is_quiet():
    """A signal taken by another thread (as one arriving just before a blocking read() is taken
    by nobody's read) leaves the main thread's wait uninterrupted: the reader must still come
    back to Python for the handler, which here is what ends the output."""
    from attention_scale.training.runner import output_lines

    r, w = os.pipe()
    closed = threading.Lock()

    def finish(text):
        if closed.acquire(blocking=False):
            os.write(w, text)
            os.close(w)

    ready = threading.Event()

    def other_thread():  # created before the main thread blocks the signal: it takes it
        ready.wait()
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(10)
        finish(b"handler never ran\n")  # so that a failure fails instead of hanging

    previous = signal.signal(signal.SIGUSR1, lambda *_: finish(b"handler ran\n"))
    threading.Thread(target=other_thread, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        ready.set()
        lines = list(output_lines(r, wake_every=0.1))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGUSR1, previous)
        os.close(r)
    assert lines == ["handler ran\n"]
