// Attention to Scale for Caffe: per-element maths shared by the CPU loops and the CUDA kernels.
//
// Every function marked ATS_HOST_DEVICE computes one output element from its flat index. The CPU
// layers call them in plain loops and the CUDA kernels inside CUDA_KERNEL_LOOP, so the CPU
// tests exercise exactly the formulas the GPU runs. The host-only helpers at the end build the
// error messages the three layers share.
#ifndef CAFFE_ATTENTION_SCALE_MATH_HPP_
#define CAFFE_ATTENTION_SCALE_MATH_HPP_

#include <math.h>

#include <sstream>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/proto/caffe.pb.h"

#ifdef __CUDACC__
#define ATS_HOST_DEVICE __host__ __device__
#else
#define ATS_HOST_DEVICE
#endif

namespace caffe {
namespace attention_scale {

// ---------------------------------------------------------------------------------------------
// ScaleInterp: corner-aligned grid, computed exactly in integers.
//
// Along one axis, output index dst maps to the source coordinate dst * (in - 1) / (out - 1) of the
// effective (cropped) input; with n = dst * (in - 1) and d = out - 1 the integer part is n / d and
// the fraction n % d / d, so no float rounding can move a sample to the wrong source cell.
// The layer checks that 2 * in * out fits in an int, which bounds every product below.
// ---------------------------------------------------------------------------------------------

/// Geometry of one ScaleInterp: full input planes, crop offsets, effective input and output sizes.
struct InterpGeometry {
  int in_h, in_w;    // bottom[0] spatial size
  int off_y, off_x;  // first bottom row/column of the effective input (= -pad_beg)
  int eff_h, eff_w;  // effective input size (in + pad_beg + pad_end)
  int out_h, out_w;  // output spatial size
  bool nearest;      // NEAREST instead of BILINEAR
};

/// Bilinear source cells of output index dst: i0, i1 = min(i0 + 1, in - 1) and the weight of i1.
template <typename Dtype>
ATS_HOST_DEVICE inline void interp_axis(int dst, int in, int out, int* i0, int* i1,
    Dtype* lambda) {
  if (out == 1 || in == 1) {
    *i0 = 0;
    *i1 = 0;
    *lambda = Dtype(0);
    return;
  }
  const int n = dst * (in - 1);
  const int d = out - 1;
  *i0 = n / d;
  *i1 = (*i0 + 1 < in - 1) ? *i0 + 1 : in - 1;
  *lambda = Dtype(n % d) / Dtype(d);
}

/// Nearest source cell of output index dst: floor(src + 0.5) = (2n + d) / (2d); halves go up.
ATS_HOST_DEVICE inline int nearest_axis(int dst, int in, int out) {
  if (out == 1 || in == 1) {
    return 0;
  }
  const int n = dst * (in - 1);
  const int d = out - 1;
  return (2 * n + d) / (2 * d);
}

/// Weight with which source index src contributes to output index dst along one axis: the same
/// numbers the forward pass multiplies with, so the gather backward is its exact transpose.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_weight(bool nearest, int dst, int src, int in, int out) {
  if (nearest) {
    return nearest_axis(dst, in, out) == src ? Dtype(1) : Dtype(0);
  }
  int i0, i1;
  Dtype lambda;
  interp_axis(dst, in, out, &i0, &i1, &lambda);
  Dtype w(0);
  if (src == i0) { w += Dtype(1) - lambda; }
  if (src == i1) { w += lambda; }
  return w;
}

/// Range [*lo, *hi] of output indices that may read source index src (a superset: both modes
/// only read sources within one cell of dst * (in - 1) / (out - 1)). Empty when *lo > *hi.
ATS_HOST_DEVICE inline void interp_candidates(int src, int in, int out, int* lo, int* hi) {
  if (in == 1) {  // every output reads the single source cell
    *lo = 0;
    *hi = out - 1;
    return;
  }
  if (out == 1) {  // the single output reads source 0
    *lo = 0;
    *hi = (src == 0) ? 0 : -1;
    return;
  }
  const int d = out - 1;
  // dst * (in - 1) / d lies in [src - 1, src + 1) for every reader of src.
  const int l = (src >= 1) ? (src - 1) * d / (in - 1) : 0;
  const int h = (src + 1) * d / (in - 1);
  *lo = l;
  *hi = (h < out - 1) ? h : out - 1;
}

/// Forward: top element `index` (N*C planes of out_h x out_w) from the bottom planes.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_forward_at(int index, const Dtype* bottom,
    const InterpGeometry& g) {
  const int x = index % g.out_w;
  const int y = (index / g.out_w) % g.out_h;
  const int plane = index / g.out_w / g.out_h;
  const Dtype* in = bottom + static_cast<size_t>(plane) * g.in_h * g.in_w;
  if (g.nearest) {
    const int sy = nearest_axis(y, g.eff_h, g.out_h) + g.off_y;
    const int sx = nearest_axis(x, g.eff_w, g.out_w) + g.off_x;
    return in[sy * g.in_w + sx];
  }
  int y0, y1, x0, x1;
  Dtype ly, lx;
  interp_axis(y, g.eff_h, g.out_h, &y0, &y1, &ly);
  interp_axis(x, g.eff_w, g.out_w, &x0, &x1, &lx);
  const Dtype* row0 = in + (y0 + g.off_y) * g.in_w + g.off_x;
  const Dtype* row1 = in + (y1 + g.off_y) * g.in_w + g.off_x;
  return (Dtype(1) - ly) * (Dtype(1) - lx) * row0[x0] + (Dtype(1) - ly) * lx * row0[x1]
      + ly * (Dtype(1) - lx) * row1[x0] + ly * lx * row1[x1];
}

/// Backward (gather, no atomics): diff of bottom element `index` (N*C planes of in_h x in_w) as
/// the weighted sum of the top diffs that read it. Cropped-away bottom cells get zero.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_backward_at(int index, const Dtype* top_diff,
    const InterpGeometry& g) {
  const int bx = index % g.in_w;
  const int by = (index / g.in_w) % g.in_h;
  const int plane = index / g.in_w / g.in_h;
  const int sy = by - g.off_y;
  const int sx = bx - g.off_x;
  if (sy < 0 || sy >= g.eff_h || sx < 0 || sx >= g.eff_w) {
    return Dtype(0);
  }
  const Dtype* dtop = top_diff + static_cast<size_t>(plane) * g.out_h * g.out_w;
  int ylo, yhi, xlo, xhi;
  interp_candidates(sy, g.eff_h, g.out_h, &ylo, &yhi);
  interp_candidates(sx, g.eff_w, g.out_w, &xlo, &xhi);
  Dtype sum(0);
  for (int y = ylo; y <= yhi; ++y) {
    const Dtype wy = interp_weight<Dtype>(g.nearest, y, sy, g.eff_h, g.out_h);
    if (wy == Dtype(0)) { continue; }
    Dtype row_sum(0);
    for (int x = xlo; x <= xhi; ++x) {
      const Dtype wx = interp_weight<Dtype>(g.nearest, x, sx, g.eff_w, g.out_w);
      if (wx != Dtype(0)) {
        row_sum += wx * dtop[y * g.out_w + x];
      }
    }
    sum += wy * row_sum;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// SoftmaxOverScales: data laid out N x S x inner (inner = H * W).
// ---------------------------------------------------------------------------------------------

ATS_HOST_DEVICE inline float ats_exp(float x) { return expf(x); }
ATS_HOST_DEVICE inline double ats_exp(double x) { return exp(x); }

/// Index in an N x S x inner blob of channel s of the pixel `index` of an N x 1 x inner blob.
ATS_HOST_DEVICE inline int scale_channel_index(int index, int s, int num_scales, int inner) {
  return ((index / inner) * num_scales + s) * inner + index % inner;
}

/// Forward for pixel `index` (of N * inner): out = softmax over s of in. The maximum is
/// subtracted first, so inputs up to +/-1e30 and -inf entries stay finite as long as one entry
/// per pixel is finite. Safe in place (in == out): every input is read before it is written.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_over_scales_pixel(int index, const Dtype* in, Dtype* out,
    int num_scales, int inner) {
  const int base = scale_channel_index(index, 0, num_scales, inner);
  Dtype m = in[base];
  for (int s = 1; s < num_scales; ++s) {
    const Dtype v = in[base + s * inner];
    m = (v > m) ? v : m;
  }
  Dtype sum(0);
  for (int s = 0; s < num_scales; ++s) {
    const Dtype e = ats_exp(in[base + s * inner] - m);
    out[base + s * inner] = e;
    sum += e;
  }
  for (int s = 0; s < num_scales; ++s) {
    out[base + s * inner] /= sum;
  }
}

/// Backward for element `index` of the N x S x inner top: dx_s = y_s (dy_s - sum_t y_t dy_t).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_diff_at(int index, const Dtype* top_data,
    const Dtype* top_diff, int num_scales, int inner) {
  const int base = (index / (num_scales * inner)) * num_scales * inner + index % inner;
  Dtype dot(0);
  for (int t = 0; t < num_scales; ++t) {
    dot += top_data[base + t * inner] * top_diff[base + t * inner];
  }
  return top_data[index] * (top_diff[index] - dot);
}

// ---------------------------------------------------------------------------------------------
// WeightedScaleSum: score maps N x C x inner, weights N x S x inner (broadcast over C).
// ---------------------------------------------------------------------------------------------

/// Index of the weight of scale s for element `index` of an N x C x inner score map.
ATS_HOST_DEVICE inline int weight_index(int index, int s, int channels, int num_scales,
    int inner) {
  return ((index / (channels * inner)) * num_scales + s) * inner + index % inner;
}

/// Attention forward, scale s: g (=, or += after the first scale) w^s f^s.
template <typename Dtype>
ATS_HOST_DEVICE inline void attention_accumulate_at(int index, int s, const Dtype* f,
    const Dtype* w, int channels, int num_scales, int inner, Dtype* top) {
  const Dtype v = w[weight_index(index, s, channels, num_scales, inner)] * f[index];
  top[index] = (s == 0) ? v : top[index] + v;
}

/// Attention backward to the score map of scale s: df^s = w^s dg.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_feature_diff_at(int index, int s, const Dtype* w,
    const Dtype* top_diff, int channels, int num_scales, int inner) {
  return w[weight_index(index, s, channels, num_scales, inner)] * top_diff[index];
}

/// Attention backward to the weight of scale s at pixel `index` (of N * inner):
/// dw^s = sum_c f^s_c dg_c.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_weight_diff_at(int index, const Dtype* f,
    const Dtype* top_diff, int channels, int inner) {
  const int base = (index / inner) * channels * inner + index % inner;
  Dtype sum(0);
  for (int c = 0; c < channels; ++c) {
    sum += f[base + c * inner] * top_diff[base + c * inner];
  }
  return sum;
}

/// Average forward, scale s: g (=, or +=) f^s / S.
template <typename Dtype>
ATS_HOST_DEVICE inline void average_accumulate_at(int index, int s, const Dtype* f,
    Dtype inv_num_scales, Dtype* top) {
  const Dtype v = inv_num_scales * f[index];
  top[index] = (s == 0) ? v : top[index] + v;
}

/// Average backward to every score map: df^s = dg / S.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype average_feature_diff_at(int index, Dtype inv_num_scales,
    const Dtype* top_diff) {
  return inv_num_scales * top_diff[index];
}

/// Max forward, scale s: keep the larger value and its scale; strict > keeps the first on ties.
template <typename Dtype>
ATS_HOST_DEVICE inline void max_accumulate_at(int index, int s, const Dtype* f, Dtype* top,
    int* mask) {
  if (s == 0 || f[index] > top[index]) {
    top[index] = f[index];
    mask[index] = s;
  }
}

/// Max backward to the score map of scale s: dg where s won, else 0.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype max_feature_diff_at(int index, int s, const int* mask,
    const Dtype* top_diff) {
  return mask[index] == s ? top_diff[index] : Dtype(0);
}

// ---------------------------------------------------------------------------------------------
// Host-only helpers for the error messages: "<Type> layer '<name>'" and "bottom[i] '<blob>'".
// ---------------------------------------------------------------------------------------------

inline std::string LayerLabel(const char* type, const LayerParameter& param) {
  std::ostringstream os;
  os << type << " layer '" << param.name() << "'";
  return os.str();
}

inline std::string BottomLabel(const LayerParameter& param, int i) {
  std::ostringstream os;
  os << "bottom[" << i << "]";
  if (i < param.bottom_size()) {
    os << " '" << param.bottom(i) << "'";
  }
  return os.str();
}

/// A shape written as Blob::shape_string() writes it: "2 1 4 5 (40)".
inline std::string ShapeString(const std::vector<int>& shape) {
  std::ostringstream os;
  int64_t count = 1;
  for (int i = 0; i < shape.size(); ++i) {
    os << shape[i] << " ";
    count *= shape[i];
  }
  os << "(" << count << ")";
  return os.str();
}

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_ATTENTION_SCALE_MATH_HPP_
