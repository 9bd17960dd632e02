// Attention to Scale for Caffe: WeightedScaleSum layer, CUDA kernels (the CPU
// loops' functions).
#include <algorithm>
#include <vector>

#include "caffe/layers/weighted_scale_sum_layer.hpp"
#include "caffe/util/weighted_scale_sum.hpp"

namespace caffe {

// One launch takes up to kLaunchScales scales: every thread runs the element
// functions for them in order (the CPU loops' order), so an element's partial
// result is written and read again by the same thread, from the caches, and
// the maps cross the memory bus once rather than once per scale. More scales
// take further launches of up to kLaunchScales each.
static const int kLaunchScales = 8;

/// The score maps (or their diffs) of the scales of one launch, by value.
template <typename Dtype>
struct ScaleMaps {
  Dtype* map[kLaunchScales];
};

template <typename Dtype>
static ScaleMaps<const Dtype> ScaleData(
    const vector<Blob<Dtype>*>& bottom, int first, int size) {
  ScaleMaps<const Dtype> maps;
  for (int k = 0; k < kLaunchScales; ++k) {
    maps.map[k] = (k < size) ? bottom[first + k]->gpu_data() : NULL;
  }
  return maps;
}

// Forward of scales first .. first + size - 1. The attention kernel splits
// the flat index of an N x C x inner map into the class plane (n, c) and the
// pixel i, as the CPU loops run over them.
template <typename Dtype>
__global__ void AttentionForward(const int count, const int first,
    const int size, const ScaleMaps<const Dtype> f, const Dtype* w,
    const int channels, const int num_scales, const int inner,
    Dtype* top_data) {
  CUDA_KERNEL_LOOP(index, count) {
    const int i = index % inner;
    const int plane = (index / inner) * inner;
    const int n = index / inner / channels;
    for (int k = 0; k < size; ++k) {
      const int s = first + k;
      attention_scale::attention_accumulate_at(i, s, f.map[k] + plane,
          w + (n * num_scales + s) * inner, top_data + plane);
    }
  }
}

template <typename Dtype>
__global__ void AverageForward(const int count, const int first,
    const int size, const ScaleMaps<const Dtype> f, const Dtype inv_num_scales,
    Dtype* top_data) {
  CUDA_KERNEL_LOOP(index, count) {
    for (int k = 0; k < size; ++k) {
      attention_scale::average_accumulate_at(
          index, first + k, f.map[k], inv_num_scales, top_data);
    }
  }
}

template <typename Dtype>
__global__ void MaxForward(const int count, const int first, const int size,
    const ScaleMaps<const Dtype> f, Dtype* top_data, int* mask) {
  CUDA_KERNEL_LOOP(index, count) {
    for (int k = 0; k < size; ++k) {
      attention_scale::max_accumulate_at(
          index, first + k, f.map[k], top_data, mask);
    }
  }
}

// Backward to the score maps of scales first .. first + size - 1 (f_diff.map[k]
// NULL: not wanted).
template <typename Dtype>
__global__ void AverageFeatureBackward(const int count, const int size,
    const Dtype inv_num_scales, const Dtype* top_diff,
    const ScaleMaps<Dtype> f_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const Dtype dg = attention_scale::average_feature_diff_at(
        index, inv_num_scales, top_diff);
    for (int k = 0; k < size; ++k) {
      if (f_diff.map[k]) {
        f_diff.map[k][index] = dg;
      }
    }
  }
}

template <typename Dtype>
__global__ void MaxFeatureBackward(const int count, const int first,
    const int size, const int* mask, const Dtype* top_diff,
    const ScaleMaps<Dtype> f_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    for (int k = 0; k < size; ++k) {
      if (f_diff.map[k]) {
        f_diff.map[k][index] = attention_scale::max_feature_diff_at(
            index, first + k, mask, top_diff);
      }
    }
  }
}

// ATTENTION backward of scales first .. first + size - 1: one thread per pixel
// (n, i) goes over the C classes in order and, for each, over the scales:
// df^s = w^s dg (where wanted) and dw^s summed over the classes in order, as
// the CPU loop does; dg is read once for all the scales of a class.
template <typename Dtype>
__global__ void AttentionBackward(const int pixels, const int first,
    const int size, const ScaleMaps<const Dtype> f, const Dtype* w,
    const Dtype* top_diff, const int channels, const int num_scales,
    const int inner, const ScaleMaps<Dtype> f_diff, Dtype* w_diff) {
  CUDA_KERNEL_LOOP(index, pixels) {
    const int i = index % inner;
    const int n = index / inner;
    for (int c = 0; c < channels; ++c) {
      const int plane = (n * channels + c) * inner;
      for (int k = 0; k < size; ++k) {
        const int s = first + k;
        const Dtype* w_s = w + (n * num_scales + s) * inner;
        if (f_diff.map[k]) {
          f_diff.map[k][plane + i] = attention_scale::attention_feature_diff_at(
              i, w_s, top_diff + plane);
        }
        if (w_diff) {
          attention_scale::attention_weight_accumulate_at(i, c,
              f.map[k] + plane, top_diff + plane,
              w_diff + (n * num_scales + s) * inner);
        }
      }
    }
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_gpu_data();
  const int count = top[0]->count();
  const Dtype inv_num_scales = Dtype(1) / num_scales_;
  for (int first = 0; first < num_scales_; first += kLaunchScales) {
    const int size = std::min(kLaunchScales, num_scales_ - first);
    const ScaleMaps<const Dtype> f = ScaleData(bottom, first, size);
    switch (merge_) {
      case WeightedScaleSumParameter_MergeMethod_ATTENTION:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AttentionForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, first, size, f,
            bottom[num_scales_]->gpu_data(), channels_, num_scales_, inner_,
            top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_AVERAGE:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AverageForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, first, size, f, inv_num_scales,
            top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxForward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, first, size, f, top_data,
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
  const bool attention =
      merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION;
  Dtype* w_diff = (attention && propagate_down[num_scales_])
      ? bottom[num_scales_]->mutable_gpu_diff()
      : NULL;
  for (int first = 0; first < num_scales_; first += kLaunchScales) {
    const int size = std::min(kLaunchScales, num_scales_ - first);
    ScaleMaps<Dtype> f_diff;
    bool any = false;
    for (int k = 0; k < kLaunchScales; ++k) {
      const bool wanted = k < size && propagate_down[first + k];
      f_diff.map[k] = wanted ? bottom[first + k]->mutable_gpu_diff() : NULL;
      any = any || wanted;
    }
    if (!any && !w_diff) {
      continue;
    }
    switch (merge_) {
      case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
        const int pixels = top[0]->num() * inner_;
        // NOLINT_NEXT_LINE(whitespace/operators)
        AttentionBackward<Dtype><<<CAFFE_GET_BLOCKS(pixels),
            CAFFE_CUDA_NUM_THREADS>>>(pixels, first, size,
            ScaleData(bottom, first, size), bottom[num_scales_]->gpu_data(),
            top_diff, channels_, num_scales_, inner_, f_diff, w_diff);
        break;
      }
      case WeightedScaleSumParameter_MergeMethod_AVERAGE:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AverageFeatureBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, size, inv_num_scales, top_diff,
            f_diff);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxFeatureBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
            CAFFE_CUDA_NUM_THREADS>>>(count, first, size, max_idx_.gpu_data(),
            top_diff, f_diff);
        break;
      default: LOG(FATAL) << "Unknown merge method " << merge_;
    }
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(WeightedScaleSumLayer);

}  // namespace caffe
