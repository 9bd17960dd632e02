"""What optional libraries a Caffe tree cannot be built without.

BVLC Caffe guards its uses of OpenCV, LMDB and LevelDB with `#ifdef USE_OPENCV` (...), so a CPU
build can switch them off. Forks are not always as careful: DeepLab-v2 includes OpenCV unguarded
in data_transformer.cpp and reads .mat files with matio. A library is required when one of the
tree's sources includes it outside a preprocessor block that names the library's USE_ macro.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Feature:
    name: str                  # as people say it
    include: str               # regex on the text inside #include <...> / "..."
    macro: Optional[str]       # the USE_ macro that guards it in BVLC; None: no switch exists
    cmake_option: Optional[str]
    packages: Tuple[str, ...]  # Debian / Ubuntu packages with its headers and libraries
    headers: Tuple[str, ...]   # a header that proves it is installed (any of these)
    usage: Optional[str] = None  # regex of code that needs it even where the include is guarded


FEATURES = [
    Feature("OpenCV", r"^opencv2?/", "USE_OPENCV", "USE_OPENCV", ("libopencv-dev",),
            ("opencv4/opencv2/core/core.hpp", "opencv2/core/core.hpp"),
            r"\bcv::\w+|\bCV_[0-9A-Z_]+\b|\bIplImage\b"),
    Feature("LMDB", r"^lmdb\.h$", "USE_LMDB", "USE_LMDB", ("liblmdb-dev",), ("lmdb.h",)),
    Feature("LevelDB", r"^leveldb/", "USE_LEVELDB", "USE_LEVELDB",
            ("libleveldb-dev", "libsnappy-dev"), ("leveldb/db.h",)),
    Feature("matio", r"^matio\.h$", None, None, ("libmatio-dev",), ("matio.h",)),
]

# What Caffe's CMake compiles into libcaffe, the tools and pycaffe.
SOURCE_DIRS = ("include", "src/caffe", "tools", "python/caffe")
_EXTENSIONS = {".cpp", ".hpp", ".h", ".cu", ".cuh", ".cc"}
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
_IF = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)")

def _missing_header(header: str) -> "re.Pattern[str]":
    """A missing #include as GCC ("fatal error: x.h: No such file") and Clang ("fatal error:
    'x.h' file not found") say it; `header` matches the name."""
    return re.compile(rf"fatal error: (?:({header}): No such file|'({header})' file not found)")


_CV_NAME = r"(?:CV|cv)_\w+|IplImage|CvMat"

# What a failed compile's first error says, mapped to the piece that is missing (GCC's and
# Clang's wording; the message takes the first group that matched).
_DIAGNOSES = [
    (_missing_header(r"opencv2?/[^\s':]+"), "OpenCV's headers ({0})"),
    (_missing_header(r"lmdb\.h"), "LMDB's headers ({0})"),
    (_missing_header(r"leveldb/[^\s':]+"), "LevelDB's headers ({0})"),
    (_missing_header(r"matio\.h"), "matio's headers ({0})"),
    (re.compile(rf"'({_CV_NAME})' was not declared|"
                rf"(?:use of undeclared identifier|unknown type name) '({_CV_NAME})'"),
     "OpenCV: {0} is used outside #ifdef USE_OPENCV (configure with -DUSE_OPENCV=ON), or it is "
     "an OpenCV 2/3 name that OpenCV 4 removed"),
    (re.compile(r"cannot find -l(\w+)"), "the library lib{0} (the linker cannot find -l{0})"),
    (_missing_header(r"[\w/.+-]+"), "the header {0}"),
]


@dataclass
class Use:
    feature: Feature
    where: str    # "path:line"
    header: str


def _guarded_by(stack: List[str], macro: Optional[str]) -> bool:
    return macro is not None and any(macro in cond for cond in stack)


def unguarded_includes(path: Path, rel: str) -> List[Use]:
    """Includes of an optional library in `path` that no #if block names its USE_ macro."""
    uses: List[Use] = []
    stack: List[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return uses
    for number, line in enumerate(lines, 1):
        m = _IF.match(line)
        if m:
            kind, cond = m.group(1), m.group(2)
            if kind in ("if", "ifdef", "ifndef"):
                stack.append(cond if kind != "ifndef" else "")  # #ifndef USE_X does not enable X
            elif kind == "endif" and stack:
                stack.pop()
            elif kind in ("else", "elif") and stack:
                stack[-1] = "" if kind == "else" else cond
            continue
        m = _INCLUDE.match(line)
        code = line.split("//", 1)[0]
        for feature in FEATURES:
            if _guarded_by(stack, feature.macro):
                continue
            if m and re.search(feature.include, m.group(1)):
                uses.append(Use(feature, f"{rel}:{number}", f"#include <{m.group(1)}>"))
            elif not m and feature.usage:
                used = re.search(feature.usage, code)
                if used:
                    uses.append(Use(feature, f"{rel}:{number}", used.group(0)))
    return uses


def required_features(tree: Path) -> Dict[str, Use]:
    """Feature name -> the first place in the tree that makes it required."""
    found: Dict[str, Use] = {}
    for top in SOURCE_DIRS:
        for path in sorted((tree / top).rglob("*")):
            if path.suffix in _EXTENSIONS and path.is_file():
                for use in unguarded_includes(path, str(path.relative_to(tree))):
                    found.setdefault(use.feature.name, use)
    return found


def feature(name: str) -> Feature:
    return next(f for f in FEATURES if f.name == name)


def installed(feat: Feature, include_dirs: Sequence[Path]) -> bool:
    return any((d / h).is_file() for d in include_dirs for h in feat.headers)


def diagnose(log_lines: Sequence[str]) -> Optional[str]:
    """What the first recognisable error in a failed build says is missing."""
    for line in log_lines:
        for pattern, message in _DIAGNOSES:
            m = pattern.search(line)
            if m:
                return message.format(next(g for g in m.groups() if g is not None))
    return None
