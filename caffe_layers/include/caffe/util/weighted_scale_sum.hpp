// Attention to Scale for Caffe: WeightedScaleSum's per-element maths.
//
// The ATTENTION, AVERAGE and MAX merges of one element for one scale at a
// time, called in order of the scales by the CPU loops (block by block) and by
// one CUDA launch per scale.
#ifndef CAFFE_UTIL_WEIGHTED_SCALE_SUM_HPP_
#define CAFFE_UTIL_WEIGHTED_SCALE_SUM_HPP_

#include "caffe/util/attention_scale_common.hpp"

namespace caffe {
namespace attention_scale {

// -----------------------------------------------------------------------------
// NaN and inf: ATTENTION and AVERAGE compute their sums in IEEE arithmetic, so
// a NaN or inf score (or weight) reaches its own output element, and only that
// one (a zero weight times inf is NaN: the weights are data here, not a grid).
// MAX: see max_accumulate_at.
// -----------------------------------------------------------------------------

// -----------------------------------------------------------------------------
// WeightedScaleSum: score maps N x C x inner, weights N x S x inner (broadcast
// over C). The attention functions take pointers to one class plane (n, c) of
// the maps and to the weight plane (n, s), and a pixel index i < inner.
// -----------------------------------------------------------------------------

/// The product of a weight and a score (or of a score and a diff): w f.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_term(Dtype w, Dtype f) {
  return w * f;
}

/// A running sum plus one more product: sum + w f (the product rounded first).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_term_add(Dtype sum, Dtype w, Dtype f) {
  return sum + attention_term(w, f);
}

/// Attention forward, scale s: g (=, or += after the first scale) w^s f^s.
template <typename Dtype>
ATS_HOST_DEVICE inline void attention_accumulate_at(
    int i, int s, const Dtype* f, const Dtype* w, Dtype* top) {
  top[i] = (s == 0) ? attention_term(w[i], f[i])
                    : attention_term_add(top[i], w[i], f[i]);
}

/// Attention backward to the score map of scale s: df^s = w^s dg.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype attention_feature_diff_at(
    int i, const Dtype* w, const Dtype* top_diff) {
  return attention_term(w[i], top_diff[i]);
}

/// Attention backward to the weight of scale s, class c of the sum over
/// classes: dw^s (=, or += after the first class) f^s_c dg_c, so
/// dw^s = sum_c f^s_c dg_c.
template <typename Dtype>
ATS_HOST_DEVICE inline void attention_weight_accumulate_at(
    int i, int c, const Dtype* f, const Dtype* top_diff, Dtype* w_diff) {
  w_diff[i] = (c == 0) ? attention_term(f[i], top_diff[i])
                       : attention_term_add(w_diff[i], f[i], top_diff[i]);
}

/// Average forward, scale s: g (=, or +=) f^s / S.
template <typename Dtype>
ATS_HOST_DEVICE inline void average_accumulate_at(
    int index, int s, const Dtype* f, Dtype inv_num_scales, Dtype* top) {
  const Dtype v = inv_num_scales * f[index];
  top[index] = (s == 0) ? v : top[index] + v;
}

/// Average backward to every score map: df^s = dg / S.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype average_feature_diff_at(
    int index, Dtype inv_num_scales, const Dtype* top_diff) {
  return inv_num_scales * top_diff[index];
}

/// Max forward, scale s: keep the larger value and its scale; strict > keeps
/// the first on ties. A NaN wins against any number and loses against an
/// earlier NaN, so the output is NaN where any scale is NaN, whatever the scale
/// order, and its gradient goes to the first NaN scale (the Python layer does
/// the same). After the first scale every operand is loaded and the choice is a
/// select without a branch (ats_select; the data decide it at random; loops
/// vectorize).
template <typename Dtype>
ATS_HOST_DEVICE inline void max_accumulate_at(
    int index, int s, const Dtype* f, Dtype* top, int* mask) {
  const Dtype v = f[index];
  if (s == 0) {
    top[index] = v;
    mask[index] = 0;
    return;
  }
  const Dtype best = top[index];
  // larger, or the first NaN (& and |: no branches)
  const bool take = (v > best) | ((v != v) & (best == best));
  top[index] = ats_select(take, v, best);
  mask[index] = take ? s : mask[index];
}

/// Max backward to the score map of scale s: dg where s won, else 0 (a select,
/// as above).
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype max_feature_diff_at(
    int index, int s, const int* mask, const Dtype* top_diff) {
  return ats_select(mask[index] == s, top_diff[index], Dtype(0));
}

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_WEIGHTED_SCALE_SUM_HPP_
