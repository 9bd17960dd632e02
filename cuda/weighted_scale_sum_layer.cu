// Attention to Scale for Caffe: WeightedScaleSum layer, CUDA kernels (the CPU
// loops' functions).
#include <vector>

#include "caffe/layers/weighted_scale_sum_layer.hpp"
#include "caffe/util/weighted_scale_sum.hpp"

namespace caffe {

// Forward, one launch per scale s (each element is updated by one thread per
// launch). The attention kernels split the flat index of an N x C x inner map
// into the class plane (n, c) and the pixel i, as the CPU loops run over them.
template <typename Dtype>
__global__ void AttentionForward(const int count, const int s, const Dtype* f,
    const Dtype* w, const int channels, const int num_scales, const int inner,
    Dtype* top_data) {
  CUDA_KERNEL_LOOP(index, count) {
    const int i = index % inner;
    const int plane = (index / inner) * inner;
    const int n = index / inner / channels;
    attention_scale::attention_accumulate_at(
        i, s, f + plane, w + (n * num_scales + s) * inner, top_data + plane);
  }
}

template <typename Dtype>
__global__ void AverageForward(const int count, const int s, const Dtype* f,
    const Dtype inv_num_scales, Dtype* top_data) {
  CUDA_KERNEL_LOOP(index, count) {
    attention_scale::average_accumulate_at(
        index, s, f, inv_num_scales, top_data);
  }
}

template <typename Dtype>
__global__ void MaxForward(
    const int count, const int s, const Dtype* f, Dtype* top_data, int* mask) {
  CUDA_KERNEL_LOOP(index, count) {
    attention_scale::max_accumulate_at(index, s, f, top_data, mask);
  }
}

// Backward to the score map of scale s.
template <typename Dtype>
__global__ void AttentionFeatureBackward(const int count, const int s,
    const Dtype* w, const Dtype* top_diff, const int channels,
    const int num_scales, const int inner, Dtype* f_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int i = index % inner;
    const int plane = (index / inner) * inner;
    const int n = index / inner / channels;
    f_diff[index] = attention_scale::attention_feature_diff_at(
        i, w + (n * num_scales + s) * inner, top_diff + plane);
  }
}

template <typename Dtype>
__global__ void AverageFeatureBackward(const int count,
    const Dtype inv_num_scales, const Dtype* top_diff, Dtype* f_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    f_diff[index] = attention_scale::average_feature_diff_at(
        index, inv_num_scales, top_diff);
  }
}

template <typename Dtype>
__global__ void MaxFeatureBackward(const int count, const int s,
    const int* mask, const Dtype* top_diff, Dtype* f_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    f_diff[index] =
        attention_scale::max_feature_diff_at(index, s, mask, top_diff);
  }
}

// Backward to channel s of the weights: one thread per pixel (n, i) sums over
// the C classes in order, as the CPU loop does plane by plane.
template <typename Dtype>
__global__ void AttentionWeightBackward(const int pixels, const int s,
    const Dtype* f, const Dtype* top_diff, const int channels,
    const int num_scales, const int inner, Dtype* w_diff) {
  CUDA_KERNEL_LOOP(index, pixels) {
    const int i = index % inner;
    const int n = index / inner;
    Dtype* w_diff_s = w_diff + (n * num_scales + s) * inner;
    for (int c = 0; c < channels; ++c) {
      const int plane = (n * channels + c) * inner;
      attention_scale::attention_weight_accumulate_at(
          i, c, f + plane, top_diff + plane, w_diff_s);
    }
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_gpu_data();
  const int count = top[0]->count();
  const Dtype inv_num_scales = Dtype(1) / num_scales_;
  for (int s = 0; s < num_scales_; ++s) {
    const Dtype* f = bottom[s]->gpu_data();
    switch (merge_) {
      case WeightedScaleSumParameter_MergeMethod_ATTENTION:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AttentionForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, s, f,
            bottom[num_scales_]->gpu_data(), channels_, num_scales_, inner_,
            top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_AVERAGE:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AverageForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, s, f, inv_num_scales, top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, s, f, top_data,
            max_idx_.mutable_gpu_data());
        break;
      default: LOG(FATAL) << "Unknown merge method " << merge_;
    }
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_diff = top[0]->gpu_diff();
  const int count = top[0]->count();
  const Dtype inv_num_scales = Dtype(1) / num_scales_;
  for (int s = 0; s < num_scales_; ++s) {
    if (!propagate_down[s]) {
      continue;
    }
    Dtype* f_diff = bottom[s]->mutable_gpu_diff();
    switch (merge_) {
      case WeightedScaleSumParameter_MergeMethod_ATTENTION:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AttentionFeatureBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, s, bottom[num_scales_]->gpu_data(),
            top_diff, channels_, num_scales_, inner_, f_diff);
        break;
      case WeightedScaleSumParameter_MergeMethod_AVERAGE:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AverageFeatureBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, inv_num_scales, top_diff, f_diff);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxFeatureBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, s, max_idx_.gpu_data(), top_diff,
            f_diff);
        break;
      default: LOG(FATAL) << "Unknown merge method " << merge_;
    }
    CUDA_POST_KERNEL_CHECK;
  }
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION &&
      propagate_down[num_scales_]) {
    Dtype* w_diff = bottom[num_scales_]->mutable_gpu_diff();
    const int pixels = top[0]->num() * inner_;
    for (int s = 0; s < num_scales_; ++s) {
      // NOLINT_NEXT_LINE(whitespace/operators)
      AttentionWeightBackward<Dtype><<<CAFFE_GET_BLOCKS(pixels),
          CAFFE_CUDA_NUM_THREADS>>>(pixels, s, bottom[s]->gpu_data(), top_diff,
          channels_, num_scales_, inner_, w_diff);
      CUDA_POST_KERNEL_CHECK;
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(WeightedScaleSumLayer);

}  // namespace caffe
