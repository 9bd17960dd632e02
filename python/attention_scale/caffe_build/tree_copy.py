"""A build copy of a user's Caffe tree, kept in step with it cheaply.

`--caffe-root` never writes into the user's tree: it is mirrored into the cache, and the
compatibility fixes and the layers go into the copy. A file is copied again only when its size,
modification time or mode in the user's tree changed since the last copy (recorded in a state
file), so a fixed or injected file in the copy is not overwritten on every run, copies keep
a fresh modification time, so make recompiles exactly what the user edited. Files the user
deleted disappear from the copy. The recorded state is also the tree's cheap content stand-in
for the build stamp. A symlink that stays inside the tree is copied as a symlink; one that leads
out of it (an absolute path, `../..`) is copied as what it points to (a file, or a folder's
files), so that the fixes and the layers written into the copy never reach the user's files
through it.
"""
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from ..files import atomic_write

# Folders that are never source: version control, make's and CMake's build outputs.
SKIP_DIRS = {".git", ".hg", ".svn", ".build_release", ".build_debug", "distribute",
             "__pycache__", ".ipynb_checkpoints"}
# Files that are data rather than source: trained weights, solver states, big downloads.
SKIP_SUFFIXES = (".caffemodel", ".solverstate", ".mdb", ".o", ".a", ".so")
MAX_FILE_BYTES = 32 << 20
STATE_NAME = "source-state.json"


@dataclass
class SyncResult:
    copied: List[str] = field(default_factory=list)
    deleted: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    digest: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.copied or self.deleted)


def _leads_out(path: Path, real_src: str) -> bool:
    """True for a symlink whose target exists outside the tree (real path `real_src`)."""
    real = os.path.realpath(path)
    return os.path.exists(real) and os.path.commonpath([real_src, real]) != real_src


def _scan(src: Path, skipped: List[str]) -> Dict[str, list]:
    """relative path -> [kind, size, mtime_ns, mode] (or ["link", target]) of the user's tree.
    Symlinks out of the tree are followed: their files are entries of kind "file"."""
    found: Dict[str, list] = {}
    real_src = os.path.realpath(src)
    visited = {real_src}   # real folders walked: a link back into them would loop
    for folder, dirs, files in os.walk(src, followlinks=True):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            path = here / d
            rel = str(path.relative_to(src))
            real = os.path.realpath(path)
            if d in SKIP_DIRS or (path / "CMakeCache.txt").is_file():
                skipped.append(rel + "/")
            elif path.is_symlink() and not _leads_out(path, real_src):
                found[rel] = ["link", os.readlink(path)]
            elif real in visited or os.path.commonpath([real, real_src]) == real:
                skipped.append(rel + "/ (a symlink back into a folder already copied)")
            else:
                visited.add(real)
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            path = here / name
            rel = str(path.relative_to(src))
            if path.is_symlink() and not _leads_out(path, real_src):
                found[rel] = ["link", os.readlink(path)]
                continue
            st = path.stat()
            if name.endswith(SKIP_SUFFIXES) or st.st_size > MAX_FILE_BYTES:
                skipped.append(rel)
                continue
            found[rel] = ["file", st.st_size, st.st_mtime_ns, st.st_mode & 0o777]
    return found


def sync_tree(src: Path, dst: Path, state_dir: Path) -> SyncResult:
    """Bring `dst` in step with `src`; files in `dst` that `src` never had (the injected layers,
    the manifest) are left alone."""
    result = SyncResult()
    state_path = state_dir / STATE_NAME
    try:
        before = json.loads(state_path.read_text()) if dst.is_dir() else {}
    except (OSError, ValueError):
        before = {}
    now = _scan(src, result.skipped)
    dst.mkdir(parents=True, exist_ok=True)
    for rel in sorted(set(before) - set(now)):
        target = dst / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        result.deleted.append(rel)
    for rel, info in sorted(now.items()):
        target = dst / rel
        if before.get(rel) == info and (target.is_symlink() or target.exists()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if info[0] == "link":
            os.symlink(info[1], target)
        else:
            shutil.copy(src / rel, target)   # a new mtime: make recompiles it
        result.copied.append(rel)
    if result.changed or not state_path.is_file():
        atomic_write(state_path, json.dumps(now, sort_keys=True))
    result.digest = hashlib.sha256(json.dumps(now, sort_keys=True).encode()).hexdigest()
    return result
