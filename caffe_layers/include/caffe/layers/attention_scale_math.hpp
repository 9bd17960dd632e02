// Attention to Scale for Caffe: per-element maths shared by the CPU loops and the CUDA kernels.
//
// Every function marked ATS_HOST_DEVICE computes one output element (or one pixel) from indices
// the caller already split up: the CPU layers call them in nested loops over planes, rows and
// pixels, so no loop divides per element, and the CUDA kernels inside CUDA_KERNEL_LOOP after
// recovering the same indices from the flat thread index; the CPU tests therefore exercise
// exactly the formulas the GPU runs. Host-only helpers fill ScaleInterp's per-axis tables
// (with the shared grid functions) and build the error messages the three layers share.
#ifndef CAFFE_ATTENTION_SCALE_MATH_HPP_
#define CAFFE_ATTENTION_SCALE_MATH_HPP_

#include <math.h>
#include <string.h>

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

// ---------------------------------------------------------------------------------------------
// ScaleInterp tables: the grid of each axis, computed once per shape on the host by the functions
// above and then only read (on the CPU or the GPU).
//
// The resize is separable: one pass along x and one along y, in the order the layer picks. A
// pass reads, per output index dst of its axis, source cells
// i0[dst], i1[dst] with weight lambda[dst] of i1. Its backward gathers, per source cell src, the
// diffs of the `width` outputs first[src] + k, k < width, with weights weight[src][k] that
// interp_weight computes from the same grid (zero for outputs that do not read src), so the
// backward is the forward's exact transpose. The window holds interp_candidates' range and is
// moved inside [0, out) where that range ends near the border, so every read is in bounds.
// ---------------------------------------------------------------------------------------------

/// Read-only view of the tables of one axis (in source cells, out outputs).
template <typename Dtype>
struct InterpAxis {
  const int* i0;        // [out] first source cell of output dst (NEAREST: the source cell)
  const int* i1;        // [out] second source cell (NEAREST: = i0)
  const Dtype* lambda;  // [out] weight of i1 (NEAREST: 0)
  const int* first;     // [in] first output of the window of source src
  const Dtype* weight;  // [in x width] weight of output first[src] + k for source src
  int width;            // outputs per window: the longest interp_candidates range, <= out
  bool nearest;         // NEAREST: the forward copies i0 instead of mixing i0 and i1
};

/// Host: the window width of an axis, the longest interp_candidates range (1 <= width <= out).
inline int interp_axis_width(int in, int out) {
  int width = 1;
  for (int src = 0; src < in; ++src) {
    int lo, hi;
    interp_candidates(src, in, out, &lo, &hi);
    width = (hi - lo + 1 > width) ? hi - lo + 1 : width;
  }
  return width;
}

/// Host: sizes of the int and Dtype tables of an axis, laid out as
/// index = [i0 (out) | i1 (out) | first (in)] and value = [lambda (out) | weight (in x width)].
inline int interp_axis_index_count(int in, int out) { return 2 * out + in; }
inline int interp_axis_value_count(int in, int out, int width) { return out + in * width; }

/// Host: fills the tables of one axis with interp_axis / nearest_axis (forward),
/// interp_candidates and interp_weight (backward).
template <typename Dtype>
inline void fill_interp_axis(int in, int out, bool nearest, int width, int* index,
    Dtype* value) {
  int* i0 = index;
  int* i1 = index + out;
  int* first = index + 2 * out;
  Dtype* lambda = value;
  Dtype* weight = value + out;
  for (int dst = 0; dst < out; ++dst) {
    if (nearest) {
      i0[dst] = i1[dst] = nearest_axis(dst, in, out);
      lambda[dst] = Dtype(0);
    } else {
      interp_axis(dst, in, out, &i0[dst], &i1[dst], &lambda[dst]);
    }
  }
  for (int src = 0; src < in; ++src) {
    int lo, hi;
    interp_candidates(src, in, out, &lo, &hi);
    first[src] = (lo < out - width) ? lo : out - width;
    for (int k = 0; k < width; ++k) {
      weight[src * width + k] = interp_weight<Dtype>(nearest, first[src] + k, src, in, out);
    }
  }
}

/// The view of tables laid out as fill_interp_axis writes them (CPU or GPU pointers).
template <typename Dtype>
inline InterpAxis<Dtype> interp_axis_view(const int* index, const Dtype* value, int in, int out,
    int width, bool nearest) {
  InterpAxis<Dtype> axis;
  axis.i0 = index;
  axis.i1 = index + out;
  axis.first = index + 2 * out;
  axis.lambda = value;
  axis.weight = value + out;
  axis.width = width;
  axis.nearest = nearest;
  return axis;
}

/// Forward along one axis: output dst of a line whose source cells lie `stride` apart.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_line_at(int dst, const Dtype* line, int stride,
    const InterpAxis<Dtype>& axis) {
  // Every table entry and value is read unconditionally (the compiler can then hoist them out
  // of a row along y and select instead of branching).
  const Dtype v0 = line[axis.i0[dst] * stride];
  const Dtype v1 = line[axis.i1[dst] * stride];
  const Dtype lambda = axis.lambda[dst];
  if (axis.nearest) {
    return v0;
  }
  return (Dtype(1) - lambda) * v0 + lambda * v1;
}

/// Backward along one axis (gather), step k < width: sum plus the diff of output first[src] + k
/// (in a line of diffs `stride` apart) times its forward weight for source cell src. A zero
/// weight (an output that does not read src) adds an exact zero, as zero weights do in the
/// forward, and with no branch.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_line_gather_step(Dtype sum, int src, int k,
    const Dtype* line, int stride, const InterpAxis<Dtype>& axis) {
  return sum + axis.weight[src * axis.width + k] * line[(axis.first[src] + k) * stride];
}

/// One pass of the separable resize over planes stored one after another: it resamples, along
/// x or along y, the eff_h x eff_w window at (off_y, off_x) of src_h x src_w planes into
/// dst_h x dst_w planes (along x: dst_h = eff_h; along y: dst_w = eff_w).
struct InterpPass {
  int src_h, src_w;
  int off_y, off_x;
  int eff_h, eff_w;
  int dst_h, dst_w;
  bool along_x;
};

/// Forward pass: element (y, x) of output plane `plane` from the source planes `src`.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_pass_at(int plane, int y, int x, const Dtype* src,
    const InterpPass& pass, const InterpAxis<Dtype>& axis) {
  const Dtype* in = src + (static_cast<size_t>(plane) * pass.src_h + pass.off_y) * pass.src_w
      + pass.off_x;
  return pass.along_x ? interp_line_at(x, in + y * pass.src_w, 1, axis)
      : interp_line_at(y, in + x, pass.src_w, axis);
}

/// Backward of a pass, step k at element (sy, sx) of the window (which starts at (off_y, off_x)
/// of the source planes): see interp_line_gather_step.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_gather_step(Dtype sum, int plane, int sy, int sx,
    int k, const Dtype* dst_diff, const InterpPass& pass, const InterpAxis<Dtype>& axis) {
  const Dtype* diff = dst_diff + static_cast<size_t>(plane) * pass.dst_h * pass.dst_w;
  return pass.along_x ? interp_line_gather_step(sum, sx, k, diff + sy * pass.dst_w, 1, axis)
      : interp_line_gather_step(sum, sy, k, diff + sx, pass.dst_w, axis);
}

/// Backward of a pass (gather, no atomics): diff of source element (y, x) of plane `plane`, the
/// transpose of scale_interp_pass_at: zero outside the window (cropped-away cells), else the
/// steps k = 0 .. width - 1 in order.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_gather_at(int plane, int y, int x,
    const Dtype* dst_diff, const InterpPass& pass, const InterpAxis<Dtype>& axis) {
  const int sy = y - pass.off_y;
  const int sx = x - pass.off_x;
  if (sy < 0 || sy >= pass.eff_h || sx < 0 || sx >= pass.eff_w) {
    return Dtype(0);
  }
  Dtype sum(0);
  for (int k = 0; k < axis.width; ++k) {
    sum = scale_interp_gather_step(sum, plane, sy, sx, k, dst_diff, pass, axis);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// SoftmaxOverScales: data laid out N x S x inner (inner = H * W). The functions take pointers to
// the first channel of one sample and a pixel index i < inner, so loops need no division.
// ---------------------------------------------------------------------------------------------

/// The bits of a float, and a float from bits (host: memcpy; CUDA: the intrinsics).
ATS_HOST_DEVICE inline int ats_float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_int(x);
#else
  int bits;
  memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

ATS_HOST_DEVICE inline float ats_bits_float(unsigned int bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float x;
  memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

/// exp in float without branches or calls, so that CPU loops over it vectorize (libm's expf is
/// a call per element): x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2 (Cody-Waite),
/// Cephes' expf polynomial for exp(r), times 2^n as two powers of two, so that results down to
/// the smallest subnormal are rounded once. Within 1 ulp of the correctly rounded exp over the
/// floats (tested); exp(0) = 1, exp(x < -104) = 0 (as exp rounds), exp(x > 89) = +inf, NaN stays
/// NaN. Out-of-range arguments are fixed up on the bits at the end, not by clamping first: a
/// clamp makes compilers split the loop into branches for the constant cases.
ATS_HOST_DEVICE inline float ats_exp(float x) {
  const float kRound = 12582912.0f;  // 1.5 * 2^23: t's low mantissa bits hold round(x / ln2)
  const float t = x * 1.44269504088896341f + kRound;
  const float n = t - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  // n as an int, in [-150, 129] for x in [-104, 89] (unsigned: no overflow elsewhere).
  const int n_int = static_cast<int>(static_cast<unsigned int>(ats_float_bits(t))
      - static_cast<unsigned int>(ats_float_bits(kRound)));
  const int n1 = n_int / 2;
  const int n2 = n_int - n1;
  const float y = p * ats_bits_float(static_cast<unsigned int>(n1 + 127) << 23)
      * ats_bits_float(static_cast<unsigned int>(n2 + 127) << 23);
  const unsigned int keep = 0u - static_cast<unsigned int>(!(x < -104.0f));  // NaN: kept
  const unsigned int overflow = 0u - static_cast<unsigned int>(x > 89.0f);
  const unsigned int bits = static_cast<unsigned int>(ats_float_bits(y)) & keep;
  return ats_bits_float((bits & ~overflow) | (0x7f800000u & overflow));
}

ATS_HOST_DEVICE inline double ats_exp(double x) { return exp(x); }

/// Index in an N x S x inner blob of channel s of the pixel `index` of an N x 1 x inner blob.
ATS_HOST_DEVICE inline int scale_channel_index(int index, int s, int num_scales, int inner) {
  return ((index / inner) * num_scales + s) * inner + index % inner;
}

/// Forward, step 1 (s >= 1; the maximum starts as channel 0): the larger of m and channel s of
/// pixel i (in: the sample's channel 0).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_max_step(Dtype m, int i, int s, const Dtype* in,
    int inner) {
  const Dtype v = in[i + s * inner];
  return (v > m) ? v : m;
}

/// Forward, step 2 (s = 0, 1, ..; the sum starts at 0): e = exp(channel s - m), written to out;
/// returns sum + e.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_exp_step(Dtype sum, Dtype m, int i, int s, const Dtype* in,
    Dtype* out, int inner) {
  const Dtype e = ats_exp(in[i + s * inner] - m);
  out[i + s * inner] = e;
  return sum + e;
}

/// Forward, step 3: channel s of the output divided by the sum.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_normalize_step(Dtype sum, int i, int s, Dtype* out,
    int inner) {
  out[i + s * inner] /= sum;
}

/// Forward for pixel i of one sample: out = softmax over s of in, by the three steps above. The
/// maximum is subtracted first, so inputs up to +/-1e30 and -inf entries stay finite as long as
/// one entry per pixel is finite. Safe in place (in == out): every input is read before it is
/// written.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_over_scales_pixel(int i, const Dtype* in, Dtype* out,
    int num_scales, int inner) {
  Dtype m = in[i];
  for (int s = 1; s < num_scales; ++s) {
    m = softmax_max_step(m, i, s, in, inner);
  }
  Dtype sum(0);
  for (int s = 0; s < num_scales; ++s) {
    sum = softmax_exp_step(sum, m, i, s, in, out, inner);
  }
  for (int s = 0; s < num_scales; ++s) {
    softmax_normalize_step(sum, i, s, out, inner);
  }
}

/// Backward, step t (t = 0, 1, ..; the dot product starts at 0): dot + y_t dy_t of pixel i.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_dot_step(Dtype dot, int i, int t, const Dtype* top_data,
    const Dtype* top_diff, int inner) {
  return dot + top_data[i + t * inner] * top_diff[i + t * inner];
}

/// Backward for channel s of pixel i, given dot = sum_t y_t dy_t: dx_s = y_s (dy_s - dot).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_diff(Dtype dot, int i, int s,
    const Dtype* top_data, const Dtype* top_diff, int inner) {
  return top_data[i + s * inner] * (top_diff[i + s * inner] - dot);
}

/// Backward for channel s of pixel i of one sample (top_data, top_diff: its channel 0).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_diff_at(int i, int s, const Dtype* top_data,
    const Dtype* top_diff, int num_scales, int inner) {
  Dtype dot(0);
  for (int t = 0; t < num_scales; ++t) {
    dot = softmax_dot_step(dot, i, t, top_data, top_diff, inner);
  }
  return softmax_over_scales_diff(dot, i, s, top_data, top_diff, inner);
}

// ---------------------------------------------------------------------------------------------
// WeightedScaleSum: score maps N x C x inner, weights N x S x inner (broadcast over C). The
// attention functions take pointers to one class plane (n, c) of the maps and to the weight
// plane (n, s), and a pixel index i < inner.
// ---------------------------------------------------------------------------------------------

/// Attention forward, scale s: g (=, or += after the first scale) w^s f^s.
template <typename Dtype>
ATS_HOST_DEVICE inline void attention_accumulate_at(int i, int s, const Dtype* f,
    const Dtype* w, Dtype* top) {
  const Dtype v = w[i] * f[i];
  top[i] = (s == 0) ? v : top[i] + v;
}

/// Attention backward to the score map of scale s: df^s = w^s dg.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_feature_diff_at(int i, const Dtype* w,
    const Dtype* top_diff) {
  return w[i] * top_diff[i];
}

/// Attention backward to the weight of scale s, class c of the sum over classes:
/// dw^s (=, or += after the first class) f^s_c dg_c, so dw^s = sum_c f^s_c dg_c.
template <typename Dtype>
ATS_HOST_DEVICE inline void attention_weight_accumulate_at(int i, int c, const Dtype* f,
    const Dtype* top_diff, Dtype* w_diff) {
  const Dtype v = f[i] * top_diff[i];
  w_diff[i] = (c == 0) ? v : w_diff[i] + v;
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

/// Max forward, scale s: keep the larger value and its scale; strict > keeps the first on ties
/// (and the earlier value against NaN). After the first scale every operand is loaded and the
/// choice is a select, not a branch (the data decide it at random; loops vectorize).
template <typename Dtype>
ATS_HOST_DEVICE inline void max_accumulate_at(int index, int s, const Dtype* f, Dtype* top,
    int* mask) {
  const Dtype v = f[index];
  if (s == 0) {
    top[index] = v;
    mask[index] = 0;
    return;
  }
  Dtype best = top[index];
  int best_scale = mask[index];
  if (v > best) {
    best = v;
    best_scale = s;
  }
  top[index] = best;
  mask[index] = best_scale;
}

/// Max backward to the score map of scale s: dg where s won, else 0 (a select, as above).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype max_feature_diff_at(int index, int s, const int* mask,
    const Dtype* top_diff) {
  Dtype dg = top_diff[index];
  if (mask[index] != s) {
    dg = Dtype(0);
  }
  return dg;
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
