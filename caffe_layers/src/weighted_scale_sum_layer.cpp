// Attention to Scale for Caffe: WeightedScaleSum layer, parameter/shape checks
// and CPU loops.
#include <algorithm>
#include <string>
#include <vector>

#include "caffe/layers/weighted_scale_sum_layer.hpp"
#include "caffe/util/attention_scale_common.hpp"
#include "caffe/util/weighted_scale_sum.hpp"

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;
using attention_scale::ShapeString;

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  merge_ = this->layer_param_.weighted_scale_sum_param().merge();
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got "
                          << top.size();
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION) {
    CHECK_GE(bottom.size(), 2)
        << layer << ": merge ATTENTION takes the S score maps and then"
        << " the N x S x H x W weights as the last bottom (at least 2"
        << " bottoms), got " << bottom.size() << " bottom(s)";
    num_scales_ = bottom.size() - 1;
  } else {
    CHECK_GE(bottom.size(), 1)
        << layer << ": takes at least one score map, got no bottom";
    num_scales_ = bottom.size();
  }
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(top[0] != bottom[i]) << layer << ": cannot run in place (top[0] is "
                               << BottomLabel(this->layer_param_, i) << ")";
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  for (int i = 0; i < bottom.size(); ++i) {
    attention_scale::CheckBottom4D(layer, this->layer_param_, *bottom[i], i,
        (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION &&
            i == num_scales_)
            ? "N x S x H x W"
            : "N x C x H x W");
  }
  const Blob<Dtype>& first = *bottom[0];
  for (int s = 1; s < num_scales_; ++s) {
    CHECK(bottom[s]->shape() == first.shape())
        << layer << ": " << BottomLabel(this->layer_param_, s) << " has shape "
        << bottom[s]->shape_string() << ", expected " << first.shape_string()
        << ", the shape of " << BottomLabel(this->layer_param_, 0);
  }
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION) {
    vector<int> expected = first.shape();
    expected[1] = num_scales_;
    const Blob<Dtype>& weights = *bottom[num_scales_];
    CHECK(weights.shape() == expected)
        << layer << ": " << BottomLabel(this->layer_param_, num_scales_)
        << " (the weights) has shape " << weights.shape_string()
        << ", expected " << ShapeString(expected)
        << ": N x S x H x W for S = " << num_scales_
        << " score maps shaped like " << BottomLabel(this->layer_param_, 0)
        << " (" << first.shape_string() << ")";
  }
  channels_ = first.channels();
  inner_ = first.height() * first.width();
  top[0]->ReshapeLike(first);
  if (merge_ == WeightedScaleSumParameter_MergeMethod_MAX) {
    max_idx_.Reshape(first.shape());
  }
}

// The CPU loops go block by block over the pixels (kBlock of them): within a
// block every element takes the element functions of
// caffe/util/weighted_scale_sum.hpp for scales s = 0, 1, .. in order, as in the
// CUDA kernels (one launch per scale there). AVERAGE and MAX take one scale at
// a time over a block (the partial results stay in the L1 cache); ATTENTION
// takes up to kGroup scales in one pass, the partial sum in a register, and all
// the classes of a block of pixels together, so the block's weights are read
// from memory once. Every loop is a plain one that vectorizes. The blocks are
// independent: with OpenMP, threads share them out.
static const int kBlock = 8192;
static const int kGroup = 4;

/// Blocks of kBlock elements in a plane of `size` elements.
static inline int Blocks(int size) { return (size + kBlock - 1) / kBlock; }

/// ATTENTION forward of [begin, end) for scales s0 .. s0 + G - 1 (pointers to
/// the class plane of each score map and to the weight plane of each scale):
/// top = (s0 == 0: 0, else top) + w^s0 f^s0 + ... in the order of
/// attention_accumulate_at.
template <typename Dtype, int G, bool kFirst>
static ATS_CPU_LOOP void AttentionForwardGroup(int begin, int end,
    const Dtype* const* f, const Dtype* const* w, Dtype* __restrict__ top) {
  const Dtype* __restrict__ f0 = f[0];
  const Dtype* __restrict__ f1 = f[G > 1 ? 1 : 0];
  const Dtype* __restrict__ f2 = f[G > 2 ? 2 : 0];
  const Dtype* __restrict__ f3 = f[G > 3 ? 3 : 0];
  const Dtype* __restrict__ w0 = w[0];
  const Dtype* __restrict__ w1 = w[G > 1 ? 1 : 0];
  const Dtype* __restrict__ w2 = w[G > 2 ? 2 : 0];
  const Dtype* __restrict__ w3 = w[G > 3 ? 3 : 0];
  for (int i = begin; i < end; ++i) {
    Dtype t = kFirst
        ? attention_scale::attention_term(w0[i], f0[i])
        : attention_scale::attention_term_add(top[i], w0[i], f0[i]);
    if (G > 1) {
      t = attention_scale::attention_term_add(t, w1[i], f1[i]);
    }
    if (G > 2) {
      t = attention_scale::attention_term_add(t, w2[i], f2[i]);
    }
    if (G > 3) {
      t = attention_scale::attention_term_add(t, w3[i], f3[i]);
    }
    top[i] = t;
  }
}

/// AttentionForwardGroup with the group size and first flag as constants.
template <typename Dtype, bool kFirst>
static void AttentionForwardGroupOf(int size, int begin, int end,
    const Dtype* const* f, const Dtype* const* w, Dtype* top) {
  switch (size) {
    case 1: AttentionForwardGroup<Dtype, 1, kFirst>(begin, end, f, w, top);
      break;
    case 2: AttentionForwardGroup<Dtype, 2, kFirst>(begin, end, f, w, top);
      break;
    case 3: AttentionForwardGroup<Dtype, 3, kFirst>(begin, end, f, w, top);
      break;
    default: AttentionForwardGroup<Dtype, 4, kFirst>(begin, end, f, w, top);
  }
}

/// The ATTENTION forward of [begin, end) of one class plane, every scale, in
/// groups of up to kGroup scales.
template <typename Dtype>
static void AttentionForwardGroups(int begin, int end, int num_scales,
    const Dtype* const* f, const Dtype* const* w, Dtype* top) {
  for (int s = 0; s < num_scales; s += kGroup) {
    const int size = std::min(kGroup, num_scales - s);
    if (s == 0) {
      AttentionForwardGroupOf<Dtype, true>(size, begin, end, f, w, top);
    } else {
      AttentionForwardGroupOf<Dtype, false>(size, begin, end, f + s, w + s,
          top);
    }
  }
}

/// ATTENTION backward of [begin, end) of class plane c for scale s, both
/// diffs in one pass: df^s = w^s dg (attention_feature_diff_at) and dw^s (=
/// for the first class, else +=) f^s dg (attention_weight_accumulate_at).
template <typename Dtype, bool kFirstClass>
static ATS_CPU_LOOP void AttentionBackwardScale(int begin, int end,
    const Dtype* __restrict__ f, const Dtype* __restrict__ w,
    const Dtype* __restrict__ dg, Dtype* __restrict__ f_diff,
    Dtype* __restrict__ w_diff) {
  for (int i = begin; i < end; ++i) {
    f_diff[i] = attention_scale::attention_feature_diff_at(i, w, dg);
    attention_scale::attention_weight_accumulate_at(
        i, kFirstClass ? 0 : 1, f, dg, w_diff);
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int count = top[0]->count();
  const int num_scales = num_scales_, channels = channels_, inner = inner_;
  vector<const Dtype*> f(num_scales);
  for (int s = 0; s < num_scales; ++s) {
    f[s] = bottom[s]->cpu_data();
  }
  const Dtype* const* scores = &f[0];
  switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      // One job per block of pixels of a sample, every class of it.
      const Dtype* w = bottom[num_scales]->cpu_data();
      const int blocks = Blocks(inner);
      const int jobs = top[0]->num() * blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int n = job / blocks;
        const int begin = (job - n * blocks) * kBlock;
        const int end = std::min(begin + kBlock, inner);
        vector<const Dtype*> f_plane(num_scales), w_plane(num_scales);
        for (int s = 0; s < num_scales; ++s) {
          w_plane[s] = w + (n * num_scales + s) * inner;
        }
        for (int c = 0; c < channels; ++c) {
          const int plane = (n * channels + c) * inner;
          for (int s = 0; s < num_scales; ++s) {
            f_plane[s] = scores[s] + plane;
          }
          AttentionForwardGroups(begin, end, num_scales, &f_plane[0],
              &w_plane[0], top_data + plane);
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE: {
      const Dtype inv_num_scales = Dtype(1) / num_scales;
      const int jobs = Blocks(count);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int begin = job * kBlock;
        const int end = std::min(begin + kBlock, count);
        for (int s = 0; s < num_scales; ++s) {
          const Dtype* f_s = scores[s];
          for (int i = begin; i < end; ++i) {
            attention_scale::average_accumulate_at(
                i, s, f_s, inv_num_scales, top_data);
          }
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_MAX: {
      int* mask = max_idx_.mutable_cpu_data();
      const int jobs = Blocks(count);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int begin = job * kBlock;
        const int end = std::min(begin + kBlock, count);
        for (int s = 0; s < num_scales; ++s) {
          const Dtype* f_s = scores[s];
          for (int i = begin; i < end; ++i) {
            attention_scale::max_accumulate_at(i, s, f_s, top_data, mask);
          }
        }
      }
      break;
    }
    default: LOG(FATAL) << "Unknown merge method " << merge_;
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_diff = top[0]->cpu_diff();
  const int count = top[0]->count();
  const int num_scales = num_scales_, channels = channels_, inner = inner_;
  // The score maps whose diff is wanted: wanted[k] is the scale, f_diff[k] the
  // diff.
  vector<int> wanted;
  vector<Dtype*> f_diff;
  for (int s = 0; s < num_scales; ++s) {
    if (propagate_down[s]) {
      wanted.push_back(s);
      f_diff.push_back(bottom[s]->mutable_cpu_diff());
    }
  }
  const int num_wanted = wanted.size();
  if (num_wanted == 0 &&
      (merge_ != WeightedScaleSumParameter_MergeMethod_ATTENTION ||
          !propagate_down[num_scales])) {
    return;
  }
  const int* scale = num_wanted ? &wanted[0] : NULL;
  Dtype* const* diffs = num_wanted ? &f_diff[0] : NULL;
  switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      // df^s = w^s dg, and dw^s summed over the classes c in order, block by
      // block of pixels: the weight diffs of a block stay in cache.
      vector<const Dtype*> f(num_scales);
      for (int s = 0; s < num_scales; ++s) {
        f[s] = bottom[s]->cpu_data();
      }
      const Dtype* const* scores = &f[0];
      const Dtype* w = bottom[num_scales]->cpu_data();
      Dtype* w_diff = propagate_down[num_scales]
          ? bottom[num_scales]->mutable_cpu_diff()
          : NULL;
      const int blocks = Blocks(inner);
      const int jobs = top[0]->num() * blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int n = job / blocks;
        const int begin = (job - n * blocks) * kBlock;
        const int end = std::min(begin + kBlock, inner);
        vector<const Dtype*> w_plane(num_scales);
        vector<Dtype*> w_diff_plane(num_scales);
        for (int s = 0; s < num_scales; ++s) {
          w_plane[s] = w + (n * num_scales + s) * inner;
          w_diff_plane[s] = w_diff ? w_diff + (n * num_scales + s) * inner
                                   : NULL;
        }
        for (int c = 0; c < channels; ++c) {
          const int plane = (n * channels + c) * inner;
          const Dtype* dg = top_diff + plane;
          // Where a scale's score diff and the weight diff are both wanted,
          // one pass computes both (measured a quarter faster than a pass for
          // each, with dg and the weights read from the cache once).
          int k = 0;
          for (int s = 0; s < num_scales; ++s) {
            const bool score = k < num_wanted && scale[k] == s;
            Dtype* diff = score ? diffs[k++] + plane : NULL;
            const Dtype* f_s = scores[s] + plane;
            if (score && w_diff) {
              if (c == 0) {
                AttentionBackwardScale<Dtype, true>(begin, end, f_s,
                    w_plane[s], dg, diff, w_diff_plane[s]);
              } else {
                AttentionBackwardScale<Dtype, false>(begin, end, f_s,
                    w_plane[s], dg, diff, w_diff_plane[s]);
              }
              continue;
            }
            if (score) {
              for (int i = begin; i < end; ++i) {
                diff[i] = attention_scale::attention_feature_diff_at(
                    i, w_plane[s], dg);
              }
            }
            if (w_diff) {
              for (int i = begin; i < end; ++i) {
                attention_scale::attention_weight_accumulate_at(
                    i, c, f_s, dg, w_diff_plane[s]);
              }
            }
          }
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE: {
      const Dtype inv_num_scales = Dtype(1) / num_scales;
      const int jobs = Blocks(count);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int begin = job * kBlock;
        const int end = std::min(begin + kBlock, count);
        for (int k = 0; k < num_wanted; ++k) {
          Dtype* diff = diffs[k];
          for (int i = begin; i < end; ++i) {
            diff[i] = attention_scale::average_feature_diff_at(
                i, inv_num_scales, top_diff);
          }
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_MAX: {
      const int* mask = max_idx_.cpu_data();
      const int jobs = Blocks(count);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (int job = 0; job < jobs; ++job) {
        const int begin = job * kBlock;
        const int end = std::min(begin + kBlock, count);
        for (int k = 0; k < num_wanted; ++k) {
          Dtype* diff = diffs[k];
          for (int i = begin; i < end; ++i) {
            diff[i] = attention_scale::max_feature_diff_at(
                i, scale[k], mask, top_diff);
          }
        }
      }
      break;
    }
    default: LOG(FATAL) << "Unknown merge method " << merge_;
  }
}

#ifdef CPU_ONLY
STUB_GPU(WeightedScaleSumLayer);
#endif

INSTANTIATE_CLASS(WeightedScaleSumLayer);
REGISTER_LAYER_CLASS(WeightedScaleSum);

}  // namespace caffe
