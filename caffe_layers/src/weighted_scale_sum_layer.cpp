// Attention to Scale for Caffe: WeightedScaleSum layer, parameter/shape checks and CPU loops.
#include <string>
#include <vector>

#include "caffe/layers/weighted_scale_sum_layer.hpp"

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;
using attention_scale::ShapeString;

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  merge_ = this->layer_param_.weighted_scale_sum_param().merge();
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got " << top.size();
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION) {
    CHECK_GE(bottom.size(), 2) << layer << ": merge ATTENTION takes the S score maps and then"
        << " the N x S x H x W weights as the last bottom (at least 2 bottoms), got "
        << bottom.size() << " bottom(s)";
    num_scales_ = bottom.size() - 1;
  } else {
    CHECK_GE(bottom.size(), 1) << layer << ": takes at least one score map, got no bottom";
    num_scales_ = bottom.size();
  }
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(top[0] != bottom[i]) << layer << ": cannot run in place (top[0] is "
        << BottomLabel(this->layer_param_, i) << ")";
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK_EQ(bottom[i]->num_axes(), 4) << layer << ": " << BottomLabel(this->layer_param_, i)
        << " has shape " << bottom[i]->shape_string() << ", expected 4 axes (N x C x H x W)";
  }
  const Blob<Dtype>& first = *bottom[0];
  for (int s = 1; s < num_scales_; ++s) {
    CHECK(bottom[s]->shape() == first.shape()) << layer << ": "
        << BottomLabel(this->layer_param_, s) << " has shape " << bottom[s]->shape_string()
        << ", expected " << first.shape_string() << ", the shape of "
        << BottomLabel(this->layer_param_, 0);
  }
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION) {
    vector<int> expected = first.shape();
    expected[1] = num_scales_;
    const Blob<Dtype>& weights = *bottom[num_scales_];
    CHECK(weights.shape() == expected) << layer << ": "
        << BottomLabel(this->layer_param_, num_scales_) << " (the weights) has shape "
        << weights.shape_string() << ", expected " << ShapeString(expected)
        << ": N x S x H x W for S = " << num_scales_ << " score maps shaped like "
        << BottomLabel(this->layer_param_, 0) << " (" << first.shape_string() << ")";
  }
  channels_ = first.channels();
  inner_ = first.height() * first.width();
  top[0]->ReshapeLike(first);
  if (merge_ == WeightedScaleSumParameter_MergeMethod_MAX) {
    max_idx_.Reshape(first.shape());
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int count = top[0]->count();
  const Dtype inv_num_scales = Dtype(1) / num_scales_;
  for (int s = 0; s < num_scales_; ++s) {
    const Dtype* f = bottom[s]->cpu_data();
    switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      const Dtype* w = bottom[num_scales_]->cpu_data();
      for (int i = 0; i < count; ++i) {
        attention_scale::attention_accumulate_at(i, s, f, w, channels_, num_scales_, inner_,
            top_data);
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE:
      for (int i = 0; i < count; ++i) {
        attention_scale::average_accumulate_at(i, s, f, inv_num_scales, top_data);
      }
      break;
    case WeightedScaleSumParameter_MergeMethod_MAX: {
      int* mask = max_idx_.mutable_cpu_data();
      for (int i = 0; i < count; ++i) {
        attention_scale::max_accumulate_at(i, s, f, top_data, mask);
      }
      break;
    }
    default:
      LOG(FATAL) << "Unknown merge method " << merge_;
    }
  }
}

template <typename Dtype>
void WeightedScaleSumLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_diff = top[0]->cpu_diff();
  const int count = top[0]->count();
  const Dtype inv_num_scales = Dtype(1) / num_scales_;
  for (int s = 0; s < num_scales_; ++s) {
    if (!propagate_down[s]) {
      continue;
    }
    Dtype* f_diff = bottom[s]->mutable_cpu_diff();
    switch (merge_) {
    case WeightedScaleSumParameter_MergeMethod_ATTENTION: {
      const Dtype* w = bottom[num_scales_]->cpu_data();
      for (int i = 0; i < count; ++i) {
        f_diff[i] = attention_scale::attention_feature_diff_at(i, s, w, top_diff, channels_,
            num_scales_, inner_);
      }
      break;
    }
    case WeightedScaleSumParameter_MergeMethod_AVERAGE:
      for (int i = 0; i < count; ++i) {
        f_diff[i] = attention_scale::average_feature_diff_at(i, inv_num_scales, top_diff);
      }
      break;
    case WeightedScaleSumParameter_MergeMethod_MAX: {
      const int* mask = max_idx_.cpu_data();
      for (int i = 0; i < count; ++i) {
        f_diff[i] = attention_scale::max_feature_diff_at(i, s, mask, top_diff);
      }
      break;
    }
    default:
      LOG(FATAL) << "Unknown merge method " << merge_;
    }
  }
  if (merge_ == WeightedScaleSumParameter_MergeMethod_ATTENTION
      && propagate_down[num_scales_]) {
    Dtype* w_diff = bottom[num_scales_]->mutable_cpu_diff();
    const int pixels = top[0]->num() * inner_;
    for (int s = 0; s < num_scales_; ++s) {
      const Dtype* f = bottom[s]->cpu_data();
      for (int i = 0; i < pixels; ++i) {
        w_diff[attention_scale::scale_channel_index(i, s, num_scales_, inner_)] =
            attention_scale::attention_weight_diff_at(i, f, top_diff, channels_, inner_);
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(WeightedScaleSumLayer);
#endif

INSTANTIATE_CLASS(WeightedScaleSumLayer);
REGISTER_LAYER_CLASS(WeightedScaleSum);

}  // namespace caffe
