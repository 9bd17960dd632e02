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
  // The cropped size in 64 bits: pads near INT_MIN would wrap an int sum
  // (3 + INT_MIN + INT_MIN is 3 in int). Once it is >= 1, -pad_beg <= size - 1
  // and every int below holds its value.
  const int64_t eff_h =
      static_cast<int64_t>(in.height()) + pad_beg_ + pad_end_;
  const int64_t eff_w = static_cast<int64_t>(in.width()) + pad_beg_ + pad_end_;
  CHECK(eff_h >= 1 && eff_w >= 1)
      << layer << ": " << BottomLabel(this->layer_param_, 0) << " has shape "
      << in.shape_string() << ", too small for pad_beg " << pad_beg_
      << " and pad_end " << pad_end_ << " (cropped size " << eff_h << " x "
      << eff_w << ")";
  geometry_.in_h = in.height();
  geometry_.in_w = in.width();
  geometry_.off_y = -pad_beg_;
  geometry_.off_x = -pad_beg_;
  geometry_.eff_h = static_cast<int>(eff_h);
  geometry_.eff_w = static_cast<int>(eff_w);
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

// The CPU loops take one plane at a time: both passes of a plane run before
// the next plane starts, through one plane of intermediate values per thread
// (plane_buffer_), which stays in cache, and planes are shared out among the
// OpenMP threads where Caffe was built with OpenMP. Within a plane they run row
// by row through helpers whose pointers are __restrict__ and whose loops are
// plain enough for the compiler to vectorize (the selects of interp_mix and
// interp_gather_add are branch-free). Every output is computed by the element
// functions of caffe/util/scale_interp.hpp that the CUDA kernels call, in the
// same order, whatever the number of threads.

/// Forward along x of one row: out[x] = interp_mix of line[i0[x]] and
/// line[i1[x]] (a gather).
template <typename Dtype>
static ATS_CPU_LOOP void InterpRowAlongX(const Dtype* __restrict__ line,
    const attention_scale::InterpAxis<Dtype>& axis, int size,
    Dtype* __restrict__ out) {
  const int* __restrict__ i0 = axis.i0;
  const int* __restrict__ i1 = axis.i1;
  const Dtype* __restrict__ lambda = axis.lambda;
  if (axis.nearest) {
    for (int x = 0; x < size; ++x) {
      out[x] = attention_scale::interp_mix(
          line[i0[x]], line[i1[x]], lambda[x], true);
    }
    return;
  }
  for (int x = 0; x < size; ++x) {
    out[x] = attention_scale::interp_mix(
        line[i0[x]], line[i1[x]], lambda[x], false);
  }
}

/// Forward along y of one row, from source rows r0 and r1 with the row's one
/// weight lambda of r1: interp_mix, decided once for the row (a copy of r0
/// where the weight is zero, else interp_blend).
template <typename Dtype>
static ATS_CPU_LOOP void InterpRowAlongY(const Dtype* __restrict__ r0,
    const Dtype* __restrict__ r1, Dtype lambda, bool nearest, int size,
    Dtype* __restrict__ out) {
  if (nearest || lambda == Dtype(0)) {
    for (int x = 0; x < size; ++x) {
      out[x] = r0[x];
    }
    return;
  }
  for (int x = 0; x < size; ++x) {
    out[x] = attention_scale::interp_blend(r0[x], r1[x], lambda);
  }
}

/// Forward of one pass on one plane: dst (dst_h x dst_w) from the eff_h x
/// eff_w window at (off_y, off_x) of src (src_h x src_w).
template <typename Dtype>
static void InterpPassPlane(const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, const Dtype* src,
    Dtype* dst) {
  const Dtype* window =
      src + static_cast<size_t>(pass.off_y) * pass.src_w + pass.off_x;
  for (int y = 0; y < pass.dst_h; ++y) {
    Dtype* row = dst + static_cast<size_t>(y) * pass.dst_w;
    if (pass.along_x) {
      InterpRowAlongX(
          window + static_cast<size_t>(y) * pass.src_w, axis, pass.dst_w, row);
    } else {
      InterpRowAlongY(window + static_cast<size_t>(axis.i0[y]) * pass.src_w,
          window + static_cast<size_t>(axis.i1[y]) * pass.src_w,
          axis.lambda[y], axis.nearest, pass.dst_w, row);
    }
  }
}

/// Backward along x of row sy of the window: window[sx] = the gather of
/// scale_interp_gather_at (interp_gather_add of the diffs of outputs first[sx]
/// + k, k = 0 .. width - 1, from zero). kWidth > 0: the window width, known to
/// the compiler (the steps are then unrolled).
template <typename Dtype, int kWidth>
static ATS_CPU_LOOP void InterpGatherRowAlongX(const Dtype* __restrict__ diff,
    const attention_scale::InterpAxis<Dtype>& axis, int size,
    Dtype* __restrict__ window) {
  const int width = (kWidth > 0) ? kWidth : axis.width;
  const int* __restrict__ first = axis.first;
  const Dtype* __restrict__ weight = axis.weight;
  for (int sx = 0; sx < size; ++sx) {
    Dtype sum(0);
    for (int k = 0; k < width; ++k) {
      sum = attention_scale::interp_gather_add(
          sum, weight[sx * width + k], diff[first[sx] + k]);
    }
    window[sx] = sum;
  }
}

/// Backward along y, step k of window row sy: window += weight * (diff row
/// first[sy] + k) by interp_gather_add, a row operation (a zero weight adds
/// nothing, so its row is skipped).
template <typename Dtype>
static ATS_CPU_LOOP void InterpGatherRowStepAlongY(
    const Dtype* __restrict__ diff, Dtype weight, int size,
    Dtype* __restrict__ window) {
  if (weight == Dtype(0)) {
    return;
  }
  for (int sx = 0; sx < size; ++sx) {
    window[sx] =
        attention_scale::interp_gather_add(window[sx], weight, diff[sx]);
  }
}

/// Backward of one pass on one plane: src_diff (src_h x src_w) gathered from
/// dst_diff (dst_h x dst_w); zero outside the window (cropped-away cells), as
/// scale_interp_gather_at gives. Along y every element of a window row takes
/// step k before any takes step k + 1: each still sums its steps from zero in
/// the order of scale_interp_gather_at.
template <typename Dtype>
static void InterpGatherPlane(const attention_scale::InterpPass& pass,
    const attention_scale::InterpAxis<Dtype>& axis, const Dtype* dst_diff,
    Dtype* src_diff) {
  for (int y = 0; y < pass.src_h; ++y) {
    Dtype* row = src_diff + static_cast<size_t>(y) * pass.src_w;
    const int sy = y - pass.off_y;
    if (sy < 0 || sy >= pass.eff_h) {
      caffe_set(pass.src_w, Dtype(0), row);
      continue;
    }
    Dtype* window = row + pass.off_x;
    caffe_set(pass.off_x, Dtype(0), row);
    const int end = pass.off_x + pass.eff_w;
    caffe_set(pass.src_w - end, Dtype(0), row + end);
    if (!pass.along_x) {
      caffe_set(pass.eff_w, Dtype(0), window);
      for (int k = 0; k < axis.width; ++k) {
        InterpGatherRowStepAlongY(dst_diff +
            static_cast<size_t>(axis.first[sy] + k) * pass.dst_w,
            axis.weight[sy * axis.width + k], pass.eff_w, window);
      }
      continue;
    }
    const Dtype* diff = dst_diff + static_cast<size_t>(sy) * pass.dst_w;
    switch (axis.width) {
      case 1: InterpGatherRowAlongX<Dtype, 1>(diff, axis, pass.eff_w, window);
        break;
      case 2: InterpGatherRowAlongX<Dtype, 2>(diff, axis, pass.eff_w, window);
        break;
      case 3: InterpGatherRowAlongX<Dtype, 3>(diff, axis, pass.eff_w, window);
        break;
      case 4: InterpGatherRowAlongX<Dtype, 4>(diff, axis, pass.eff_w, window);
        break;
      default: InterpGatherRowAlongX<Dtype, 0>(diff, axis, pass.eff_w, window);
    }
  }
}

/// Threads for `planes` planes of `plane_size` intermediate values each: at
/// most one per plane, and their buffers must fit in a blob.
static int ScaleInterpThreads(int planes, int plane_size) {
  const int threads = std::min(attention_scale::MaxThreads(), planes);
  return std::max(1, std::min(threads, INT_MAX / std::max(plane_size, 1)));
}

/// Both passes over every plane, each plane through the calling thread's
/// intermediate plane in *buffer. Forward: bottom planes in, pass 0 then pass
/// 1, top planes out. Backward: top diff planes in, pass 1 then pass 0 (each
/// transposed), bottom diff planes out.
template <typename Dtype>
static void TwoPassPlanes(const attention_scale::InterpPass* pass,
    const attention_scale::InterpAxis<Dtype>* axis, int planes, bool backward,
    const Dtype* in, Dtype* out, Blob<Dtype>* buffer) {
  const int mid_size = pass[0].dst_h * pass[0].dst_w;
  const int threads = ScaleInterpThreads(planes, mid_size);
  buffer->Reshape(vector<int>(1, threads * mid_size));
  Dtype* mids = buffer->mutable_cpu_data();
  const size_t bottom_size = static_cast<size_t>(pass[0].src_h) * pass[0].src_w;
  const size_t top_size = static_cast<size_t>(pass[1].dst_h) * pass[1].dst_w;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (int plane = 0; plane < planes; ++plane) {
    Dtype* mid = mids + attention_scale::ThreadNum() * mid_size;
    if (!backward) {
      InterpPassPlane(pass[0], axis[0], in + plane * bottom_size, mid);
      InterpPassPlane(pass[1], axis[1], mid, out + plane * top_size);
    } else {
      InterpGatherPlane(pass[1], axis[1], in + plane * top_size, mid);
      InterpGatherPlane(pass[0], axis[0], mid, out + plane * bottom_size);
    }
  }
}

template <typename Dtype>
void ScaleInterpLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const attention_scale::InterpAxis<Dtype> axis[2] = {
      Axis(pass_[0].along_x, false), Axis(pass_[1].along_x, false)};
  TwoPassPlanes(pass_, axis, bottom[0]->num() * bottom[0]->channels(), false,
      bottom[0]->cpu_data(), top[0]->mutable_cpu_data(), &plane_buffer_);
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
  const attention_scale::InterpAxis<Dtype> axis[2] = {
      Axis(pass_[0].along_x, false), Axis(pass_[1].along_x, false)};
  TwoPassPlanes(pass_, axis, bottom[0]->num() * bottom[0]->channels(), true,
      top[0]->cpu_diff(), bottom[0]->mutable_cpu_diff(), &plane_buffer_);
}

#ifdef CPU_ONLY
STUB_GPU(ScaleInterpLayer);
#endif

INSTANTIATE_CLASS(ScaleInterpLayer);
REGISTER_LAYER_CLASS(ScaleInterp);

}  // namespace caffe
