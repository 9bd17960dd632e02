"""Build Caffe with the three layers injected, cached outside the clone.

Layout of the cache (ATTENTION_SCALE_CACHE, default ~/.cache/attention-scale):
  downloads/                      verified source tarballs (Debian's or GitHub's)
  buildenv-py3.X/                 a venv with numpy, used only to compile pycaffe
  caffe-<key>/src                 the build copy: BVLC's verified source, or a mirror of the
                                  user's --caffe-root tree; fixes and layers go in here only
  caffe-<key>/build, install      CMake's build folder and the install prefix
  caffe-<key>/stamp.json          the full key of what `install` holds
`key` hashes everything that shapes the configuration: the source's identity (BVLC's content
hash, or the user's tree's path), the compatibility fixes, the CMake options (the optional
libraries the tree needs, pass-through options), compiler, CMake, protobuf, CUDA and Python.
The layer sources, the proto and the user's tree's content (sizes and modification times of
its files) go into the stamp: when only they change, make rebuilds just what depends on them.
"""
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..files import atomic_write
from . import caffe_source, compat, toolchain, tree_copy
from . import tree_features as tf
from . import tree_injection as ti

DEFAULT_CUDA_ARCHS = ("80", "86", "90")
CMAKE_ARGS_ENV = "CAFFE_CMAKE_ARGS"


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
    caffe_root: Optional[Path] = None      # a user's tree; None: BVLC Caffe 99bd997
    cuda: bool = False
    cuda_archs: List[str] = field(default_factory=lambda: list(DEFAULT_CUDA_ARCHS))
    openmp: bool = False                   # Caffe's USE_OPENMP: the layers' parallel CPU loops
    jobs: int = os.cpu_count() or 2
    cache: Path = field(default_factory=cache_root)
    source_tarball: Optional[Path] = None  # an offline copy of BVLC's source
    source_url: Optional[str] = None       # where to download it when Debian has no route
    source_route: str = "auto"             # see caffe_source.ROUTES
    extra_cmake_args: List[str] = field(default_factory=list)   # passed through, last


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


def compiler_facts(env) -> Dict[str, str]:
    """The compilers CMake will use, for the cache key: $CXX and $CC where set (CMake takes them
    over the defaults), else the default c++ (its fact alone, so the default build keeps its key).
    Switching compilers then builds anew instead of finding the other compiler's build."""
    facts = {"cxx": _first_line(shlex.split(env.get("CXX") or "c++") + ["--version"])}
    if env.get("CC"):
        facts["cc"] = _first_line(shlex.split(env["CC"]) + ["--version"])
    return facts


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def python_facts() -> Dict[str, str]:
    library = toolchain.python_library()
    return {"version": sysconfig.get_python_version(),
            "full_version": sys.version.split()[0],
            "base": sys.base_prefix,
            "include": sysconfig.get_paths()["include"],
            "library": str(library) if library else ""}


def check_python_dev(py: Dict[str, str]) -> None:
    """pycaffe compiles against the interpreter's headers and links its library."""
    missing = [what for what, path in (("headers", Path(py["include"]) / "Python.h"),
                                       ("library", py["library"] and Path(py["library"])))
               if not path or not path.exists()]
    if missing:
        looked = ", ".join(map(str, toolchain.python_library_candidates())) or "none named"
        raise BuildError(
            f"Python {py['full_version']} ({sys.executable}) has no development "
            f"{' and '.join(missing)} ({py['include']}/Python.h; the library looked for as "
            f"{looked}), which pycaffe is compiled against. Debian/Ubuntu: apt-get install "
            f"python{py['version']}-dev; Fedora: dnf install python3-devel; or run with a "
            "Python that has them (PYTHON=/path/to/python3 bash tools/setup.sh)")


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
    made = subprocess.run([str(base_python if base_python.exists() else sys.executable), "-m",
                           "venv", str(env)], capture_output=True, text=True)
    if made.returncode != 0:
        raise BuildError(f"could not create a venv with {sys.executable} ({made.stderr.strip()})"
                         f"; Debian/Ubuntu: apt-get install python{py['version']}-venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy>=2,<3"], check=True)
    (env / ".ready").write_text("ok\n")
    return python


def include_dirs() -> List[Path]:
    """Where the compiler looks for system headers (for telling which libraries are there)."""
    dirs = [Path(p) for var in ("CPATH", "CPLUS_INCLUDE_PATH")
            for p in os.environ.get(var, "").split(":") if p]
    return dirs + [Path("/usr/local/include"), Path("/usr/include")]


def feature_args(required: Dict[str, tf.Use]) -> List[str]:
    """ON for the optional libraries the tree cannot do without, OFF for the others."""
    return [f"-D{f.cmake_option}={'ON' if f.name in required else 'OFF'}"
            for f in tf.FEATURES if f.cmake_option]


def check_features(required: Dict[str, tf.Use], extra_args: List[str]) -> None:
    missing = []
    for name, use in required.items():
        feat = tf.feature(name)
        if any(name.lower() in arg.lower() for arg in extra_args):
            continue   # the user points CMake at it (or switches it) explicitly
        if not tf.installed(feat, include_dirs()):
            missing.append(f"{name}: {use.where} uses {use.header} outside #ifdef "
                           f"{feat.macro or '(no switch exists)'}; its headers are not "
                           f"installed (Debian/Ubuntu: apt-get install {' '.join(feat.packages)})")
    if missing:
        raise BuildError("this Caffe tree needs libraries that are not installed:\n  - "
                         + "\n  - ".join(missing) + "\n  (tools/setup.sh installs them; pass "
                         "--cmake-arg to point CMake elsewhere)")


def system_packages(tree: Optional[Path]) -> List[str]:
    """Debian packages for the optional libraries `tree` needs (none for BVLC's source)."""
    if tree is None:
        return []
    return [p for name in tf.required_features(tree) for p in tf.feature(name).packages]


def cmake_args(cfg: BuildConfig, py: Dict[str, str], python: Path, prefix: Path,
               required: Optional[Dict[str, tf.Use]] = None,
               cmake_version: Optional[toolchain.Version] = None) -> List[str]:
    args = ["-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix}",
            "-DBUILD_python=ON", "-DBUILD_python_layer=ON", "-Dpython_version=3",
            "-DBUILD_docs=OFF", "-DBUILD_matlab=OFF", *feature_args(required or {}),
            "-DBLAS=Open", f"-DPYTHON_EXECUTABLE={python}",
            f"-DPYTHON_INCLUDE_DIR={py['include']}", f"-DPYTHON_LIBRARY={py['library']}",
            *toolchain.cmake_policy_args(cmake_version)]
    if cfg.cuda:
        args += ["-DCPU_ONLY=OFF", "-DUSE_CUDNN=OFF", "-DUSE_NCCL=OFF",
                 "-DCUDA_ARCH_NAME=Manual", f"-DCUDA_ARCH_BIN={' '.join(cfg.cuda_archs)}",
                 "-DCUDA_ARCH_PTX="]
    else:
        args += ["-DCPU_ONLY=ON"]
    if cfg.openmp:
        args += ["-DUSE_OPENMP=ON"]
    return args + list(cfg.extra_cmake_args)   # last: the user's word wins


def _numpy_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import numpy; print(numpy.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _source_id(cfg: BuildConfig) -> Dict[str, str]:
    if cfg.caffe_root is not None:
        return {"tree": str(cfg.caffe_root.resolve())}
    return {"bvlc": caffe_source.COMMIT, "content": caffe_source.CONTENT_SHA256}


STAMP_NAME = "stamp.json"


def _injected_digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel, src in sorted(ti.project_files(root).items()):
        h.update(rel.encode() + b"\0" + src.read_bytes() + b"\0")
    h.update((root / ti.PROJECT_PROTO_REL).read_bytes())
    return h.hexdigest()


def stale_layers_message(pycaffe_init, repo_root) -> Optional[str]:
    """None unless pycaffe (its caffe/__init__.py at `pycaffe_init`) is a build of this cache
    whose layers were injected from other sources than repo_root's caffe_layers/ and cuda/ now
    hold (edited since, or another checkout sharing the cache rebuilt it); else what to do.

    The cache is keyed by everything but the layers, so that an edit rebuilds them in place in
    a minute: a build reflects the last checkout that ran the setup."""
    stamp_path = Path(pycaffe_init).resolve().parents[3] / STAMP_NAME
    root = Path(repo_root)
    if not stamp_path.is_file() or not (root / ti.PROJECT_PROTO_REL).is_file():
        return None
    try:
        built = json.loads(stamp_path.read_text()).get("layers")
    except (OSError, ValueError):
        return None
    if built is None or built == _injected_digest(root):
        return None
    return (f"the Caffe that pycaffe loads ({stamp_path.parent}) was built with other layer "
            f"sources than {root}'s caffe_layers/ and cuda/ hold now (edited since, or another "
            "checkout sharing that build cache rebuilt it): run `bash tools/setup.sh` again "
            "(it rebuilds the layers in place)")


_PERCENT = re.compile(r"^\[\s*(\d+)%\]\s*(.*)$")


def _run_logged(cmd: List[str], cwd: Path, logfile, what: str, progress: bool,
                env: Optional[Dict[str, str]] = None) -> None:
    logfile.write(f"$ {' '.join(cmd)}\n")
    logfile.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env=env)
    last_pct, tail, errors = None, [], []
    for line in proc.stdout:
        logfile.write(line)
        tail = (tail + [line.rstrip()])[-60:]
        if ("error" in line or "Error" in line) and len(errors) < 200:
            errors.append(line.rstrip())
        m = _PERCENT.match(line.strip())
        if progress and m and m.group(1) != last_pct:
            last_pct = m.group(1)
            log(f"{what} {int(last_pct):3d}%  {m.group(2)[:90]}")
    if proc.wait() != 0:
        cause = tf.diagnose(errors + tail)
        first = next((ln for ln in errors if "error" in ln), None)
        raise BuildError(
            f"{what} failed (exit {proc.returncode})"
            + (f": missing or incompatible: {cause}" if cause else "")
            + (f"\nfirst error: {first}" if first else "")
            + "\nlast lines:\n" + "\n".join(tail[-25:]) + f"\nfull log: {logfile.name}")


def build(cfg: BuildConfig) -> BuildResult:
    if cfg.caffe_root is not None:
        ti.check_tree(cfg.caffe_root.resolve())  # fail before any slow step
        ti.check_injectable(cfg.caffe_root.resolve(), cfg.project_root)
    py = python_facts()
    check_python_dev(py)
    cfg.cache.mkdir(parents=True, exist_ok=True)
    python = _ensure_buildenv(cfg, py)
    cmake_version = toolchain.tool_version(["cmake", "--version"])
    toolchain_facts = {**compiler_facts(os.environ),
                       "protoc": _first_line(["protoc", "--version"]),
                       "cmake": _first_line(["cmake", "--version"]),
                       "numpy": _numpy_version(python)}
    if cfg.cuda:
        toolchain_facts["nvcc"] = _first_line(["nvcc", "--version"])
    required = (tf.required_features(cfg.caffe_root.resolve())
                if cfg.caffe_root is not None else {})
    check_features(required, cfg.extra_cmake_args)
    base = {"source": _source_id(cfg), "compat": compat.COMPAT_VERSION, "cuda": cfg.cuda,
            "archs": cfg.cuda_archs if cfg.cuda else [], "toolchain": toolchain_facts,
            "python": py, "features": sorted(required), "cmake_extra": cfg.extra_cmake_args,
            "layout": 2}
    if cfg.openmp:  # only when on, so the default build keeps its key (and its cache)
        base["openmp"] = True
    key = _sha(base)[:16]
    work = cfg.cache / f"caffe-{key}"
    work.mkdir(exist_ok=True)
    with open(cfg.cache / f"caffe-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        args = cmake_args(cfg, py, python, work / "install", required, cmake_version)
        return _build_locked(cfg, base, work, args)


def _prepare_tree(cfg: BuildConfig, work: Path) -> Dict[str, str]:
    """The build copy in work/src, fixed; returns what identifies its content for the stamp."""
    tree = work / "src"
    if cfg.caffe_root is not None:
        user = cfg.caffe_root.resolve()
        sync = tree_copy.sync_tree(user, tree, work)
        if sync.changed:
            log(f"copied {len(sync.copied)} file(s) of {user} into {tree}"
                + (f", removed {len(sync.deleted)}" if sync.deleted else "")
                + (f" (not copied: {', '.join(sync.skipped[:5])}"
                   + (", ..." if len(sync.skipped) > 5 else "") + ")" if sync.skipped else ""))
        fixes = compat.apply_fixes(tree, cfg.cuda)
        identity = {"tree": str(user), "files": sync.digest}
    else:
        fixes = []
        if not tree.is_dir():
            where = caffe_source.obtain_bvlc_tree(tree, cfg.cache / "downloads",
                                                  tarball=cfg.source_tarball,
                                                  url=cfg.source_url,
                                                  route=cfg.source_route, log=log)
            log(f"BVLC Caffe {caffe_source.COMMIT[:12]} from {where}")
            # Both CPU and CUDA fixes: the tree is private to this cache entry.
            fixes = compat.apply_fixes(tree, cuda=True)
        elif cfg.source_tarball is not None:
            log(f"the verified source is already in {tree}; --source-tarball not needed")
        identity = {"bvlc": caffe_source.CONTENT_SHA256}
    for line in fixes:
        log(f"compatibility fix (build copy): {line}")
    return identity


def _forget_installed_files(build_dir: Path):
    """Delete the files listed in build_dir's install_manifest.txt (written by the last install)."""
    manifest = build_dir / "install_manifest.txt"
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            path = Path(line.strip())
            if line.strip() and (path.is_file() or path.is_symlink()):
                path.unlink()


def _build_locked(cfg, base, work: Path, args: List[str]) -> BuildResult:
    prefix, build_dir, tree = work / "install", work / "build", work / "src"
    identity = _prepare_tree(cfg, work)
    plan = ti.plan_injection(tree, cfg.project_root)
    ti.apply_plan(tree, plan)
    for rel in sorted(plan.writes) + plan.deletes:
        log(f"injected: {rel}")
    stamp = {"base": base, "layers": _injected_digest(cfg.project_root), "tree": str(tree),
             "source": identity, "cmake_args": args}
    stamp_path = work / STAMP_NAME
    if (stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
            and (prefix / "bin" / "caffe").exists() and not plan.changes):
        log(f"Caffe with the layers is up to date in {prefix}")
        return BuildResult(prefix, tree, build_dir, rebuilt=False)
    if stamp_path.exists():
        stamp_path.unlink()   # a build stopped from here on must not look finished
    build_dir.mkdir(exist_ok=True)
    if shutil.which("ccache"):
        args = args + ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
                       "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
    with open(work / "build.log", "a") as logfile:
        log(f"configuring Caffe ({'CUDA ' + ','.join(cfg.cuda_archs) if cfg.cuda else 'CPU'}) "
            f"in {build_dir}; log: {logfile.name}")
        _run_logged(["cmake", "-S", str(tree), "-B", str(build_dir), *args], work, logfile,
                    "cmake", progress=False)
        log(f"building with {cfg.jobs} jobs (a cold build takes ~10 minutes on 2 cores)")
        # ccache sees paths relative to the cache root, so the same source compiled in another
        # cache entry (or another cache) is a hit.
        env = dict(os.environ, CCACHE_BASEDIR=str(cfg.cache.resolve()))
        _run_logged(["cmake", "--build", str(build_dir), "--", f"-j{cfg.jobs}"], work, logfile,
                    "caffe build", progress=True, env=env)
        # CMake's install skips a file whose time is within one second of the installed copy's
        # ("Up-to-date"), so a quick rebuild could leave the old file in place: remove what the
        # last install wrote, and every file is copied afresh.
        _forget_installed_files(build_dir)
        _run_logged(["cmake", "--install", str(build_dir)], work, logfile, "install",
                    progress=False)
    atomic_write(stamp_path, json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    log(f"Caffe with the layers installed in {prefix}")
    return BuildResult(prefix, tree, build_dir, rebuilt=True)
