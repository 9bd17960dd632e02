// Attention to Scale for Caffe: ScaleInterp layer, CUDA kernels (the CPU loops' element functions).
#include <vector>

#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void ScaleInterpForward(const int count, const Dtype* bottom_data,
    const attention_scale::InterpGeometry geometry, Dtype* top_data) {
  CUDA_KERNEL_LOOP(index, count) {
    top_data[index] = attention_scale::scale_interp_forward_at(index, bottom_data, geometry);
  }
}

// One thread per bottom element gathers the top diffs that read it: deterministic, no atomics.
template <typename Dtype>
__global__ void ScaleInterpBackward(const int count, const Dtype* top_diff,
    const attention_scale::InterpGeometry geometry, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    bottom_diff[index] = attention_scale::scale_interp_backward_at(index, top_diff, geometry);
  }
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* bottom_data = bottom[0]->gpu_data();
  Dtype* top_data = top[0]->mutable_gpu_data();
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ScaleInterpForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom_data, geometry_, top_data);
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
  const Dtype* top_diff = top[0]->gpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_gpu_diff();
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ScaleInterpBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top_diff, geometry_, bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ScaleInterpLayer);

}  // namespace caffe
