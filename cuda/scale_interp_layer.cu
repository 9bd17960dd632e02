// Attention to Scale for Caffe: ScaleInterp layer, CUDA kernels (the CPU loops'
// element functions).
#include <algorithm>
#include <vector>

#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/scale_interp.hpp"

namespace caffe {

// The forward runs on a 3-D grid: x and y of a plane (blocks of kBlockX x
// kBlockY threads; no index divisions), z groups of planes; it strides over
// whatever the grid does not cover.
static const int kBlockX = 32;
static const int kBlockY = 8;

// The forward: a thread takes output (y, x) of kInterpPlanes planes (gridDim.z
// apart): it looks up the taps once (scale_interp_taps) and then does four
// loads and one store per plane (scale_interp_tapped), the planes' loads
// independent of each other. Both passes run per output, so the intermediate
// planes never go through memory; neighbouring outputs share their source
// cells in the caches.
static const int kInterpPlanes = 4;

template <typename Dtype>
__global__ void ScaleInterpForward(const int planes,
    const attention_scale::InterpPass first,
    const attention_scale::InterpAxis<Dtype> first_axis,
    const attention_scale::InterpPass second,
    const attention_scale::InterpAxis<Dtype> second_axis,
    const Dtype* __restrict__ src, Dtype* __restrict__ dst) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x >= second.dst_w) {
    return;
  }
  const size_t in_plane = static_cast<size_t>(first.src_h) * first.src_w;
  const size_t out_plane = static_cast<size_t>(second.dst_h) * second.dst_w;
  for (int y = blockIdx.y * blockDim.y + threadIdx.y; y < second.dst_h;
       y += blockDim.y * gridDim.y) {
    const attention_scale::InterpTaps<Dtype> taps =
        attention_scale::scale_interp_taps(
            y, x, first, first_axis, second, second_axis);
    const size_t at = static_cast<size_t>(y) * second.dst_w + x;
    for (int p0 = blockIdx.z; p0 < planes; p0 += gridDim.z * kInterpPlanes) {
#pragma unroll
      for (int q = 0; q < kInterpPlanes; ++q) {
        const int plane = p0 + q * gridDim.z;
        if (plane < planes) {
          dst[plane * out_plane + at] = attention_scale::scale_interp_tapped(
              src + plane * in_plane, taps);
        }
      }
    }
  }
}

// The backward of a pass: one thread per element (plane, y, x) of the src_h x
// src_w planes gathers the diffs that read it: deterministic, no atomics. (On
// a 3-D grid like the forward's it measured no faster: 4% faster for the
// downsampling passes, up to 11% slower for the upsampling ones, H200.)
template <typename Dtype>
__global__ void ScaleInterpGather(const int count,
    const attention_scale::InterpPass pass,
    const attention_scale::InterpAxis<Dtype> axis, const Dtype* dst_diff,
    Dtype* src_diff) {
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
    const int x = index % pass.src_w;
    const int y = (index / pass.src_w) % pass.src_h;
    const int plane = index / pass.src_w / pass.src_h;
    src_diff[index] = attention_scale::scale_interp_gather_at(
        plane, y, x, dst_diff, pass, axis);
  }
}

/// The forward's grid over `planes` planes of height x width, each thread
/// taking `per_thread` planes (CUDA's limits on y and z capped; the
/// kernels stride over the rest).
static dim3 PlaneTiles(int planes, int height, int width, int per_thread) {
  return dim3((width + kBlockX - 1) / kBlockX,
      std::min((height + kBlockY - 1) / kBlockY, 65535),
      std::min((planes + per_thread - 1) / per_thread, 65535));
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int planes = top[0]->num() * top[0]->channels();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ScaleInterpForward<Dtype><<<PlaneTiles(planes, pass_[1].dst_h,
      pass_[1].dst_w, kInterpPlanes), dim3(kBlockX, kBlockY)>>>(planes,
      pass_[0], Axis(pass_[0].along_x, true), pass_[1],
      Axis(pass_[1].along_x, true), bottom[0]->gpu_data(),
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() == 2 && propagate_down[1]) {
    // The output does not depend on the reference blob's values.
    caffe_gpu_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_gpu_diff());
  }
  if (!propagate_down[0]) {
    return;
  }
  // The passes in reverse order, each transposed.
  const int planes = bottom[0]->num() * bottom[0]->channels();
  Dtype* mid = buffer_.mutable_gpu_diff();
  const Dtype* dst_diff[2] = {mid, top[0]->gpu_diff()};
  Dtype* src_diff[2] = {bottom[0]->mutable_gpu_diff(), mid};
  for (int p = 1; p >= 0; --p) {
    const int count = planes * pass_[p].src_h * pass_[p].src_w;
    // NOLINT_NEXT_LINE(whitespace/operators)
    ScaleInterpGather<Dtype><<<attention_scale::AtsBlocks(count,
        CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(count, pass_[p],
        Axis(pass_[p].along_x, true), dst_diff[p], src_diff[p]);
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(ScaleInterpLayer);

}  // namespace caffe
