"""A stale or missing install of the package is named by the tools instead of running old code
or ending in a traceback (attention_scale/installed_sources.py, tools/_package.py)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attention_scale
from attention_scale import installed_sources as src
from pyhelpers import default_sigint

REPO = Path(__file__).resolve().parents[1]


def _fake_repo(root):
    """A checkout with a two-file package, the layers' .proto and noise that is no source."""
    pkg = root / "python" / "attention_scale"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("'''package'''\n")
    (pkg / "sub" / "mod.py").write_text("X = 1\n")
    (pkg / "sub" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "params_pb2.py").write_text("# generated\n")
    (pkg / "notes.txt").write_text("not a source\n")
    proto = root / "caffe_layers" / "proto" / "attention_scale.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text("syntax = \"proto2\";\n")
    return pkg


def _install(repo, site):
    """What `pip install .` leaves: a copy of the package with the record written at build."""
    installed = site / "attention_scale"
    shutil.copytree(repo / "python" / "attention_scale", installed)
    src.write_record(installed, repo)
    return installed


def test_digests_cover_the_sources_and_nothing_else(tmp_path):
    _fake_repo(tmp_path)
    digests = src.source_digests(tmp_path)
    assert digests == {
        "caffe_layers/proto/attention_scale.proto":
            hashlib.sha256(b"syntax = \"proto2\";\n").hexdigest(),
        "python/attention_scale/__init__.py": hashlib.sha256(b"'''package'''\n").hexdigest(),
        "python/attention_scale/sub/mod.py": hashlib.sha256(b"X = 1\n").hexdigest(),
    }


def test_fresh_install_is_not_stale(tmp_path):
    repo = tmp_path / "repo"
    _fake_repo(repo)
    installed = _install(repo, tmp_path / "site")
    assert json.loads((installed / src.RECORD_NAME).read_text())["repository"] == str(repo)
    assert src.stale_message(installed, repo) is None


def test_changed_new_and_removed_sources_are_named(tmp_path):
    repo = tmp_path / "repo"
    pkg = _fake_repo(repo)
    installed = _install(repo, tmp_path / "site")
    (pkg / "sub" / "mod.py").write_text("X = 2\n")
    (pkg / "extra.py").write_text("\n")
    (repo / "caffe_layers" / "proto" / "attention_scale.proto").unlink()
    message = src.stale_message(installed, repo)
    assert "changed: python/attention_scale/sub/mod.py" in message
    assert "new: python/attention_scale/extra.py" in message
    assert "removed: caffe_layers/proto/attention_scale.proto" in message
    assert "tools/setup.sh" in message
    # noise is not a source: touching it changes nothing
    (pkg / "sub" / "mod.py").write_text("X = 1\n")
    (pkg / "extra.py").unlink()
    (repo / "caffe_layers" / "proto" / "attention_scale.proto").write_text("syntax = \"proto2\";\n")
    (pkg / "notes.txt").write_text("edited\n")
    (pkg / "params_pb2.py").write_text("# regenerated\n")
    assert src.stale_message(installed, repo) is None


def test_long_lists_are_cut(tmp_path):
    repo = tmp_path / "repo"
    pkg = _fake_repo(repo)
    installed = _install(repo, tmp_path / "site")
    for i in range(7):
        (pkg / f"m{i}.py").write_text("\n")
    message = src.stale_message(installed, repo, shown=4)
    assert "new: python/attention_scale/m0.py, python/attention_scale/m1.py, " \
           "python/attention_scale/m2.py, python/attention_scale/m3.py and 3 more" in message


def test_install_without_record_and_checkout_imports(tmp_path):
    repo = tmp_path / "repo"
    pkg = _fake_repo(repo)
    installed = _install(repo, tmp_path / "site")
    (installed / src.RECORD_NAME).unlink()
    assert "without a record of its sources" in src.stale_message(installed, repo)
    # imported from the checkout itself (PYTHONPATH=python): nothing to compare
    assert src.stale_message(pkg, repo) is None
    # a tools/ folder copied away from its checkout: nothing to compare with
    assert src.stale_message(installed, tmp_path / "elsewhere") is None


def test_this_environment_was_installed_from_this_checkout():
    """setup.py writes the record, and the tests run on an install of the sources they test
    (tools/run_tests.sh reinstalls first; a failure here means it did not)."""
    installed = Path(attention_scale.__file__).parent
    if installed == REPO / "python" / "attention_scale":
        pytest.skip("the package is imported from the checkout, not installed")
    assert src.read_record(installed) is not None, "setup.py wrote no source record"
    assert src.stale_message(installed, REPO) is None


def _run_package_shim(tools_dir, python_path, *python_args):
    """Import tools/_package.py as a tool named demo_tool.py would."""
    code = ("import sys; sys.argv = ['demo_tool.py']; "
            f"sys.path.insert(0, {str(tools_dir)!r}); import _package; print('ran')")
    env = {"PATH": "/usr/bin:/bin"}
    if python_path:
        env["PYTHONPATH"] = str(python_path)
    return subprocess.run([sys.executable, *python_args, "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)


def test_tool_without_the_package_says_how_to_get_it():
    # -S: no site-packages, so this Python has no attention_scale
    done = _run_package_shim(REPO / "tools", None, "-S")
    assert done.returncode == 1 and "ran" not in done.stdout
    assert "demo_tool.py: this Python" in done.stderr
    assert "cannot import the attention_scale package" in done.stderr
    assert "source .venv/bin/activate" in done.stderr
    assert "Traceback" not in done.stderr


def test_tool_on_a_stale_install_warns_and_runs(tmp_path):
    repo = tmp_path / "repo"
    pkg = _fake_repo(repo)
    shutil.copy(REPO / "python" / "attention_scale" / "installed_sources.py", pkg)
    (repo / "tools").mkdir()
    for shim in ("_package.py", "_ctrl_c.py"):
        shutil.copy(REPO / "tools" / shim, repo / "tools")
    site = tmp_path / "site"
    _install(repo, site)

    done = _run_package_shim(repo / "tools", site, "-S")
    assert done.returncode == 0 and done.stdout.strip() == "ran" and done.stderr == ""

    (pkg / "sub" / "mod.py").write_text("X = 3\n")
    done = _run_package_shim(repo / "tools", site, "-S")
    assert done.returncode == 0 and done.stdout.strip() == "ran"
    assert done.stderr.startswith("demo_tool.py: warning: the attention_scale package in ")
    assert "changed: python/attention_scale/sub/mod.py" in done.stderr


def test_every_tool_can_be_run_as_its_usage_shows():
    """`tools/test_voc.py ...` in a usage line needs the file to be executable with a shebang
    (with the environment active, `python3` is the environment's)."""
    import os
    tools = [p for p in sorted((REPO / "tools").iterdir())
             if p.suffix in (".py", ".sh") and not p.name.startswith("_")]
    assert len(tools) > 20
    for tool in tools:
        first = tool.read_text().splitlines()[0]
        assert first in ("#!/usr/bin/env python3", "#!/usr/bin/env bash"), tool
        assert os.access(tool, os.X_OK), f"{tool} is not executable"


def _fake_cache(root, layers_digest):
    init = root / "install" / "python" / "caffe" / "__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text("")
    (root / "stamp.json").write_text(json.dumps({"layers": layers_digest}))
    return init


def test_a_caffe_built_from_other_layer_sources_is_named(tmp_path):
    """The build cache is keyed by everything but the layers (an edit rebuilds them in place),
    so a Caffe reflects the last checkout that ran the setup."""
    from attention_scale.caffe_build import builder

    current = builder._injected_digest(REPO)
    assert builder.stale_layers_message(_fake_cache(tmp_path / "a", current), REPO) is None
    message = builder.stale_layers_message(_fake_cache(tmp_path / "b", "0" * 64), REPO)
    assert f"the Caffe that pycaffe loads ({tmp_path / 'b'}) was built with other layer " \
           f"sources than {REPO}'s caffe_layers/ and cuda/" in message
    assert "bash tools/setup.sh" in message
    # A pycaffe without this project's stamp (a Caffe of one's own): nothing to compare.
    other = tmp_path / "c" / "install" / "python" / "caffe" / "__init__.py"
    other.parent.mkdir(parents=True)
    other.write_text("")
    assert builder.stale_layers_message(other, REPO) is None


def test_this_environments_caffe_has_this_checkouts_layers():
    import importlib.util

    from attention_scale.caffe_build import builder

    spec = importlib.util.find_spec("caffe")
    assert spec is not None and spec.origin
    assert builder.stale_layers_message(spec.origin, REPO) is None


# Tools that build or run nets with the setup's Caffe (pycaffe or the caffe tool), or pack it:
# they warn when its layers were compiled from other sources than the checkout's. The others
# never load Caffe and say nothing about it.
CAFFE_TOOLS = {"benchmark_layers.py", "benchmark_speed.py", "benchmark_training.py", "demo.py",
               "init_from_vgg16.py", "pack_portable.py", "segment.py", "test_voc.py",
               "train.py", "visualize_attention.py"}
PACKAGE_TOOLS = sorted(p.name for p in (REPO / "tools").glob("*.py")
                       if "\nimport _package" in p.read_text())


@pytest.fixture(scope="module")
def stale_caffe(tmp_path_factory):
    """A PYTHONPATH whose `caffe` is a build of the setup's cache layout stamped with other layer
    sources than the checkout's."""
    root = tmp_path_factory.mktemp("stale-caffe")
    init = _fake_cache(root, "0" * 64)
    return str(init.parents[1])


@pytest.mark.parametrize("tool", PACKAGE_TOOLS)
def test_only_the_tools_that_use_caffe_warn_about_its_layers(tool, stale_caffe):
    assert CAFFE_TOOLS <= set(PACKAGE_TOOLS)
    done = subprocess.run([sys.executable, str(REPO / "tools" / tool), "--help"],
                          env=dict(os.environ, PYTHONPATH=stale_caffe), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warned = f"{tool}: warning: the Caffe that pycaffe loads" in done.stderr
    assert warned == (tool in CAFFE_TOOLS), done.stderr


SLOW_IMPORT = '''
import os, sys, time


class _Slow:
    """Makes the first import of $SLOW_IMPORT wait (after writing $SLOW_MARKER) until a signal."""
    done = False

    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("SLOW_IMPORT") and not self.done:
            self.done = True
            open(os.environ["SLOW_MARKER"], "w").close()
            while True:
                time.sleep(0.05)
        return None


sys.meta_path.insert(0, _Slow())
'''


@pytest.mark.parametrize("tool,args,module", [
    ("plot_log.py", ["{log}", "-o", "{tmp}/p.png"], "numpy"),  # imported in main()
    ("test_voc.py", ["--help"], "numpy"),  # imported at the tool's top, after _package
    ("train.py", ["{tmp}/solver.prototxt"], "caffe._caffe"),  # libcaffe, in main()
    ("convert_net.py", ["--help"], "attention_scale.nets.convert"),
    ("make_multiscale.py", ["--help"], "attention_scale.nets.multiscale"),
    ("make_synthetic.py", ["--help"], "attention_scale.installed_sources"),  # in _package
    # The build tools import the package from the checkout (_repo), before it is installed:
    ("build_caffe.py", ["--help"], "attention_scale.caffe_build.builder"),
    ("inject_layers.py", ["--help"], "attention_scale.caffe_build.tree_injection"),
])
def test_ctrl_c_while_a_tool_imports_is_one_line_and_status_130(tmp_path, tool, args, module):
    """Ctrl-C in the first second (numpy, pycaffe, the package loading): the tools print one line
    and exit 130 there as they do later, not a KeyboardInterrupt traceback. The import is made
    slow by a sitecustomize on PYTHONPATH; the signal is sent once it has begun."""
    import signal
    import time

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_IMPORT)
    marker = tmp_path / "importing"
    log = tmp_path / "train.log"
    log.write_text("")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), SLOW_IMPORT=module,
               SLOW_MARKER=str(marker))
    words = [word.format(tmp=tmp_path, log=log) for word in args]
    child = subprocess.Popen([sys.executable, str(REPO / "tools" / tool), *words], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), child.communicate(timeout=60)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert err.splitlines()[-1:] == [f"{tool}: stopped (Ctrl-C)"], err
    assert "Traceback" not in err and out == ""
