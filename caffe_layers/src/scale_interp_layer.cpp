// Attention to Scale for Caffe: ScaleInterp layer, parameter/shape checks and
// CPU loops.
#include <stdint.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/attention_scale_common.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/scale_interp.hpp"

// The row helpers below stay out of line: inlined into their callers, GCC 12 no
// longer used the
// __restrict__ of their parameters and did not vectorize them.
#if defined(__GNUC__)
#define ATS_NOINLINE __attribute__((noinline))
#else
#define ATS_NOINLINE
#endif

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;

template <typename Dtype>
void ScaleInterpLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  const ScaleInterpParameter& p = this->layer_param_.scale_interp_param();
  CHECK(bottom.size() == 1 || bottom.size() == 2)
      << layer << ": takes 1 bottom (the maps) or 2 (the maps and a reference"
      << " blob giving the output size), got " << bottom.size();
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got "
                          << top.size();
  // In place, the top would take the output size and the next forward would
  // read the resized blob as its input.
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(top[0] != bottom[i]) << layer << ": cannot run in place (top[0] is "
                               << BottomLabel(this->layer_param_, i) << ")";
  }

  // Exactly one way of giving the output size.
  const bool by_factors = p.has_zoom_factor() || p.has_shrink_factor();
  const bool by_size = p.has_height() || p.has_width();
  const bool by_scale = p.has_scale();
  const bool by_reference = bottom.size() == 2;
  std::string given;
  if (by_factors) {
    given += " zoom_factor/shrink_factor";
  }
  if (by_size) {
    given += " height/width";
  }
  if (by_scale) {
    given += " scale";
  }
  if (by_reference) {
    given += " second-bottom";
  }
  CHECK_EQ(by_factors + by_size + by_scale + by_reference, 1)
      << layer << ": give exactly one of zoom_factor and/or shrink_factor,"
      << " height and width, scale, or a second bottom; got:"
      << (given.empty() ? std::string(" none") : given);
  if (by_factors) {
    size_mode_ = SIZE_FACTORS;
    CHECK(!p.has_zoom_factor() || p.zoom_factor() >= 1)
        << layer << ": zoom_factor must be >= 1, got " << p.zoom_factor();
    CHECK(!p.has_shrink_factor() || p.shrink_factor() >= 1)
        << layer << ": shrink_factor must be >= 1, got " << p.shrink_factor();
  } else if (by_size) {
    size_mode_ = SIZE_HEIGHT_WIDTH;
    CHECK(p.has_height() && p.has_width())
        << layer << ": height and width must be given together";
    CHECK(p.height() >= 1 && p.width() >= 1)
        << layer << ": height and width must be >= 1, got height " << p.height()
        << " width " << p.width();
  } else if (by_scale) {
    size_mode_ = SIZE_SCALE;
    CHECK(p.scale() > 0 && std::isfinite(p.scale()))
        << layer << ": scale must be a finite number > 0, got " << p.scale();
  } else {
    size_mode_ = SIZE_REFERENCE;
  }
  pad_beg_ = p.pad_beg();
  pad_end_ = p.pad_end();
  CHECK_LE(pad_beg_, 0) << layer << ": pad_beg must be <= 0 (it crops), got "
                        << pad_beg_;
  CHECK_LE(pad_end_, 0) << layer << ": pad_end must be <= 0 (it crops), got "
                        << pad_end_;
  geometry_.nearest =
      p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST;
}

/// Output size along one axis of effective input size `in` (checked >= 1).
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

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  const ScaleInterpParameter& p = this->layer_param_.scale_interp_param();
  for (int i = 0; i < bottom.size(); ++i) {
    attention_scale::CheckBottom4D(
        layer, this->layer_param_, *bottom[i], i, "N x C x H x W");
  }
  const Blob<Dtype>& in = *bottom[0];
  geometry_.in_h = in.height();
  geometry_.in_w = in.width();
  geometry_.off_y = -pad_beg_;
  geometry_.off_x = -pad_beg_;
  geometry_.eff_h = in.height() + pad_beg_ + pad_end_;
  geometry_.eff_w = in.width() + pad_beg_ + pad_end_;
  CHECK(geometry_.eff_h >= 1 && geometry_.eff_w >= 1)
      << layer << ": " << BottomLabel(this->layer_param_, 0) << " has shape "
      << in.shape_string() << ", too small for pad_beg " << pad_beg_
      << " and pad_end " << pad_end_ << " (cropped size " << geometry_.eff_h
      << " x " << geometry_.eff_w << ")";
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
      out_h = attention_scale::scaled_output_size(p.scale(), geometry_.eff_h);
      out_w = attention_scale::scaled_output_size(p.scale(), geometry_.eff_w);
      break;
    case SIZE_REFERENCE:
      out_h = bottom[1]->height();  // >= 1: checked above
      out_w = bottom[1]->width();
      break;
  }
  // The per-axis tables hold fewer than 5 * out + 2 * in entries
  // (interp_axis_value_count); each must fit in a blob. (The same limits and
  // messages in the Python layer.)
  const int64_t limit = INT_MAX;
  CHECK(out_h >= 1 && out_w >= 1 && out_h <= limit && out_w <= limit &&
      5 * out_h + 2 * geometry_.eff_h <= limit &&
      5 * out_w + 2 * geometry_.eff_w <= limit)
      << layer << ": output size " << out_h << " x " << out_w << " for "
      << BottomLabel(this->layer_param_, 0) << " of shape " << in.shape_string()
      << " (cropped " << geometry_.eff_h << " x " << geometry_.eff_w
      << ") is out of range: each output side must be >= 1 and"
      << " 5 x output side + 2 x cropped input side <= " << limit;
  // A blob holds at most INT_MAX elements (Blob::Reshape would stop without
  // naming the layer). in.count() <= INT_MAX and out_h, out_w < INT_MAX: no
  // product below overflows.
  const int64_t planes_rows =
      static_cast<int64_t>(in.num()) * in.channels() * out_h;
  CHECK(planes_rows <= limit / out_w)
      << layer << ": the top would have shape " << in.num() << " "
      << in.channels() << " " << out_h << " " << out_w
      << ", more than a blob holds (" << limit << " elements)";
  geometry_.out_h = static_cast<int>(out_h);
  geometry_.out_w = static_cast<int>(out_w);
  top[0]->Reshape(in.num(), in.channels(), geometry_.out_h, geometry_.out_w);
  SetUpTables();
  vector<int> buffer_shape(
      1, in.num() * in.channels() * pass_[0].dst_h * pass_[0].dst_w);
  buffer_.Reshape(buffer_shape);
}

/// Estimated time of the CPU loops (forward and backward, per plane, in units
/// of one step of a row operation, measured on x86-64) when resampling first
/// along x or first along y. Along y the loops are row operations; along x
/// every element reads its own cells: about 3 times the cost forward, and 3 + 2
/// per window output backward.
static double ScaleInterpCost(bool x_first,
    const attention_scale::InterpGeometry& g, const int width[2]) {
  const double mid = x_first ? static_cast<double>(g.eff_h) * g.out_w
                             : static_cast<double>(g.out_h) * g.eff_w;
  const double in = static_cast<double>(g.eff_h) * g.eff_w;
  const double out = static_cast<double>(g.out_h) * g.out_w;
  const double forward = x_first ? 3 * mid + out : mid + 3 * out;
  const double gather_x = 3.0 + 2 * width[1];
  const double backward =
      x_first ? width[0] * mid + gather_x * in : gather_x * mid + width[0] * in;
  return forward + backward;
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::SetUpTables() {
  const attention_scale::InterpGeometry& g = geometry_;
  const int key_values[5] = {g.eff_h, g.eff_w, g.out_h, g.out_w, g.nearest};
  const vector<int> key(key_values, key_values + 5);
  if (key != tables_key_) {
    const int in[2] = {g.eff_h, g.eff_w};
    const int out[2] = {g.out_h, g.out_w};
    for (int a = 0; a < 2; ++a) {
      axis_width_[a] = attention_scale::interp_axis_width(in[a], out[a]);
      // Below 5 * out + 2 * in <= INT_MAX (Reshape's check).
      axis_index_[a].Reshape(vector<int>(1,
          static_cast<int>(
              attention_scale::interp_axis_index_count(in[a], out[a]))));
      axis_value_[a].Reshape(vector<int>(1,
          static_cast<int>(attention_scale::interp_axis_value_count(
              in[a], out[a], axis_width_[a]))));
      attention_scale::fill_interp_axis(in[a], out[a], g.nearest,
          axis_width_[a], axis_index_[a].mutable_cpu_data(),
          axis_value_[a].mutable_cpu_data());
    }
    tables_key_ = key;
  }
  // Resample first along x (intermediate planes eff_h x out_w) or along y
  // (out_h x eff_w), whichever the CPU loops take less time for, unless its
  // intermediate planes would be larger than both the bottom's and the top's
  // (the smaller of the two never is).
  const int64_t x_first_planes = static_cast<int64_t>(g.eff_h) * g.out_w;
  const int64_t y_first_planes = static_cast<int64_t>(g.out_h) * g.eff_w;
  const int64_t largest = std::max(static_cast<int64_t>(g.eff_h) * g.eff_w,
      static_cast<int64_t>(g.out_h) * g.out_w);
  bool x_first = ScaleInterpCost(true, g, axis_width_) <=
      ScaleInterpCost(false, g, axis_width_);
  if ((x_first ? x_first_planes : y_first_planes) > largest) {
    x_first = !x_first;
  }
  attention_scale::InterpPass& first = pass_[0];
  first.src_h = g.in_h;
  first.src_w = g.in_w;
  first.off_y = g.off_y;
  first.off_x = g.off_x;
  first.eff_h = g.eff_h;
  first.eff_w = g.eff_w;
  first.dst_h = x_first ? g.eff_h : g.out_h;
  first.dst_w = x_first ? g.out_w : g.eff_w;
  first.along_x = x_first;
  attention_scale::InterpPass& second = pass_[1];
  second.src_h = second.eff_h = first.dst_h;
  second.src_w = second.eff_w = first.dst_w;
  second.off_y = second.off_x = 0;
  second.dst_h = g.out_h;
  second.dst_w = g.out_w;
  second.along_x = !x_first;
}

template <typename Dtype>
attention_scale::InterpAxis<Dtype> ScaleInterpLayer<Dtype>::Axis(
    bool along_x, bool gpu) {
  const int a = along_x ? 1 : 0;
  const int in = along_x ? geometry_.eff_w : geometry_.eff_h;
  const int out = along_x ? geometry_.out_w : geometry_.out_h;
  return attention_scale::interp_axis_view(
      gpu ? axis_index_[a].gpu_data() : axis_index_[a].cpu_data(),
      gpu ? axis_value_[a].gpu_data() : axis_value_[a].cpu_data(), in, out,
      axis_width_[a], geometry_.nearest);
}

// The CPU loops run row by row through helpers whose output row is __restrict__
// (it overlaps neither the input nor the tables) and which know the pass's axis
// at compile time, so the compiler keeps a row's table entries in registers and
// vectorizes along y. Each helper calls the element functions of
// caffe/util/scale_interp.hpp that the CUDA kernels call.

/// Row y of output plane `plane` of a forward pass along x (kAlongX) or y.
template <typename Dtype, bool kAlongX>
static ATS_NOINLINE void ScaleInterpPassRow(int plane, int y,
    const Dtype* __restrict__ src, const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, Dtype* __restrict__ row) {
  attention_scale::InterpPass p = pass;
  p.along_x = kAlongX;
  const attention_scale::InterpAxis<Dtype> a = axis;
  for (int x = 0; x < p.dst_w; ++x) {
    row[x] = attention_scale::scale_interp_pass_at(plane, y, x, src, p, a);
  }
}

/// Row y of source plane `plane` of the backward of a pass along x, element by
/// element (scale_interp_gather_at); kWidth > 0: the window width, known to the
/// compiler.
template <typename Dtype, int kWidth>
static ATS_NOINLINE void ScaleInterpGatherRowX(int plane, int y,
    const Dtype* __restrict__ dst_diff, const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, Dtype* __restrict__ row) {
  attention_scale::InterpPass p = pass;
  p.along_x = true;
  attention_scale::InterpAxis<Dtype> a = axis;
  if (kWidth > 0) {
    a.width = kWidth;
  }
  for (int x = 0; x < p.src_w; ++x) {
    row[x] =
        attention_scale::scale_interp_gather_at(plane, y, x, dst_diff, p, a);
  }
}

/// Step k of every element of row sy of the window (source planes) of the
/// backward of a pass along y: a row operation, window += weight * (diff row
/// first[sy] + k).
template <typename Dtype>
static ATS_NOINLINE void ScaleInterpGatherRowStepY(int plane, int sy, int k,
    const Dtype* __restrict__ dst_diff, const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis,
    Dtype* __restrict__ window) {
  attention_scale::InterpPass p = pass;
  p.along_x = false;
  const attention_scale::InterpAxis<Dtype> a = axis;
  for (int sx = 0; sx < p.eff_w; ++sx) {
    window[sx] = attention_scale::scale_interp_gather_step(
        window[sx], plane, sy, sx, k, dst_diff, p, a);
  }
}

/// Forward pass over `planes` planes: dst (dense dst_h x dst_w planes) from
/// src.
template <typename Dtype>
static void ScaleInterpPassCpu(int planes,
    const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, const Dtype* src,
    Dtype* dst) {
  for (int plane = 0; plane < planes; ++plane) {
    for (int y = 0; y < pass.dst_h; ++y) {
      Dtype* row =
          dst + (static_cast<size_t>(plane) * pass.dst_h + y) * pass.dst_w;
      if (pass.along_x) {
        ScaleInterpPassRow<Dtype, true>(plane, y, src, pass, axis, row);
      } else {
        ScaleInterpPassRow<Dtype, false>(plane, y, src, pass, axis, row);
      }
    }
  }
}

/// Backward of a pass: src_diff (dense src_h x src_w planes) gathered from
/// dst_diff. Along x, element by element, with the window width a compile-time
/// constant up to 6 (the steps are then unrolled). Along y, every element of a
/// window row takes step k before any takes step k + 1: each still sums its
/// steps from zero in the order of scale_interp_gather_at, and the loop over
/// the row is a plain row operation. Cells outside the window get zero, as
/// scale_interp_gather_at gives.
template <typename Dtype>
static void ScaleInterpGatherCpu(int planes,
    const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, const Dtype* dst_diff,
    Dtype* src_diff) {
  for (int plane = 0; plane < planes; ++plane) {
    for (int y = 0; y < pass.src_h; ++y) {
      Dtype* row =
          src_diff + (static_cast<size_t>(plane) * pass.src_h + y) * pass.src_w;
      if (pass.along_x) {
        switch (axis.width) {
          case 1:
            ScaleInterpGatherRowX<Dtype, 1>(
                plane, y, dst_diff, pass, axis, row);
            break;
          case 2:
            ScaleInterpGatherRowX<Dtype, 2>(
                plane, y, dst_diff, pass, axis, row);
            break;
          case 3:
            ScaleInterpGatherRowX<Dtype, 3>(
                plane, y, dst_diff, pass, axis, row);
            break;
          case 4:
            ScaleInterpGatherRowX<Dtype, 4>(
                plane, y, dst_diff, pass, axis, row);
            break;
          case 5:
            ScaleInterpGatherRowX<Dtype, 5>(
                plane, y, dst_diff, pass, axis, row);
            break;
          case 6:
            ScaleInterpGatherRowX<Dtype, 6>(
                plane, y, dst_diff, pass, axis, row);
            break;
          default:
            ScaleInterpGatherRowX<Dtype, 0>(
                plane, y, dst_diff, pass, axis, row);
        }
        continue;
      }
      caffe_set(pass.src_w, Dtype(0), row);
      const int sy = y - pass.off_y;
      if (sy < 0 || sy >= pass.eff_h) {
        continue;
      }
      for (int k = 0; k < axis.width; ++k) {
        ScaleInterpGatherRowStepY(
            plane, sy, k, dst_diff, pass, axis, row + pass.off_x);
      }
    }
  }
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int planes = bottom[0]->num() * bottom[0]->channels();
  Dtype* mid = buffer_.mutable_cpu_data();
  ScaleInterpPassCpu(planes, pass_[0], Axis(pass_[0].along_x, false),
      bottom[0]->cpu_data(), mid);
  ScaleInterpPassCpu(planes, pass_[1], Axis(pass_[1].along_x, false), mid,
      top[0]->mutable_cpu_data());
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
  // The passes in reverse order, each transposed.
  const int planes = bottom[0]->num() * bottom[0]->channels();
  Dtype* mid = buffer_.mutable_cpu_diff();
  ScaleInterpGatherCpu(
      planes, pass_[1], Axis(pass_[1].along_x, false), top[0]->cpu_diff(), mid);
  ScaleInterpGatherCpu(planes, pass_[0], Axis(pass_[0].along_x, false), mid,
      bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(ScaleInterpLayer);
#endif

INSTANTIATE_CLASS(ScaleInterpLayer);
REGISTER_LAYER_CLASS(ScaleInterp);

}  // namespace caffe
