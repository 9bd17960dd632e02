#!/usr/bin/env bash
# Build Caffe with the three layers (cached outside the clone) and the project's .venv:
# pycaffe, `.venv/bin/caffe` and the attention_scale package. Safe to re-run; a warm run
# rebuilds nothing. Extra arguments go to tools/build_caffe.py (--caffe-root DIR, --cuda, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

bash tools/install_system_deps.sh
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q -r requirements-crf.txt \
  || echo "[setup] pydensecrf2 did not install: tools/test_voc.py --crf is unavailable" >&2
"$PYTHON" tools/build_caffe.py --venv .venv "$@"
# The package: cython extension and the generated parameter module (uses the venv's cython).
.venv/bin/python -m pip install -q --no-build-isolation --no-deps .
.venv/bin/python -c "import caffe, attention_scale; \
missing = {'ScaleInterp', 'SoftmaxOverScales', 'WeightedScaleSum'} - set(caffe.layer_type_list()); \
assert not missing, f'pycaffe lacks {missing}'"
echo "[setup] ready: source .venv/bin/activate; caffe and pycaffe know the three layers" >&2
