"""The minimal source fixes BVLC Caffe (2018) needs with today's toolchain.

Each fix is an exact text replacement; a fix whose old text is absent is skipped, so applying the
list twice changes nothing, and a fork that already carries the fix is left alone.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List

# Part of the build cache key: bump when the list below changes.
COMPAT_VERSION = 1


@dataclass(frozen=True)
class Fix:
    path: str
    why: str
    old: str
    new: str
    cuda_only: bool = False


FIXES = [
    Fix("src/caffe/util/io.cpp",
        "protobuf >= 3.21 has only the one-argument CodedInputStream::SetTotalBytesLimit",
        "SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)",
        "SetTotalBytesLimit(kProtoReadBytesLimit)"),
    Fix("src/caffe/common.cpp", "CUDA 13 removed cudaDeviceProp::clockRate",
        '  LOG(INFO) << "Clock rate:                    " << prop.clockRate;\n', "",
        cuda_only=True),
    Fix("src/caffe/common.cpp", "CUDA 13 removed cudaDeviceProp::deviceOverlap",
        '(prop.deviceOverlap ? "Yes" : "No")', '(prop.asyncEngineCount > 0 ? "Yes" : "No")',
        cuda_only=True),
    Fix("src/caffe/common.cpp", "CUDA 13 removed cudaDeviceProp::kernelExecTimeoutEnabled",
        '  LOG(INFO) << "Kernel execution timeout:      "\n'
        '      << (prop.kernelExecTimeoutEnabled ? "Yes" : "No");\n', "",
        cuda_only=True),
]


def apply_fixes(tree: Path, cuda: bool) -> List[str]:
    """Apply the fixes a CPU (or CUDA) build needs; return a line per fix applied."""
    applied = []
    for fix in FIXES:
        if fix.cuda_only and not cuda:
            continue
        path = tree / fix.path
        if not path.is_file():
            continue
        text = path.read_text()
        if fix.old in text:
            path.write_text(text.replace(fix.old, fix.new))
            applied.append(f"{fix.path}: {fix.why}")
    return applied
