// Attention to Scale for Caffe: ScaleInterp layer, bilinear/nearest resize,
// corner-aligned grid.
#ifndef CAFFE_SCALE_INTERP_LAYER_HPP_
#define CAFFE_SCALE_INTERP_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/util/scale_interp.hpp"

namespace caffe {

/**
 * @brief Resizes N x C x H x W maps bilinearly (or by nearest neighbour) on
 * DeepLab's corner-aligned grid: output index i reads source coordinate i *
 * (H_in_eff - 1) / (H_out - 1) (0 when H_out == 1); same for the width.
 *
 * Bottoms:
 *   -# @f$ (N \times C \times H \times W) @f$ the maps to resize.
 *   -# optional @f$ (N' \times C' \times H_{ref} \times W_{ref}) @f$ a
 * reference blob whose H x W the output takes. Its values are never read and it
 * receives zero gradient.
 *
 * Top: @f$ (N \times C \times H_{out} \times W_{out}) @f$.
 *
 * Parameters (ScaleInterpParameter): pad_beg, pad_end (<= 0) crop the input to
 * H_in_eff = H + pad_beg + pad_end (likewise W). The output size comes from
 * exactly one of
 *   - zoom_factor and/or shrink_factor (DeepLab's Interp formulas; both:
 * shrink, then zoom),
 *   - height and width,
 *   - scale: H_out = floor((H_in_eff - 1) * scale) + 1, exactly, for the
 * decimal written in the prototxt (the shortest that reads back as the stored
 * float: 0.7, not 0.699999988),
 *   - the second bottom.
 * interpolation NEAREST picks the source floor(src + 0.5) and never mixes
 * values (label maps).
 *
 * Refused in LayerSetUp / Reshape with a message naming the layer, the bottom
 * and the shapes: an empty bottom (an axis of 0), running in place, an output
 * side < 1 or with 5 x side + 2 x cropped input side > INT_MAX (the per-axis
 * tables), a top of more than INT_MAX elements. The Python layer applies the
 * same rules with the same messages.
 *
 * NaN and inf: an input cell reaches exactly the outputs that read it with a
 * non-zero weight (NEAREST: the outputs that copy it), never a neighbour
 * through 0 * NaN; a copied inf stays inf. Backward likewise: a non-finite top
 * diff reaches the cells its output reads.
 *
 * The grid is computed exactly in integers, once per shape, into per-axis
 * tables (Reshape). The resize runs as two separable passes, along x and along
 * y, in the order the CPU loops take less time for (intermediate planes never
 * larger than both bottom and top); the CPU takes them plane by plane through
 * one buffered plane per thread, the GPU forward computes both for each output
 * element (the same operations). Backward is a gather: every element sums the
 * diffs that read it, with the forward's own weights, so it needs no atomics on
 * the GPU.
 */
template <typename Dtype>
class ScaleInterpLayer : public Layer<Dtype> {
 public:
  explicit ScaleInterpLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ScaleInterp"; }
  // The bottom/top counts (1 or 2 bottoms, 1 top) are checked in LayerSetUp,
  // whose messages name the layer.

  /// The reference bottom only gives a size: no gradient flows into it.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// Which parameter gives the output size.
  enum SizeMode { SIZE_FACTORS, SIZE_HEIGHT_WIDTH, SIZE_SCALE, SIZE_REFERENCE };
  SizeMode size_mode_;
  int pad_beg_, pad_end_;
  attention_scale::InterpGeometry geometry_;

  /// Fills the per-axis tables for geometry_ (only when its grid changed) and
  /// sets the passes.
  void SetUpTables();
  /// The tables of the y (along_x false) or x axis, as CPU or GPU pointers.
  attention_scale::InterpAxis<Dtype> Axis(bool along_x, bool gpu);

  /// Index 0: the y axis (eff_h -> out_h), 1: the x axis (eff_w -> out_w); laid
  /// out as attention_scale::fill_interp_axis writes them.
  Blob<int> axis_index_[2];
  Blob<Dtype> axis_value_[2];
  int axis_width_[2];
  /// eff_h, eff_w, out_h, out_w, nearest of the tables now filled (empty: none
  /// yet).
  vector<int> tables_key_;
  /// The first pass (bottom -> intermediate planes) and the second
  /// (intermediate planes -> top).
  attention_scale::InterpPass pass_[2];
  /// GPU backward: every intermediate plane (diff); allocated on the device
  /// only. (The GPU forward computes both passes per output element.)
  Blob<Dtype> buffer_;
  /// CPU: one intermediate plane per thread (the CPU loops take a plane at a
  /// time, so it stays in cache).
  Blob<Dtype> plane_buffer_;
};

}  // namespace caffe

#endif  // CAFFE_SCALE_INTERP_LAYER_HPP_
