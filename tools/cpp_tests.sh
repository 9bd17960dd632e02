#!/usr/bin/env bash
# Build (incrementally) Caffe with the layers, then build and run the layers' C++ tests.
# With arguments, runs the test binary with them (e.g. --gtest_filter='*ScaleInterp*').
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(${PYTHON:-python3} tools/build_caffe.py --print-env)"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=Release -DCaffe_DIR="$CAFFE_PREFIX/share/Caffe" \
  -DCAFFE_SOURCE_DIR="$CAFFE_SOURCE_DIR" "${launcher[@]}" >/dev/null
cmake --build build/cpp -j "$(nproc)"
if [ $# -gt 0 ]; then
  exec build/cpp/attention_scale_tests "$@"
fi
# From inside the build folder: CMake < 3.20's ctest ignores --test-dir, finds no tests in the
# current folder and exits 0. --no-tests=error (CMake 3.17+) fails instead of passing on none.
cd build/cpp
ctest --output-on-failure --no-tests=error
