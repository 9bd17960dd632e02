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

// The CPU loops. Every element takes the element functions of
// caffe/util/weighted_scale_sum.hpp for scales s = 0, 1, .. in order, as in the
// CUDA kernels (one launch per scale there); here one pass over the elements
// takes up to kGroup consecutive scales, so a partial result stays in a
// register instead of going through memory once per scale.
static const int kGroup = 4;

/// op(i, s) for every i in [begin, end) and s = first .. first + G - 1, in that
/// order per i.
template <int G, typename Op>
static inline void ScaleGroupPass(int begin, int end, int first, const Op& op) {
  for (int i = begin; i < end; ++i) {
    for (int g = 0; g < G; ++g) {
      op(i, first + g);
    }
  }
}

/// op(i, s) for every i in [begin, end) and s = 0 .. num_scales - 1, in that
/// order per i.
template <typename Op>
static void ScalePasses(int begin, int end, int num_scales, const Op& op) {
  for (int s = 0; s < num_scales; s += kGroup) {
    switch (std::min(kGroup, num_scales - s)) {
      case 4: ScaleGroupPass<4>(begin, end, s, op); break;
      case 3: ScaleGroupPass<3>(begin, end, s, op); break;
      case 2: ScaleGroupPass<2>(begin, end, s, op); break;
      default: ScaleGroupPass<1>(begin, end, s, op); break;
    }
  }
}

// The operations, on pointers prepared by the loops: f[s] (score map of scale
// s), w[s] (the weights of scale s), for the class plane or the whole blob that
// the pass covers.
template <typename Dtype>
struct AttentionForwardOp {
  const Dtype* const* f;
  const Dtype* const* w;
  Dtype* top;
  inline void operator()(int i, int s) const {
    attention_scale::attention_accumulate_at(i, s, f[s], w[s], top);
  }
};

template <typename Dtype>
struct AverageForwardOp {
  const Dtype* const* f;
  Dtype inv_num_scales;
  Dtype* top;
  inline void operator()(int i, int s) const {
    attention_scale::average_accumulate_at(i, s, f[s], inv_num_scales, top);
  }
};

template <typename Dtype>
struct MaxForwardOp {
  const Dtype* const* f;
  Dtype* top;
  int* mask;
  inline void operator()(int i, int s) const {
    attention_scale::max_accumulate_at(i, s, f[s], top, mask);
  }
};

// Backward to the score maps: k counts those whose diff is wanted, scale[k] is
// their scale.
template <typename Dtype>
struct AverageBackwardOp {
  Dtype inv_num_scales;
  const Dtype* top_diff;
  Dtype* const* f_diff;
  inline void operator()(int i, int k) const {
    f_diff[k][i] =
        attention_scale::average_feature_diff_at(i, inv_num_scales, top_diff);
  }
};

template <typename Dtype>
struct MaxBackwardOp {
  const int* scale;
  const int* mask;
  const Dtype* top_diff;
  Dtype* const* f_diff;
  inline void operator()(int i, int k) const {
    f_diff[k][i] =
        attention_scale::max_feature_diff_at(i, scale[k], mask, top_diff);
  }
};

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int count = top[0]->count();
  vector<const Dtype*> f(num_scales_);
  for (int s = 0; s < num_scales_; ++s) {
    f[s] = bottom[s]->cpu_data();
  }
  switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      const Dtype* w = bottom[num_scales_]->cpu_data();
      vector<const Dtype*> f_plane(num_scales_), w_plane(num_scales_);
      for (int n = 0; n < top[0]->num(); ++n) {
        for (int c = 0; c < channels_; ++c) {
          const int plane = (n * channels_ + c) * inner_;
          for (int s = 0; s < num_scales_; ++s) {
            f_plane[s] = f[s] + plane;
            w_plane[s] = w + (n * num_scales_ + s) * inner_;
          }
          AttentionForwardOp<Dtype> op = {
              &f_plane[0], &w_plane[0], top_data + plane};
          ScalePasses(0, inner_, num_scales_, op);
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE: {
      AverageForwardOp<Dtype> op = {&f[0], Dtype(1) / num_scales_, top_data};
      ScalePasses(0, count, num_scales_, op);
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_MAX: {
      MaxForwardOp<Dtype> op = {&f[0], top_data, max_idx_.mutable_cpu_data()};
      ScalePasses(0, count, num_scales_, op);
      break;
    }
    default: LOG(FATAL) << "Unknown merge method " << merge_;
  }
}

// Backward of ATTENTION, block by block of kBlock pixels: the weight diffs of a
// block, summed over the classes, stay in cache.
static const int kBlock = 4096;

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_diff = top[0]->cpu_diff();
  const int count = top[0]->count();
  // The score maps whose diff is wanted: wanted[k] is the scale, f_diff[k] the
  // diff.
  vector<int> wanted;
  vector<Dtype*> f_diff;
  for (int s = 0; s < num_scales_; ++s) {
    if (propagate_down[s]) {
      wanted.push_back(s);
      f_diff.push_back(bottom[s]->mutable_cpu_diff());
    }
  }
  const int num_wanted = wanted.size();
  switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      // df^s = w^s dg, and dw^s summed over the classes c in order; one scale
      // at a time (the passes write through different pointers per scale, which
      // keeps compilers from vectorizing grouped ones).
      const Dtype* w = bottom[num_scales_]->cpu_data();
      Dtype* w_diff = propagate_down[num_scales_]
          ? bottom[num_scales_]->mutable_cpu_diff()
          : NULL;
      for (int n = 0; n < top[0]->num(); ++n) {
        for (int begin = 0; begin < inner_; begin += kBlock) {
          const int end = std::min(begin + kBlock, inner_);
          for (int c = 0; c < channels_; ++c) {
            const int plane = (n * channels_ + c) * inner_;
            for (int k = 0; k < num_wanted; ++k) {
              const Dtype* w_s = w + (n * num_scales_ + wanted[k]) * inner_;
              Dtype* diff = f_diff[k] + plane;
              for (int i = begin; i < end; ++i) {
                diff[i] = attention_scale::attention_feature_diff_at(
                    i, w_s, top_diff + plane);
              }
            }
            for (int s = 0; w_diff && s < num_scales_; ++s) {
              const Dtype* f = bottom[s]->cpu_data() + plane;
              Dtype* w_diff_s = w_diff + (n * num_scales_ + s) * inner_;
              for (int i = begin; i < end; ++i) {
                attention_scale::attention_weight_accumulate_at(
                    i, c, f, top_diff + plane, w_diff_s);
              }
            }
          }
        }
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE:
      if (num_wanted > 0) {
        AverageBackwardOp<Dtype> op = {
            Dtype(1) / num_scales_, top_diff, &f_diff[0]};
        ScalePasses(0, count, num_wanted, op);
      }
      break;
    case WeightedScaleSumParameter_MergeMethod_MAX:
      if (num_wanted > 0) {
        MaxBackwardOp<Dtype> op = {
            &wanted[0], max_idx_.cpu_data(), top_diff, &f_diff[0]};
        ScalePasses(0, count, num_wanted, op);
      }
      break;
    default: LOG(FATAL) << "Unknown merge method " << merge_;
  }
}

#ifdef CPU_ONLY
STUB_GPU(WeightedScaleSumLayer);
#endif

INSTANTIATE_CLASS(WeightedScaleSumLayer);
REGISTER_LAYER_CLASS(WeightedScaleSum);

}  // namespace caffe
