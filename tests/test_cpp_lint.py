"""The C++ files the injector puts into a Caffe tree pass that tree's own lint (issue 9, item 13),
as `make lint` runs it: `python scripts/cpp_lint.py FILE` from the tree's root for every
.cpp/.hpp/.cu/.cuh file, where any output line but "Done processing" and "Total errors found: 0"
is a failure. BVLC's cpp_lint.py runs under Python 3 through `six` (a dependency of pycaffe);
Python 3.11 warns that its `sre_compile` import is deprecated, and Python 3.12+ that its regex
strings hold invalid escapes (SyntaxWarning): warnings about the script and the interpreter, not
about the files, so both are silenced.

The files are linted in a scratch copy of their destination paths (what the lint sees: the path
relative to the root and the contents), so the test checks the checkout, not whatever the last
injection left in the cached tree."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attention_scale.caffe_build.tree_injection import project_files

REPO = Path(__file__).resolve().parents[1]
LINTED = (".cpp", ".hpp", ".cu", ".cuh")  # Makefile: NONGEN_CXX_SRCS


@pytest.fixture(scope="module")
def cpp_lint(caffe_paths):
    script = Path(caffe_paths["CAFFE_SOURCE_DIR"]) / "scripts" / "cpp_lint.py"
    assert script.is_file(), f"{script} is missing: the Caffe tree has no lint script"
    return script


def run_lint(script, root, files):
    """The lines `make lint` would report for `files` (paths relative to `root`)."""
    res = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning",
                          "-W", "ignore::SyntaxWarning", str(script), *files],
                         cwd=root, capture_output=True, text=True, timeout=300)
    lines = (res.stdout + res.stderr).splitlines()
    return [line for line in lines
            if line.strip() and not line.startswith("Done processing ")
            and not line.startswith("Total errors found: 0")]


def test_injected_files_pass_caffes_lint(cpp_lint, tmp_path):
    files = {rel: src for rel, src in project_files(REPO).items() if rel.endswith(LINTED)}
    assert any(rel.startswith("include/caffe/util/") for rel in files)  # the maths headers too
    assert any(rel.endswith(".cu") for rel in files)
    for rel, src in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp_path / rel)
    report = run_lint(cpp_lint, tmp_path, sorted(files))
    assert not report, "Caffe's lint reports:\n" + "\n".join(report)


def test_the_lint_catches_what_it_should(cpp_lint, tmp_path):
    # The same way of running it reports a long line, a C-style cast and a missing include.
    bad = tmp_path / "src" / "caffe" / "layers" / "bad_layer.cpp"
    bad.parent.mkdir(parents=True)
    bad.write_text('// Bad.\n#include "caffe/layer.hpp"\nnamespace caffe {\n'
                   f'int f(double x) {{ return (int)x; }}  // {"x" * 80}\n'
                   "std::string g() { return std::string(); }\n}  // namespace caffe\n")
    report = "\n".join(run_lint(cpp_lint, tmp_path, ["src/caffe/layers/bad_layer.cpp"]))
    assert "whitespace/line_length" in report
    assert "readability/casting" in report
    assert "build/include_what_you_use" in report
