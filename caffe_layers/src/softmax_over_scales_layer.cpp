// Attention to Scale for Caffe: SoftmaxOverScales layer, shape checks and CPU loops.
#include <string>
#include <vector>

#include "caffe/layers/softmax_over_scales_layer.hpp"

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;
using attention_scale::ShapeString;

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  CHECK_GE(bottom.size(), 1) << layer << ": takes one N x S x H x W bottom or S bottoms of"
      << " N x 1 x H x W, got no bottom";
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got " << top.size();
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(top[0] != bottom[i]) << layer << ": cannot run in place (top[0] is "
        << BottomLabel(this->layer_param_, i) << ")";
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK_EQ(bottom[i]->num_axes(), 4) << layer << ": " << BottomLabel(this->layer_param_, i)
        << " has shape " << bottom[i]->shape_string() << ", expected 4 axes (N x S x H x W)";
  }
  const Blob<Dtype>& first = *bottom[0];
  if (bottom.size() == 1) {
    num_scales_ = first.channels();
    CHECK_GE(num_scales_, 1) << layer << ": " << BottomLabel(this->layer_param_, 0)
        << " has shape " << first.shape_string() << ", expected at least one scale channel";
  } else {
    // One N x 1 x H x W map per scale, all shaped like bottom[0].
    num_scales_ = bottom.size();
    vector<int> expected = first.shape();
    expected[1] = 1;
    CHECK(first.shape() == expected) << layer << ": " << BottomLabel(this->layer_param_, 0)
        << " has shape " << first.shape_string() << ", expected " << ShapeString(expected)
        << ": with " << bottom.size() << " bottoms each is one scale's N x 1 x H x W map";
    for (int i = 1; i < bottom.size(); ++i) {
      CHECK(bottom[i]->shape() == expected) << layer << ": "
          << BottomLabel(this->layer_param_, i) << " has shape " << bottom[i]->shape_string()
          << ", expected " << ShapeString(expected) << ", the shape of "
          << BottomLabel(this->layer_param_, 0);
    }
  }
  inner_ = first.height() * first.width();
  top[0]->Reshape(first.num(), num_scales_, first.height(), first.width());
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int pixels = top[0]->num() * inner_;
  const Dtype* in = bottom[0]->cpu_data();
  if (bottom.size() > 1) {
    // Gather the S maps into the top's channels, then take the softmax in place there.
    for (int s = 0; s < num_scales_; ++s) {
      const Dtype* scale_data = bottom[s]->cpu_data();
      for (int i = 0; i < pixels; ++i) {
        top_data[attention_scale::scale_channel_index(i, s, num_scales_, inner_)] =
            scale_data[i];
      }
    }
    in = top_data;
  }
  for (int i = 0; i < pixels; ++i) {
    attention_scale::softmax_over_scales_pixel(i, in, top_data, num_scales_, inner_);
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype* top_data = top[0]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  if (bottom.size() == 1) {
    if (!propagate_down[0]) {
      return;
    }
    Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
    const int count = top[0]->count();
    for (int i = 0; i < count; ++i) {
      bottom_diff[i] = attention_scale::softmax_over_scales_diff_at(i, top_data, top_diff,
          num_scales_, inner_);
    }
    return;
  }
  const int pixels = top[0]->num() * inner_;
  for (int s = 0; s < num_scales_; ++s) {
    if (!propagate_down[s]) {
      continue;
    }
    Dtype* bottom_diff = bottom[s]->mutable_cpu_diff();
    for (int i = 0; i < pixels; ++i) {
      bottom_diff[i] = attention_scale::softmax_over_scales_diff_at(
          attention_scale::scale_channel_index(i, s, num_scales_, inner_), top_data, top_diff,
          num_scales_, inner_);
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SoftmaxOverScalesLayer);
#endif

INSTANTIATE_CLASS(SoftmaxOverScalesLayer);
REGISTER_LAYER_CLASS(SoftmaxOverScales);

}  // namespace caffe
