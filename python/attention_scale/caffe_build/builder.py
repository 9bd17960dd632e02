"""Build Caffe with the three layers injected, cached outside the clone.

Layout of the cache (ATTENTION_SCALE_CACHE, default ~/.cache/attention-scale):
  downloads/                      the verified Debian source tarball
  buildenv-py3.X/                 a venv with numpy, used only to compile pycaffe
  caffe-<key>/src                 the patched, injected Caffe tree (Debian source only)
  caffe-<key>/build, install      CMake's build folder and the install prefix
  caffe-<key>/stamp.json          the full key of what `install` holds
`key` hashes everything that shapes the build except the layer sources: the Caffe source, the
compatibility fixes, the CMake options, compiler, protobuf, CUDA and Python. The layer sources and
the proto go into the stamp: when only they change, make rebuilds just what depends on them.
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..files import atomic_write
from . import compat, debian_source
from . import tree_injection as ti

DEFAULT_CUDA_ARCHS = ("80", "86", "90")


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[build_caffe] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    if os.environ.get("ATTENTION_SCALE_CACHE"):
        return Path(os.environ["ATTENTION_SCALE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attention-scale"


@dataclass
class BuildConfig:
    project_root: Path                     # the checkout whose layers are injected
    caffe_root: Optional[Path] = None      # a user's tree; None: Debian's source package
    cuda: bool = False
    cuda_archs: List[str] = field(default_factory=lambda: list(DEFAULT_CUDA_ARCHS))
    openmp: bool = False                   # Caffe's USE_OPENMP: the layers' parallel CPU loops
    jobs: int = os.cpu_count() or 2
    cache: Path = field(default_factory=cache_root)


@dataclass
class BuildResult:
    prefix: Path
    source_dir: Path
    build_dir: Path
    rebuilt: bool

    def env_lines(self) -> str:
        return (f"CAFFE_PREFIX={self.prefix}\nCAFFE_SOURCE_DIR={self.source_dir}\n"
                f"CAFFE_BUILD_DIR={self.build_dir}\n")


def _first_line(cmd: List[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "missing"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return lines[-1] if cmd[0] == "nvcc" else lines[0]


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def python_facts() -> Dict[str, str]:
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldlib = sysconfig.get_config_var("LDLIBRARY") or ""
    return {"version": sysconfig.get_python_version(),
            "full_version": sys.version.split()[0],
            "base": sys.base_prefix,
            "include": sysconfig.get_paths()["include"],
            "library": str(Path(libdir) / ldlib)}


def _ensure_buildenv(cfg: BuildConfig, py: Dict[str, str]) -> Path:
    """A venv with numpy for compiling pycaffe, kept in the cache (shared by every clone)."""
    env = cfg.cache / f"buildenv-py{py['version']}"
    python = env / "bin" / "python"
    if (env / ".ready").is_file() and python.exists():
        return python
    log(f"creating {env} (numpy for compiling pycaffe)")
    if env.exists():
        shutil.rmtree(env)
    base_python = Path(sys.base_prefix) / "bin" / f"python{py['version']}"
    subprocess.run([str(base_python if base_python.exists() else sys.executable), "-m", "venv",
                    str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy>=2,<3"], check=True)
    (env / ".ready").write_text("ok\n")
    return python


def cmake_args(cfg: BuildConfig, py: Dict[str, str], python: Path, prefix: Path) -> List[str]:
    args = ["-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix}",
            "-DBUILD_python=ON", "-DBUILD_python_layer=ON", "-Dpython_version=3",
            "-DBUILD_docs=OFF", "-DBUILD_matlab=OFF", "-DUSE_OPENCV=OFF", "-DUSE_LEVELDB=OFF",
            "-DUSE_LMDB=OFF", "-DBLAS=Open", f"-DPYTHON_EXECUTABLE={python}",
            f"-DPYTHON_INCLUDE_DIR={py['include']}", f"-DPYTHON_LIBRARY={py['library']}"]
    if cfg.cuda:
        args += ["-DCPU_ONLY=OFF", "-DUSE_CUDNN=OFF", "-DUSE_NCCL=OFF",
                 "-DCUDA_ARCH_NAME=Manual", f"-DCUDA_ARCH_BIN={' '.join(cfg.cuda_archs)}",
                 "-DCUDA_ARCH_PTX="]
    else:
        args += ["-DCPU_ONLY=ON"]
    if cfg.openmp:
        args += ["-DUSE_OPENMP=ON"]
    return args


def _numpy_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import numpy; print(numpy.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _source_id(cfg: BuildConfig) -> Dict[str, str]:
    if cfg.caffe_root is not None:
        return {"tree": str(cfg.caffe_root.resolve())}
    return {"debian": debian_source.VERSION, "sha256": debian_source.ORIG_SHA256}


def _injected_digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel, src in sorted(ti.project_files(root).items()):
        h.update(rel.encode() + b"\0" + src.read_bytes() + b"\0")
    h.update((root / ti.PROJECT_PROTO_REL).read_bytes())
    return h.hexdigest()


_PERCENT = re.compile(r"^\[\s*(\d+)%\]\s*(.*)$")


def _run_logged(cmd: List[str], cwd: Path, logfile, what: str, progress: bool) -> None:
    logfile.write(f"$ {' '.join(cmd)}\n")
    logfile.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    last_pct, tail = None, []
    for line in proc.stdout:
        logfile.write(line)
        tail = (tail + [line.rstrip()])[-60:]
        m = _PERCENT.match(line.strip())
        if progress and m and m.group(1) != last_pct:
            last_pct = m.group(1)
            log(f"{what} {int(last_pct):3d}%  {m.group(2)[:90]}")
    if proc.wait() != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}); last lines:\n"
                         + "\n".join(tail) + f"\nfull log: {logfile.name}")


def build(cfg: BuildConfig) -> BuildResult:
    if cfg.caffe_root is not None:
        ti.check_tree(cfg.caffe_root.resolve())  # fail before any slow step
    py = python_facts()
    cfg.cache.mkdir(parents=True, exist_ok=True)
    python = _ensure_buildenv(cfg, py)
    toolchain = {"cxx": _first_line(["c++", "--version"]),
                 "protoc": _first_line(["protoc", "--version"]),
                 "cmake": _first_line(["cmake", "--version"]),
                 "numpy": _numpy_version(python)}
    if cfg.cuda:
        toolchain["nvcc"] = _first_line(["nvcc", "--version"])
    base = {"source": _source_id(cfg), "compat": compat.COMPAT_VERSION, "cuda": cfg.cuda,
            "archs": cfg.cuda_archs if cfg.cuda else [], "toolchain": toolchain,
            "python": py, "layout": 1}
    if cfg.openmp:  # only when on, so the default build keeps its key (and its cache)
        base["openmp"] = True
    key = _sha(base)[:16]
    work = cfg.cache / f"caffe-{key}"
    work.mkdir(exist_ok=True)
    with open(cfg.cache / f"caffe-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cfg, base, work, python, py)


def _build_locked(cfg, base, work: Path, python: Path, py) -> BuildResult:
    prefix, build_dir = work / "install", work / "build"
    if cfg.caffe_root is not None:
        tree = cfg.caffe_root.resolve()
        for line in compat.apply_fixes(tree, cfg.cuda):
            log(f"compatibility fix: {line}")
    else:
        tree = work / "src"
        if not tree.is_dir():
            tarball = debian_source.fetch_orig_tarball(cfg.cache / "downloads", log=log)
            log(f"extracting {tarball.name} into {tree}")
            debian_source.extract(tarball, tree)
            # Both CPU and CUDA fixes: the tree is private to this cache entry.
            for line in compat.apply_fixes(tree, cuda=True):
                log(f"compatibility fix: {line}")
    plan = ti.plan_injection(tree, cfg.project_root)
    ti.apply_plan(tree, plan)
    for rel in sorted(plan.writes) + plan.deletes:
        log(f"injected: {rel}")
    stamp = {"base": base, "layers": _injected_digest(cfg.project_root), "tree": str(tree)}
    stamp_path = work / "stamp.json"
    if (stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
            and (prefix / "bin" / "caffe").exists() and not plan.changes):
        log(f"Caffe with the layers is up to date in {prefix}")
        return BuildResult(prefix, tree, build_dir, rebuilt=False)
    build_dir.mkdir(exist_ok=True)
    args = cmake_args(cfg, py, python, prefix)
    if shutil.which("ccache"):
        args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
    with open(work / "build.log", "a") as logfile:
        log(f"configuring Caffe ({'CUDA ' + ','.join(cfg.cuda_archs) if cfg.cuda else 'CPU'}) "
            f"in {build_dir}; log: {logfile.name}")
        _run_logged(["cmake", "-S", str(tree), "-B", str(build_dir), *args], work, logfile,
                    "cmake", progress=False)
        log(f"building with {cfg.jobs} jobs (a cold build takes ~10 minutes on 2 cores)")
        _run_logged(["cmake", "--build", str(build_dir), "--", f"-j{cfg.jobs}"], work, logfile,
                    "caffe build", progress=True)
        _run_logged(["cmake", "--install", str(build_dir)], work, logfile, "install",
                    progress=False)
    atomic_write(stamp_path, json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    log(f"Caffe with the layers installed in {prefix}")
    return BuildResult(prefix, tree, build_dir, rebuilt=True)
