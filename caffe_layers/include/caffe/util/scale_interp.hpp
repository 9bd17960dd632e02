// Attention to Scale for Caffe: ScaleInterp's per-element maths.
//
// The corner-aligned grid along one axis (exact integer arithmetic), the
// per-axis tables the layer fills once per shape, and the element functions
// of the separable two-pass resize and of its gather backward. Every function
// marked ATS_HOST_DEVICE computes one output element from indices the caller
// already split up: the CPU loops call them row by row, the CUDA kernels per
// thread, and the C++ tests run the kernels' compositions on the host against
// the CPU loops, so the CPU tests exercise exactly the formulas the GPU runs.
#ifndef CAFFE_UTIL_SCALE_INTERP_HPP_
#define CAFFE_UTIL_SCALE_INTERP_HPP_

#include <float.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "caffe/util/attention_scale_common.hpp"

namespace caffe {
namespace attention_scale {

// -----------------------------------------------------------------------------
// NaN and inf: an output is a weighted sum of the input cells it reads with a
// non-zero weight, and only of those. A NaN or inf input cell therefore reaches
// exactly the outputs that read it with a non-zero weight (NEAREST: the outputs
// that copy it), never a neighbour through 0 * NaN or 0 * inf; an inf that is
// copied stays inf. The backward is the transpose: a non-finite top diff
// reaches the bottom cells its output reads with a non-zero weight. The Python
// layer (attention_scale.layers.scale_interp) follows the same rule.
// -----------------------------------------------------------------------------

// -----------------------------------------------------------------------------
// ScaleInterp: corner-aligned grid, computed exactly in integers.
//
// Along one axis, output index dst maps to the source coordinate
// dst * (in - 1) / (out - 1) of the effective (cropped) input; with
// n = dst * (in - 1) and d = out - 1 the integer part is n / d and the fraction
// n % d / d, so no float rounding can move a sample to the wrong source cell.
// The products are formed in 64 bits (in, out < 2^31), so any size a blob can
// hold works; the grid is computed on the host only, when the tables are
// filled.
// -----------------------------------------------------------------------------

/// Geometry of one ScaleInterp: full input planes, crop offsets, effective
/// input and output sizes.
struct InterpGeometry {
  int in_h, in_w;  // bottom[0] spatial size
  // first bottom row/column of the effective input (= -pad_beg)
  int off_y, off_x;
  int eff_h, eff_w;  // effective input size (in + pad_beg + pad_end)
  int out_h, out_w;  // output spatial size
  bool nearest;      // NEAREST instead of BILINEAR
};

/// The largest Dtype below 1: 1 - 2^-24 (float), 1 - 2^-53 (double).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype largest_below_one() {
  return Dtype(1) - Dtype(sizeof(Dtype) == sizeof(float) ? FLT_EPSILON / 2
                                                         : DBL_EPSILON / 2);
}

/// Bilinear source cells of output index dst: i0, i1 = min(i0 + 1, in - 1) and
/// the weight lambda of i1, the fraction n % d / d rounded, and kept below 1:
/// the weight 1 - lambda of i0 is exactly > 0, so it stays > 0, and a NaN or
/// inf in i0 reaches the output as the rule above says. (In float the fraction
/// rounds to 1 for some outputs once out - 1 > 2^24: 2^24 / (2^24 + 1) does.
/// Finite outputs move by at most 2^-24 of the cells' difference.)
template <typename Dtype>
ATS_HOST_DEVICE inline void interp_axis(
    int dst, int in, int out, int* i0, int* i1, Dtype* lambda) {
  if (out == 1 || in == 1) {
    *i0 = 0;
    *i1 = 0;
    *lambda = Dtype(0);
    return;
  }
  const int64_t n = static_cast<int64_t>(dst) * (in - 1);
  const int64_t d = out - 1;
  *i0 = static_cast<int>(n / d);
  *i1 = (*i0 + 1 < in - 1) ? *i0 + 1 : in - 1;
  const Dtype fraction =
      Dtype(static_cast<int>(n % d)) / Dtype(static_cast<int>(d));
  const Dtype below_one = largest_below_one<Dtype>();
  *lambda = (fraction < below_one) ? fraction : below_one;
}

/// Nearest source cell of output index dst: floor(src + 0.5) = (2n + d) / (2d);
/// halves go up.
ATS_HOST_DEVICE inline int nearest_axis(int dst, int in, int out) {
  if (out == 1 || in == 1) {
    return 0;
  }
  const int64_t n = static_cast<int64_t>(dst) * (in - 1);
  const int64_t d = out - 1;
  return static_cast<int>((2 * n + d) / (2 * d));
}

/// Weight with which source index src contributes to output index dst along one
/// axis: the same numbers the forward pass multiplies with, so the gather
/// backward is its exact transpose.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_weight(
    bool nearest, int dst, int src, int in, int out) {
  if (nearest) {
    return nearest_axis(dst, in, out) == src ? Dtype(1) : Dtype(0);
  }
  int i0, i1;
  Dtype lambda;
  interp_axis(dst, in, out, &i0, &i1, &lambda);
  Dtype w(0);
  if (src == i0) {
    w += Dtype(1) - lambda;
  }
  if (src == i1) {
    w += lambda;
  }
  return w;
}

/// Range [*lo, *hi] of output indices that may read source index src (a
/// superset: both modes only read sources within one cell of
/// dst * (in - 1) / (out - 1)). Empty when *lo > *hi.
ATS_HOST_DEVICE inline void interp_candidates(
    int src, int in, int out, int* lo, int* hi) {
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
  const int64_t d = out - 1;
  // dst * (in - 1) / d lies in [src - 1, src + 1) for every reader of src.
  const int64_t l = (src >= 1) ? (src - 1) * d / (in - 1) : 0;
  const int64_t h = (src + 1) * d / (in - 1);
  *lo = static_cast<int>(l);
  *hi = static_cast<int>((h < out - 1) ? h : out - 1);
}

/// Host: the decimal written for a float parameter: the shortest decimal
/// mantissa * 10^exponent (at most 9 digits) that strtof reads back as `value`.
/// 0.7f, stored as 0.699999988, gives 7 * 10^-1; every decimal of up to 6
/// significant digits comes back as written (FLT_DIG). The Python layer finds
/// the same decimal.
inline void shortest_decimal(float value, int64_t* mantissa, int* exponent) {
  char text[32];
  for (int digits = 1; digits <= 9;
       ++digits) {  // 9 digits always read back (FLT_DECIMAL_DIG)
    snprintf(
        text, sizeof(text), "%.*e", digits - 1, static_cast<double>(value));
    if (strtof(text, NULL) == value) {
      break;
    }
  }
  // text is "d.ddde+XX" or "de+XX": the digits, then the power of ten of the
  // first one.
  int64_t m = 0;
  int fraction_digits = 0;
  bool after_point = false;
  const char* c = text;
  for (; *c != '\0' && *c != 'e'; ++c) {
    if (*c >= '0' && *c <= '9') {
      m = 10 * m + (*c - '0');
      fraction_digits += after_point;
    } else {  // the decimal point (whatever character the locale uses)
      after_point = true;
    }
  }
  *mantissa = m;
  *exponent = static_cast<int>(strtol(c + 1, NULL, 10)) - fraction_digits;
}

/// Host: the output size floor((in - 1) * scale) + 1 of ScaleInterp's `scale`,
/// with scale the decimal written in the prototxt (shortest_decimal), computed
/// exactly in integers: 321 -> 241 at 0.75, 8401 -> 5881 at 0.7 at any size,
/// where the float product (0.7f * 8400 = 5879.9999) or a fixed tolerance would
/// go wrong. Sizes beyond an int come back as INT_MAX + 1, which the layer
/// rejects.
inline int64_t scaled_output_size(float scale, int in) {
  int64_t mantissa;
  int exponent;
  shortest_decimal(scale, &mantissa, &exponent);
  const int64_t too_large = static_cast<int64_t>(INT_MAX) + 1;
  int64_t steps =
      static_cast<int64_t>(in - 1) * mantissa;  // < 2^31 * 10^9 < 2^61
  for (; exponent > 0 && steps > 0; --exponent) {
    if (steps > INT_MAX) {
      return too_large;
    }
    steps *= 10;
  }
  for (; exponent < 0 && steps > 0; ++exponent) {
    steps /= 10;  // floor(floor(a / 10) / 10) = floor(a / 100): exact
  }
  return (steps + 1 < too_large) ? steps + 1 : too_large;
}

// -----------------------------------------------------------------------------
// ScaleInterp tables: the grid of each axis, computed once per shape on the
// host by the functions above and then only read (on the CPU or the GPU).
//
// The resize is separable: one pass along x and one along y, in the order the
// layer picks. A pass reads, per output index dst of its axis, source cells
// i0[dst], i1[dst] with weight lambda[dst] of i1. Its backward gathers, per
// source cell src, the diffs of the `width` outputs first[src] + k, k < width,
// with weights weight[src][k] that interp_weight computes from the same grid
// (zero for outputs that do not read src), so the backward is the forward's
// exact transpose. The window holds interp_candidates' range and is moved
// inside [0, out) where that range ends near the border, so every read is in
// bounds.
// -----------------------------------------------------------------------------

/// Read-only view of the tables of one axis (in source cells, out outputs).
template <typename Dtype>
struct InterpAxis {
  // [out] first source cell of output dst (NEAREST: the source cell)
  const int* i0;
  const int* i1;        // [out] second source cell (NEAREST: = i0)
  const Dtype* lambda;  // [out] weight of i1 (NEAREST: 0)
  const int* first;     // [in] first output of the window of source src
  // [in x width] weight of output first[src] + k for source src
  const Dtype* weight;
  // outputs per window: the longest interp_candidates range, <= out
  int width;
  bool nearest;  // NEAREST: the forward copies i0 instead of mixing i0 and i1
};

/// Host: the window width of an axis, the longest interp_candidates range
/// (1 <= width <= out).
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
/// index = [i0 (out) | i1 (out) | first (in)] and value = [lambda (out) |
/// weight (in x width)]. Both are below 5 * out + 2 * in: a window holds at
/// most 2 (out - 1) / (in - 1) + 2 outputs.
inline int64_t interp_axis_index_count(int in, int out) {
  return 2 * static_cast<int64_t>(out) + in;
}
inline int64_t interp_axis_value_count(int in, int out, int width) {
  return out + static_cast<int64_t>(in) * width;
}

/// Host: fills the tables of one axis with interp_axis / nearest_axis
/// (forward), interp_candidates and interp_weight (backward).
template <typename Dtype>
inline void fill_interp_axis(
    int in, int out, bool nearest, int width, int* index, Dtype* value) {
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
      weight[src * width + k] =
          interp_weight<Dtype>(nearest, first[src] + k, src, in, out);
    }
  }
}

/// The view of tables laid out as fill_interp_axis writes them (CPU or GPU
/// pointers).
template <typename Dtype>
inline InterpAxis<Dtype> interp_axis_view(const int* index, const Dtype* value,
    int in, int out, int width, bool nearest) {
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

/// The two-tap blend of a bilinear sample: (1 - lambda) v0 + lambda v1.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_blend(Dtype v0, Dtype v1, Dtype lambda) {
  return (Dtype(1) - lambda) * v0 + lambda * v1;
}

/// One output of a pass from its two source cells: interp_blend, except that a
/// zero weight reads nothing: NEAREST, and a bilinear sample that falls on a
/// cell (lambda 0), copy v0, so a NaN or inf in cell i1 cannot reach the output
/// through 0 * NaN or 0 * inf. The weight 1 - lambda of v0 is never zero:
/// interp_axis keeps lambda below 1 also where the fraction rounds to 1. Both
/// operands are computed and one is selected, without a branch (ats_select).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_mix(
    Dtype v0, Dtype v1, Dtype lambda, bool nearest) {
  return ats_select(
      nearest || lambda == Dtype(0), v0, interp_blend(v0, v1, lambda));
}

/// One step of the backward gather: sum + weight * diff, or sum unchanged where
/// the weight is zero (an output that does not read the cell adds nothing, as
/// in the forward: not even the NaN of 0 * inf or 0 * NaN; a select, no
/// branch).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_gather_add(
    Dtype sum, Dtype weight, Dtype diff) {
  return ats_select(weight != Dtype(0), sum + weight * diff, sum);
}

/// Backward along one axis (gather), step k < width: interp_gather_add of the
/// diff of output first[src] + k (in a line of diffs `stride` apart) with its
/// forward weight for source cell src.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype interp_line_gather_step(Dtype sum, int src, int k,
    const Dtype* line, int stride, const InterpAxis<Dtype>& axis) {
  return interp_gather_add(sum, axis.weight[src * axis.width + k],
      line[(axis.first[src] + k) * stride]);
}

/// One pass of the separable resize over planes stored one after another: it
/// resamples, along x or along y, the eff_h x eff_w window at (off_y, off_x) of
/// src_h x src_w planes into dst_h x dst_w planes (along x: dst_h = eff_h;
/// along y: dst_w = eff_w).
struct InterpPass {
  int src_h, src_w;
  int off_y, off_x;
  int eff_h, eff_w;
  int dst_h, dst_w;
  bool along_x;
};

/// What output (y, x) of the two passes reads, the same in every plane (the
/// GPU forward, which runs both passes per output without the intermediate
/// planes): the second pass mixes two first-pass values, v0 of cells at00 and
/// at01 and v1 of cells at10 and at11 (offsets in a source plane, crop
/// included), each with its pass's weight.
template <typename Dtype>
struct InterpTaps {
  int at00, at01, at10, at11;
  Dtype lambda_first, lambda_second;
  bool nearest_first, nearest_second;
};

/// The taps of output (y, x) from the two passes' tables.
template <typename Dtype>
ATS_HOST_DEVICE inline InterpTaps<Dtype> scale_interp_taps(int y, int x,
    const InterpPass& first, const InterpAxis<Dtype>& first_axis,
    const InterpPass& second, const InterpAxis<Dtype>& second_axis) {
  // The second pass reads first-pass outputs j0 and j1 along its axis; each of
  // those reads source cells a0 and a1 along the first pass's axis.
  const int dst_second = second.along_x ? x : y;
  const int dst_first = first.along_x ? x : y;
  const int j0 = second_axis.i0[dst_second];
  const int j1 = second_axis.i1[dst_second];
  const int a0 = first_axis.i0[dst_first];
  const int a1 = first_axis.i1[dst_first];
  // Along x: cell (j, a) is row j, column a of the window; along y, the other
  // way round.
  const int row = first.along_x ? first.src_w : 1;
  const int col = first.along_x ? 1 : first.src_w;
  const int origin = first.off_y * first.src_w + first.off_x;
  InterpTaps<Dtype> taps;
  taps.at00 = origin + j0 * row + a0 * col;
  taps.at01 = origin + j0 * row + a1 * col;
  taps.at10 = origin + j1 * row + a0 * col;
  taps.at11 = origin + j1 * row + a1 * col;
  taps.lambda_first = first_axis.lambda[dst_first];
  taps.lambda_second = second_axis.lambda[dst_second];
  taps.nearest_first = first_axis.nearest;
  taps.nearest_second = second_axis.nearest;
  return taps;
}

/// Both passes for one output from its taps in one source plane: the two
/// first-pass values by interp_mix, then their interp_mix, exactly as the two
/// passes through a buffer compute it.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_tapped(
    const Dtype* plane, const InterpTaps<Dtype>& taps) {
  const Dtype v0 = interp_mix(plane[taps.at00], plane[taps.at01],
      taps.lambda_first, taps.nearest_first);
  const Dtype v1 = interp_mix(plane[taps.at10], plane[taps.at11],
      taps.lambda_first, taps.nearest_first);
  return interp_mix(v0, v1, taps.lambda_second, taps.nearest_second);
}

/// Output (y, x) of plane `plane` of the source planes `src`: its taps, then
/// scale_interp_tapped.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_at(int plane, int y, int x,
    const Dtype* src, const InterpPass& first,
    const InterpAxis<Dtype>& first_axis, const InterpPass& second,
    const InterpAxis<Dtype>& second_axis) {
  return scale_interp_tapped(
      src + static_cast<size_t>(plane) * first.src_h * first.src_w,
      scale_interp_taps(y, x, first, first_axis, second, second_axis));
}

/// Backward of a pass, step k at element (sy, sx) of the window (which starts
/// at (off_y, off_x) of the source planes): see interp_line_gather_step.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_gather_step(Dtype sum, int plane,
    int sy, int sx, int k, const Dtype* dst_diff, const InterpPass& pass,
    const InterpAxis<Dtype>& axis) {
  const Dtype* diff =
      dst_diff + static_cast<size_t>(plane) * pass.dst_h * pass.dst_w;
  return pass.along_x
      ? interp_line_gather_step(sum, sx, k, diff + sy * pass.dst_w, 1, axis)
      : interp_line_gather_step(sum, sy, k, diff + sx, pass.dst_w, axis);
}

/// Backward of a pass (gather, no atomics): diff of source element (y, x) of
/// plane `plane`, the transpose of one pass of scale_interp_at: zero outside
/// the window (cropped-away cells), else the steps k = 0 .. width - 1 in
/// order.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype scale_interp_gather_at(int plane, int y, int x,
    const Dtype* dst_diff, const InterpPass& pass,
    const InterpAxis<Dtype>& axis) {
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

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_SCALE_INTERP_HPP_
