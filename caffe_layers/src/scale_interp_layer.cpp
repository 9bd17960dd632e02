// Attention to Scale for Caffe: ScaleInterp layer, parameter/shape checks and CPU loops.
#include <stdint.h>

#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;

template <typename Dtype>
void ScaleInterpLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  const ScaleInterpParameter& p = this->layer_param_.scale_interp_param();
  CHECK(bottom.size() == 1 || bottom.size() == 2) << layer
      << ": takes 1 bottom (the maps) or 2 (the maps and a reference blob giving the output"
      << " size), got " << bottom.size();
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got " << top.size();

  // Exactly one way of giving the output size.
  const bool by_factors = p.has_zoom_factor() || p.has_shrink_factor();
  const bool by_size = p.has_height() || p.has_width();
  const bool by_scale = p.has_scale();
  const bool by_reference = bottom.size() == 2;
  std::string given;
  if (by_factors) { given += " zoom_factor/shrink_factor"; }
  if (by_size) { given += " height/width"; }
  if (by_scale) { given += " scale"; }
  if (by_reference) { given += " second-bottom"; }
  CHECK_EQ(by_factors + by_size + by_scale + by_reference, 1) << layer
      << ": give exactly one of zoom_factor and/or shrink_factor, height and width, scale,"
      << " or a second bottom; got:" << (given.empty() ? std::string(" none") : given);
  if (by_factors) {
    size_mode_ = SIZE_FACTORS;
    CHECK(!p.has_zoom_factor() || p.zoom_factor() >= 1) << layer
        << ": zoom_factor must be >= 1, got " << p.zoom_factor();
    CHECK(!p.has_shrink_factor() || p.shrink_factor() >= 1) << layer
        << ": shrink_factor must be >= 1, got " << p.shrink_factor();
  } else if (by_size) {
    size_mode_ = SIZE_HEIGHT_WIDTH;
    CHECK(p.has_height() && p.has_width()) << layer
        << ": height and width must be given together";
    CHECK(p.height() >= 1 && p.width() >= 1) << layer
        << ": height and width must be >= 1, got height " << p.height() << " width "
        << p.width();
  } else if (by_scale) {
    size_mode_ = SIZE_SCALE;
    CHECK(p.scale() > 0 && std::isfinite(p.scale())) << layer
        << ": scale must be a finite number > 0, got " << p.scale();
  } else {
    size_mode_ = SIZE_REFERENCE;
  }
  pad_beg_ = p.pad_beg();
  pad_end_ = p.pad_end();
  CHECK_LE(pad_beg_, 0) << layer << ": pad_beg must be <= 0 (it crops), got " << pad_beg_;
  CHECK_LE(pad_end_, 0) << layer << ": pad_end must be <= 0 (it crops), got " << pad_end_;
  geometry_.nearest = p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST;
}

/// Output size along one axis of effective input size `in` (already checked >= 1).
static int64_t ScaleInterpOutputSize(const ScaleInterpParameter& p, int in) {
  int64_t out = in;
  if (p.has_shrink_factor()) {
    out = (out - 1) / p.shrink_factor() + 1;
  }
  if (p.has_zoom_factor()) {
    out = out + (out - 1) * (p.zoom_factor() - 1);
  }
  return out;
}

/// floor((in - 1) * scale + 1e-4) + 1 in double; the 1e-4 absorbs the float rounding of scale
/// (0.7f * 10 = 6.9999999). Sizes beyond an int come back as INT_MAX + 1, which Reshape rejects.
static int64_t ScaleInterpScaledSize(float scale, int in) {
  const double out = std::floor((in - 1) * static_cast<double>(scale) + 1e-4) + 1;
  return out > INT_MAX ? static_cast<int64_t>(INT_MAX) + 1 : static_cast<int64_t>(out);
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  const ScaleInterpParameter& p = this->layer_param_.scale_interp_param();
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK_EQ(bottom[i]->num_axes(), 4) << layer << ": " << BottomLabel(this->layer_param_, i)
        << " has shape " << bottom[i]->shape_string() << ", expected 4 axes (N x C x H x W)";
  }
  const Blob<Dtype>& in = *bottom[0];
  geometry_.in_h = in.height();
  geometry_.in_w = in.width();
  geometry_.off_y = -pad_beg_;
  geometry_.off_x = -pad_beg_;
  geometry_.eff_h = in.height() + pad_beg_ + pad_end_;
  geometry_.eff_w = in.width() + pad_beg_ + pad_end_;
  CHECK(geometry_.eff_h >= 1 && geometry_.eff_w >= 1) << layer << ": "
      << BottomLabel(this->layer_param_, 0) << " has shape " << in.shape_string()
      << ", too small for pad_beg " << pad_beg_ << " and pad_end " << pad_end_
      << " (cropped size " << geometry_.eff_h << " x " << geometry_.eff_w << ")";
  int64_t out_h = 0, out_w = 0;
  switch (size_mode_) {
  case SIZE_FACTORS:
    out_h = ScaleInterpOutputSize(p, geometry_.eff_h);
    out_w = ScaleInterpOutputSize(p, geometry_.eff_w);
    break;
  case SIZE_HEIGHT_WIDTH:
    out_h = p.height();
    out_w = p.width();
    break;
  case SIZE_SCALE:
    out_h = ScaleInterpScaledSize(p.scale(), geometry_.eff_h);
    out_w = ScaleInterpScaledSize(p.scale(), geometry_.eff_w);
    break;
  case SIZE_REFERENCE:
    out_h = bottom[1]->height();
    out_w = bottom[1]->width();
    CHECK(out_h >= 1 && out_w >= 1) << layer << ": " << BottomLabel(this->layer_param_, 1)
        << " has shape " << bottom[1]->shape_string() << ", expected height and width >= 1";
    break;
  }
  // The integer grid forms products up to 2 * in * out; keep them inside an int.
  const int64_t limit = INT_MAX;
  CHECK(out_h >= 1 && out_w >= 1 && out_h <= limit && out_w <= limit
      && 2 * out_h * geometry_.eff_h <= limit && 2 * out_w * geometry_.eff_w <= limit)
      << layer << ": output size " << out_h << " x " << out_w << " for "
      << BottomLabel(this->layer_param_, 0) << " of shape " << in.shape_string()
      << " (cropped " << geometry_.eff_h << " x " << geometry_.eff_w
      << ") is empty or too large for integer indexing";
  geometry_.out_h = static_cast<int>(out_h);
  geometry_.out_w = static_cast<int>(out_w);
  top[0]->Reshape(in.num(), in.channels(), geometry_.out_h, geometry_.out_w);
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* bottom_data = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int count = top[0]->count();
  for (int i = 0; i < count; ++i) {
    top_data[i] = attention_scale::scale_interp_forward_at(i, bottom_data, geometry_);
  }
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() == 2 && propagate_down[1]) {
    // The output does not depend on the reference blob's values.
    caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  }
  if (!propagate_down[0]) {
    return;
  }
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  const int count = bottom[0]->count();
  for (int i = 0; i < count; ++i) {
    bottom_diff[i] = attention_scale::scale_interp_backward_at(i, top_diff, geometry_);
  }
}

#ifdef CPU_ONLY
STUB_GPU(ScaleInterpLayer);
#endif

INSTANTIATE_CLASS(ScaleInterpLayer);
REGISTER_LAYER_CLASS(ScaleInterp);

}  // namespace caffe
