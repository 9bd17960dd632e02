// Attention to Scale for Caffe: SoftmaxOverScales layer, the per-pixel softmax
// of equation (2).
#ifndef CAFFE_SOFTMAX_OVER_SCALES_LAYER_HPP_
#define CAFFE_SOFTMAX_OVER_SCALES_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Turns the attention model's scores h into per-pixel weights over the S
 * scales:
 *        @f$ w_i^s = \exp(h_i^s) / \sum_t \exp(h_i^t) @f$ (equation (2) of Chen
 * et al., "Attention to Scale", CVPR 2016).
 *
 * Bottoms, either
 *   - one @f$ (N \times S \times H \times W) @f$ blob, the scale axis being the
 * channels, or
 *   - S blobs of @f$ (N \times 1 \times H \times W) @f$, one per scale (same N,
 * H, W).
 *
 * Top: @f$ (N \times S \times H \times W) @f$ the weights; they sum to 1 over
 * the channels.
 *
 * The per-pixel maximum is subtracted before exponentiating, so inputs up to
 * +/-1e30 and -inf entries give finite weights. Infinite and NaN logits (the
 * same in the Python layer): the k scales at +inf share the weight, 1/k each
 * (the limit of the softmax); all -inf gives 1/S each (equal logits); a NaN
 * logit makes every weight of its pixel NaN, and no other pixel's. Empty
 * bottoms (an axis of 0) are refused in Reshape. Backward: @f$ \partial h^s =
 * w^s (\partial w^s - \sum_t w^t \partial w^t) @f$, written back to the one
 * bottom or split over the S bottoms. No parameters (SoftmaxOverScalesParameter
 * is empty); the layer cannot run in place.
 */
template <typename Dtype>
class SoftmaxOverScalesLayer : public Layer<Dtype> {
 public:
  explicit SoftmaxOverScalesLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SoftmaxOverScales"; }
  // The bottom/top counts (>= 1 bottoms, 1 top) are checked in LayerSetUp,
  // whose messages name the layer.

 protected:
  virtual void Forward_cpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(
      const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int num_scales_;  // S
  int inner_;       // H * W
};

}  // namespace caffe

#endif  // CAFFE_SOFTMAX_OVER_SCALES_LAYER_HPP_
