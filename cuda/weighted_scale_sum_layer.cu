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

// Forward of scales first .. first + size - 1. The attention kernel runs on a
// 2-D grid: blockIdx.y walks the class planes (n, c), x the pixels i of a
// plane, so no thread divides its index; it keeps the running sum in a
// register (the CPU loops' attention_term_add, in their order) and writes the
// top once per launch. (Measured on an H200: 2.4 TB/s at 1 x 21 x 513 x 513
// where one thread per pixel and sample, looping over the classes, gave 1.6.)
template <typename Dtype>
__global__ void AttentionForward(const int planes, const int inner,
    const int first, const int size, const ScaleMaps<const Dtype> f,
    const Dtype* __restrict__ w, const int channels, const int num_scales,
    Dtype* __restrict__ top_data) {
  for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const int n = plane / channels;
    const Dtype* w_n = w + static_cast<size_t>(n * num_scales + first) * inner;
    const size_t base = static_cast<size_t>(plane) * inner;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inner;
         i += blockDim.x * gridDim.x) {
      const size_t index = base + i;
      Dtype sum = (first == 0)
          ? attention_scale::attention_term(w_n[i], f.map[0][index])
          : attention_scale::attention_term_add(top_data[index], w_n[i],
                f.map[0][index]);
#pragma unroll
      for (int k = 1; k < kLaunchScales; ++k) {
        if (k < size) {
          sum = attention_scale::attention_term_add(sum,
              w_n[static_cast<size_t>(k) * inner + i], f.map[k][index]);
        }
      }
      top_data[index] = sum;
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
// (n, i) (blockIdx.y walks the samples, x the pixels) goes over the C classes
// in order and, for each, over the scales: df^s = w^s dg (where wanted;
// attention_feature_diff_at) and dw^s summed over the classes in order
// (attention_weight_accumulate_at), as the CPU loop does. The pixel's weights
// and the running sums dw^s stay in registers, and the loads of kStage classes
// are issued before any of their stores, so that many are in flight at once
// (the stores might alias them: the compiler would not reorder them itself).
static const int kStage = 2;

template <typename Dtype>
__global__ void __launch_bounds__(CAFFE_CUDA_NUM_THREADS) AttentionBackward(
    const int num, const int inner,
    const int first, const int size, const ScaleMaps<const Dtype> f,
    const Dtype* __restrict__ w, const Dtype* __restrict__ top_diff,
    const int channels, const int num_scales, const ScaleMaps<Dtype> f_diff,
    Dtype* __restrict__ w_diff) {
  for (int n = blockIdx.y; n < num; n += gridDim.y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inner;
         i += blockDim.x * gridDim.x) {
      const size_t weights =
          static_cast<size_t>(n * num_scales + first) * inner + i;
      Dtype w_k[kLaunchScales], dw_k[kLaunchScales];
#pragma unroll
      for (int k = 0; k < kLaunchScales; ++k) {
        w_k[k] = (k < size) ? w[weights + static_cast<size_t>(k) * inner]
                            : Dtype(0);
        dw_k[k] = Dtype(0);
      }
      for (int c0 = 0; c0 < channels; c0 += kStage) {
        Dtype dg[kStage], f_c[kStage][kLaunchScales];
#pragma unroll
        for (int j = 0; j < kStage; ++j) {
          const size_t at =
              static_cast<size_t>(n * channels + c0 + j) * inner + i;
          const bool here = c0 + j < channels;
          dg[j] = here ? top_diff[at] : Dtype(0);
#pragma unroll
          for (int k = 0; k < kLaunchScales; ++k) {
            f_c[j][k] = (here && w_diff && k < size) ? f.map[k][at]
                                                     : Dtype(0);
          }
        }
#pragma unroll
        for (int j = 0; j < kStage; ++j) {
          const int c = c0 + j;
          if (c >= channels) {
            break;
          }
          const size_t at = static_cast<size_t>(n * channels + c) * inner + i;
#pragma unroll
          for (int k = 0; k < kLaunchScales; ++k) {
            if (k >= size) {
              break;
            }
            if (f_diff.map[k]) {
              f_diff.map[k][at] =
                  attention_scale::attention_term(w_k[k], dg[j]);
            }
            if (w_diff) {
              dw_k[k] = (c == 0)
                  ? attention_scale::attention_term(f_c[j][k], dg[j])
                  : attention_scale::attention_term_add(dw_k[k], f_c[j][k],
                        dg[j]);
            }
          }
        }
      }
      if (w_diff) {
#pragma unroll
        for (int k = 0; k < kLaunchScales; ++k) {
          if (k < size) {
            w_diff[weights + static_cast<size_t>(k) * inner] = dw_k[k];
          }
        }
      }
    }
  }
}

/// A 2-D grid: x covers `inner` pixels with CAFFE_CUDA_NUM_THREADS threads a
/// block, y covers `rows` (capped at CUDA's limit; the kernels stride over the
/// rest).
static dim3 PlaneGrid(int rows, int inner) {
  return dim3(CAFFE_GET_BLOCKS(inner), std::min(rows, 65535));
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
        AttentionForward<Dtype><<<PlaneGrid(count / inner_, inner_),
            CAFFE_CUDA_NUM_THREADS>>>(count / inner_, inner_, first, size, f,
            bottom[num_scales_]->gpu_data(), channels_, num_scales_,
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
        // NOLINT_NEXT_LINE(whitespace/operators)
        AttentionBackward<Dtype><<<PlaneGrid(top[0]->num(), inner_),
            CAFFE_CUDA_NUM_THREADS>>>(top[0]->num(), inner_, first, size,
            ScaleData(bottom, first, size), bottom[num_scales_]->gpu_data(),
            top_diff, channels_, num_scales_, f_diff, w_diff);
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
