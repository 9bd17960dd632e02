"""A self-contained copy of a built Caffe, its Python and the packages a command needs, as one
.tar.xz, for a machine that can run it but cannot build it (a GPU node with another Linux, no
compilers or system packages): the shared libraries come along (their ldd closure), except the
C library and the GPU driver, which must be the target's own, and the CUDA libraries, which the
target's toolkit provides. libstdc++ and libgcc_s go to fallback/ (use them only where the
target's are older than the build machine's).

Layout: python/ (the interpreter, its shared library and standard library), site/ (packages),
caffe/ (the install: lib/, bin/, python/), bin/ (extra executables), lib/ (the closure),
fallback/, env.sh (sets PATH-like variables relative to where it is unpacked).
"""

import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

from . import toolchain, venv_wiring

# Never packed: the C library (the target's own must be used) and the GPU driver's libraries.
SYSTEM = re.compile(r"^(linux-vdso|ld-linux|libc\.|libm\.|libpthread\.|libdl\.|librt\.|"
                    r"libutil\.|libresolv\.|libcuda\.|libnvidia)")
# Provided by the target's CUDA toolkit (cuBLAS alone is over 500 MB).
CUDA = re.compile(r"^(libcudart|libcublas|libcublasLt|libcurand|libcudnn|libnccl)\.")
FALLBACK = re.compile(r"^(libstdc\+\+|libgcc_s)\.")
# Parts of the standard library a benchmark or test never imports.
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "site-packages", "__pycache__", "unittest/test", "distutils/tests"}

# pycaffe's caffe.io imports scikit-image and scipy at import time (over 150 MB with what they
# pull in) for image helpers that nets, solvers and the benchmarks never call: stand-ins that
# import and raise on use take their place unless the packages are packed.
PYCAFFE_STUBS = ("skimage.io", "skimage.transform", "scipy.ndimage")

STUB = '''"""Stand-in written by tools/pack_portable.py: {package} was not packed. It imports;
calling anything of it raises ImportError."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise ImportError(f"{{__name__}}.{{name}}: {package} was left out of this bundle "
                          "(tools/pack_portable.py --package {package})")
    return missing
'''

ENV_SH = """# source this file: the bundle's Python, pycaffe and libraries, wherever it was unpacked
B=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONHOME="$B/python" PYTHONPATH="$B/site:$B/caffe/python" PYTHONNOUSERSITE=1
export LD_LIBRARY_PATH="$B/lib:$B/caffe/lib:$B/python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$B/bin:$B/caffe/bin:$B/python/bin:$PATH"
""" + venv_wiring.PURE_PYTHON_PROTOBUF_SH.format(site="$B/site")


def ldd_closure(paths):
    """{soname: resolved path} of every shared library the files in `paths` load."""
    found = {}
    for path in paths:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            match = re.match(r"\s*(\S+) => (/\S+)", line)
            if match:
                found.setdefault(match.group(1), match.group(2))
            elif "not found" in line:
                raise RuntimeError(f"{path}: ldd cannot resolve {line.strip()}")
    return found


def _elf_files(root):
    for path in Path(root).rglob("*"):
        if path.is_file() and (path.suffix == ".so" or ".so." in path.name
                               or os.access(path, os.X_OK)):
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def _left_out(name):
    """Byte code, static libraries and the Tk extension (it pulls in X11) are not packed."""
    base = name.rsplit("/", 1)[-1]
    return "__pycache__" in name or name.endswith((".pyc", ".a")) or base.startswith("_tkinter")


def _member_filter(info):
    return None if _left_out(info.name) else info


def _stdlib_filter(info):
    """_member_filter, and the parts of the standard library in STDLIB_SKIP."""
    parts = Path(info.name).parts[3:]  # below python/lib/pythonX.Y
    if parts and (parts[0] in STDLIB_SKIP or "/".join(parts[:2]) in STDLIB_SKIP
                  or parts[0].startswith("config-")):
        return None
    return _member_filter(info)


def stub_files(modules, packages):
    """{archive name: text} of stand-ins for the dotted `modules` whose top-level package is
    not among `packages`."""
    files = {}
    for module in modules:
        parts = module.split(".")
        if parts[0] in packages:
            continue
        text = STUB.format(package=parts[0])
        for depth in range(1, len(parts)):
            files["site/" + "/".join(parts[:depth]) + "/__init__.py"] = text
        files["site/" + "/".join(parts) + ".py"] = text
    return files


def distribution_folders(site_packages, packages):
    """The `*.dist-info` folders in site_packages of the distributions that provide any of the
    top-level `packages` (by their top_level.txt, else the first parts of their RECORD): packed
    beside them so that importlib.metadata finds them (pluggy, for one, asks it for its own
    version when pytest starts)."""
    wanted, found = set(packages), []
    for info in sorted(Path(site_packages).glob("*.dist-info")):
        top_level = info / "top_level.txt"
        if top_level.is_file():
            names = set(top_level.read_text().split())
        elif (info / "RECORD").is_file():
            names = {line.split(",", 1)[0].split("/", 1)[0].removesuffix(".py")
                     for line in (info / "RECORD").read_text().splitlines() if line}
        else:
            continue
        if names & wanted:
            found.append(info)
    return found


def pack(output, caffe_prefix, site_packages, packages, extra_binaries=(), python=None,
         stubs=PYCAFFE_STUBS, preset=6):
    """Write `output` (.tar.xz, xz `preset`; written whole or not at all) and return the
    archive names of the shared libraries packed. packages: top-level names in site_packages
    (a name's `.libs` folder of vendored libraries and its distribution's `.dist-info` come
    along); stubs: modules to stand in for (stub_files)."""
    python = Path(python or sys.executable).resolve()
    base = Path(sys.base_prefix)
    version = sysconfig.get_python_version()
    # the interpreter's shared library, where it has one (a static build has none to pack)
    libpython = None
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libpython = toolchain.python_library()
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(base),
                                            "base": str(base)})["stdlib"])
    site_packages, caffe_prefix = Path(site_packages), Path(caffe_prefix)
    members = [(python, f"python/bin/python{version}")]  # (source, name in the archive)
    if libpython and libpython.is_file():  # under its soname, which the interpreter asks for
        members.append((libpython.resolve(), f"python/lib/libpython{version}.so.1.0"))
    for name in packages:
        if not any((site_packages / n).exists() for n in (name, f"{name}.py")):
            raise FileNotFoundError(f"package {name!r} is not in {site_packages}")
        for candidate in (site_packages / name, site_packages / f"{name}.libs",
                          site_packages / f"{name}.py"):
            if candidate.exists():
                members.append((candidate, f"site/{candidate.name}"))
    members += [(info, f"site/{info.name}") for info in distribution_folders(site_packages,
                                                                             packages)]
    for sub in ("lib", "bin", "python"):
        if (caffe_prefix / sub).is_dir():
            members.append((caffe_prefix / sub, f"caffe/{sub}"))
    members += [(Path(binary), f"bin/{Path(binary).name}") for binary in extra_binaries]

    # What every packed executable and extension loads, and the standard library's extensions.
    elves = [src for src, _ in members if src.is_file()]
    elves += [p for src, _ in members if src.is_dir() for p in _elf_files(src)]
    elves += [p for p in _elf_files(stdlib / "lib-dynload") if not _left_out(p.name)]
    packed_dirs = [src.resolve() for src, _ in members if src.is_dir()]
    libs = {}
    for soname, path in ldd_closure(elves).items():
        resolved = Path(path).resolve()
        if SYSTEM.match(soname) or CUDA.match(soname) or soname.startswith("libpython") \
                or any(d in resolved.parents for d in packed_dirs):
            continue
        folder = "fallback" if FALLBACK.match(soname) else "lib"
        libs[f"{folder}/{soname}"] = resolved

    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    try:
        with tarfile.open(partial, "w:xz", preset=preset) as tar:
            for source, name in members:
                tar.add(source, arcname=name, filter=_member_filter)
            tar.add(stdlib, arcname=f"python/lib/python{version}", filter=_stdlib_filter)
            for name, source in sorted(libs.items()):
                tar.add(source, arcname=name)
            texts = dict(stub_files(stubs, set(packages)), **{"env.sh": ENV_SH})
            for name, text in sorted(texts.items()):
                info = tarfile.TarInfo(name)
                data = text.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return sorted(libs)
