// Attention to Scale for Caffe: SoftmaxOverScales layer, shape checks and CPU
// loops.
#include <stdint.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "caffe/layers/softmax_over_scales_layer.hpp"
#include "caffe/util/attention_scale_common.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/softmax_over_scales.hpp"

namespace caffe {

using attention_scale::BottomLabel;
using attention_scale::LayerLabel;
using attention_scale::ShapeString;

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  CHECK_GE(bottom.size(), 1)
      << layer << ": takes one N x S x H x W bottom or S bottoms of"
      << " N x 1 x H x W, got no bottom";
  CHECK_EQ(top.size(), 1) << layer << ": takes exactly 1 top, got "
                          << top.size();
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(top[0] != bottom[i]) << layer << ": cannot run in place (top[0] is "
                               << BottomLabel(this->layer_param_, i) << ")";
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const std::string layer = LayerLabel(type(), this->layer_param_);
  for (int i = 0; i < bottom.size(); ++i) {
    attention_scale::CheckBottom4D(
        layer, this->layer_param_, *bottom[i], i, "N x S x H x W");
  }
  const Blob<Dtype>& first = *bottom[0];
  if (bottom.size() == 1) {
    num_scales_ = first.channels();  // >= 1: checked above
  } else {
    // One N x 1 x H x W map per scale, all shaped like bottom[0].
    num_scales_ = bottom.size();
    vector<int> expected = first.shape();
    expected[1] = 1;
    CHECK(first.shape() == expected)
        << layer << ": " << BottomLabel(this->layer_param_, 0) << " has shape "
        << first.shape_string() << ", expected " << ShapeString(expected)
        << ": with " << bottom.size()
        << " bottoms each is one scale's N x 1 x H x W map";
    for (int i = 1; i < bottom.size(); ++i) {
      CHECK(bottom[i]->shape() == expected)
          << layer << ": " << BottomLabel(this->layer_param_, i)
          << " has shape " << bottom[i]->shape_string() << ", expected "
          << ShapeString(expected) << ", the shape of "
          << BottomLabel(this->layer_param_, 0);
    }
    // S bottoms that each fit in a blob may give a top that does not
    // (Blob::Reshape would stop without naming the layer). The Python layer
    // gives the same message.
    const int64_t limit = INT_MAX;
    CHECK(static_cast<int64_t>(first.count()) * num_scales_ <= limit)
        << layer << ": the top would have shape " << first.num() << " "
        << num_scales_ << " " << first.height() << " " << first.width() << " ("
        << static_cast<int64_t>(first.count()) * num_scales_ << ") for "
        << num_scales_ << " bottoms of shape " << first.shape_string() << " ("
        << BottomLabel(this->layer_param_, 0)
        << " and the others), more than a blob holds (" << limit
        << " elements)";
  }
  inner_ = first.height() * first.width();
  top[0]->Reshape(first.num(), num_scales_, first.height(), first.width());
}

// The CPU loops go block by block over the pixels of a sample (kBlock of them)
// and take each step of caffe/util/softmax_over_scales.hpp for every pixel of
// the block before the next: every pixel still takes the steps in the order
// softmax_over_scales_pixel and softmax_over_scales_diff_at (what the CUDA
// kernels call) take them, but the loops over a block are contiguous and
// vectorize. The blocks are independent: with OpenMP, threads share them out.
static const int kBlock = 512;

/// Forward of pixels [begin, begin + size) of one sample (x: its logits, y: its
/// weights; x == y in place).
template <typename Dtype>
static ATS_CPU_LOOP void SoftmaxForwardBlock(const Dtype* x, Dtype* y,
    int begin, int size, int num_scales, int inner) {
  Dtype peak[kBlock], sum[kBlock];
  for (int j = 0; j < size; ++j) {
    peak[j] = x[begin + j];
  }
  for (int s = 1; s < num_scales; ++s) {
    for (int j = 0; j < size; ++j) {
      peak[j] =
          attention_scale::softmax_max_step(peak[j], begin + j, s, x, inner);
    }
  }
  for (int j = 0; j < size; ++j) {
    sum[j] = Dtype(0);
  }
  for (int s = 0; s < num_scales; ++s) {
    for (int j = 0; j < size; ++j) {
      sum[j] = attention_scale::softmax_exp_step(
          sum[j], peak[j], begin + j, s, x, y, inner);
    }
  }
  for (int s = 0; s < num_scales; ++s) {
    for (int j = 0; j < size; ++j) {
      attention_scale::softmax_normalize_step(sum[j], begin + j, s, y, inner);
    }
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int num = top[0]->num();
  const int sample = num_scales_ * inner_;
  const Dtype* in = bottom[0]->cpu_data();
  if (bottom.size() > 1) {
    // Gather the S maps into the top's channels, then take the softmax in place
    // there.
    for (int n = 0; n < num; ++n) {
      for (int s = 0; s < num_scales_; ++s) {
        caffe_copy(inner_, bottom[s]->cpu_data() + n * inner_,
            top_data + n * sample + s * inner_);
      }
    }
    in = top_data;
  }
  const int blocks = (inner_ + kBlock - 1) / kBlock;
  const int jobs = num * blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int job = 0; job < jobs; ++job) {
    const int n = job / blocks;
    const int begin = (job - n * blocks) * kBlock;
    SoftmaxForwardBlock(in + n * sample, top_data + n * sample, begin,
        std::min(kBlock, inner_ - begin), num_scales_, inner_);
  }
}

/// Backward of pixels [begin, begin + size) of sample n: diff[s] (NULL: not
/// wanted) is the diff of channel s of sample 0, diff_sample[s] its stride per
/// sample.
template <typename Dtype>
static ATS_CPU_LOOP void SoftmaxBackwardBlock(const Dtype* y,
    const Dtype* dy, int n, int begin, int size, int num_scales, int inner,
    Dtype* const* diff, const int* diff_sample) {
  Dtype dot[kBlock];
  for (int j = 0; j < size; ++j) {
    dot[j] = Dtype(0);
  }
  for (int t = 0; t < num_scales; ++t) {
    for (int j = 0; j < size; ++j) {
      dot[j] =
          attention_scale::softmax_dot_step(dot[j], begin + j, t, y, dy, inner);
    }
  }
  for (int s = 0; s < num_scales; ++s) {
    if (!diff[s]) {
      continue;
    }
    Dtype* dx = diff[s] + n * diff_sample[s];
    for (int j = 0; j < size; ++j) {
      dx[begin + j] = attention_scale::softmax_over_scales_diff(
          dot[j], begin + j, s, y, dy, inner);
    }
  }
}

template <typename Dtype>
void SoftmaxOverScalesLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  // The diff of channel s of sample n: in the one bottom, or in bottom s (NULL:
  // not wanted).
  vector<Dtype*> diff(num_scales_);
  vector<int> diff_sample(num_scales_);
  for (int s = 0; s < num_scales_; ++s) {
    const int b = (bottom.size() == 1) ? 0 : s;
    diff[s] = propagate_down[b] ? bottom[b]->mutable_cpu_diff() : NULL;
    if (diff[s] && bottom.size() == 1) {
      diff[s] += s * inner_;
    }
    diff_sample[s] = bottom[b]->count(1);
  }
  const Dtype* top_data = top[0]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  const int sample = num_scales_ * inner_;
  const int blocks = (inner_ + kBlock - 1) / kBlock;
  const int jobs = top[0]->num() * blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int job = 0; job < jobs; ++job) {
    const int n = job / blocks;
    const int begin = (job - n * blocks) * kBlock;
    SoftmaxBackwardBlock(top_data + n * sample, top_diff + n * sample, n, begin,
        std::min(kBlock, inner_ - begin), num_scales_, inner_, &diff[0],
        &diff_sample[0]);
  }
}

#ifdef CPU_ONLY
STUB_GPU(SoftmaxOverScalesLayer);
#endif

INSTANTIATE_CLASS(SoftmaxOverScalesLayer);
REGISTER_LAYER_CLASS(SoftmaxOverScales);

}  // namespace caffe
