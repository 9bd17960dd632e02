// Attention to Scale for Caffe: WeightedScaleSum layer, the per-pixel merge of
// equation (1).
#ifndef CAFFE_WEIGHTED_SCALE_SUM_LAYER_HPP_
#define CAFFE_WEIGHTED_SCALE_SUM_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Merges S score maps per pixel and class: @f$ g = \sum_s w^s f^s @f$
 * (equation (1) of Chen et al., "Attention to Scale", CVPR 2016) and its
 * special cases.
 *
 * Bottoms:
 *   -# .. S: @f$ (N \times C \times H \times W) @f$ the score maps @f$ f^1 ..
 * f^S @f$, all of the same shape (S >= 1).
 *   -# in ATTENTION mode only, last: @f$ (N \times S \times H \times W) @f$ the
 * weights
 *      @f$ w @f$ (normally a SoftmaxOverScales output), broadcast over the C
 * classes.
 *
 * Top: @f$ (N \times C \times H \times W) @f$ the merged map g.
 *
 * Parameter weighted_scale_sum_param.merge:
 *   - ATTENTION (default): the weights come from the last bottom;
 *     backward @f$ \partial f^s = w^s \partial g @f$,
 *     @f$ \partial w^s = \sum_c f^s_c \partial g_c @f$.
 *   - AVERAGE: @f$ w^s = 1/S @f$; backward @f$ \partial g / S @f$.
 *   - MAX: @f$ w @f$ = one-hot of the arg-max over s per element, the first
 * scale on ties; backward routes @f$ \partial g @f$ to the arg-max scale (kept
 * in an int mask, as Pooling). A NaN wins against any number, the first NaN
 * against later ones: the output is NaN wherever a scale is NaN, whatever the
 * order, and its gradient goes to that first NaN.
 *
 * ATTENTION and AVERAGE sum in IEEE arithmetic: a NaN or inf score (or weight)
 * reaches its own output element only (0 x inf is NaN). The Python layer
 * computes the same. The layer cannot run in place; empty bottoms (an axis of
 * 0) are refused in Reshape.
 */
template <typename Dtype>
class WeightedScaleSumLayer : public Layer<Dtype> {
 public:
  explicit WeightedScaleSumLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "WeightedScaleSum"; }
  // The bottom/top counts (>= 1 score maps, + 1 weights blob in ATTENTION mode;
  // 1 top) are checked in LayerSetUp, whose messages name the layer.

 protected:
  virtual void Forward_cpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  WeightedScaleSumParameter_MergeMethod merge_;
  int num_scales_;  // S, the number of score maps
  int channels_;    // C
  int inner_;       // H * W
  /// MAX: the index of the winning scale of every top element.
  Blob<int> max_idx_;
};

}  // namespace caffe

#endif  // CAFFE_WEIGHTED_SCALE_SUM_LAYER_HPP_
