#!/usr/bin/env bash
# The project's test command: sets everything up (tools/setup.sh), then runs the layers' C++
# gradient and bad-input tests, the CUDA compile check and the Python tests.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/cpp_tests.sh
bash tools/cuda_check.sh
.venv/bin/python -m pytest tests "$@"
