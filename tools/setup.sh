#!/usr/bin/env bash
# Build Caffe with the three layers (cached outside the clone) and the project's .venv:
# pycaffe, `.venv/bin/caffe` and the attention_scale package. Safe to re-run; a warm run
# rebuilds nothing. Extra arguments go to tools/build_caffe.py (--caffe-root DIR, --cuda,
# --source-tarball FILE, --cmake-arg -DX=Y, ...). PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHON
command -v "$PYTHON" >/dev/null || {
  echo "[setup] $PYTHON not found: install Python 3 (Debian/Ubuntu: apt-get install python3)" \
       "or set PYTHON=/path/to/python3" >&2; exit 1; }

# The optional libraries a --caffe-root tree needs (none for BVLC's source), then the rest.
extra=$("$PYTHON" tools/build_caffe.py --print-system-packages "$@")
# shellcheck disable=SC2086  # a list of package names
bash tools/install_system_deps.sh $extra
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The protobuf runtime must load what this machine's protoc generates (caffe_pb2 and the
# project's attention_scale_pb2): requirements.txt leaves the version to this line.
.venv/bin/python -m pip install -q -r requirements.txt \
  "$("$PYTHON" tools/build_caffe.py --print-protobuf-requirement)"
.venv/bin/python -m pip install -q -r requirements-crf.txt \
  || echo "[setup] pydensecrf2 did not install: tools/test_voc.py --crf is unavailable" >&2
"$PYTHON" tools/build_caffe.py --venv .venv "$@"
# The package: cython extension and the generated parameter module (uses the venv's cython).
.venv/bin/python -m pip install -q --no-build-isolation --no-deps .
.venv/bin/python -c "import caffe, attention_scale; \
missing = {'ScaleInterp', 'SoftmaxOverScales', 'WeightedScaleSum'} - set(caffe.layer_type_list()); \
assert not missing, f'pycaffe lacks {missing}'"
echo "[setup] ready: source .venv/bin/activate; caffe and pycaffe know the three layers" >&2
