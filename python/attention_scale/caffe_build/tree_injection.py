"""Copying the layers into a Caffe source tree and patching its caffe.proto.

Every file the project adds starts with FILE_MARKER, so the injector recognises its own files and
refuses to overwrite anybody else's. A manifest in the tree lists what was added last time, so a
file that the project no longer ships is removed on the next run. Writes are atomic (temporary
file and rename) and nothing is written before every check has passed.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..files import atomic_write
from .proto_injection import (ProjectProto, ProtoConflict, find_conflicts, inject,
                              injection_state, load_project_proto, strip_injection)

FILE_MARKER = b"// Attention to Scale for Caffe: "
PROTO_REL = "src/caffe/proto/caffe.proto"
MANIFEST_REL = ".attention_scale_injected"
PROJECT_PROTO_REL = "caffe_layers/proto/attention_scale.proto"


class NotACaffeTree(RuntimeError):
    pass


class InjectionConflict(RuntimeError):
    pass


def project_files(root: Path) -> Dict[str, Path]:
    """Destination (relative to the Caffe root) -> source file in the project checkout `root`."""
    files: Dict[str, Path] = {}
    include = root / "caffe_layers" / "include"
    for src in sorted(include.rglob("*.hpp")):
        files[str(Path("include") / src.relative_to(include))] = src
    for pattern, folder, dest in (("*.cpp", root / "caffe_layers" / "src", "src/caffe/layers"),
                                  ("*.cu", root / "cuda", "src/caffe/layers"),
                                  ("*.cpp", root / "caffe_layers" / "test", "src/caffe/test")):
        for src in sorted(folder.glob(pattern)):
            files[f"{dest}/{src.name}"] = src
    return files


def load_project(root: Path) -> ProjectProto:
    return load_project_proto((root / PROJECT_PROTO_REL).read_text())


def _is_ours(data: bytes) -> bool:
    return data.startswith(FILE_MARKER)


def check_tree(tree: Path) -> None:
    for rel in (PROTO_REL, "include/caffe/layer.hpp"):
        if not (tree / rel).is_file():
            raise NotACaffeTree(f"{tree} is not a Caffe source tree: {rel} is missing")


@dataclass
class Plan:
    """What an injection or removal would do; `apply_plan` carries it out."""
    writes: Dict[str, bytes] = field(default_factory=dict)
    deletes: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    conflicts: List[str] = field(default_factory=list)
    manifest: Optional[List[str]] = None   # None: delete the manifest

    @property
    def changes(self) -> bool:
        return bool(self.writes or self.deletes)


def _read_manifest(tree: Path) -> List[str]:
    path = tree / MANIFEST_REL
    return path.read_text().split() if path.is_file() else []


def plan_injection(tree: Path, root: Path) -> Plan:
    check_tree(tree)
    plan = Plan()
    files = project_files(root)
    for rel, src in files.items():
        want = src.read_bytes()
        if not _is_ours(want):
            raise InjectionConflict(f"{src} does not start with the marker "
                                    f"{FILE_MARKER.decode().strip()!r}; every injected file must")
        dest = tree / rel
        if dest.is_file():
            have = dest.read_bytes()
            if have == want:
                plan.unchanged.append(rel)
                continue
            if not _is_ours(have):
                plan.conflicts.append(f"{rel} exists and was not written by this tool")
                continue
        plan.writes[rel] = want
    for rel in _read_manifest(tree):
        dest = tree / rel
        if rel not in files and dest.is_file() and _is_ours(dest.read_bytes()):
            plan.deletes.append(rel)
    proto_text = (tree / PROTO_REL).read_text()
    try:
        new_proto = inject(proto_text, load_project(root))
    except ProtoConflict as err:
        plan.conflicts.append(str(err))
    else:
        if new_proto == proto_text:
            plan.unchanged.append(PROTO_REL)
        else:
            plan.writes[PROTO_REL] = new_proto.encode()
    plan.manifest = sorted(files)
    return plan


def plan_removal(tree: Path, root: Path) -> Plan:
    check_tree(tree)
    plan = Plan()
    for rel in sorted(set(_read_manifest(tree)) | set(project_files(root))):
        dest = tree / rel
        if dest.is_file() and _is_ours(dest.read_bytes()):
            plan.deletes.append(rel)
    proto_text = (tree / PROTO_REL).read_text()
    stripped = strip_injection(proto_text)
    if stripped != proto_text:
        plan.writes[PROTO_REL] = stripped.encode()
    return plan


def apply_plan(tree: Path, plan: Plan) -> None:
    if plan.conflicts:
        raise InjectionConflict(f"refusing to touch {tree}:\n  - " + "\n  - ".join(plan.conflicts))
    for rel, data in plan.writes.items():
        atomic_write(tree / rel, data)
    for rel in plan.deletes:
        (tree / rel).unlink()
    manifest = tree / MANIFEST_REL
    if plan.manifest is None:
        if manifest.exists():
            manifest.unlink()
    elif not manifest.is_file() or manifest.read_text().split() != plan.manifest:
        atomic_write(manifest, ("\n".join(plan.manifest) + "\n").encode())


def tree_state(tree: Path, root: Path) -> Dict[str, str]:
    """Per path: 'current', 'missing', 'outdated', 'stale' (to delete) or 'conflict'."""
    check_tree(tree)
    state: Dict[str, str] = {}
    for rel, src in project_files(root).items():
        dest = tree / rel
        if not dest.is_file():
            state[rel] = "missing"
        elif dest.read_bytes() == src.read_bytes():
            state[rel] = "current"
        else:
            state[rel] = "outdated" if _is_ours(dest.read_bytes()) else "conflict"
    for rel in _read_manifest(tree):
        if rel not in state and (tree / rel).is_file():
            state[rel] = "stale"
    text = (tree / PROTO_REL).read_text()
    project = load_project(root)
    if find_conflicts(strip_injection(text), project):
        state[PROTO_REL] = "conflict"
    else:
        proto = injection_state(text, project)
        state[PROTO_REL] = {"absent": "missing"}.get(proto, proto)
    return state
