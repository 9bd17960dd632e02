// Attention to Scale for Caffe: tests of the WeightedScaleSum layer (forward,
// gradients, errors).
#include <limits.h>
#include <stdint.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/weighted_scale_sum_layer.hpp"
#include "caffe/util/attention_scale_common.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class WeightedScaleSumLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  static const int kScales = 3;

  WeightedScaleSumLayerTest()
      : blob_weights_(new Blob<Dtype>(2, kScales, 3, 4)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    for (int s = 0; s < kScales; ++s) {
      blob_scores_.push_back(new Blob<Dtype>(2, 5, 3, 4));
      FillGaussian(blob_scores_[s]);
    }
    FillGaussian(blob_weights_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~WeightedScaleSumLayerTest() {
    for (int s = 0; s < blob_scores_.size(); ++s) {
      delete blob_scores_[s];
    }
    delete blob_weights_;
    delete blob_top_;
  }

  void FillGaussian(Blob<Dtype>* blob) {
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob);
  }

  // Score maps whose values differ by at least 0.2 across scales at every
  // element, so the gradient checker's steps of 1e-2 never change the arg-max.
  void FillSeparated() {
    const int count = blob_scores_[0]->count();
    Blob<Dtype> noise(1, 1, 1, count * kScales);
    FillerParameter filler_param;
    filler_param.set_min(-0.05);
    filler_param.set_max(0.05);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(&noise);
    for (int s = 0; s < kScales; ++s) {
      for (int i = 0; i < count; ++i) {
        blob_scores_[s]->mutable_cpu_data()[i] =
            0.3 * ((i * 7 + s + i / 5) % kScales) - 0.3 +
            noise.cpu_data()[s * count + i];
      }
    }
  }

  vector<Blob<Dtype>*> Bottoms(bool with_weights) {
    vector<Blob<Dtype>*> bottom(blob_scores_);
    if (with_weights) {
      bottom.push_back(blob_weights_);
    }
    return bottom;
  }

  LayerParameter Param(WeightedScaleSumParameter_MergeMethod merge) {
    LayerParameter layer_param;
    layer_param.mutable_weighted_scale_sum_param()->set_merge(merge);
    return layer_param;
  }

  // Forward and backward of one merge of `num_scales` maps of `shape` against
  // references computed here in double.
  void CheckMerge(const int shape[4], int num_scales,
      WeightedScaleSumParameter_MergeMethod merge) {
    const bool att = merge == WeightedScaleSumParameter_MergeMethod_ATTENTION;
    const bool max = merge == WeightedScaleSumParameter_MergeMethod_MAX;
    vector<Blob<Dtype>*> bottom;
    for (int s = 0; s < num_scales; ++s) {
      bottom.push_back(new Blob<Dtype>(shape[0], shape[1], shape[2], shape[3]));
      FillGaussian(bottom[s]);
    }
    if (att) {
      bottom.push_back(
          new Blob<Dtype>(shape[0], num_scales, shape[2], shape[3]));
      FillGaussian(bottom[num_scales]);
    }
    WeightedScaleSumLayer<Dtype> layer(Param(merge));
    layer.SetUp(bottom, blob_top_vec_);
    layer.Forward(bottom, blob_top_vec_);
    Blob<Dtype> top_diff(blob_top_->shape());
    FillGaussian(&top_diff);
    caffe_copy(
        top_diff.count(), top_diff.cpu_data(), blob_top_->mutable_cpu_diff());
    layer.Backward(blob_top_vec_, vector<bool>(bottom.size(), true), bottom);
    const Blob<Dtype>& top = *blob_top_;
    vector<double> weight_diff(att ? bottom[num_scales]->count() : 0, 0.0);
    for (int n = 0; n < shape[0]; ++n) {
      for (int c = 0; c < shape[1]; ++c) {
        for (int y = 0; y < shape[2]; ++y) {
          for (int x = 0; x < shape[3]; ++x) {
            double g = 0;
            int best = 0;
            for (int s = 0; s < num_scales; ++s) {
              const double f = bottom[s]->data_at(n, c, y, x);
              if (att) {
                g += bottom[num_scales]->data_at(n, s, y, x) * f;
                weight_diff[bottom[num_scales]->offset(n, s, y, x)] +=
                    f * top.diff_at(n, c, y, x);
              } else if (!max) {
                g += f / num_scales;
              } else if (f > bottom[best]->data_at(n, c, y, x)) {
                best = s;
              }
            }
            if (max) {
              g = bottom[best]->data_at(n, c, y, x);
            }
            ASSERT_NEAR(top.data_at(n, c, y, x), g, 1e-5)
                << n << " " << c << " " << y << " " << x;
            const double dg = top.diff_at(n, c, y, x);
            for (int s = 0; s < num_scales; ++s) {
              const double want = att
                  ? bottom[num_scales]->data_at(n, s, y, x) * dg
                  : !max ? dg / num_scales
                         : (s == best ? dg : 0);
              ASSERT_NEAR(bottom[s]->diff_at(n, c, y, x), want, 1e-5)
                  << "scale " << s;
            }
          }
        }
      }
    }
    for (int i = 0; i < weight_diff.size(); ++i) {
      ASSERT_NEAR(bottom[num_scales]->cpu_diff()[i], weight_diff[i], 1e-4)
          << "weight " << i;
    }
    for (int b = 0; b < bottom.size(); ++b) {
      delete bottom[b];
    }
  }

  vector<Blob<Dtype>*> blob_scores_;
  Blob<Dtype>* const blob_weights_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(WeightedScaleSumLayerTest, TestDtypesAndDevices);

TYPED_TEST(WeightedScaleSumLayerTest, TestForwardAttention) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(true);
  LayerParameter layer_param;  // ATTENTION is the default
  WeightedScaleSumLayer<Dtype> layer(layer_param);
  layer.SetUp(bottom, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), this->blob_scores_[0]->shape());
  layer.Forward(bottom, this->blob_top_vec_);
  const Blob<Dtype>& top = *this->blob_top_;
  for (int n = 0; n < top.num(); ++n) {
    for (int c = 0; c < top.channels(); ++c) {
      for (int y = 0; y < top.height(); ++y) {
        for (int x = 0; x < top.width(); ++x) {
          double expected = 0;
          for (int s = 0; s < this->kScales; ++s) {
            expected += this->blob_weights_->data_at(n, s, y, x) *
                this->blob_scores_[s]->data_at(n, c, y, x);
          }
          EXPECT_NEAR(top.data_at(n, c, y, x), expected, 1e-5);
        }
      }
    }
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestForwardAttentionHandWorked) {
  typedef typename TypeParam::Dtype Dtype;
  // N = 1, C = 2, 1 x 2 pixels, S = 2: g = w1 f1 + w2 f2 per pixel, broadcast
  // over classes.
  Blob<Dtype> f1(1, 2, 1, 2), f2(1, 2, 1, 2), w(1, 2, 1, 2);
  const Dtype f1_data[4] = {1, 2, 3, 4};  // class 0: 1 2, class 1: 3 4
  const Dtype f2_data[4] = {10, 20, 30, 40};
  const Dtype w_data[4] = {
      0.25, 0.5, 0.75, 0.5};  // scale 1: .25 .5, scale 2: .75 .5
  caffe_copy(4, f1_data, f1.mutable_cpu_data());
  caffe_copy(4, f2_data, f2.mutable_cpu_data());
  caffe_copy(4, w_data, w.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&f1);
  bottom.push_back(&f2);
  bottom.push_back(&w);
  LayerParameter layer_param;
  WeightedScaleSumLayer<Dtype> layer(layer_param);
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  const Dtype expected[4] = {0.25 + 7.5, 1 + 10, 0.75 + 22.5, 2 + 20};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[i], expected[i], 1e-6)
        << "at " << i;
  }
  // Backward with dg = 1: df1 = w1, dw1 = sum_c f1_c.
  caffe_set(4, Dtype(1), this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(3, true), bottom);
  const Dtype df1[4] = {0.25, 0.5, 0.25, 0.5};
  const Dtype dw[4] = {1 + 3, 2 + 4, 10 + 30, 20 + 40};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f1.cpu_diff()[i], df1[i], 1e-6) << "at " << i;
    EXPECT_NEAR(w.cpu_diff()[i], dw[i], 1e-5) << "at " << i;
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestForwardAttentionOneScale) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom(1, this->blob_scores_[0]);
  Blob<Dtype> w(2, 1, 3, 4);
  this->FillGaussian(&w);
  bottom.push_back(&w);
  LayerParameter layer_param;
  WeightedScaleSumLayer<Dtype> layer(layer_param);
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 5; ++c) {
      for (int y = 0; y < 3; ++y) {
        for (int x = 0; x < 4; ++x) {
          EXPECT_NEAR(this->blob_top_->data_at(n, c, y, x),
              w.data_at(n, 0, y, x) * bottom[0]->data_at(n, c, y, x), 1e-6);
        }
      }
    }
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestForwardAverage) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  WeightedScaleSumLayer<Dtype> layer(
      this->Param(WeightedScaleSumParameter_MergeMethod_AVERAGE));
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  for (int i = 0; i < this->blob_top_->count(); ++i) {
    const double expected =
        (static_cast<double>(bottom[0]->cpu_data()[i]) +
            bottom[1]->cpu_data()[i] + bottom[2]->cpu_data()[i]) /
        3;
    EXPECT_NEAR(this->blob_top_->cpu_data()[i], expected, 1e-6);
  }
  caffe_set(
      this->blob_top_->count(), Dtype(3), this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(3, true), bottom);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < this->blob_top_->count(); ++i) {
      EXPECT_NEAR(bottom[s]->cpu_diff()[i], 1, 1e-6);
    }
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestForwardMax) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  // Ties: element 0 equal in all scales, element 1 equal in scales 1 and 2 (the
  // maximum).
  for (int s = 0; s < 3; ++s) {
    bottom[s]->mutable_cpu_data()[0] = 0.5;
    bottom[s]->mutable_cpu_data()[1] = s == 0 ? -1 : 2;
  }
  WeightedScaleSumLayer<Dtype> layer(
      this->Param(WeightedScaleSumParameter_MergeMethod_MAX));
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  const int count = this->blob_top_->count();
  vector<int> winner(count, 0);
  for (int i = 0; i < count; ++i) {
    for (int s = 1; s < 3; ++s) {
      if (bottom[s]->cpu_data()[i] > bottom[winner[i]]->cpu_data()[i]) {
        winner[i] = s;
      }
    }
    EXPECT_EQ(this->blob_top_->cpu_data()[i], bottom[winner[i]]->cpu_data()[i]);
  }
  EXPECT_EQ(winner[0], 0);
  EXPECT_EQ(winner[1], 1);
  // Backward routes dg to the first arg-max only.
  Blob<Dtype> top_diff(this->blob_top_->shape());
  this->FillGaussian(&top_diff);
  caffe_copy(count, top_diff.cpu_data(), this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(3, true), bottom);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < count; ++i) {
      EXPECT_EQ(
          bottom[s]->cpu_diff()[i], winner[i] == s ? top_diff.cpu_data()[i] : 0)
          << "scale " << s << " at " << i;
    }
  }
}

// MAX with a NaN: the output is NaN wherever any scale is NaN, whatever the
// scale order, and the gradient goes to the first NaN scale; +inf and -inf are
// ordinary values.
TYPED_TEST(WeightedScaleSumLayerTest, TestMaxNaNAndInf) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  const int kElements = 8;
  // Element e: the values of scales 0, 1, 2, the winning scale, and whether the
  // result is NaN.
  const Dtype values[kElements][3] = {
      {nan, 1, 2},
      {1, nan, 2},
      {1, 2, nan},
      {nan, nan, 2},
      {3, nan, nan},
      {inf, nan, 1},
      {-inf, inf, 1},
      {-inf, -inf, -inf},
  };
  const int winner[kElements] = {0, 1, 2, 0, 1, 1, 1, 0};
  vector<Blob<Dtype>*> bottom;
  for (int s = 0; s < 3; ++s) {
    bottom.push_back(new Blob<Dtype>(1, 1, 1, kElements));
    for (int e = 0; e < kElements; ++e) {
      bottom[s]->mutable_cpu_data()[e] = values[e][s];
    }
  }
  WeightedScaleSumLayer<Dtype> layer(
      this->Param(WeightedScaleSumParameter_MergeMethod_MAX));
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  for (int e = 0; e < kElements; ++e) {
    const Dtype want = values[e][winner[e]];
    const Dtype got = this->blob_top_->cpu_data()[e];
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "element " << e;
    } else {
      EXPECT_EQ(got, want) << "element " << e;
    }
  }
  for (int e = 0; e < kElements; ++e) {
    this->blob_top_->mutable_cpu_diff()[e] = e + 1;
  }
  layer.Backward(this->blob_top_vec_, vector<bool>(3, true), bottom);
  for (int s = 0; s < 3; ++s) {
    for (int e = 0; e < kElements; ++e) {
      EXPECT_EQ(bottom[s]->cpu_diff()[e], winner[e] == s ? e + 1 : 0)
          << "scale " << s << " element " << e;
    }
    delete bottom[s];
  }
}

// ATTENTION and AVERAGE compute the sums in IEEE arithmetic: a NaN or inf score
// reaches its output element (a zero weight times inf is NaN), and only that
// element.
TYPED_TEST(WeightedScaleSumLayerTest, TestAttentionAndAverageNonFinite) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  Blob<Dtype> f1(1, 2, 1, 3), f2(1, 2, 1, 3), w(1, 2, 1, 3);
  const Dtype f1_data[6] = {nan, 1, inf, 1, 1, 1};
  const Dtype f2_data[6] = {1, 2, 3, 4, -inf, 6};
  const Dtype w_data[6] = {
      0.5, 0.5, 0, 0.5, 0.5, 1};  // scale 1: .5 .5 0, scale 2: .5 .5 1
  caffe_copy(6, f1_data, f1.mutable_cpu_data());
  caffe_copy(6, f2_data, f2.mutable_cpu_data());
  caffe_copy(6, w_data, w.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&f1);
  bottom.push_back(&f2);
  bottom.push_back(&w);
  // Class 0: NaN, 1.5, 0 * inf + 1 * 3 = NaN; class 1: 2.5, -inf, 6.
  const Dtype attention[6] = {nan, 1.5, nan, 2.5, -inf, 6};
  // (f1 + f2) / 2: NaN, 1.5, inf, 2.5, -inf, 3.5.
  const Dtype average[6] = {nan, 1.5, inf, 2.5, -inf, 3.5};
  for (int m = 0; m < 2; ++m) {
    const bool att = m == 0;
    vector<Blob<Dtype>*> b = bottom;
    if (!att) {
      b.pop_back();
    }
    WeightedScaleSumLayer<Dtype> layer(
        this->Param(att ? WeightedScaleSumParameter_MergeMethod_ATTENTION
                        : WeightedScaleSumParameter_MergeMethod_AVERAGE));
    layer.SetUp(b, this->blob_top_vec_);
    layer.Forward(b, this->blob_top_vec_);
    for (int i = 0; i < 6; ++i) {
      const Dtype want = att ? attention[i] : average[i];
      const Dtype got = this->blob_top_->cpu_data()[i];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got))
            << (att ? "attention" : "average") << " at " << i;
      } else {
        EXPECT_EQ(got, want) << (att ? "attention" : "average") << " at " << i;
      }
    }
  }
}

// The CPU loops take up to 4 scales per pass and the ATTENTION backward blocks
// of 4096 pixels, a CUDA launch up to 8 scales: sizes around the block
// boundary, 1 to 12 scales, every mode, forward and backward against
// references computed here in double.
TYPED_TEST(WeightedScaleSumLayerTest, TestBlockBoundariesAndManyScales) {
  typedef typename TypeParam::Dtype Dtype;
  const int shapes[][4] = {{1, 2, 1, 4095}, {2, 2, 1, 4096}, {1, 3, 1, 4097},
      {1, 1, 91, 91}, {2, 3, 2, 3}};
  const int num_shapes = sizeof(shapes) / sizeof(shapes[0]);
  for (int k = 0; k < num_shapes; ++k) {
    for (int num_scales = 1; num_scales <= 12; ++num_scales) {
      if (k < 4 && num_scales != 1 && num_scales != 5 && num_scales != 8 &&
          num_scales != 9 && num_scales != 12) {
        continue;  // the large shapes with 1, 5, 8, 9 and 12 scales; the
                   // small one with all
      }
      for (int m = 0; m < 3; ++m) {
        const WeightedScaleSumParameter_MergeMethod merge =
            static_cast<WeightedScaleSumParameter_MergeMethod>(m);
        SCOPED_TRACE(testing::Message()
            << "shape " << k << " S " << num_scales << " merge " << m);
        this->CheckMerge(shapes[k], num_scales, merge);
      }
    }
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestBackwardPropagateDownSome) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(true);
  LayerParameter layer_param;
  WeightedScaleSumLayer<Dtype> layer(layer_param);
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  caffe_set(
      this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  for (int b = 0; b < bottom.size(); ++b) {
    caffe_set(bottom[b]->count(), Dtype(42), bottom[b]->mutable_cpu_diff());
  }
  vector<bool> propagate_down(4, false);
  propagate_down[3] = true;  // the weights only
  layer.Backward(this->blob_top_vec_, propagate_down, bottom);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < bottom[s]->count(); ++i) {
      EXPECT_EQ(bottom[s]->cpu_diff()[i], 42);
    }
  }
  for (int n = 0; n < 2; ++n) {
    for (int s = 0; s < 3; ++s) {
      for (int y = 0; y < 3; ++y) {
        for (int x = 0; x < 4; ++x) {
          double expected = 0;
          for (int c = 0; c < 5; ++c) {
            expected += bottom[s]->data_at(n, c, y, x);
          }
          EXPECT_NEAR(this->blob_weights_->diff_at(n, s, y, x), expected, 1e-5);
        }
      }
    }
  }
}

TYPED_TEST(WeightedScaleSumLayerTest, TestGradientAttention) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(true);
  LayerParameter layer_param;
  WeightedScaleSumLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_);
}

TYPED_TEST(WeightedScaleSumLayerTest, TestGradientAverage) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  WeightedScaleSumLayer<Dtype> layer(
      this->Param(WeightedScaleSumParameter_MergeMethod_AVERAGE));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_);
}

TYPED_TEST(WeightedScaleSumLayerTest, TestGradientMax) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillSeparated();
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  WeightedScaleSumLayer<Dtype> layer(
      this->Param(WeightedScaleSumParameter_MergeMethod_MAX));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_);
}

TYPED_TEST(WeightedScaleSumLayerTest, TestGradientSingleScale) {
  typedef typename TypeParam::Dtype Dtype;
  for (int m = 1; m <= 2; ++m) {  // AVERAGE and MAX of one map are the identity
    vector<Blob<Dtype>*> bottom(1, this->blob_scores_[0]);
    WeightedScaleSumLayer<Dtype> layer(
        this->Param(static_cast<WeightedScaleSumParameter_MergeMethod>(m)));
    GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradientEltwise(&layer, bottom, this->blob_top_vec_);
  }
}

// -----------------------------------------------------------------------------
// The kernels' grid-stride loop (ATS_KERNEL_LOOP, every kernel of the three
// layers) on the grid AtsBlocks gives, run here on the host for chosen threads:
// blockIdx, blockDim, gridDim and threadIdx are this test's variables. Every
// index a thread visits lies in [0, n), and the threads' indices are the
// elements of [0, n) once each. (Caffe's int loop, on CAFFE_GET_BLOCKS' grid,
// gave negative indices for every n above 2^30: a thread's second index
// passed INT_MAX and wrapped.)
// -----------------------------------------------------------------------------

struct HostDim3 {
  unsigned int x;
};

// The indices thread `thread` of block `block` visits for n elements, on a
// grid of `blocks` blocks of `threads` threads.
static vector<int64_t> KernelLoopIndices(
    int n, int blocks, int threads, int block, int thread) {
  const HostDim3 blockIdx = {static_cast<unsigned int>(block)};
  const HostDim3 threadIdx = {static_cast<unsigned int>(thread)};
  const HostDim3 blockDim = {static_cast<unsigned int>(threads)};
  const HostDim3 gridDim = {static_cast<unsigned int>(blocks)};
  vector<int64_t> visited;
  ATS_KERNEL_LOOP(index, n) {
    visited.push_back(static_cast<int>(index));  // as the kernels take it
    if (visited.size() > (1u << 22)) {
      break;  // more than any thread of these grids may visit
    }
  }
  return visited;
}

TEST(AtsKernelLoopTest, TestIndicesAboveTwoToThe30) {
  const int counts[] = {1 << 30, (1 << 30) + 1, 3 << 29, 2000000000,
      INT_MAX - 511, INT_MAX - 1, INT_MAX};
  const int thread_counts[] = {256, 512};  // the layers' blocks
  for (int c = 0; c < sizeof(counts) / sizeof(counts[0]); ++c) {
    for (int t = 0; t < 2; ++t) {
      const int n = counts[c];
      const int threads = thread_counts[t];
      // The grid covers n: one index a thread.
      const int blocks = attention_scale::AtsBlocks(n, threads);
      SCOPED_TRACE(testing::Message() << "n " << n << ", " << blocks
                                      << " blocks of " << threads);
      ASSERT_EQ(blocks, (static_cast<int64_t>(n) + threads - 1) / threads);
      const int sample_blocks[] = {0, 1, blocks / 2, blocks - 2, blocks - 1};
      for (int b = 0; b < 5; ++b) {
        for (int thread = 0; thread < threads; ++thread) {
          const int64_t first =
              static_cast<int64_t>(sample_blocks[b]) * threads + thread;
          const vector<int64_t> visited = KernelLoopIndices(
              n, blocks, threads, sample_blocks[b], thread);
          ASSERT_EQ(static_cast<int64_t>(visited.size()), first < n ? 1 : 0)
              << "thread " << first;
          if (first < n) {
            ASSERT_EQ(visited[0], first);
          }
        }
      }
      // A grid that does not cover n: each thread strides over it, from its
      // first index by the grid's thread count, to the last below n.
      const int small_grid = 4099;
      const int64_t stride = static_cast<int64_t>(small_grid) * threads;
      const int sample_threads[] = {0, 1, threads - 1};
      const int sample_grid_blocks[] = {0, small_grid - 1};
      for (int b = 0; b < 2; ++b) {
        for (int k = 0; k < 3; ++k) {
          const int64_t first = static_cast<int64_t>(sample_grid_blocks[b]) *
              threads + sample_threads[k];
          const vector<int64_t> visited = KernelLoopIndices(n, small_grid,
              threads, sample_grid_blocks[b], sample_threads[k]);
          ASSERT_EQ(static_cast<int64_t>(visited.size()),
              (n - first + stride - 1) / stride);
          for (int64_t j = 0; j < visited.size(); ++j) {
            ASSERT_EQ(visited[j], first + j * stride) << "thread " << first;
          }
        }
      }
    }
  }
  // The grid holds at most 2^31 threads, whatever the count.
  EXPECT_EQ(attention_scale::AtsBlocks(INT_MAX, 512), 1 << 22);
  EXPECT_EQ(attention_scale::AtsBlocks(INT_MAX, 256), 1 << 23);
  EXPECT_EQ(attention_scale::AtsBlocks(static_cast<int64_t>(1) << 40, 512),
      1 << 22);
  EXPECT_EQ(attention_scale::AtsBlocks(1, 512), 1);
}

// -----------------------------------------------------------------------------
// Bad shapes stop with a message naming the layer, the bottom and the shapes.
// -----------------------------------------------------------------------------

class WeightedScaleSumLayerDeathTest : public CPUDeviceTest<float> {
 protected:
  WeightedScaleSumLayerDeathTest() : blob_top_(new Blob<float>()) {
    ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
    for (int s = 0; s < 3; ++s) {
      blob_bottom_vec_.push_back(new Blob<float>(10, 21, 41, 41));
    }
    blob_bottom_vec_.push_back(new Blob<float>(10, 3, 41, 41));
    blob_top_vec_.push_back(blob_top_);
    layer_param_.set_name("merge");
    layer_param_.add_bottom("fc8_s1");
    layer_param_.add_bottom("fc8_s2");
    layer_param_.add_bottom("fc8_s3");
    layer_param_.add_bottom("attn_w");
    layer_param_.add_top("fc8_merged");
  }
  virtual ~WeightedScaleSumLayerDeathTest() {
    for (int b = 0; b < blob_bottom_vec_.size(); ++b) {
      delete blob_bottom_vec_[b];
    }
    delete blob_top_;
  }
  void SetUpLayer(const vector<Blob<float>*>& bottom) {
    WeightedScaleSumLayer<float> layer(layer_param_);
    layer.SetUp(bottom, blob_top_vec_);
  }
  void SetMerge(WeightedScaleSumParameter_MergeMethod merge) {
    layer_param_.mutable_weighted_scale_sum_param()->set_merge(merge);
  }

  Blob<float>* const blob_top_;
  vector<Blob<float>*> blob_bottom_vec_;
  vector<Blob<float>*> blob_top_vec_;
  LayerParameter layer_param_;
};

TEST_F(WeightedScaleSumLayerDeathTest, TestScoreMapMismatch) {
  blob_bottom_vec_[2]->Reshape(10, 21, 41, 40);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': bottom\\[2\\] "
      "'fc8_s3' has shape 10 21 41 40 \\(344400\\), expected 10 21 41 41 "
      "\\(353010\\), "
      "the shape of bottom\\[0\\] 'fc8_s1'");
  // The same in the other modes, where every bottom is a score map.
  SetMerge(WeightedScaleSumParameter_MergeMethod_MAX);
  vector<Blob<float>*> scores(
      blob_bottom_vec_.begin(), blob_bottom_vec_.begin() + 3);
  EXPECT_DEATH(SetUpLayer(scores),
      "WeightedScaleSum layer 'merge': bottom\\[2\\] "
      "'fc8_s3' has shape 10 21 41 40 \\(344400\\), expected 10 21 41 41 "
      "\\(353010\\)");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestWeightsChannels) {
  blob_bottom_vec_[3]->Reshape(10, 2, 41, 41);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': bottom\\[3\\] "
      "'attn_w' \\(the weights\\) has shape 10 2 41 41 \\(33620\\), expected "
      "10 3 41 41 "
      "\\(50430\\): N x S x H x W for S = 3 score maps shaped like "
      "bottom\\[0\\] "
      "'fc8_s1' \\(10 21 41 41 \\(353010\\)\\)");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestWeightsSpatial) {
  blob_bottom_vec_[3]->Reshape(10, 3, 321, 321);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': bottom\\[3\\] "
      "'attn_w' \\(the weights\\) has shape 10 3 321 321 \\(3091230\\), "
      "expected "
      "10 3 41 41 \\(50430\\)");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestAttentionNeedsWeights) {
  vector<Blob<float>*> bottom(1, blob_bottom_vec_[0]);
  EXPECT_DEATH(SetUpLayer(bottom),
      "WeightedScaleSum layer 'merge': merge ATTENTION takes the "
      "S score maps and then the N x S x H x W weights as the last bottom "
      "\\(at least "
      "2 bottoms\\), got 1 bottom");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestNoBottoms) {
  SetMerge(WeightedScaleSumParameter_MergeMethod_AVERAGE);
  EXPECT_DEATH(SetUpLayer(vector<Blob<float>*>()),
      "WeightedScaleSum layer 'merge': takes at "
      "least one score map, got no bottom");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestNot4D) {
  blob_bottom_vec_[1]->Reshape(vector<int>(2, 5));
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': bottom\\[1\\] "
      "'fc8_s2' has shape 5 5 \\(25\\), expected 4 axes");
}

TEST_F(WeightedScaleSumLayerDeathTest, TestEmptyBottoms) {
  blob_bottom_vec_[1]->Reshape(10, 21, 0, 41);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': bottom\\[1\\] "
      "'fc8_s2' has shape 10 21 0 41 \\(0\\), expected every axis >= 1 \\(N x "
      "C x H x "
      "W; empty blobs are not supported\\)");
  SetMerge(WeightedScaleSumParameter_MergeMethod_AVERAGE);
  vector<Blob<float>*> one(1, blob_bottom_vec_[0]);
  const int shapes[4][4] = {
      {0, 21, 41, 41}, {10, 0, 41, 41}, {10, 21, 0, 41}, {10, 21, 41, 0}};
  for (int k = 0; k < 4; ++k) {
    one[0]->Reshape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
    EXPECT_DEATH(SetUpLayer(one),
        "WeightedScaleSum layer 'merge': bottom\\[0\\] 'fc8_s1' has "
        "shape [0-9 ]+ \\(0\\), expected every axis >= 1");
  }
}

TEST_F(WeightedScaleSumLayerDeathTest, TestInPlace) {
  SetMerge(WeightedScaleSumParameter_MergeMethod_MAX);
  blob_top_vec_[0] = blob_bottom_vec_[1];
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "WeightedScaleSum layer 'merge': cannot run in "
      "place \\(top\\[0\\] is bottom\\[1\\] 'fc8_s2'\\)");
}

}  // namespace caffe
