// Attention to Scale for Caffe: SoftmaxOverScales layer, CUDA kernels (the CPU
// loops' functions).
#include <vector>

#include "caffe/layers/softmax_over_scales_layer.hpp"
#include "caffe/util/softmax_over_scales.hpp"

namespace caffe {

// Copies one scale's N x 1 x H x W map into channel s of the N x S x H x W top.
template <typename Dtype>
__global__ void SoftmaxOverScalesGather(const int pixels, const int s,
    const int num_scales, const int inner, const Dtype* scale_data,
    Dtype* top_data) {
  ATS_KERNEL_LOOP(index64, pixels) {
    const int index = static_cast<int>(index64);  // < pixels <= INT_MAX
    top_data[attention_scale::scale_channel_index(
        index, s, num_scales, inner)] = scale_data[index];
  }
}

// One thread per pixel (n, i); safe in place (in == out). Up to
// kRegisterScales scales the pixel's values stay in registers and each output
// is written once; more scales take the steps through memory.
static const int kRegisterScales = 8;

template <typename Dtype>
__global__ void SoftmaxOverScalesForward(const int pixels, const int num_scales,
    const int inner, const Dtype* in, Dtype* out) {
  ATS_KERNEL_LOOP(index64, pixels) {
    const int index = static_cast<int>(index64);  // < pixels <= INT_MAX
    const int i = index % inner;
    const int sample = (index / inner) * num_scales * inner;
    if (num_scales <= kRegisterScales) {
      attention_scale::softmax_over_scales_pixel_registers<kRegisterScales>(
          i, in + sample, out + sample, num_scales, inner);
    } else {
      attention_scale::softmax_over_scales_pixel(
          i, in + sample, out + sample, num_scales, inner);
    }
  }
}

// Bottom diff element `index` of scale s's N x 1 x H x W bottom (channel s of
// the top's pixel `index`), in the form with one bottom per scale.
template <typename Dtype>
__global__ void SoftmaxOverScalesBackward(const int count, const int s,
    const int num_scales, const int inner, const Dtype* top_data,
    const Dtype* top_diff, Dtype* bottom_diff) {
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
    const int i = index % inner;
    const int sample = (index / inner) * num_scales * inner;
    bottom_diff[index] = attention_scale::softmax_over_scales_diff_at(
        i, s, top_data + sample, top_diff + sample, num_scales, inner);
  }
}

// Backward of the one-bottom form, one thread per pixel
// (softmax_over_scales_backward_pixel: each weight and diff read once).
template <typename Dtype>
__global__ void SoftmaxOverScalesBackwardPixel(const int pixels,
    const int num_scales, const int inner, const Dtype* top_data,
    const Dtype* top_diff, Dtype* bottom_diff) {
  ATS_KERNEL_LOOP(index64, pixels) {
    const int index = static_cast<int>(index64);  // < pixels <= INT_MAX
    const int sample = (index / inner) * num_scales * inner;
    attention_scale::softmax_over_scales_backward_pixel(index % inner,
        top_data + sample, top_diff + sample, bottom_diff + sample, num_scales,
        inner);
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_gpu_data();
  const int pixels = top[0]->num() * inner_;
  const Dtype* in = bottom[0]->gpu_data();
  if (bottom.size() > 1) {
    for (int s = 0; s < num_scales_; ++s) {
      // NOLINT_NEXT_LINE(whitespace/operators)
      SoftmaxOverScalesGather<Dtype><<<attention_scale::AtsBlocks(pixels,
          CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(pixels, s,
          num_scales_, inner_, bottom[s]->gpu_data(), top_data);
      CUDA_POST_KERNEL_CHECK;
    }
    in = top_data;
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  SoftmaxOverScalesForward<Dtype><<<attention_scale::AtsBlocks(pixels,
      CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(pixels, num_scales_,
      inner_, in, top_data);
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_data = top[0]->gpu_data();
  const Dtype* top_diff = top[0]->gpu_diff();
  if (bottom.size() == 1) {
    if (!propagate_down[0]) {
      return;
    }
    const int pixels = top[0]->num() * inner_;
    // NOLINT_NEXT_LINE(whitespace/operators)
    SoftmaxOverScalesBackwardPixel<Dtype><<<attention_scale::AtsBlocks(pixels,
        CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(pixels, num_scales_,
        inner_, top_data, top_diff, bottom[0]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
    return;
  }
  const int pixels = top[0]->num() * inner_;
  for (int s = 0; s < num_scales_; ++s) {
    if (!propagate_down[s]) {
      continue;
    }
    // NOLINT_NEXT_LINE(whitespace/operators)
    SoftmaxOverScalesBackward<Dtype><<<attention_scale::AtsBlocks(pixels,
        CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(pixels, s,
        num_scales_, inner_, top_data, top_diff,
        bottom[s]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(SoftmaxOverScalesLayer);

}  // namespace caffe
