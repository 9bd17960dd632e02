"""Copying the layers into a Caffe source tree and patching its caffe.proto.

Every file the project adds starts with FILE_MARKER, so the injector recognises its own files and
refuses to overwrite anybody else's. A manifest in the tree (MANIFEST_REL, one path per line,
relative to the tree) lists what was added last time, so a file that the project no longer ships
is removed on the next run; its entries must name files inside the tree's layer, include and test
folders, or nothing is done. Each entry also carries the SHA-256 of what was written, so a file the
user edited afterwards is told apart from an older project version ("modified") and is neither
overwritten nor deleted without force=True (older manifests without hashes: no such check).
Nothing is written before every check has passed, including a probe
that every folder to be written can be written; the writes themselves are atomic (temporary
file and rename), and if one fails anyway, those already made are undone. A symlinked caffe.proto
is patched at its target; the proto's byte-order mark and CRLF line endings are kept, so
`--remove` gives back the original bytes.
"""
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

from ..files import atomic_write
from .proto_injection import (ProjectProto, ProtoConflict, find_conflicts, inject,
                              injection_state, load_project_proto, strip_injection)
from .protofile import ProtoSyntaxError

FILE_MARKER = b"// Attention to Scale for Caffe: "
PROTO_REL = "src/caffe/proto/caffe.proto"
MANIFEST_REL = ".attention_scale_injected"
PROJECT_PROTO_REL = "caffe_layers/proto/attention_scale.proto"
# Where injected files go: the only places a manifest entry may name.
DEST_FOLDERS = ("include/", "src/caffe/layers/", "src/caffe/test/")
BOM = b"\xef\xbb\xbf"


class InjectionError(RuntimeError):
    """The injector refuses, or could not do, what it was asked; the tree is unchanged."""


class NotACaffeTree(InjectionError):
    pass


class InjectionConflict(InjectionError):
    pass


class CannotWrite(InjectionError):
    pass


def project_files(root: Path) -> Dict[str, Path]:
    """Destination (relative to the Caffe root) -> source file in the project checkout `root`.
    Everything under caffe_layers/include/ (sub-folders such as caffe/util/ included) goes to
    the tree's include/."""
    files: Dict[str, Path] = {}
    include = root / "caffe_layers" / "include"
    for src in sorted(include.rglob("*")):
        if src.is_file() and not src.name.startswith(".") and not src.name.endswith("~"):
            files[str(PurePosixPath("include", *src.relative_to(include).parts))] = src
    for pattern, folder, dest in (("*.cpp", root / "caffe_layers" / "src", "src/caffe/layers"),
                                  ("*.cu", root / "cuda", "src/caffe/layers"),
                                  ("*.cpp", root / "caffe_layers" / "test", "src/caffe/test")):
        for src in sorted(folder.glob(pattern)):
            files[f"{dest}/{src.name}"] = src
    return files


def load_project(root: Path) -> ProjectProto:
    return load_project_proto((root / PROJECT_PROTO_REL).read_text(encoding="utf-8"))


def _is_ours(data: bytes) -> bool:
    return data.startswith(FILE_MARKER)


def check_tree(tree: Path) -> None:
    if not tree.exists():
        raise NotACaffeTree(f"{tree}: no such directory (give the Caffe source tree's root)")
    if not tree.is_dir():
        raise NotACaffeTree(f"{tree} is not a directory (give the Caffe source tree's root)")
    for rel in (PROTO_REL, "include/caffe/layer.hpp"):
        if not (tree / rel).is_file():
            raise NotACaffeTree(f"{tree} is not a Caffe source tree: {rel} is missing")


def check_injectable(tree: Path, root: Path) -> None:
    """For a build copy of the user's `tree`: raise InjectionConflict, in terms of the user's
    tree and before anything is copied, if the layers could not go into the copy (a clash in
    its caffe.proto, a file of somebody else's where one of ours goes, ...) or an injected file
    edited there would silently be replaced by the checkout's version in the copy."""
    plan = plan_injection(tree, root, force=True)   # edits: below, with the build's remedy
    hashes = read_manifest_hashes(tree)
    problems = list(plan.conflicts)
    for rel in sorted(plan.writes):
        if rel != PROTO_REL and locally_modified(tree, rel, hashes):
            problems.append(
                f"{rel} was edited after it was injected into this tree, but the build copy "
                f"takes the layers from {root} (caffe_layers/, cuda/), so the edit would not be "
                "built: make it there, or take the injection out of this tree first "
                "(tools/inject_layers.py --remove; with --force once the edit is kept elsewhere)")
    if problems:
        raise InjectionConflict("\n  - ".join([f"refusing to build {tree}:"] + problems))


# --- caffe.proto as bytes: byte-order mark and line endings survive a round trip ---------------

@dataclass(frozen=True)
class TextStyle:
    bom: bool
    crlf: bool


def decode_proto(data: bytes) -> Tuple[str, TextStyle]:
    bom = data.startswith(BOM)
    if bom:
        data = data[len(BOM):]
    # CRLF only when every line ends so; mixed endings are kept as they are (\r is whitespace).
    crlf = b"\r\n" in data and data.count(b"\r\n") == data.count(b"\n")
    text = data.decode("utf-8", "surrogateescape")
    return (text.replace("\r\n", "\n") if crlf else text), TextStyle(bom, crlf)


def encode_proto(text: str, style: TextStyle) -> bytes:
    if style.crlf:
        text = text.replace("\n", "\r\n")
    return (BOM if style.bom else b"") + text.encode("utf-8", "surrogateescape")


def proto_target(tree: Path) -> Path:
    """The file to patch: caffe.proto itself, or the file its symlink points to."""
    path = tree / PROTO_REL
    return Path(os.path.realpath(path)) if path.is_symlink() else path


# --- the manifest ----------------------------------------------------------------------------

_HASH_PREFIX = "sha256:"


def manifest_text(files: Dict[str, bytes]) -> str:
    """One line per injected file: its path and the SHA-256 of the bytes written."""
    return "".join(f"{rel} {_HASH_PREFIX}{hashlib.sha256(data).hexdigest()}\n"
                   for rel, data in sorted(files.items()))


def read_manifest_hashes(tree: Path) -> Dict[str, str]:
    """{path: SHA-256 written} for the manifest's entries that carry one."""
    path = tree / MANIFEST_REL
    hashes = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith(_HASH_PREFIX):
                hashes[parts[0]] = parts[1][len(_HASH_PREFIX):]
    return hashes


def locally_modified(tree: Path, rel: str, hashes: Dict[str, str]) -> bool:
    """True when the file differs from what the injector wrote there (known from its hash)."""
    dest = tree / rel
    return (rel in hashes and dest.is_file() and not dest.is_symlink()
            and hashlib.sha256(dest.read_bytes()).hexdigest() != hashes[rel])


def _modified_conflict(rel: str, doing: str) -> str:
    return (f"{rel} was edited after it was injected (locally modified); {doing} would lose the "
            "edit: copy it elsewhere first, then run again with --force")


def read_manifest(tree: Path) -> Tuple[List[str], List[str]]:
    """(entries, problems): an entry must be a plain relative path inside one of DEST_FOLDERS
    that stays inside the tree once symlinks are followed."""
    path = tree / MANIFEST_REL
    if not path.is_file():
        return [], []
    entries, problems = [], []
    real_tree = os.path.realpath(tree)
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                  .splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        rel = fields[0] if len(fields) == 2 and fields[1].startswith(_HASH_PREFIX) else line.strip()
        parts = PurePosixPath(rel).parts
        where = f"{MANIFEST_REL} line {number}: {rel!r}"
        if (rel.startswith("/") or "\\" in rel or ".." in parts or "." in parts
                or not rel.startswith(DEST_FOLDERS)):
            problems.append(f"{where} is not a path inside the tree's "
                            f"{', '.join(DEST_FOLDERS)} folders (edited by hand?)")
        elif os.path.commonpath([real_tree, os.path.realpath(tree / rel)]) != real_tree:
            problems.append(f"{where} leads outside the tree through a symlink")
        else:
            entries.append(rel)
    return entries, problems


# --- planning --------------------------------------------------------------------------------

@dataclass
class Plan:
    """What an injection or removal would do; `apply_plan` carries it out."""
    writes: Dict[str, bytes] = field(default_factory=dict)
    deletes: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    conflicts: List[str] = field(default_factory=list)
    manifest: Optional[Dict[str, bytes]] = None   # what was injected; None: delete the manifest
    proto_path: Optional[Path] = None      # where PROTO_REL's bytes really live

    @property
    def changes(self) -> bool:
        return bool(self.writes or self.deletes)


def _dest_problem(tree: Path, rel: str) -> Optional[str]:
    """Why `rel` cannot be written as a plain file inside the tree, if it cannot."""
    dest = tree / rel
    if dest.is_symlink():
        return f"{rel} is a symlink; refusing to replace it"
    real_tree = os.path.realpath(tree)
    parent = os.path.realpath(dest.parent)
    if os.path.commonpath([real_tree, parent]) != real_tree:
        return f"{rel}: its folder leads outside the tree ({parent}) through a symlink"
    return None


def _plan_proto(tree: Path, plan: Plan, change) -> None:
    target = proto_target(tree)
    if not target.is_file():
        plan.conflicts.append(f"{PROTO_REL} is a symlink to {target}, which does not exist")
        return
    plan.proto_path = target
    data = target.read_bytes()
    text, style = decode_proto(data)
    try:
        new = change(text, str(target))
    except ProtoConflict as err:
        plan.conflicts.append(str(err))
        return
    except ProtoSyntaxError as err:
        raise ProtoSyntaxError(f"{target}: {err}") from None
    new_data = encode_proto(new, style)
    if new_data == data:
        plan.unchanged.append(PROTO_REL)
    else:
        plan.writes[PROTO_REL] = new_data


def plan_injection(tree: Path, root: Path, force: bool = False) -> Plan:
    check_tree(tree)
    plan = Plan()
    files = project_files(root)
    hashes = read_manifest_hashes(tree)
    wanted = {}
    for rel, src in files.items():
        want = wanted[rel] = src.read_bytes()
        if not _is_ours(want):
            raise InjectionConflict(f"{src} does not start with the marker "
                                    f"{FILE_MARKER.decode().strip()!r}; every injected file must")
        problem = _dest_problem(tree, rel)
        if problem:
            plan.conflicts.append(problem)
            continue
        dest = tree / rel
        if dest.is_file():
            have = dest.read_bytes()
            if have == want:
                plan.unchanged.append(rel)
                continue
            if not _is_ours(have):
                plan.conflicts.append(f"{rel} exists and was not written by this tool")
                continue
            if not force and locally_modified(tree, rel, hashes):
                plan.conflicts.append(_modified_conflict(rel, "updating it"))
                continue
        plan.writes[rel] = want
    entries, problems = read_manifest(tree)
    plan.conflicts.extend(problems)
    for rel in entries:
        dest = tree / rel
        if rel not in files and dest.is_file() and not dest.is_symlink() \
                and _is_ours(dest.read_bytes()):
            if not force and locally_modified(tree, rel, hashes):
                plan.conflicts.append(_modified_conflict(rel, "removing it (no longer shipped)"))
                continue
            plan.deletes.append(rel)
    project = load_project(root)
    _plan_proto(tree, plan, lambda text, name: inject(text, project, name))
    plan.manifest = wanted
    return plan


def plan_removal(tree: Path, root: Path, force: bool = False) -> Plan:
    check_tree(tree)
    plan = Plan()
    entries, problems = read_manifest(tree)
    plan.conflicts.extend(problems)
    hashes = read_manifest_hashes(tree)
    for rel in sorted(set(entries) | set(project_files(root))):
        dest = tree / rel
        if dest.is_file() and not dest.is_symlink() and _is_ours(dest.read_bytes()):
            if not force and locally_modified(tree, rel, hashes):
                plan.conflicts.append(_modified_conflict(rel, "removing it"))
                continue
            plan.deletes.append(rel)
    _plan_proto(tree, plan, lambda text, name: strip_injection(text))
    return plan


# --- carrying a plan out ---------------------------------------------------------------------

def _target(tree: Path, plan: Plan, rel: str) -> Path:
    return plan.proto_path if rel == PROTO_REL and plan.proto_path else tree / rel


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path) -> Optional[str]:
    """None if a file can be created (and removed) in `folder`, else why not. A real probe,
    not os.access: it also catches read-only mounts, and root ignores permission bits."""
    try:
        fd, name = tempfile.mkstemp(prefix=".attention_scale_probe.", dir=folder)
        os.close(fd)
        os.unlink(name)
        return None
    except OSError as err:
        return err.strerror or str(err)


def preflight(tree: Path, plan: Plan) -> None:
    """Every folder this plan writes into (or would create a folder in) must be writable."""
    folders: Dict[Path, List[str]] = {}
    for rel in list(plan.writes) + plan.deletes:
        folders.setdefault(_nearest_existing(_target(tree, plan, rel).parent), []).append(rel)
    manifest = tree / MANIFEST_REL
    if plan.manifest is not None or manifest.exists():
        folders.setdefault(tree, []).append(MANIFEST_REL)
    problems = []
    for folder, rels in sorted(folders.items()):
        why = _probe(folder)
        if why:
            problems.append(f"{folder}: {why} (needed for {', '.join(rels[:3])}"
                            f"{', ...' if len(rels) > 3 else ''})")
    if problems:
        raise CannotWrite(f"cannot write into {tree}; nothing was changed:\n  - "
                          + "\n  - ".join(problems))


def apply_plan(tree: Path, plan: Plan) -> None:
    if plan.conflicts:
        raise InjectionConflict(f"refusing to touch {tree}:\n  - " + "\n  - ".join(plan.conflicts))
    manifest = tree / MANIFEST_REL
    new_manifest = None if plan.manifest is None else manifest_text(plan.manifest)
    manifest_changes = (manifest.exists() if new_manifest is None else
                        not manifest.is_file() or manifest.read_text() != new_manifest)
    if not plan.changes and not manifest_changes:
        return
    preflight(tree, plan)
    undo: List[Tuple[Path, Optional[bytes]]] = []   # (path, bytes before or None: new file)
    made_dirs: List[Path] = []
    try:
        for rel, data in plan.writes.items():
            target = _target(tree, plan, rel)
            missing = []
            parent = target.parent
            while not parent.exists():
                missing.append(parent)
                parent = parent.parent
            made_dirs.extend(reversed(missing))
            undo.append((target, target.read_bytes() if target.exists() else None))
            atomic_write(target, data)
        for rel in plan.deletes:
            target = tree / rel
            undo.append((target, target.read_bytes()))
            target.unlink()
        if manifest_changes:
            undo.append((manifest, manifest.read_bytes() if manifest.exists() else None))
            if new_manifest is None:
                manifest.unlink()
            else:
                atomic_write(manifest, new_manifest.encode())
    except OSError as err:
        failed = _rollback(undo, made_dirs)
        raise CannotWrite(f"writing into {tree} failed ({err}); "
                          + ("the changes made so far were undone" if not failed else
                             "could not undo: " + "; ".join(failed))) from err


def _rollback(undo, made_dirs) -> List[str]:
    failed = []
    for path, before in reversed(undo):
        try:
            if before is None:
                if path.exists():
                    path.unlink()
            else:
                atomic_write(path, before)
        except OSError as err:
            failed.append(f"{path}: {err}")
    for folder in reversed(made_dirs):
        try:
            folder.rmdir()
        except OSError:
            pass
    return failed


def conflict_reasons(tree: Path, root: Path) -> List[str]:
    """Why an injection into `tree` would be refused (what `tree_state` calls 'conflict')."""
    return plan_injection(tree, root).conflicts


def tree_state(tree: Path, root: Path) -> Dict[str, str]:
    """Per path: 'current', 'missing', 'outdated' (an older project version), 'modified' (edited
    after injection), 'stale' (to delete), 'not injected' (the proto) or 'conflict'."""
    check_tree(tree)
    state: Dict[str, str] = {}
    hashes = read_manifest_hashes(tree)
    for rel, src in project_files(root).items():
        dest = tree / rel
        if _dest_problem(tree, rel):
            state[rel] = "conflict"
        elif not dest.is_file():
            state[rel] = "missing"
        elif dest.read_bytes() == src.read_bytes():
            state[rel] = "current"
        else:
            state[rel] = ("conflict" if not _is_ours(dest.read_bytes()) else
                          "modified" if locally_modified(tree, rel, hashes) else "outdated")
    entries, problems = read_manifest(tree)
    if problems:
        state[MANIFEST_REL] = "conflict"
    for rel in entries:
        if rel not in state and (tree / rel).is_file():
            state[rel] = "modified" if locally_modified(tree, rel, hashes) else "stale"
    target = proto_target(tree)
    if not target.is_file():
        state[PROTO_REL] = "conflict"
        return state
    text, _ = decode_proto(target.read_bytes())
    project = load_project(root)
    try:
        clash = find_conflicts(strip_injection(text), project)
    except ProtoSyntaxError as err:
        raise ProtoSyntaxError(f"{target}: {err}") from None
    if clash:
        state[PROTO_REL] = "conflict"
    else:
        proto = injection_state(text, project)
        # the file is there; only the injected block is not
        state[PROTO_REL] = {"absent": "not injected"}.get(proto, proto)
    return state
