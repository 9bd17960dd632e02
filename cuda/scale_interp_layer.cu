// Attention to Scale for Caffe: ScaleInterp layer, CUDA kernels (the CPU loops'
// element functions).
#include <vector>

#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/scale_interp.hpp"

namespace caffe {

// The forward: one thread per output element (plane, y, x) runs both passes
// for it (scale_interp_at), so the intermediate planes never go through
// memory; the input cells it reads are shared with its neighbours' in the
// caches.
template <typename Dtype>
__global__ void ScaleInterpForward(const int count,
    const attention_scale::InterpPass first,
    const attention_scale::InterpAxis<Dtype> first_axis,
    const attention_scale::InterpPass second,
    const attention_scale::InterpAxis<Dtype> second_axis, const Dtype* src,
    Dtype* dst) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % second.dst_w;
    const int y = (index / second.dst_w) % second.dst_h;
    const int plane = index / second.dst_w / second.dst_h;
    dst[index] = attention_scale::scale_interp_at(
        plane, y, x, src, first, first_axis, second, second_axis);
  }
}

// The backward of a pass: one thread per element (plane, y, x) of the src_h x
// src_w planes gathers the diffs that read it: deterministic, no atomics.
template <typename Dtype>
__global__ void ScaleInterpGather(const int count,
    const attention_scale::InterpPass pass,
    const attention_scale::InterpAxis<Dtype> axis, const Dtype* dst_diff,
    Dtype* src_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % pass.src_w;
    const int y = (index / pass.src_w) % pass.src_h;
    const int plane = index / pass.src_w / pass.src_h;
    src_diff[index] = attention_scale::scale_interp_gather_at(
        plane, y, x, dst_diff, pass, axis);
  }
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ScaleInterpForward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, pass_[0], Axis(pass_[0].along_x, true),
      pass_[1], Axis(pass_[1].along_x, true), bottom[0]->gpu_data(),
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
    ScaleInterpGather<Dtype><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, pass_[p], Axis(pass_[p].along_x, true),
        dst_diff[p], src_diff[p]);
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(ScaleInterpLayer);

}  // namespace caffe
