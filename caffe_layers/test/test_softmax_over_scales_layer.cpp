// Attention to Scale for Caffe: tests of the SoftmaxOverScales layer (forward,
// gradients, errors).
#include <string.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/softmax_over_scales_layer.hpp"
#include "caffe/util/softmax_over_scales.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class SoftmaxOverScalesLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SoftmaxOverScalesLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 3, 4, 5)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillGaussian(blob_bottom_);
    for (int s = 0; s < 3; ++s) {
      blob_scales_.push_back(new Blob<Dtype>(2, 1, 4, 5));
      FillGaussian(blob_scales_[s]);
    }
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~SoftmaxOverScalesLayerTest() {
    delete blob_bottom_;
    delete blob_top_;
    for (int s = 0; s < blob_scales_.size(); ++s) {
      delete blob_scales_[s];
    }
  }

  void FillGaussian(Blob<Dtype>* blob) {
    FillerParameter filler_param;
    filler_param.set_std(2.0);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob);
  }

  // Input h(n, s, y, x) of either bottom form.
  double Input(const vector<Blob<Dtype>*>& bottom, int n, int s, int y, int x) {
    return bottom.size() == 1 ? bottom[0]->data_at(n, s, y, x)
                              : bottom[s]->data_at(n, 0, y, x);
  }

  // Compares the top with exp(h_s) / sum_t exp(h_t), computed here in double.
  void CheckForward(const vector<Blob<Dtype>*>& bottom) {
    LayerParameter layer_param;
    SoftmaxOverScalesLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom, blob_top_vec_);
    layer.Forward(bottom, blob_top_vec_);
    const int num_scales =
        bottom.size() == 1 ? bottom[0]->channels() : bottom.size();
    EXPECT_EQ(blob_top_->num(), bottom[0]->num());
    EXPECT_EQ(blob_top_->channels(), num_scales);
    EXPECT_EQ(blob_top_->height(), bottom[0]->height());
    EXPECT_EQ(blob_top_->width(), bottom[0]->width());
    for (int n = 0; n < blob_top_->num(); ++n) {
      for (int y = 0; y < blob_top_->height(); ++y) {
        for (int x = 0; x < blob_top_->width(); ++x) {
          double sum = 0;
          for (int s = 0; s < num_scales; ++s) {
            sum += std::exp(Input(bottom, n, s, y, x));
          }
          for (int s = 0; s < num_scales; ++s) {
            EXPECT_NEAR(blob_top_->data_at(n, s, y, x),
                std::exp(Input(bottom, n, s, y, x)) / sum, 1e-5);
          }
        }
      }
    }
  }

  // Runs backward with a random top diff and compares with y_s (dy_s - sum_t
  // y_t dy_t), computed here in double from the top.
  void CheckBackward(const vector<Blob<Dtype>*>& bottom) {
    LayerParameter layer_param;
    SoftmaxOverScalesLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom, blob_top_vec_);
    layer.Forward(bottom, blob_top_vec_);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    Blob<Dtype> top_diff(blob_top_->shape());
    filler.Fill(&top_diff);
    caffe_copy(
        top_diff.count(), top_diff.cpu_data(), blob_top_->mutable_cpu_diff());
    layer.Backward(blob_top_vec_, vector<bool>(bottom.size(), true), bottom);
    const Blob<Dtype>& top = *blob_top_;
    const int num_scales = top.channels();
    for (int n = 0; n < top.num(); ++n) {
      for (int y = 0; y < top.height(); ++y) {
        for (int x = 0; x < top.width(); ++x) {
          double dot = 0;
          for (int t = 0; t < num_scales; ++t) {
            dot += top.data_at(n, t, y, x) * top.diff_at(n, t, y, x);
          }
          for (int s = 0; s < num_scales; ++s) {
            const double expected =
                top.data_at(n, s, y, x) * (top.diff_at(n, s, y, x) - dot);
            const Dtype actual = bottom.size() == 1
                ? bottom[0]->diff_at(n, s, y, x)
                : bottom[s]->diff_at(n, 0, y, x);
            EXPECT_NEAR(actual, expected, 1e-5)
                << n << " " << s << " " << y << " " << x;
          }
        }
      }
    }
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_scales_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(SoftmaxOverScalesLayerTest, TestDtypesAndDevices);

TYPED_TEST(SoftmaxOverScalesLayerTest, TestForwardOneBottom) {
  this->CheckForward(
      vector<Blob<typename TypeParam::Dtype>*>(1, this->blob_bottom_));
}

TYPED_TEST(SoftmaxOverScalesLayerTest, TestForwardScaleBottoms) {
  this->CheckForward(this->blob_scales_);
  vector<Blob<typename TypeParam::Dtype>*> two(
      this->blob_scales_.begin(), this->blob_scales_.begin() + 2);
  this->CheckForward(two);
}

TYPED_TEST(SoftmaxOverScalesLayerTest, TestForwardSingleScale) {
  typedef typename TypeParam::Dtype Dtype;
  // S = 1: every weight is 1.
  vector<Blob<Dtype>*> bottom(1, this->blob_scales_[0]);
  this->CheckForward(bottom);
  for (int i = 0; i < this->blob_top_->count(); ++i) {
    EXPECT_EQ(this->blob_top_->cpu_data()[i], 1);
  }
}

// Huge and infinite scores: the maximum is subtracted, so nothing overflows.
TYPED_TEST(SoftmaxOverScalesLayerTest, TestForwardStable) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  const Dtype big = 1e30;
  const int kPixels = 6;
  const Dtype in[kPixels][3] = {
      {big, -big, 0},
      {-inf, 0, 0},
      {big, big, -inf},
      {-big, -big, -big},
      {-inf, -inf, 5},
      {-big, 1, -inf},
  };
  const Dtype expected[kPixels][3] = {
      {1, 0, 0},
      {0, 0.5, 0.5},
      {0.5, 0.5, 0},
      {1.0 / 3, 1.0 / 3, 1.0 / 3},
      {0, 0, 1},
      {0, 1, 0},
  };
  this->blob_bottom_->Reshape(1, 3, 2, 3);
  for (int p = 0; p < kPixels; ++p) {
    for (int s = 0; s < 3; ++s) {
      this->blob_bottom_->mutable_cpu_data()[s * kPixels + p] = in[p][s];
    }
  }
  vector<Blob<Dtype>*> bottom(1, this->blob_bottom_);
  LayerParameter layer_param;
  SoftmaxOverScalesLayer<Dtype> layer(layer_param);
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  for (int p = 0; p < kPixels; ++p) {
    for (int s = 0; s < 3; ++s) {
      const Dtype w = this->blob_top_->cpu_data()[s * kPixels + p];
      EXPECT_TRUE(std::isfinite(w)) << "pixel " << p << " scale " << s;
      EXPECT_NEAR(w, expected[p][s], 1e-6) << "pixel " << p << " scale " << s;
    }
  }
  // The backward pass stays finite as well.
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  Blob<Dtype> top_diff(this->blob_top_->shape());
  filler.Fill(&top_diff);
  caffe_copy(top_diff.count(), top_diff.cpu_data(),
      this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(1, true), bottom);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    EXPECT_TRUE(std::isfinite(this->blob_bottom_->cpu_diff()[i])) << "at " << i;
  }
}

// +inf logits: the limit of the softmax, the +inf scales sharing the weight;
// all -inf: the weights of equal logits, 1 / S; a NaN logit: NaN weights for
// its pixel only.
TYPED_TEST(SoftmaxOverScalesLayerTest, TestForwardInfiniteAndNaN) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype third = Dtype(1) / 3;
  const int kPixels = 9;
  const Dtype in[kPixels][3] = {
      {inf, 0, inf},
      {inf, -inf, 5},
      {-inf, -inf, -inf},
      {inf, inf, inf},
      {1e30, inf, -inf},
      {nan, 0, 1},
      {0, nan, 1},
      {-inf, -inf, 2},
      {0, 0, 0},
  };
  const Dtype expected[kPixels][3] = {
      {0.5, 0, 0.5},
      {1, 0, 0},
      {third, third, third},
      {third, third, third},
      {0, 1, 0},
      {nan, nan, nan},
      {nan, nan, nan},
      {0, 0, 1},
      {third, third, third},
  };
  this->blob_bottom_->Reshape(1, 3, 3, 3);
  for (int p = 0; p < kPixels; ++p) {
    for (int s = 0; s < 3; ++s) {
      this->blob_bottom_->mutable_cpu_data()[s * kPixels + p] = in[p][s];
    }
  }
  // Both bottom forms.
  vector<Blob<Dtype>*> split;
  for (int s = 0; s < 3; ++s) {
    split.push_back(new Blob<Dtype>(1, 1, 3, 3));
    caffe_copy(kPixels, this->blob_bottom_->cpu_data() + s * kPixels,
        split[s]->mutable_cpu_data());
  }
  for (int form = 0; form < 2; ++form) {
    vector<Blob<Dtype>*> bottom =
        form == 0 ? vector<Blob<Dtype>*>(1, this->blob_bottom_) : split;
    LayerParameter layer_param;
    SoftmaxOverScalesLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom, this->blob_top_vec_);
    layer.Forward(bottom, this->blob_top_vec_);
    for (int p = 0; p < kPixels; ++p) {
      for (int s = 0; s < 3; ++s) {
        const Dtype w = this->blob_top_->cpu_data()[s * kPixels + p];
        if (std::isnan(expected[p][s])) {
          EXPECT_TRUE(std::isnan(w))
              << "form " << form << " pixel " << p << " scale " << s;
        } else {
          EXPECT_NEAR(w, expected[p][s], 1e-6)
              << "form " << form << " pixel " << p << " scale " << s;
        }
      }
    }
    // The backward of every pixel without a NaN stays finite.
    caffe_set(this->blob_top_->count(), Dtype(0.5),
        this->blob_top_->mutable_cpu_diff());
    this->blob_top_->mutable_cpu_diff()[0] = 2;
    layer.Backward(
        this->blob_top_vec_, vector<bool>(bottom.size(), true), bottom);
    for (int p = 0; p < kPixels; ++p) {
      for (int s = 0; s < 3; ++s) {
        const Dtype d = form == 0 ? bottom[0]->cpu_diff()[s * kPixels + p]
                                  : bottom[s]->cpu_diff()[p];
        EXPECT_EQ(std::isnan(d), std::isnan(expected[p][s]))
            << "pixel " << p << " scale " << s;
        EXPECT_FALSE(std::isinf(d)) << "pixel " << p << " scale " << s;
      }
    }
  }
  for (int s = 0; s < 3; ++s) {
    delete split[s];
  }
}

// The CPU loops take the pixels of a sample in blocks of 512: sizes around the
// block boundary, with up to 12 scales, against the double reference
// (forward) and the formula (backward).
TYPED_TEST(SoftmaxOverScalesLayerTest, TestBlockBoundariesAndManyScales) {
  typedef typename TypeParam::Dtype Dtype;
  const int shapes[][4] = {
      {2, 3, 1, 511},
      {2, 3, 1, 512},
      {2, 3, 1, 513},
      {1, 8, 1, 1025},
      {3, 5, 23, 23},
      {1, 7, 32, 32},
      {2, 6, 1, 1},
      {1, 4, 3, 171},
      {2, 9, 5, 7},
      {1, 12, 1, 515},
  };
  for (int k = 0; k < sizeof(shapes) / sizeof(shapes[0]); ++k) {
    SCOPED_TRACE(k);
    const int* sh = shapes[k];
    for (int form = 0; form < 2; ++form) {
      vector<Blob<Dtype>*> bottom;
      if (form == 0) {
        this->blob_bottom_->Reshape(sh[0], sh[1], sh[2], sh[3]);
        this->FillGaussian(this->blob_bottom_);
        bottom.push_back(this->blob_bottom_);
      } else {
        for (int s = 0; s < sh[1]; ++s) {
          bottom.push_back(new Blob<Dtype>(sh[0], 1, sh[2], sh[3]));
          this->FillGaussian(bottom[s]);
        }
      }
      this->CheckForward(bottom);
      this->CheckBackward(bottom);
      if (form == 1) {
        for (int s = 0; s < bottom.size(); ++s) {
          delete bottom[s];
        }
      }
    }
  }
}

// dx_s = y_s (dy_s - sum_t y_t dy_t), checked against a direct computation, for
// both forms.
TYPED_TEST(SoftmaxOverScalesLayerTest, TestBackwardFormula) {
  typedef typename TypeParam::Dtype Dtype;
  for (int form = 0; form < 2; ++form) {
    vector<Blob<Dtype>*> bottom = form == 0
        ? vector<Blob<Dtype>*>(1, this->blob_bottom_)
        : this->blob_scales_;
    LayerParameter layer_param;
    SoftmaxOverScalesLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom, this->blob_top_vec_);
    layer.Forward(bottom, this->blob_top_vec_);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    Blob<Dtype> top_diff(this->blob_top_->shape());
    filler.Fill(&top_diff);
    caffe_copy(top_diff.count(), top_diff.cpu_data(),
        this->blob_top_->mutable_cpu_diff());
    layer.Backward(
        this->blob_top_vec_, vector<bool>(bottom.size(), true), bottom);
    const Blob<Dtype>& top = *this->blob_top_;
    for (int n = 0; n < top.num(); ++n) {
      for (int y = 0; y < top.height(); ++y) {
        for (int x = 0; x < top.width(); ++x) {
          double dot = 0;
          for (int t = 0; t < 3; ++t) {
            dot += top.data_at(n, t, y, x) * top.diff_at(n, t, y, x);
          }
          for (int s = 0; s < 3; ++s) {
            const double expected =
                top.data_at(n, s, y, x) * (top.diff_at(n, s, y, x) - dot);
            const Dtype actual = form == 0 ? bottom[0]->diff_at(n, s, y, x)
                                           : bottom[s]->diff_at(n, 0, y, x);
            EXPECT_NEAR(actual, expected, 1e-5);
          }
        }
      }
    }
  }
}

TYPED_TEST(SoftmaxOverScalesLayerTest, TestBackwardPropagateDownSome) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SoftmaxOverScalesLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_scales_, this->blob_top_vec_);
  layer.Forward(this->blob_scales_, this->blob_top_vec_);
  caffe_set(
      this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  for (int s = 0; s < 3; ++s) {
    caffe_set(this->blob_scales_[s]->count(), Dtype(42),
        this->blob_scales_[s]->mutable_cpu_diff());
  }
  vector<bool> propagate_down(3, false);
  propagate_down[1] = true;
  layer.Backward(this->blob_top_vec_, propagate_down, this->blob_scales_);
  for (int i = 0; i < this->blob_scales_[0]->count(); ++i) {
    EXPECT_EQ(this->blob_scales_[0]->cpu_diff()[i], 42);
    EXPECT_NEAR(this->blob_scales_[1]->cpu_diff()[i], 0,
        1e-6);  // softmax of a constant diff
    EXPECT_EQ(this->blob_scales_[2]->cpu_diff()[i], 42);
  }
}

TYPED_TEST(SoftmaxOverScalesLayerTest, TestGradientOneBottom) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SoftmaxOverScalesLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  vector<Blob<Dtype>*> bottom(1, this->blob_bottom_);
  checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_);
}

TYPED_TEST(SoftmaxOverScalesLayerTest, TestGradientScaleBottoms) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SoftmaxOverScalesLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(
      &layer, this->blob_scales_, this->blob_top_vec_);
}

// -----------------------------------------------------------------------------
// The CUDA kernels' per-pixel functions, run here on the host, against the CPU
// loops: the same bits, so the GPU code is checked on every machine, not only
// where a GPU runs the tests above.
// -----------------------------------------------------------------------------

template <typename Dtype>
class SoftmaxOverScalesKernelFunctionsTest : public CPUDeviceTest<Dtype> {};

TYPED_TEST_CASE(SoftmaxOverScalesKernelFunctionsTest, TestDtypes);

// Bitwise equal, or both NaN.
template <typename Dtype>
static bool SameBits(Dtype a, Dtype b) {
  return memcmp(&a, &b, sizeof(a)) == 0 ||  // NOLINT(caffe/alt_fn)
      (std::isnan(a) && std::isnan(b));
}

TYPED_TEST(SoftmaxOverScalesKernelFunctionsTest, TestMatchCpuLoops) {
  typedef TypeParam Dtype;
  // 600 pixels: more than one CPU block (512); some logits infinite or NaN.
  const int num = 2, num_scales = 4, height = 20, width = 30;
  const int inner = height * width;
  Blob<Dtype> logits(num, num_scales, height, width);
  FillerParameter filler_param;
  filler_param.set_std(3.0);
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(&logits);
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  Dtype* h = logits.mutable_cpu_data();
  h[logits.offset(0, 1, 0, 3)] = inf;
  h[logits.offset(0, 2, 0, 3)] = inf;
  h[logits.offset(1, 0, 5, 7)] = -inf;
  h[logits.offset(1, 3, 9, 9)] = std::numeric_limits<Dtype>::quiet_NaN();
  for (int s = 0; s < num_scales; ++s) {
    h[logits.offset(1, s, 19, 29)] = -inf;
  }
  vector<Blob<Dtype>*> scales;
  for (int s = 0; s < num_scales; ++s) {
    scales.push_back(new Blob<Dtype>(num, 1, height, width));
    for (int n = 0; n < num; ++n) {
      caffe_copy(inner, logits.cpu_data() + logits.offset(n, s),
          scales[s]->mutable_cpu_data() + scales[s]->offset(n));
    }
  }
  Blob<Dtype> top_diff(num, num_scales, height, width);
  filler.Fill(&top_diff);
  const int sample = num_scales * inner;
  for (int form = 0; form < 2; ++form) {
    SCOPED_TRACE(form == 0 ? "one bottom" : "a bottom per scale");
    vector<Blob<Dtype>*> bottom = (form == 0)
        ? vector<Blob<Dtype>*>(1, &logits) : scales;
    Blob<Dtype> top;
    vector<Blob<Dtype>*> top_vec(1, &top);
    LayerParameter layer_param;
    SoftmaxOverScalesLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom, top_vec);
    layer.Forward(bottom, top_vec);
    caffe_copy(top_diff.count(), top_diff.cpu_data(), top.mutable_cpu_diff());
    layer.Backward(top_vec, vector<bool>(bottom.size(), true), bottom);
    // The kernels' functions on the logits as the GPU forward sees them (the
    // one bottom, or the scales gathered into the top: the same values).
    vector<Dtype> weights(top.count()), in_registers(top.count());
    vector<Dtype> diffs(top.count());
    for (int n = 0; n < num; ++n) {
      for (int i = 0; i < inner; ++i) {
        attention_scale::softmax_over_scales_pixel(i,
            logits.cpu_data() + n * sample, &weights[n * sample], num_scales,
            inner);
        attention_scale::softmax_over_scales_pixel_registers<8>(i,
            logits.cpu_data() + n * sample, &in_registers[n * sample],
            num_scales, inner);
        attention_scale::softmax_over_scales_backward_pixel(i,
            top.cpu_data() + n * sample, top.cpu_diff() + n * sample,
            &diffs[n * sample], num_scales, inner);
      }
    }
    int mismatches = 0;
    for (int n = 0; n < num; ++n) {
      for (int s = 0; s < num_scales; ++s) {
        for (int i = 0; i < inner; ++i) {
          const int at = n * sample + s * inner + i;
          mismatches += !SameBits(weights[at], top.cpu_data()[at]);
          mismatches += !SameBits(in_registers[at], top.cpu_data()[at]);
          const Dtype cpu_diff = (form == 0)
              ? logits.cpu_diff()[at]
              : scales[s]->cpu_diff()[n * inner + i];
          mismatches += !SameBits(diffs[at], cpu_diff);
          if (form == 1) {  // the per-scale kernel's function
            mismatches += !SameBits(
                attention_scale::softmax_over_scales_diff_at(i, s,
                    top.cpu_data() + n * sample, top.cpu_diff() + n * sample,
                    num_scales, inner),
                cpu_diff);
          }
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
  for (int s = 0; s < num_scales; ++s) {
    delete scales[s];
  }
}

// -----------------------------------------------------------------------------
// ats_exp in float (a polynomial, so that loops vectorize) against exp in
// double.
// -----------------------------------------------------------------------------

static int FloatUlps(float a, float b) {
  int ia, ib;
  memcpy(&ia, &a, sizeof(ia));  // NOLINT(caffe/alt_fn)
  memcpy(&ib, &b, sizeof(ib));  // NOLINT(caffe/alt_fn)
  return std::abs(ia - ib);
}

// The float at position k of all floats in order (k = 0: +0; k < 0: negative
// floats).
static float OrderedFloat(int k) {
  const unsigned int bits = (k >= 0)
      ? static_cast<unsigned int>(k)
      : 0x80000000u | static_cast<unsigned int>(-k);
  float x;
  memcpy(&x, &bits, sizeof(x));  // NOLINT(caffe/alt_fn)
  return x;
}

TEST(AtsExpTest, TestFloatWithinOneUlp) {
  // Every 1009th float from -110 to 95 (overflow, underflow and subnormal
  // results included).
  int checked = 0;
  int begin;
  int end;
  const float low = -110.0f, high = 95.0f;
  memcpy(&begin, &low, sizeof(begin));  // NOLINT(caffe/alt_fn)
  memcpy(&end, &high, sizeof(end));     // NOLINT(caffe/alt_fn)
  begin = -(begin & 0x7fffffff);
  for (int k = begin; k < end; k += 1009, ++checked) {
    const float x = OrderedFloat(k);
    const float expected = static_cast<float>(std::exp(static_cast<double>(x)));
    const float got = attention_scale::ats_exp(x);
    if (expected == 0 || std::isinf(expected)) {
      ASSERT_EQ(got, expected) << "at " << x;
    } else {
      ASSERT_LE(FloatUlps(got, expected), 1)
          << "at " << x << ": " << got << " vs " << expected;
    }
  }
  EXPECT_GT(checked, 2000000);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(attention_scale::ats_exp(0.0f), 1.0f);
  EXPECT_EQ(attention_scale::ats_exp(-0.0f), 1.0f);
  EXPECT_EQ(attention_scale::ats_exp(-inf), 0.0f);
  EXPECT_EQ(attention_scale::ats_exp(-1e30f), 0.0f);
  EXPECT_EQ(attention_scale::ats_exp(inf), inf);
  EXPECT_EQ(attention_scale::ats_exp(1e30f), inf);
  EXPECT_TRUE(std::isnan(
      attention_scale::ats_exp(std::numeric_limits<float>::quiet_NaN())));
}

// -----------------------------------------------------------------------------
// Bad shapes stop with a message naming the layer, the bottom and the shapes.
// -----------------------------------------------------------------------------

class SoftmaxOverScalesLayerDeathTest : public CPUDeviceTest<float> {
 protected:
  SoftmaxOverScalesLayerDeathTest() : blob_top_(new Blob<float>()) {
    ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
    for (int s = 0; s < 3; ++s) {
      blob_bottom_vec_.push_back(new Blob<float>(2, 1, 4, 5));
    }
    blob_top_vec_.push_back(blob_top_);
    layer_param_.set_name("attn_softmax");
    layer_param_.add_bottom("attn_s1");
    layer_param_.add_bottom("attn_s2");
    layer_param_.add_bottom("attn_s3");
    layer_param_.add_top("attn_w");
  }
  virtual ~SoftmaxOverScalesLayerDeathTest() {
    for (int s = 0; s < 3; ++s) {
      delete blob_bottom_vec_[s];
    }
    delete blob_top_;
  }
  void SetUpLayer(const vector<Blob<float>*>& bottom) {
    SoftmaxOverScalesLayer<float> layer(layer_param_);
    layer.SetUp(bottom, blob_top_vec_);
  }

  Blob<float>* const blob_top_;
  vector<Blob<float>*> blob_bottom_vec_;
  vector<Blob<float>*> blob_top_vec_;
  LayerParameter layer_param_;
};

TEST_F(SoftmaxOverScalesLayerDeathTest, TestScaleBottomMismatch) {
  blob_bottom_vec_[2]->Reshape(2, 1, 4, 6);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': "
      "bottom\\[2\\] 'attn_s3' has shape 2 1 4 6 \\(48\\), expected 2 1 4 5 "
      "\\(40\\), "
      "the shape of bottom\\[0\\] 'attn_s1'");
  blob_bottom_vec_[2]->Reshape(2, 2, 4, 5);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': "
      "bottom\\[2\\] 'attn_s3' has shape 2 2 4 5 \\(80\\), expected 2 1 4 5 "
      "\\(40\\)");
  blob_bottom_vec_[2]->Reshape(3, 1, 4, 5);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "bottom\\[2\\] 'attn_s3' has shape 3 1 4 5 "
      "\\(60\\), expected 2 1 4 5 \\(40\\)");
}

TEST_F(SoftmaxOverScalesLayerDeathTest, TestFirstScaleBottomNotOneChannel) {
  blob_bottom_vec_[0]->Reshape(2, 3, 4, 5);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': "
      "bottom\\[0\\] 'attn_s1' has shape 2 3 4 5 \\(120\\), expected 2 1 4 5 "
      "\\(40\\): "
      "with 3 bottoms each is one scale's N x 1 x H x W map");
}

TEST_F(SoftmaxOverScalesLayerDeathTest, TestNot4D) {
  blob_bottom_vec_[1]->Reshape(vector<int>(3, 2));
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': "
      "bottom\\[1\\] 'attn_s2' has shape 2 2 2 \\(8\\), expected 4 axes");
}

TEST_F(SoftmaxOverScalesLayerDeathTest, TestInPlace) {
  vector<Blob<float>*> bottom(1, blob_top_);
  blob_top_->Reshape(2, 3, 4, 5);
  EXPECT_DEATH(SetUpLayer(bottom),
      "SoftmaxOverScales layer 'attn_softmax': cannot run in "
      "place");
}

TEST_F(SoftmaxOverScalesLayerDeathTest, TestEmptyBottoms) {
  blob_bottom_vec_[1]->Reshape(2, 1, 0, 5);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': "
      "bottom\\[1\\] 'attn_s2' has shape 2 1 0 5 \\(0\\), expected every axis "
      ">= 1 "
      "\\(N x S x H x W; empty blobs are not supported\\)");
  vector<Blob<float>*> one(1, blob_bottom_vec_[0]);
  const int shapes[4][4] = {
      {0, 3, 4, 5}, {2, 0, 4, 5}, {2, 3, 0, 5}, {2, 3, 4, 0}};
  for (int k = 0; k < 4; ++k) {
    one[0]->Reshape(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
    EXPECT_DEATH(SetUpLayer(one),
        "SoftmaxOverScales layer 'attn_softmax': bottom\\[0\\] "
        "'attn_s1' has shape [0-9 ]+ \\(0\\), expected every axis >= 1");
  }
}

// S bottoms that each fit in a blob, with an N x S x H x W top that does not:
// a labelled message instead of Blob::Reshape's. The bottoms' data are never
// allocated (a Blob allocates on first access).
TEST_F(SoftmaxOverScalesLayerDeathTest, TestTopCountTooLarge) {
  for (int s = 0; s < 2; ++s) {
    blob_bottom_vec_[s]->Reshape(1, 1, 40000, 40000);
  }
  vector<Blob<float>*> two(blob_bottom_vec_.begin(),
                           blob_bottom_vec_.begin() + 2);
  EXPECT_DEATH(SetUpLayer(two),
      "SoftmaxOverScales layer 'attn_softmax': the top would have shape 1 2 "
      "40000 40000 \\(3200000000\\) for 2 bottoms of shape 1 1 40000 40000 "
      "\\(1600000000\\) \\(bottom\\[0\\] 'attn_s1' and the others\\), "
      "more than a blob holds \\(2147483647 elements\\)");
  // At the limit it is accepted: 3 x 715827882 <= INT_MAX.
  for (int s = 0; s < 3; ++s) {
    blob_bottom_vec_[s]->Reshape(1, 1, 2, 357913941);
  }
  SetUpLayer(blob_bottom_vec_);
  EXPECT_EQ(blob_top_->count(), 2147483646);
}

TEST_F(SoftmaxOverScalesLayerDeathTest, TestBlobCounts) {
  EXPECT_DEATH(SetUpLayer(vector<Blob<float>*>()),
      "SoftmaxOverScales layer 'attn_softmax': "
      "takes one N x S x H x W bottom or S bottoms of N x 1 x H x W, got no "
      "bottom");
  blob_top_vec_.push_back(blob_top_);
  EXPECT_DEATH(SetUpLayer(blob_bottom_vec_),
      "SoftmaxOverScales layer 'attn_softmax': takes "
      "exactly 1 top, got 2");
}

}  // namespace caffe
