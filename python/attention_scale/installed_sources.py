"""Which sources an installed attention_scale was built from, so a stale install is noticed.

`pip install .` (what tools/setup.sh runs) copies python/attention_scale into the environment's
site-packages. An edit or a `git pull` in the checkout after it does not reach that copy until
the install runs again, and the tools would go on running the old code without a word. The
build (setup.py) writes a digest of every source file into the installed package; `stale_message`
compares it with a checkout.

Standard library only: setup.py loads this file by path before the package is built.
"""

import hashlib
import json
from pathlib import Path

RECORD_NAME = "_installed_sources.json"
# Source files relative to the repository root: the package's own files and the layers' .proto
# (the parameters module is generated from it).
PACKAGE_DIR = "python/attention_scale"
EXTRA_SOURCES = ("caffe_layers/proto/attention_scale.proto",)
SOURCE_SUFFIXES = (".py", ".pyx", ".proto")
REINSTALL_ADVICE = ("run `bash tools/setup.sh` again (or `.venv/bin/python -m pip install "
                    "--no-build-isolation --no-deps .` in the repository root)")


def _is_source(path):
    return (path.suffix in SOURCE_SUFFIXES and not path.name.endswith("_pb2.py")
            and "__pycache__" not in path.parts and path.is_file())


def source_digests(repo_root):
    """{path relative to repo_root: sha256 hex} of every source the package is built from."""
    root = Path(repo_root)
    paths = [p for p in sorted((root / PACKAGE_DIR).rglob("*")) if _is_source(p)]
    paths += [root / name for name in EXTRA_SOURCES if (root / name).is_file()]
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in paths}


def write_record(installed_package_dir, repo_root):
    """Record the digests of repo_root's sources inside the package being built."""
    record = {"repository": str(Path(repo_root).resolve()), "sources": source_digests(repo_root)}
    path = Path(installed_package_dir) / RECORD_NAME
    path.write_text(json.dumps(record, indent=0, sort_keys=True) + "\n")
    return path


def read_record(installed_package_dir):
    """The record written at build time, or None (a build older than the record, or a checkout)."""
    try:
        return json.loads((Path(installed_package_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def differences(recorded, current):
    """(changed, added, removed): paths, each sorted."""
    changed = sorted(p for p in recorded.keys() & current.keys() if recorded[p] != current[p])
    added = sorted(current.keys() - recorded.keys())
    return changed, added, sorted(recorded.keys() - current.keys())


def stale_message(installed_package_dir, repo_root, shown=4):
    """None when the installed package was built from repo_root's sources as they are now;
    otherwise a sentence naming the files that differ and how to reinstall.

    A package imported from the checkout itself (no install) is never stale, and a repo_root
    without the package's sources (a copied tools/ folder) says nothing."""
    installed = Path(installed_package_dir).resolve()
    checkout = (Path(repo_root) / PACKAGE_DIR).resolve()
    if installed == checkout or not checkout.is_dir():
        return None
    record = read_record(installed)
    if record is None:
        return (f"the attention_scale package in {installed} was built without a record of its "
                f"sources (an older install), so it may not match this checkout's "
                f"{PACKAGE_DIR}: {REINSTALL_ADVICE}")
    changed, added, removed = differences(record.get("sources", {}), source_digests(repo_root))
    if not (changed or added or removed):
        return None
    parts = []
    for label, paths in (("changed", changed), ("new", added), ("removed", removed)):
        if paths:
            more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
            parts.append(f"{label}: {', '.join(paths[:shown])}{more}")
    return (f"the attention_scale package in {installed} was built from other sources than "
            f"this checkout holds now ({'; '.join(parts)}); the tools run the installed code, "
            f"not the checkout's: {REINSTALL_ADVICE}")
