// Attention to Scale for Caffe: ScaleInterp's per-element maths.
//
// The corner-aligned grid along one axis (exact integer arithmetic), the
// per-axis tables the layer fills once per shape, and the element functions
// of the separable two-pass resize and of its gather backward. Every function
// marked ATS_HOST_DEVICE computes one output element from indices the caller
// already split up: the CPU loops call them row by row, the CUDA kernels
// inside CUDA_KERNEL_LOOP, so the CPU tests exercise exactly the formulas the
// GPU runs.
#ifndef CAFFE_UTIL_SCALE_INTERP_HPP_
#define CAFFE_UTIL_SCALE_INTERP_HPP_

#include <stddef.h>

#include "caffe/util/attention_scale_common.hpp"

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

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_SCALE_INTERP_HPP_
