#!/usr/bin/env bash
# Compile cuda/*.cu and the GPU variants of the layers and tests with nvcc (sm_80/86/90 by
# default) against the patched Caffe's headers. Compile only: no GPU is needed. Skipped (with a
# message) where nvcc is missing, unless ATTENTION_SCALE_REQUIRE_CUDA_CHECK=1.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then
  if [ "${ATTENTION_SCALE_REQUIRE_CUDA_CHECK:-0}" = 1 ]; then
    echo "cuda_check: nvcc not found and ATTENTION_SCALE_REQUIRE_CUDA_CHECK=1" >&2; exit 1
  fi
  echo "cuda_check: SKIPPED, nvcc not found (install the CUDA toolkit to run it)" >&2; exit 0
fi
eval "$(${PYTHON:-python3} tools/build_caffe.py --print-env)"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache
                                          -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build/cuda-check -DCMAKE_BUILD_TYPE=Release -DATTENTION_SCALE_CUDA_CHECK=ON \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DCaffe_DIR="$CAFFE_PREFIX/share/Caffe" \
  -DCAFFE_SOURCE_DIR="$CAFFE_SOURCE_DIR" \
  ${ATTENTION_SCALE_CUDA_ARCHS:+-DATTENTION_SCALE_CUDA_ARCHS="$ATTENTION_SCALE_CUDA_ARCHS"} \
  "${launcher[@]}" >/dev/null
cmake --build build/cuda-check --target attention_scale_cuda_check -j "$(nproc)"
echo "cuda_check: cuda/*.cu and the GPU variants compiled for" \
     "$(grep -m1 ATTENTION_SCALE_CUDA_ARCHS build/cuda-check/CMakeCache.txt | cut -d= -f2)" >&2
