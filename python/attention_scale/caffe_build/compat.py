"""The minimal source fixes BVLC Caffe (2018) and its forks need with today's toolchain.

Each fix is a text replacement (literal, or a regular expression) in the files its globs match;
a fix whose old text is absent is skipped, so applying the list twice changes nothing, and a
fork that already carries the fix is left alone. They are applied to build copies only (the
cache's tree), never to a user's own tree.
"""
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

# Part of the build cache key: bump when the list below changes.
COMPAT_VERSION = 2

_OPENCV_USERS = ("src/caffe/**/*.cpp", "src/caffe/**/*.cu", "include/caffe/**/*.hpp",
                 "tools/*.cpp", "examples/**/*.cpp")


@dataclass(frozen=True)
class Fix:
    paths: Tuple[str, ...]   # globs relative to the tree root
    why: str
    old: str
    new: str
    regex: bool = False
    cuda_only: bool = False


FIXES = [
    Fix(("src/caffe/util/io.cpp",),
        "protobuf >= 3.21 has only the one-argument CodedInputStream::SetTotalBytesLimit",
        r"SetTotalBytesLimit\(\s*kProtoReadBytesLimit\s*,\s*536870912\s*\)",
        "SetTotalBytesLimit(kProtoReadBytesLimit)", regex=True),
    Fix(_OPENCV_USERS, "OpenCV 4 removed CV_LOAD_IMAGE_COLOR (cv::IMREAD_COLOR)",
        r"\bCV_LOAD_IMAGE_COLOR\b", "cv::IMREAD_COLOR", regex=True),
    Fix(_OPENCV_USERS, "OpenCV 4 removed CV_LOAD_IMAGE_GRAYSCALE (cv::IMREAD_GRAYSCALE)",
        r"\bCV_LOAD_IMAGE_GRAYSCALE\b", "cv::IMREAD_GRAYSCALE", regex=True),
    Fix(_OPENCV_USERS, "OpenCV 4 removed CV_LOAD_IMAGE_UNCHANGED (cv::IMREAD_UNCHANGED)",
        r"\bCV_LOAD_IMAGE_UNCHANGED\b", "cv::IMREAD_UNCHANGED", regex=True),
    Fix(("src/caffe/common.cpp",), "CUDA 13 removed cudaDeviceProp::clockRate",
        '  LOG(INFO) << "Clock rate:                    " << prop.clockRate;\n', "",
        cuda_only=True),
    Fix(("src/caffe/common.cpp",), "CUDA 13 removed cudaDeviceProp::deviceOverlap",
        '(prop.deviceOverlap ? "Yes" : "No")', '(prop.asyncEngineCount > 0 ? "Yes" : "No")',
        cuda_only=True),
    Fix(("src/caffe/common.cpp",), "CUDA 13 removed cudaDeviceProp::kernelExecTimeoutEnabled",
        '  LOG(INFO) << "Kernel execution timeout:      "\n'
        '      << (prop.kernelExecTimeoutEnabled ? "Yes" : "No");\n', "",
        cuda_only=True),
]


def _files(tree: Path, globs: Tuple[str, ...]) -> List[Path]:
    seen = []
    for pattern in globs:
        for path in sorted(tree.glob(pattern)):
            if path.is_file() and not path.is_symlink() and path not in seen:
                seen.append(path)
    return seen


def planned_fixes(tree: Path, cuda: bool) -> Dict[Path, Tuple[bytes, bytes, List[str]]]:
    """file -> (bytes now, bytes fixed, why) for every file a fix changes; writes nothing."""
    planned: Dict[Path, Tuple[bytes, bytes, List[str]]] = {}
    for fix in FIXES:
        if fix.cuda_only and not cuda:
            continue
        for path in _files(tree, fix.paths):
            before, current, whys = planned.get(path, (path.read_bytes(), None, []))
            text = (current if current is not None else before).decode("utf-8",
                                                                      "surrogateescape")
            if fix.regex:
                new, count = re.subn(fix.old, fix.new, text)
            else:
                count = text.count(fix.old)
                new = text.replace(fix.old, fix.new)
            if count:
                planned[path] = (before, new.encode("utf-8", "surrogateescape"), whys + [fix.why])
    return planned


def apply_fixes(tree: Path, cuda: bool) -> List[str]:
    """Apply the fixes a CPU (or CUDA) build needs; return a line per file and fix applied."""
    applied = []
    for path, (_, fixed, whys) in planned_fixes(tree, cuda).items():
        path.write_bytes(fixed)
        applied.extend(f"{path.relative_to(tree)}: {why}" for why in whys)
    return applied


def fixes_as_patch(tree: Path, cuda: bool) -> str:
    """The fixes as a unified diff for `patch -p1` in the tree (`patch -R -p1` undoes it):
    for building a tree by hand (make), where the build copy does not apply."""
    chunks = []
    for path, (before, fixed, whys) in planned_fixes(tree, cuda).items():
        rel = str(path.relative_to(tree))
        chunks.append("".join(f"# {why}\n" for why in whys))
        chunks.extend(difflib.unified_diff(
            before.decode("utf-8", "surrogateescape").splitlines(keepends=True),
            fixed.decode("utf-8", "surrogateescape").splitlines(keepends=True),
            f"a/{rel}", f"b/{rel}"))
    return "".join(chunks)
