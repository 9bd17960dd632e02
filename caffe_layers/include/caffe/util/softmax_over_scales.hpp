// Attention to Scale for Caffe: SoftmaxOverScales' per-element maths.
//
// The softmax over the scale axis of one pixel, split into steps that the CPU
// loops take for a block of pixels at a time and the CUDA kernels for one
// pixel per thread; a branch-free float exp so that the CPU loops vectorize.
#ifndef CAFFE_UTIL_SOFTMAX_OVER_SCALES_HPP_
#define CAFFE_UTIL_SOFTMAX_OVER_SCALES_HPP_

#include <math.h>
#include <string.h>

#include "caffe/util/attention_scale_common.hpp"

namespace caffe {
namespace attention_scale {

// -----------------------------------------------------------------------------
// SoftmaxOverScales: data laid out N x S x inner (inner = H * W). The functions
// take pointers to the first channel of one sample and a pixel index i < inner,
// so loops need no division.
// -----------------------------------------------------------------------------

/// The bits of a float, and a float from bits (host: memcpy; CUDA: the
/// intrinsics).
ATS_HOST_DEVICE inline int ats_float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_int(x);
#else
  int bits;
  memcpy(&bits, &x, sizeof(bits));  // NOLINT(caffe/alt_fn): bits, not Dtypes
  return bits;
#endif
}

ATS_HOST_DEVICE inline float ats_bits_float(unsigned int bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float x;
  memcpy(&x, &bits, sizeof(x));  // NOLINT(caffe/alt_fn): bits, not Dtypes
  return x;
#endif
}

/// exp in float without branches or calls, so that CPU loops over it vectorize
/// (libm's expf is a call per element): x = n ln2 + r with n = round(x / ln2),
/// |r| <= ln2 / 2 (Cody-Waite), Cephes' expf polynomial for exp(r), times 2^n
/// as two powers of two, so that results down to the smallest subnormal are
/// rounded once. Within 1 ulp of the correctly rounded exp over the floats
/// (tested); exp(0) = 1, exp(x < -104) = 0 (as exp rounds), exp(x > 89) = +inf,
/// NaN stays NaN. Out-of-range arguments are fixed up on the bits at the end,
/// not by clamping first: a clamp makes compilers split the loop into branches
/// for the constant cases.
ATS_HOST_DEVICE inline float ats_exp(float x) {
  const float kRound =
      12582912.0f;  // 1.5 * 2^23: t's low mantissa bits hold round(x / ln2)
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
  // n as an int, in [-150, 129] for x in [-104, 89] (unsigned: no overflow
  // elsewhere).
  const int n_int =
      static_cast<int>(static_cast<unsigned int>(ats_float_bits(t)) -
          static_cast<unsigned int>(ats_float_bits(kRound)));
  const int n1 = n_int / 2;
  const int n2 = n_int - n1;
  const float y = p *
      ats_bits_float(static_cast<unsigned int>(n1 + 127) << 23) *
      ats_bits_float(static_cast<unsigned int>(n2 + 127) << 23);
  const unsigned int keep =
      0u - static_cast<unsigned int>(!(x < -104.0f));  // NaN: kept
  const unsigned int overflow = 0u - static_cast<unsigned int>(x > 89.0f);
  const unsigned int bits = static_cast<unsigned int>(ats_float_bits(y)) & keep;
  return ats_bits_float((bits & ~overflow) | (0x7f800000u & overflow));
}

ATS_HOST_DEVICE inline double ats_exp(double x) {
  return exp(x);
}

/// Index in an N x S x inner blob of channel s of the pixel `index` of an N x 1
/// x inner blob.
ATS_HOST_DEVICE inline int scale_channel_index(
    int index, int s, int num_scales, int inner) {
  return ((index / inner) * num_scales + s) * inner + index % inner;
}

/// The larger of m and v (m where v is NaN; the steps below on one value).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_max_value(Dtype m, Dtype v) {
  return (v > m) ? v : m;
}

/// exp(v - m), or 1 where v equals the maximum m (see softmax_exp_step).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_exp_value(Dtype v, Dtype m) {
  // A select without a branch (ats_select), so that loops over it vectorize.
  return ats_select(v == m, Dtype(1), ats_exp(v - m));
}

/// Forward, step 1 (s >= 1; the maximum starts as channel 0): the larger of m
/// and channel s of pixel i (in: the sample's channel 0).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_max_step(
    Dtype m, int i, int s, const Dtype* in, int inner) {
  return softmax_max_value(m, in[i + s * inner]);
}

/// Forward, step 2 (s = 0, 1, ..; the sum starts at 0): e = exp(channel s - m),
/// written to out; returns sum + e. A channel equal to the maximum gets e = 1
/// also where the maximum is +inf or -inf (where exp(inf - inf) would be NaN):
/// see softmax_over_scales_pixel.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_exp_step(
    Dtype sum, Dtype m, int i, int s, const Dtype* in, Dtype* out, int inner) {
  const Dtype e = softmax_exp_value(in[i + s * inner], m);
  out[i + s * inner] = e;
  return sum + e;
}

/// Forward, step 3: channel s of the output divided by the sum.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_normalize_step(
    Dtype sum, int i, int s, Dtype* out, int inner) {
  out[i + s * inner] /= sum;
}

/// Forward for pixel i of one sample: out = softmax over s of in, by the three
/// steps above. The maximum is subtracted first, so inputs up to +/-1e30 and
/// -inf entries stay finite. Infinite and NaN logits (the same in the Python
/// layer):
///   - +inf logits: the limit of the softmax, the k scales at +inf share the
///   weight (1/k each),
///     the others get 0;
///   - all -inf: the weights of equal logits, 1/S each (as for any pixel whose
///   logits are all
///     equal); some -inf: those get 0;
///   - a NaN logit: every weight of that pixel is NaN (and no other pixel's).
/// Safe in place (in == out): every input is read before it is written.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_over_scales_pixel(
    int i, const Dtype* in, Dtype* out, int num_scales, int inner) {
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

/// softmax_over_scales_pixel for up to kMaxScales scales with the pixel's
/// values held in registers (the CUDA forward): the same steps in the same
/// order, each input read and each output written once. Safe in place.
template <int kMaxScales, typename Dtype>
ATS_HOST_DEVICE inline void softmax_over_scales_pixel_registers(
    int i, const Dtype* in, Dtype* out, int num_scales, int inner) {
  Dtype v[kMaxScales];
  ATS_UNROLL
  for (int s = 0; s < kMaxScales; ++s) {
    v[s] = (s < num_scales) ? in[i + s * inner] : Dtype(0);
  }
  Dtype m = v[0];
  ATS_UNROLL
  for (int s = 1; s < kMaxScales; ++s) {
    m = (s < num_scales) ? softmax_max_value(m, v[s]) : m;
  }
  Dtype sum(0);
  ATS_UNROLL
  for (int s = 0; s < kMaxScales; ++s) {
    if (s < num_scales) {
      v[s] = softmax_exp_value(v[s], m);
      sum = sum + v[s];
    }
  }
  ATS_UNROLL
  for (int s = 0; s < kMaxScales; ++s) {
    if (s < num_scales) {
      out[i + s * inner] = v[s] / sum;
    }
  }
}

/// Backward, step t (t = 0, 1, ..; the dot product starts at 0): dot + y_t dy_t
/// of pixel i.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_dot_step(Dtype dot, int i, int t,
    const Dtype* top_data, const Dtype* top_diff, int inner) {
  return dot + top_data[i + t * inner] * top_diff[i + t * inner];
}

/// Backward for channel s of pixel i, given dot = sum_t y_t dy_t: dx_s = y_s
/// (dy_s - dot).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_diff(Dtype dot, int i, int s,
    const Dtype* top_data, const Dtype* top_diff, int inner) {
  return top_data[i + s * inner] * (top_diff[i + s * inner] - dot);
}

/// sum_t y_t dy_t of pixel i of one sample, by softmax_dot_step in order of t.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_dot(int i,
    const Dtype* top_data, const Dtype* top_diff, int num_scales, int inner) {
  Dtype dot(0);
  for (int t = 0; t < num_scales; ++t) {
    dot = softmax_dot_step(dot, i, t, top_data, top_diff, inner);
  }
  return dot;
}

/// Backward for channel s of pixel i of one sample (top_data, top_diff: its
/// channel 0).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype softmax_over_scales_diff_at(int i, int s,
    const Dtype* top_data, const Dtype* top_diff, int num_scales, int inner) {
  return softmax_over_scales_diff(
      softmax_over_scales_dot(i, top_data, top_diff, num_scales, inner), i, s,
      top_data, top_diff, inner);
}

/// Backward for every channel of pixel i of one sample (the one-bottom form;
/// the CUDA kernel's thread per pixel): the dot product once, then each
/// channel's diff from it, as softmax_over_scales_diff_at computes them. Each
/// weight and diff of the pixel is read once for the dot product.
template <typename Dtype>
ATS_HOST_DEVICE inline void softmax_over_scales_backward_pixel(int i,
    const Dtype* top_data, const Dtype* top_diff, Dtype* bottom_diff,
    int num_scales, int inner) {
  const Dtype dot =
      softmax_over_scales_dot(i, top_data, top_diff, num_scales, inner);
  for (int s = 0; s < num_scales; ++s) {
    bottom_diff[i + s * inner] =
        softmax_over_scales_diff(dot, i, s, top_data, top_diff, inner);
  }
}

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_SOFTMAX_OVER_SCALES_HPP_
