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

// Forward of scales first .. first + size - 1. The attention kernel takes one
// pixel (n, i) a thread (blockIdx.y walks the samples, x the pixels) and goes
// over the C classes in order: the pixel's weights are loaded once into
// registers, the scores of kForwardStage classes are all loaded before their
// sums use them, and each class's sum runs over the scales in registers (the
// CPU loops' attention_term_add, in their order) and is written once. The
// number of scales is a template parameter (one instantiation per launch size,
// ForwardKernel): the scale loops unroll without bounds tests and the arrays
// take only the registers they need. Measured on an H200 at one 21 x 513 x 513
// image, S = 3: 3.5 TB/s; 2.8 with a run-time scale count, 2.6 for one thread
// per class plane and pixel on a 2-D grid, the kernel before.
static const int kForwardStage = 2;
static const int kForwardThreads = 256;

// Blocks a multiprocessor should hold at once: 8 (all 2048 threads, so 32
// registers a thread) where the kernel fits in 32 registers without spilling
// (ptxas, sm_90: float up to 4 scales, double up to 2), else 0, no bound (40
// to 73 registers, 3 to 6 blocks; a bound spills). At one 21 x 513 x 513
// image, S = 3, float, in Caffe: 29.2 -> 25.7 us on an H200, 37.1 -> 34.9 us
// on an H100, output bit-identical.
template <typename Dtype, int kScales>
struct ForwardMinBlocks {
  static const int value =
      (kScales <= 16 / static_cast<int>(sizeof(Dtype))) ? 8 : 0;
};

template <typename Dtype, int kScales>
__global__ void __launch_bounds__(kForwardThreads,
    (ForwardMinBlocks<Dtype, kScales>::value)) AttentionForward(
    const int num, const int inner, const int first,
    const ScaleMaps<const Dtype> f, const Dtype* __restrict__ w,
    const int channels, const int num_scales, Dtype* __restrict__ top_data) {
  for (int n = blockIdx.y; n < num; n += gridDim.y) {
    ATS_KERNEL_LOOP(pixel, inner) {
      const int i = static_cast<int>(pixel);  // < inner <= INT_MAX
      const size_t weights =
          static_cast<size_t>(n * num_scales + first) * inner + i;
      Dtype w_k[kScales];
#pragma unroll
      for (int k = 0; k < kScales; ++k) {
        w_k[k] = w[weights + static_cast<size_t>(k) * inner];
      }
      for (int c0 = 0; c0 < channels; c0 += kForwardStage) {
        Dtype f_c[kForwardStage][kScales], old[kForwardStage];
#pragma unroll
        for (int j = 0; j < kForwardStage; ++j) {
          const size_t at =
              static_cast<size_t>(n * channels + c0 + j) * inner + i;
          const bool here = c0 + j < channels;
          old[j] = (here && first > 0) ? top_data[at] : Dtype(0);
#pragma unroll
          for (int k = 0; k < kScales; ++k) {
            f_c[j][k] = here ? f.map[k][at] : Dtype(0);
          }
        }
#pragma unroll
        for (int j = 0; j < kForwardStage; ++j) {
          if (c0 + j >= channels) {
            break;
          }
          Dtype sum = (first == 0)
              ? attention_scale::attention_term(w_k[0], f_c[j][0])
              : attention_scale::attention_term_add(old[j], w_k[0],
                    f_c[j][0]);
#pragma unroll
          for (int k = 1; k < kScales; ++k) {
            sum = attention_scale::attention_term_add(sum, w_k[k], f_c[j][k]);
          }
          top_data[static_cast<size_t>(n * channels + c0 + j) * inner + i] =
              sum;
        }
      }
    }
  }
}

/// AttentionForward for a launch of `size` scales (1 .. kLaunchScales).
template <typename Dtype>
using AttentionForwardKernel = void (*)(int, int, int, ScaleMaps<const Dtype>,
    const Dtype*, int, int, Dtype*);

template <typename Dtype>
static AttentionForwardKernel<Dtype> ForwardKernel(int size) {
  static_assert(kLaunchScales == 8, "one AttentionForward per launch size");
  static const AttentionForwardKernel<Dtype> kernels[kLaunchScales] = {
    AttentionForward<Dtype, 1>, AttentionForward<Dtype, 2>,
    AttentionForward<Dtype, 3>, AttentionForward<Dtype, 4>,
    AttentionForward<Dtype, 5>, AttentionForward<Dtype, 6>,
    AttentionForward<Dtype, 7>, AttentionForward<Dtype, 8>};
  return kernels[size - 1];
}

template <typename Dtype>
__global__ void AverageForward(const int count, const int first,
    const int size, const ScaleMaps<const Dtype> f, const Dtype inv_num_scales,
    Dtype* top_data) {
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
    for (int k = 0; k < size; ++k) {
      attention_scale::average_accumulate_at(
          index, first + k, f.map[k], inv_num_scales, top_data);
    }
  }
}

template <typename Dtype>
__global__ void MaxForward(const int count, const int first, const int size,
    const ScaleMaps<const Dtype> f, Dtype* top_data, int* mask) {
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
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
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
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
  ATS_KERNEL_LOOP(index64, count) {
    const int index = static_cast<int>(index64);  // < count <= INT_MAX
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
    ATS_KERNEL_LOOP(pixel, inner) {
      const int i = static_cast<int>(pixel);  // < inner <= INT_MAX
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

/// A 2-D grid: x covers `inner` pixels with `threads` threads a block, y
/// covers `rows` (capped at CUDA's limit; the kernels stride over the rest).
static dim3 PlaneGrid(int rows, int inner,
    int threads = CAFFE_CUDA_NUM_THREADS) {
  return dim3(
      attention_scale::AtsBlocks(inner, threads), std::min(rows, 65535));
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
        ForwardKernel<Dtype>(size)<<<PlaneGrid(top[0]->num(), inner_,
            kForwardThreads), kForwardThreads>>>(top[0]->num(), inner_, first,
            f, bottom[num_scales_]->gpu_data(), channels_, num_scales_,
            top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_AVERAGE:
        // NOLINT_NEXT_LINE(whitespace/operators)
        AverageForward<Dtype><<<attention_scale::AtsBlocks(count,
            CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(count, first,
            size, f, inv_num_scales, top_data);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxForward<Dtype><<<attention_scale::AtsBlocks(count,
            CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(count, first,
            size, f, top_data, max_idx_.mutable_gpu_data());
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
        AverageFeatureBackward<Dtype><<<attention_scale::AtsBlocks(count,
            CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(count, size,
            inv_num_scales, top_diff, f_diff);
        break;
      case WeightedScaleSumParameter_MergeMethod_MAX:
        // NOLINT_NEXT_LINE(whitespace/operators)
        MaxFeatureBackward<Dtype><<<attention_scale::AtsBlocks(count,
            CAFFE_CUDA_NUM_THREADS), CAFFE_CUDA_NUM_THREADS>>>(count, first,
            size, max_idx_.gpu_data(), top_diff, f_diff);
        break;
      default: LOG(FATAL) << "Unknown merge method " << merge_;
    }
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(WeightedScaleSumLayer);

}  // namespace caffe
