// Attention to Scale for Caffe: tests of the ScaleInterp layer (forward,
// gradients, errors).
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/scale_interp_layer.hpp"
#include "caffe/util/scale_interp.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// -----------------------------------------------------------------------------
// Independent references: real-valued source coordinates in double, no shared
// code with the layer.
// -----------------------------------------------------------------------------

static double RefSource(int dst, int in, int out) {
  return out == 1 ? 0.0 : static_cast<double>(dst) * (in - 1) / (out - 1);
}

// The (up to) two source cells and weights of output index dst along one axis.
static void RefTaps(
    int dst, int in, int out, bool nearest, int idx[2], double w[2]) {
  const double src = RefSource(dst, in, out);
  if (nearest) {
    idx[0] = idx[1] = static_cast<int>(std::floor(src + 0.5));
    w[0] = 1.0;
    w[1] = 0.0;
    return;
  }
  idx[0] = static_cast<int>(std::floor(src));
  idx[1] = std::min(idx[0] + 1, in - 1);
  w[1] = src - idx[0];
  w[0] = 1.0 - w[1];
}

// Forward reference for top of shape N x C x out_h x out_w.
template <typename Dtype>
static vector<double> RefInterp(const Blob<Dtype>& bottom, int pad_beg,
    int pad_end, int out_h, int out_w, bool nearest) {
  const int in_h = bottom.height(), in_w = bottom.width();
  const int eff_h = in_h + pad_beg + pad_end, eff_w = in_w + pad_beg + pad_end;
  vector<double> out;
  for (int n = 0; n < bottom.num(); ++n) {
    for (int c = 0; c < bottom.channels(); ++c) {
      for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
          int iy[2], ix[2];
          double wy[2], wx[2];
          RefTaps(y, eff_h, out_h, nearest, iy, wy);
          RefTaps(x, eff_w, out_w, nearest, ix, wx);
          double v = 0;
          for (int a = 0; a < 2; ++a) {
            for (int b = 0; b < 2; ++b) {
              if (wy[a] * wx[b] != 0) {
                v += wy[a] * wx[b] *
                    bottom.data_at(n, c, iy[a] - pad_beg, ix[b] - pad_beg);
              }
            }
          }
          out.push_back(v);
        }
      }
    }
  }
  return out;
}

// Backward reference by scattering every top diff onto its source cells (the
// layer gathers).
template <typename Dtype>
static vector<double> RefInterpBackward(const Blob<Dtype>& top,
    const Blob<Dtype>& bottom, int pad_beg, int pad_end, bool nearest) {
  const int in_h = bottom.height(), in_w = bottom.width();
  const int eff_h = in_h + pad_beg + pad_end, eff_w = in_w + pad_beg + pad_end;
  vector<double> diff(bottom.count(), 0.0);
  for (int n = 0; n < top.num(); ++n) {
    for (int c = 0; c < top.channels(); ++c) {
      for (int y = 0; y < top.height(); ++y) {
        for (int x = 0; x < top.width(); ++x) {
          int iy[2], ix[2];
          double wy[2], wx[2];
          RefTaps(y, eff_h, top.height(), nearest, iy, wy);
          RefTaps(x, eff_w, top.width(), nearest, ix, wx);
          for (int a = 0; a < 2; ++a) {
            for (int b = 0; b < 2; ++b) {
              if (wy[a] * wx[b] !=
                  0) {  // a zero weight reads nothing, not even a NaN
                diff[bottom.offset(n, c, iy[a] - pad_beg, ix[b] - pad_beg)] +=
                    wy[a] * wx[b] * top.diff_at(n, c, y, x);
              }
            }
          }
        }
      }
    }
  }
  return diff;
}

static double Tolerance(double expected) {
  return 1e-4 * std::max(1.0, std::fabs(expected));
}

// actual == expected where expected is NaN or infinite (the same NaN / inf, at
// the same place), else within Tolerance.
static void ExpectMatches(
    double actual, double expected, const char* what, int i) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual))
        << what << " at " << i << ": " << actual << ", expected NaN";
  } else if (std::isinf(expected)) {
    EXPECT_EQ(actual, expected) << what << " at " << i;
  } else {
    EXPECT_NEAR(actual, expected, Tolerance(expected)) << what << " at " << i;
  }
}

// f(n, c, y, x) = a y + b x + plane + 0.25: bilinear interpolation of it is
// exact.
template <typename Dtype>
static void FillLinear(Blob<Dtype>* blob, double a, double b) {
  for (int n = 0; n < blob->num(); ++n) {
    for (int c = 0; c < blob->channels(); ++c) {
      for (int y = 0; y < blob->height(); ++y) {
        for (int x = 0; x < blob->width(); ++x) {
          blob->mutable_cpu_data()[blob->offset(n, c, y, x)] =
              a * y + b * x + (n * blob->channels() + c) + 0.25;
        }
      }
    }
  }
}

// Bitwise equal, or both NaN.
template <typename Dtype>
static bool SameBits(Dtype a, Dtype b) {
  return memcmp(&a, &b, sizeof(a)) == 0 ||  // NOLINT(caffe/alt_fn)
      (std::isnan(a) && std::isnan(b));
}

template <typename TypeParam>
class ScaleInterpLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ScaleInterpLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 3, 5, 6)),
        blob_ref_(new Blob<Dtype>(1, 1, 7, 9)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillGaussian(blob_bottom_);
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~ScaleInterpLayerTest() {
    delete blob_bottom_;
    delete blob_ref_;
    delete blob_top_;
  }

  void FillGaussian(Blob<Dtype>* blob) {
    FillerParameter filler_param;
    filler_param.set_std(1.0);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob);
  }

  // Runs the layer forward and compares the top with the independent reference.
  void CheckForward(const LayerParameter& layer_param) {
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    const ScaleInterpParameter& p = layer_param.scale_interp_param();
    const vector<double> expected = RefInterp(*blob_bottom_, p.pad_beg(),
        p.pad_end(), blob_top_->height(), blob_top_->width(),
        p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST);
    ASSERT_EQ(expected.size(), blob_top_->count());
    for (int i = 0; i < blob_top_->count(); ++i) {
      ExpectMatches(blob_top_->cpu_data()[i], expected[i], "top", i);
    }
  }

  // Runs backward with a random top diff (with the given non-finite values at
  // the given top elements) and compares with the scatter reference.
  void CheckBackward(const LayerParameter& layer_param,
      const vector<int>& special = vector<int>(),
      Dtype special_value = Dtype(0)) {
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    Blob<Dtype> top_diff(blob_top_->shape());
    filler.Fill(&top_diff);
    for (int k = 0; k < special.size(); ++k) {
      top_diff.mutable_cpu_data()[special[k]] = special_value;
    }
    caffe_copy(
        top_diff.count(), top_diff.cpu_data(), blob_top_->mutable_cpu_diff());
    vector<bool> propagate_down(blob_bottom_vec_.size(), false);
    propagate_down[0] = true;
    layer.Backward(blob_top_vec_, propagate_down, blob_bottom_vec_);
    const ScaleInterpParameter& p = layer_param.scale_interp_param();
    const vector<double> expected =
        RefInterpBackward(*blob_top_, *blob_bottom_, p.pad_beg(), p.pad_end(),
            p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST);
    for (int i = 0; i < blob_bottom_->count(); ++i) {
      ExpectMatches(blob_bottom_->cpu_diff()[i], expected[i], "bottom diff", i);
    }
  }

  void CheckGradient(const LayerParameter& layer_param, int check_bottom = -1) {
    ScaleInterpLayer<Dtype> layer(layer_param);
    GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradientExhaustive(
        &layer, blob_bottom_vec_, blob_top_vec_, check_bottom);
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_ref_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(ScaleInterpLayerTest, TestDtypesAndDevices);

// -----------------------------------------------------------------------------
// Forward, hand-worked cases.
// -----------------------------------------------------------------------------

TYPED_TEST(ScaleInterpLayerTest, TestShrink8) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 2, 17, 17);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(8);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(
      this->blob_top_->shape_string(), "1 2 3 3 (18)");  // (17 - 1) / 8 + 1
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Output i reads source 8 i exactly: a pure subsample.
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 3; ++x) {
        EXPECT_EQ(this->blob_top_->data_at(0, c, y, x),
            this->blob_bottom_->data_at(0, c, 8 * y, 8 * x));
      }
    }
  }
}

TYPED_TEST(ScaleInterpLayerTest, TestZoom8) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 2, 3, 3);
  FillLinear(this->blob_bottom_, 2.5, -1.5);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_zoom_factor(8);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 2 17 17 (1156)");  // 3 + 2 * 7
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Output i sits at source i / 8; the linear input is reproduced exactly.
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 2; ++c) {
      for (int y = 0; y < 17; ++y) {
        for (int x = 0; x < 17; ++x) {
          const double expected =
              2.5 * y / 8.0 - 1.5 * x / 8.0 + (n * 2 + c) + 0.25;
          EXPECT_NEAR(this->blob_top_->data_at(n, c, y, x), expected, 1e-5);
        }
      }
    }
  }
  // And random data against the reference.
  this->FillGaussian(this->blob_bottom_);
  this->CheckForward(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestShrinkThenZoom) {
  typedef typename TypeParam::Dtype Dtype;
  // 1 x 9 -> shrink 4 -> 1 x 3 -> zoom 3 -> 1 x 7; output j reads source
  // 4 j / 3.
  this->blob_bottom_->Reshape(1, 1, 1, 9);
  for (int x = 0; x < 9; ++x) {
    this->blob_bottom_->mutable_cpu_data()[x] = x * x;
  }
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(4);
  layer_param.mutable_scale_interp_param()->set_zoom_factor(3);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "1 1 1 7 (7)");
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Worked by hand: k^2 + lambda (2k + 1) between k and k + 1.
  const double expected[7] = {0, 2, 22.0 / 3, 16, 86.0 / 3, 134.0 / 3, 64};
  for (int x = 0; x < 7; ++x) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[x], expected[x], 1e-4)
        << "at " << x;
  }
  // The same in 2-D: 9 x 9 -> 7 x 7.
  this->blob_bottom_->Reshape(2, 1, 9, 9);
  this->FillGaussian(this->blob_bottom_);
  layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 1 7 7 (98)");
  this->CheckForward(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestCropPads) {
  typedef typename TypeParam::Dtype Dtype;
  // 8 x 10 cropped by 1 at the start and 2 at the end: 5 x 7, zoomed by 2: 9
  // x 13.
  this->blob_bottom_->Reshape(1, 2, 8, 10);
  FillLinear(this->blob_bottom_, 3.0, 2.0);
  LayerParameter layer_param;
  ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
  p->set_pad_beg(-1);
  p->set_pad_end(-2);
  p->set_zoom_factor(2);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "1 2 9 13 (234)");
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Output i sits at source i / 2 of the cropped map, i.e. row i / 2 + 1 of the
  // bottom.
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 9; ++y) {
      for (int x = 0; x < 13; ++x) {
        const double expected =
            3.0 * (y / 2.0 + 1) + 2.0 * (x / 2.0 + 1) + c + 0.25;
        EXPECT_NEAR(this->blob_top_->data_at(0, c, y, x), expected, 1e-4);
      }
    }
  }
  // Cropped-away bottom cells get no gradient.
  caffe_set(
      this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  layer.Backward(
      this->blob_top_vec_, vector<bool>(1, true), this->blob_bottom_vec_);
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 10; ++x) {
        const bool kept = y >= 1 && y < 6 && x >= 1 && x < 8;
        if (kept) {
          EXPECT_GT(this->blob_bottom_->diff_at(0, c, y, x), 0)
              << y << " " << x;
        } else {
          EXPECT_EQ(this->blob_bottom_->diff_at(0, c, y, x), 0)
              << y << " " << x;
        }
      }
    }
  }
  this->FillGaussian(this->blob_bottom_);
  this->CheckForward(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestHeightWidth) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_height(7);
  layer_param.mutable_scale_interp_param()->set_width(3);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 3 7 3 (126)");
  this->CheckForward(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestScaleSizes) {
  typedef typename TypeParam::Dtype Dtype;
  struct Case {
    int in;
    int pad_end;
    float scale;
    int out;
  };
  const Case cases[] = {
      {321, 0, 0.75f, 241},
      {321, 0, 0.5f, 161},
      {321, 0, 1.0f, 321},
      {41, 0, 2.0f, 81},
      {11, 0, 0.7f, 8},      // 10 * 0.7f = 6.9999999: the 1e-4 keeps it 7
      {323, -2, 0.5f, 161},  // the scale applies to the cropped size
      {5, 0, 0.01f, 1},
  };
  const int num_cases = sizeof(cases) / sizeof(cases[0]);
  for (int i = 0; i < num_cases; ++i) {
    this->blob_bottom_->Reshape(1, 1, cases[i].in, 3);
    LayerParameter layer_param;
    layer_param.mutable_scale_interp_param()->set_scale(cases[i].scale);
    layer_param.mutable_scale_interp_param()->set_pad_end(cases[i].pad_end);
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->height(), cases[i].out)
        << cases[i].in << " at " << cases[i].scale;
  }
  // Values at 321 -> 241.
  this->blob_bottom_->Reshape(1, 1, 321, 321);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_scale(0.75f);
  this->CheckForward(layer_param);
  EXPECT_EQ(this->blob_top_->shape_string(), "1 1 241 241 (58081)");
}

TYPED_TEST(ScaleInterpLayerTest, TestReferenceBottom) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 2, 4, 5);
  this->FillGaussian(this->blob_bottom_);
  this->blob_ref_->Reshape(1, 7, 9, 11);  // only its H x W matter
  this->blob_bottom_vec_.push_back(this->blob_ref_);
  LayerParameter layer_param;
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 2 9 11 (396)");
  this->CheckForward(layer_param);
  // The reference blob gets zero gradient even when asked for one.
  caffe_set(
      this->blob_ref_->count(), Dtype(7), this->blob_ref_->mutable_cpu_diff());
  caffe_set(
      this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  layer.Backward(
      this->blob_top_vec_, vector<bool>(2, true), this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_ref_->count(); ++i) {
    EXPECT_EQ(this->blob_ref_->cpu_diff()[i], 0);
  }
  // A reshaped reference resizes the top.
  this->blob_ref_->Reshape(1, 1, 3, 2);
  layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 2 3 2 (24)");
  this->CheckForward(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestNearestExactHalf) {
  typedef typename TypeParam::Dtype Dtype;
  // 3 -> 5: output j reads source j / 2; the halves 0.5 and 1.5 go to 1 and 2.
  const Dtype in[3] = {10, 20, 30};
  const Dtype expected[5] = {10, 20, 20, 30, 30};
  for (int axis = 0; axis < 2; ++axis) {
    this->blob_bottom_->Reshape(1, 1, axis == 0 ? 3 : 1, axis == 0 ? 1 : 3);
    caffe_copy(3, in, this->blob_bottom_->mutable_cpu_data());
    LayerParameter layer_param;
    ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
    p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
    p->set_height(axis == 0 ? 5 : 1);
    p->set_width(axis == 0 ? 1 : 5);
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    ASSERT_EQ(this->blob_top_->count(), 5);
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(this->blob_top_->cpu_data()[j], expected[j])
          << "axis " << axis << " at " << j;
    }
  }
}

TYPED_TEST(ScaleInterpLayerTest, TestNearestLabels) {
  typedef typename TypeParam::Dtype Dtype;
  // A label map: resizing must never create a value that is not in the input.
  this->blob_bottom_->Reshape(2, 1, 9, 11);
  const Dtype labels[5] = {0, 3, 7, 20, 255};
  std::set<Dtype> allowed(labels, labels + 5);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    this->blob_bottom_->mutable_cpu_data()[i] = labels[(i * 7 + i / 5) % 5];
  }
  const int sizes[][2] = {{5, 7}, {17, 21}, {2, 3}, {9, 11}, {4, 30}};
  for (int k = 0; k < 5; ++k) {
    LayerParameter layer_param;
    ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
    p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
    p->set_height(sizes[k][0]);
    p->set_width(sizes[k][1]);
    this->CheckForward(layer_param);
    for (int i = 0; i < this->blob_top_->count(); ++i) {
      EXPECT_EQ(allowed.count(this->blob_top_->cpu_data()[i]), 1)
          << "new value " << this->blob_top_->cpu_data()[i];
    }
  }
  // Shrink 8 of a 41 x 41 label map (DeepLab's label shrink) reads every 8th
  // cell exactly.
  this->blob_bottom_->Reshape(1, 1, 41, 41);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    this->blob_bottom_->mutable_cpu_data()[i] = labels[(i * 3 + i / 7) % 5];
  }
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(8);
  layer_param.mutable_scale_interp_param()->set_interpolation(
      ScaleInterpParameter_Interpolation_NEAREST);
  this->CheckForward(layer_param);
  EXPECT_EQ(this->blob_top_->shape_string(), "1 1 6 6 (36)");
}

TYPED_TEST(ScaleInterpLayerTest, TestOutputSizeOne) {
  typedef typename TypeParam::Dtype Dtype;
  // H_out == 1 reads source 0 of the cropped map.
  for (int nearest = 0; nearest < 2; ++nearest) {
    LayerParameter layer_param;
    ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
    p->set_height(1);
    p->set_width(1);
    p->set_pad_beg(-1);
    if (nearest) {
      p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
    }
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->shape_string(), "2 3 1 1 (6)");
    for (int n = 0; n < 2; ++n) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(this->blob_top_->data_at(n, c, 0, 0),
            this->blob_bottom_->data_at(n, c, 1, 1));
      }
    }
  }
  // A 1 x 1 input is spread over the whole output.
  this->blob_bottom_->Reshape(1, 2, 1, 1);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_height(3);
  layer_param.mutable_scale_interp_param()->set_width(4);
  this->CheckForward(layer_param);
  for (int c = 0; c < 2; ++c) {
    for (int i = 0; i < 12; ++i) {
      EXPECT_EQ(this->blob_top_->cpu_data()[c * 12 + i],
          this->blob_bottom_->cpu_data()[c]);
    }
  }
}

// Resizes over many size ratios: shrink, zoom, both, crops (negative pads),
// size one, identity, nearest; resampled first along y or first along x.
struct ResizeCase {
  int in_h, in_w, pad_beg, pad_end, out_h, out_w;
  bool nearest;

  LayerParameter Param() const {
    LayerParameter layer_param;
    ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
    p->set_height(out_h);
    p->set_width(out_w);
    p->set_pad_beg(pad_beg);
    p->set_pad_end(pad_end);
    if (nearest) {
      p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
    }
    return layer_param;
  }
};
static const ResizeCase kResizeCases[] = {
    {17, 17, 0, 0, 3, 3, false},
    {3, 3, 0, 0, 17, 17, false},
    {6, 7, 0, 0, 41, 49, false},
    {9, 9, 0, 0, 7, 7, false},
    {13, 11, 0, 0, 4, 3, false},
    {7, 5, 0, 0, 3, 11, false},
    {8, 10, -1, -2, 9, 13, false},
    {1, 5, 0, 0, 5, 1, false},
    {5, 1, 0, 0, 1, 6, false},
    {12, 10, -3, 0, 2, 2, false},
    {11, 9, 0, 0, 11, 9, false},
    {3, 3, 0, 0, 5, 5, true},
    {9, 11, 0, 0, 17, 21, true},
    {17, 15, 0, 0, 3, 4, true},
    {8, 10, -1, -2, 7, 9, true},
    {5, 5, 0, 0, 1, 1, true},
    {1, 1, 0, 0, 3, 2, true},
    // Long windows along x (gathered element by element) after a crop,
    // resampled first along y and first along x; a crop with one axis up and
    // the other down, nearest.
    {30, 6, -1, -1, 4, 40, false},
    {5, 6, -1, -1, 20, 30, false},
    {9, 8, -2, -1, 30, 2, true},
};
static const int kNumResizeCases =
    sizeof(kResizeCases) / sizeof(kResizeCases[0]);

// The gather backward against a scatter of the top diffs, over many size
// ratios.
TYPED_TEST(ScaleInterpLayerTest, TestBackwardMatchesScatter) {
  for (int k = 0; k < kNumResizeCases; ++k) {
    const ResizeCase& c = kResizeCases[k];
    this->blob_bottom_->Reshape(2, 2, c.in_h, c.in_w);
    this->FillGaussian(this->blob_bottom_);
    SCOPED_TRACE(k);
    this->CheckForward(c.Param());
    this->CheckBackward(c.Param());
  }
}

// One layer reshaped between runs (as a net does every forward) rebuilds its
// grid tables.
TYPED_TEST(ScaleInterpLayerTest, TestReshapeRebuildsTables) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_zoom_factor(3);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const int sizes[][2] = {{5, 6}, {4, 9}, {5, 6}, {1, 3}, {7, 2}};
  for (int k = 0; k < 5; ++k) {
    this->blob_bottom_->Reshape(2, 3, sizes[k][0], sizes[k][1]);
    this->FillGaussian(this->blob_bottom_);
    layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const vector<double> expected = RefInterp(*this->blob_bottom_, 0, 0,
        this->blob_top_->height(), this->blob_top_->width(), false);
    ASSERT_EQ(expected.size(), this->blob_top_->count());
    for (int i = 0; i < this->blob_top_->count(); ++i) {
      EXPECT_NEAR(
          this->blob_top_->cpu_data()[i], expected[i], Tolerance(expected[i]))
          << "size " << k << " at " << i;
    }
  }
}

// -----------------------------------------------------------------------------
// NaN and inf: a non-finite input cell reaches exactly the outputs that read it
// with a non-zero weight (RefInterp skips zero weights), NEAREST copies it
// where it copies that cell, and the backward is the transpose (a non-finite
// top diff reaches the cells its output reads).
// -----------------------------------------------------------------------------

TYPED_TEST(ScaleInterpLayerTest, TestNonFiniteInputsReachOnlyTheirReaders) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  struct Case {
    int in_h, in_w, pad_beg, pad_end, out_h, out_w;
    bool nearest;
  };
  const Case cases[] = {
      {8, 8, 0, 0, 15, 15, false},
      {8, 8, 0, 0, 15, 15, true},  // zoom 2: the issue's 64 / 225
      {9, 9, 0, 0, 5, 5, false}, {9, 9, 0, 0, 3, 3, true},  // shrink
      {5, 7, 0, 0, 13, 4, false},
      {6, 6, -1, -1, 9, 9, false},  // mixed, cropped
      {7, 5, 0, 0, 7, 5, false},
      {4, 4, 0, 0, 1, 1, false},  // identity, a single output
  };
  const int num_cases = sizeof(cases) / sizeof(cases[0]);
  for (int k = 0; k < num_cases; ++k) {
    const Case& c = cases[k];
    SCOPED_TRACE(k);
    this->blob_bottom_->Reshape(2, 2, c.in_h, c.in_w);
    this->FillGaussian(this->blob_bottom_);
    Dtype* x = this->blob_bottom_->mutable_cpu_data();
    // NaN, +inf and -inf in three planes, at cells read and (when shrinking)
    // not read; +inf and -inf next to each other in the fourth plane.
    x[this->blob_bottom_->offset(0, 0, c.in_h / 2, c.in_w / 2)] = nan;
    x[this->blob_bottom_->offset(0, 1, 1, c.in_w - 1)] = inf;
    x[this->blob_bottom_->offset(1, 0, c.in_h - 1, 0)] = -inf;
    x[this->blob_bottom_->offset(1, 1, 1, 1)] = inf;
    x[this->blob_bottom_->offset(1, 1, 1, 2)] = -inf;
    LayerParameter layer_param;
    ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
    p->set_height(c.out_h);
    p->set_width(c.out_w);
    p->set_pad_beg(c.pad_beg);
    p->set_pad_end(c.pad_end);
    if (c.nearest) {
      p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
    }
    this->CheckForward(layer_param);
  }
}

TYPED_TEST(ScaleInterpLayerTest, TestNonFiniteSpreadCounts) {
  typedef typename TypeParam::Dtype Dtype;
  // One NaN pixel of an 8 x 8 map zoomed 2x (15 x 15). Bilinear: output j reads
  // source j / 2, so the NaN at (3, 3) is read with a non-zero weight by
  // outputs 5, 6, 7 along each axis (3 x 3 = 9; output 4 reads source 3 with
  // weight 0, which must not make it NaN); NEAREST copies it to outputs 5 and 6
  // only (2 x 2 = 4).
  for (int nearest = 0; nearest < 2; ++nearest) {
    this->blob_bottom_->Reshape(1, 1, 8, 8);
    caffe_set(64, Dtype(1), this->blob_bottom_->mutable_cpu_data());
    this->blob_bottom_->mutable_cpu_data()[3 * 8 + 3] =
        std::numeric_limits<Dtype>::quiet_NaN();
    LayerParameter layer_param;
    layer_param.mutable_scale_interp_param()->set_zoom_factor(2);
    if (nearest) {
      layer_param.mutable_scale_interp_param()->set_interpolation(
          ScaleInterpParameter_Interpolation_NEAREST);
    }
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    ASSERT_EQ(this->blob_top_->count(), 225);
    int nans = 0;
    for (int i = 0; i < 225; ++i) {
      const Dtype v = this->blob_top_->cpu_data()[i];
      if (std::isnan(v)) {
        ++nans;
      } else {
        EXPECT_NEAR(v, 1, 1e-6) << "at " << i;
      }
    }
    EXPECT_EQ(nans, nearest ? 4 : 9);
    // An inf copied without mixing stays inf.
    this->blob_bottom_->mutable_cpu_data()[3 * 8 + 3] =
        std::numeric_limits<Dtype>::infinity();
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->data_at(0, 0, 6, 6),
        std::numeric_limits<Dtype>::infinity());
  }
}

TYPED_TEST(ScaleInterpLayerTest,
    TestNonFiniteTopDiffReachesOnlyTheCellsItsOutputReads) {
  typedef typename TypeParam::Dtype Dtype;
  struct Case {
    int in_h, in_w, pad_beg, pad_end, out_h, out_w;
    bool nearest;
  };
  const Case cases[] = {
      {8, 8, 0, 0, 15, 15, false},
      {5, 6, 0, 0, 41, 49, false},
      {17, 17, 0, 0, 3, 3, false},
      {9, 11, 0, 0, 17, 21, true},
      {8, 10, -1, -2, 9, 13, false},
      {30, 6, -1, -1, 4, 40, false},
  };
  const int num_cases = sizeof(cases) / sizeof(cases[0]);
  const Dtype values[3] = {std::numeric_limits<Dtype>::quiet_NaN(),
      std::numeric_limits<Dtype>::infinity(),
      -std::numeric_limits<Dtype>::infinity()};
  for (int k = 0; k < num_cases; ++k) {
    for (int v = 0; v < 3; ++v) {
      const Case& c = cases[k];
      SCOPED_TRACE(
          testing::Message() << "case " << k << " value " << values[v]);
      this->blob_bottom_->Reshape(2, 1, c.in_h, c.in_w);
      this->FillGaussian(this->blob_bottom_);
      LayerParameter layer_param;
      ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
      p->set_height(c.out_h);
      p->set_width(c.out_w);
      p->set_pad_beg(c.pad_beg);
      p->set_pad_end(c.pad_end);
      if (c.nearest) {
        p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
      }
      vector<int> special;
      special.push_back((c.out_h / 2) * c.out_w + c.out_w / 3);
      special.push_back(c.out_h * c.out_w + c.out_w - 1);
      this->CheckBackward(layer_param, special, values[v]);
    }
  }
}

// -----------------------------------------------------------------------------
// Output size by `scale`: floor((H_in_eff - 1) * scale) + 1 with scale the
// decimal written in the prototxt (the shortest one that reads back as the
// stored float), computed exactly: sizes up to 10^5 against integer arithmetic
// on that decimal.
// -----------------------------------------------------------------------------

TEST(ScaleInterpScaleTest, TestScaledSizesUpTo1e5) {
  struct Scale {
    float value;
    int64_t num, den;
  };
  const Scale scales[] = {
      {0.7f, 7, 10},
      {0.75f, 3, 4},
      {0.5f, 1, 2},
      {0.333f, 333, 1000},
      {1.3f, 13, 10},
      {2.5f, 5, 2},
      {0.123456f, 123456, 1000000},
      {0.05f, 1, 20},
      {3.0f, 3, 1},
      {0.125f, 1, 8},
      {0.1f, 1, 10},
      {0.9f, 9, 10},
      {0.999999f, 999999, 1000000},
  };
  for (int k = 0; k < sizeof(scales) / sizeof(scales[0]); ++k) {
    const Scale& s = scales[k];
    for (int h = 1; h <= 100001; ++h) {
      const int64_t expected =
          (static_cast<int64_t>(h) - 1) * s.num / s.den + 1;
      ASSERT_EQ(attention_scale::scaled_output_size(s.value, h), expected)
          << h << " at scale " << s.num << "/" << s.den;
    }
  }
  // The same through the layer, where a float product goes wrong first:
  // 8400 * 0.7f is 5879.9999 (the issue's 8401 -> 5881), 99990 * 0.7f is
  // 69992.9999.
  const int sizes[][3] = {{8401, 5881, 0}, {99991, 69994, 0}, {8461, 5923, 0},
      {100001, 75001, 1}, {321, 241, 1}};
  for (int k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k) {
    Blob<float> bottom(1, 1, sizes[k][0], 2), top;
    vector<Blob<float>*> bottom_vec(1, &bottom), top_vec(1, &top);
    LayerParameter layer_param;
    layer_param.mutable_scale_interp_param()->set_scale(
        sizes[k][2] ? 0.75f : 0.7f);
    ScaleInterpLayer<float> layer(layer_param);
    layer.SetUp(bottom_vec, top_vec);
    EXPECT_EQ(top.height(), sizes[k][1]) << sizes[k][0];
  }
  // Large and tiny scales: no overflow, the limit INT_MAX + 1 beyond an int.
  EXPECT_EQ(
      attention_scale::scaled_output_size(1e30f, 5), int64_t(INT_MAX) + 1);
  EXPECT_EQ(
      attention_scale::scaled_output_size(3e38f, 2), int64_t(INT_MAX) + 1);
  EXPECT_EQ(attention_scale::scaled_output_size(1e-30f, 1000000), 1);
  EXPECT_EQ(attention_scale::scaled_output_size(1e-45f, 2147483647), 1);
  EXPECT_EQ(attention_scale::scaled_output_size(1e9f, 3), 2000000001);
}

// The decimal a float reads back as: the number written in the prototxt.
TEST(ScaleInterpScaleTest, TestShortestDecimal) {
  struct Case {
    float value;
    int64_t mantissa;
    int exponent;
  };
  const Case cases[] = {
      {0.7f, 7, -1},
      {0.75f, 75, -2},
      {2.0f, 2, 0},
      {0.333f, 333, -3},
      {1e30f, 1, 30},
      {0.123456f, 123456, -6},
      {123456.0f, 123456, 0},
      {0.33333334f, 33333334, -8},
      {16777216.0f, 16777216, 0},
      {1e-45f, 1, -45},
  };
  for (int k = 0; k < sizeof(cases) / sizeof(cases[0]); ++k) {
    int64_t mantissa;
    int exponent;
    attention_scale::shortest_decimal(cases[k].value, &mantissa, &exponent);
    EXPECT_EQ(mantissa, cases[k].mantissa) << k;
    EXPECT_EQ(exponent, cases[k].exponent) << k;
  }
}

// -----------------------------------------------------------------------------
// The per-axis tables: the forward's grid, and backward windows holding exactly
// the forward's weights (the gather is the transpose of the forward).
// -----------------------------------------------------------------------------

template <typename Dtype>
static void CheckInterpAxisTables(int in, int out, bool nearest) {
  SCOPED_TRACE(
      testing::Message() << in << " -> " << out << (nearest ? " nearest" : ""));
  const int width = attention_scale::interp_axis_width(in, out);
  ASSERT_GE(width, 1);
  ASSERT_LE(width, out);
  // The bound Reshape relies on for the table sizes.
  EXPECT_LT(
      attention_scale::interp_axis_index_count(in, out), 5 * out + 2 * in);
  EXPECT_LT(attention_scale::interp_axis_value_count(in, out, width),
      5 * out + 2 * in);
  vector<int> index(attention_scale::interp_axis_index_count(in, out), -7);
  vector<Dtype> value(
      attention_scale::interp_axis_value_count(in, out, width), Dtype(-7));
  attention_scale::fill_interp_axis(
      in, out, nearest, width, &index[0], &value[0]);
  const attention_scale::InterpAxis<Dtype> axis =
      attention_scale::interp_axis_view(
          &index[0], &value[0], in, out, width, nearest);
  EXPECT_EQ(axis.nearest, nearest);
  for (int dst = 0; dst < out; ++dst) {
    if (nearest) {
      EXPECT_EQ(axis.i0[dst], attention_scale::nearest_axis(dst, in, out));
      EXPECT_EQ(axis.i1[dst], axis.i0[dst]);
      EXPECT_EQ(axis.lambda[dst], Dtype(0));
    } else {
      int i0, i1;
      Dtype lambda;
      attention_scale::interp_axis(dst, in, out, &i0, &i1, &lambda);
      EXPECT_EQ(axis.i0[dst], i0);
      EXPECT_EQ(axis.i1[dst], i1);
      EXPECT_EQ(axis.lambda[dst], lambda);
    }
  }
  for (int src = 0; src < in; ++src) {
    const int first = axis.first[src];
    ASSERT_GE(first, 0) << "src " << src;
    ASSERT_LE(first + width, out) << "src " << src;
    for (int dst = 0; dst < out; ++dst) {
      // The weight with which the forward tables mix src into dst.
      Dtype forward(0);
      if (axis.i0[dst] == src) {
        forward += Dtype(1) - axis.lambda[dst];
      }
      if (axis.i1[dst] == src) {
        forward += axis.lambda[dst];
      }
      if (nearest) {
        forward = (axis.i0[dst] == src) ? Dtype(1) : Dtype(0);
      }
      const int k = dst - first;
      if (k >= 0 && k < width) {
        EXPECT_EQ(axis.weight[src * width + k], forward)
            << "src " << src << " dst " << dst;
      } else {
        EXPECT_EQ(forward, Dtype(0))
            << "src " << src << " dst " << dst << " outside window";
      }
    }
  }
}

TEST(ScaleInterpTablesTest, TestTablesTransposeForward) {
  const int sizes[][2] = {{1, 1}, {1, 5}, {5, 1}, {2, 2}, {2, 9}, {9, 2},
      {3, 17}, {17, 3}, {65, 513}, {321, 241}, {321, 41}, {41, 321}, {7, 7},
      {10, 11}, {11, 10}, {6, 49}, {2, 1000}, {1000, 2}, {3, 1001}, {400, 401}};
  for (int k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k) {
    for (int nearest = 0; nearest < 2; ++nearest) {
      CheckInterpAxisTables<float>(sizes[k][0], sizes[k][1], nearest);
      CheckInterpAxisTables<double>(sizes[k][0], sizes[k][1], nearest);
    }
  }
}

// Long axes (output sides above 2^24 + 1): the fraction n % d / d of the grid,
// computed in float, rounded to 1 for some outputs (2^24 / (2^24 + 1) did), so
// the first cell got the weight 0 although its exact weight is not 0: a NaN or
// inf there then reached the output as NaN through 0 * inf, or not at all in
// the backward. The weights must stay within a float step of the exact ones and
// be non-zero exactly where those are (checked in double, RefTaps).
template <typename Dtype>
static void CheckLongAxisWeights(int in, int out, int dst_begin, int dst_end) {
  SCOPED_TRACE(testing::Message() << in << " -> " << out);
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  int rounded_to_one = 0;  // outputs where the plain float fraction is 1
  for (int dst = dst_begin; dst < dst_end; ++dst) {
    SCOPED_TRACE(dst);
    int idx[2];
    double w[2];
    RefTaps(dst, in, out, false, idx, w);
    int i0, i1;
    Dtype lambda;
    attention_scale::interp_axis(dst, in, out, &i0, &i1, &lambda);
    ASSERT_EQ(i0, idx[0]);
    ASSERT_EQ(i1, idx[1]);
    EXPECT_NEAR(lambda, w[1], 1.0 / (1 << 23));
    const int64_t num = static_cast<int64_t>(dst) * (in - 1);
    rounded_to_one += static_cast<float>(num % (out - 1)) /
        static_cast<float>(out - 1) == 1.0f;
    for (int s = 0; s < 2; ++s) {
      if (idx[1] == idx[0] && s == 1) {
        break;
      }
      // The weight the backward uses for the cell: non-zero where the exact
      // one is.
      const Dtype weight = attention_scale::interp_weight<Dtype>(
          false, dst, idx[s], in, out);
      EXPECT_EQ(weight != Dtype(0), w[s] != 0) << "cell " << idx[s];
      // The forward: an inf in the cell reaches the output as inf where its
      // exact weight is not 0 (never NaN), a NaN as NaN; otherwise neither.
      // cells[k]: the value of cell idx[k].
      Dtype cells[2] = {Dtype(0.25), Dtype(5)};
      cells[s] = inf;
      const Dtype y_inf =
          attention_scale::interp_mix(cells[0], cells[1], lambda, false);
      cells[s] = nan;
      const Dtype y_nan =
          attention_scale::interp_mix(cells[0], cells[1], lambda, false);
      if (w[s] != 0) {
        EXPECT_EQ(y_inf, inf) << "cell " << idx[s];
        EXPECT_TRUE(std::isnan(y_nan)) << "cell " << idx[s];
      } else {
        EXPECT_EQ(y_inf, cells[1 - s]) << "cell " << idx[s];
        EXPECT_EQ(y_nan, cells[1 - s]) << "cell " << idx[s];
      }
    }
  }
  // The case the check is about occurs in the range for float.
  if (sizeof(Dtype) == sizeof(float)) {
    EXPECT_GT(rounded_to_one, 0);
  }
}

TEST(ScaleInterpTablesTest, TestLongAxisWeights) {
  const int last = (1 << 24) + 1;  // d = out - 1 of the first case
  CheckLongAxisWeights<float>(2, last + 1, last - 40, last + 1);
  CheckLongAxisWeights<double>(2, last + 1, last - 40, last + 1);
  CheckLongAxisWeights<float>(2, (1 << 25) + 1, (1 << 25) - 40, (1 << 25) + 1);
  CheckLongAxisWeights<float>(
      3, (1 << 25) + 2, (1 << 25) - 40, (1 << 25) + 2);
  CheckLongAxisWeights<float>(
      5, (1 << 26) + 3, (1 << 26) - 80, (1 << 26) + 3);
}

// The same through the layer, forward and backward: 1 x 3 x 1 x 2 resized to
// width 2^24 + 2 (every output but the last reads cell 0 with an exact weight
// above 0; in float the weight of output 2^24 rounded to 0). About 0.8 GB.
TEST(ScaleInterpLongAxisTest, TestNonFiniteOnLongAxis) {
  Caffe::set_mode(Caffe::CPU);
  const int out = (1 << 24) + 2;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Blob<float> bottom(1, 3, 1, 2), top;
  const float cells[3][2] = {{0.25f, 5}, {inf, 5}, {nan, 5}};
  for (int c = 0; c < 3; ++c) {
    bottom.mutable_cpu_data()[2 * c] = cells[c][0];
    bottom.mutable_cpu_data()[2 * c + 1] = cells[c][1];
  }
  vector<Blob<float>*> bottom_vec(1, &bottom), top_vec(1, &top);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_height(1);
  layer_param.mutable_scale_interp_param()->set_width(out);
  ScaleInterpLayer<float> layer(layer_param);
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  ASSERT_EQ(top.width(), out);
  int mismatches = 0;
  for (int x = 0; x < out; ++x) {
    int idx[2];
    double w[2];
    RefTaps(x, 2, out, false, idx, w);
    for (int c = 0; c < 3; ++c) {
      double expected = 0;
      for (int s = 0; s < 2; ++s) {
        if (w[s] != 0) {
          expected += w[s] * cells[c][idx[s]];
        }
      }
      const double y = top.cpu_data()[c * out + x];
      const bool same = std::isnan(expected) ? std::isnan(y)
          : std::isinf(expected) ? y == expected
          : std::fabs(y - expected) <= 4e-6;
      if (!same && mismatches++ < 10) {
        ADD_FAILURE() << "plane " << c << " output " << x << ": " << y
                      << ", expected " << expected;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  // Backward: a NaN top diff at output 2^24 reaches both cells (their exact
  // weights are 1 / (2^24 + 1) and 2^24 / (2^24 + 1)); the other diffs are 0.
  caffe_set(top.count(), 0.0f, top.mutable_cpu_diff());
  top.mutable_cpu_diff()[1 << 24] = nan;
  layer.Backward(top_vec, vector<bool>(1, true), bottom_vec);
  EXPECT_TRUE(std::isnan(bottom.cpu_diff()[0]));
  EXPECT_TRUE(std::isnan(bottom.cpu_diff()[1]));
  for (int i = 2; i < 6; ++i) {
    EXPECT_EQ(bottom.cpu_diff()[i], 0.0f) << i;
  }
}

// -----------------------------------------------------------------------------
// Gradients.
// -----------------------------------------------------------------------------

TYPED_TEST(ScaleInterpLayerTest, TestGradientShrink) {
  this->blob_bottom_->Reshape(1, 2, 9, 7);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(3);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientZoom) {
  this->blob_bottom_->Reshape(1, 2, 3, 4);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_zoom_factor(3);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientShrinkZoom) {
  this->blob_bottom_->Reshape(1, 1, 9, 9);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(4);
  layer_param.mutable_scale_interp_param()->set_zoom_factor(3);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientCropPads) {
  this->blob_bottom_->Reshape(1, 2, 6, 7);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
  p->set_pad_beg(-1);
  p->set_pad_end(-2);
  p->set_height(5);
  p->set_width(4);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientHeightWidth) {
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_height(4);
  layer_param.mutable_scale_interp_param()->set_width(9);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientScale) {
  this->blob_bottom_->Reshape(1, 2, 7, 9);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_scale(0.75f);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientReferenceBottom) {
  this->blob_bottom_->Reshape(1, 2, 3, 4);
  this->FillGaussian(this->blob_bottom_);
  this->blob_ref_->Reshape(1, 1, 5, 6);
  this->blob_bottom_vec_.push_back(this->blob_ref_);
  LayerParameter layer_param;
  this->CheckGradient(layer_param, 0);  // no gradient flows into the reference
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientNearest) {
  LayerParameter layer_param;
  ScaleInterpParameter* p = layer_param.mutable_scale_interp_param();
  p->set_interpolation(ScaleInterpParameter_Interpolation_NEAREST);
  p->set_height(9);
  p->set_width(4);
  this->CheckGradient(layer_param);
}

TYPED_TEST(ScaleInterpLayerTest, TestGradientOutputSizeOne) {
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_height(1);
  layer_param.mutable_scale_interp_param()->set_width(1);
  this->CheckGradient(layer_param);
}

// -----------------------------------------------------------------------------
// The CUDA kernels' element functions (scale_interp_at: both passes of one
// output; scale_interp_gather_at: one element of a backward pass), run here on
// the host with the layer's own passes and tables, against the CPU loops: the
// same bits, so the GPU code is checked on every machine.
// -----------------------------------------------------------------------------

// The layer with its passes and host tables visible.
template <typename Dtype>
class ScaleInterpLayerTables : public ScaleInterpLayer<Dtype> {
 public:
  explicit ScaleInterpLayerTables(const LayerParameter& param)
      : ScaleInterpLayer<Dtype>(param) {}
  const attention_scale::InterpPass& pass(int p) const {
    return this->pass_[p];
  }
  attention_scale::InterpAxis<Dtype> axis(int p) {
    return this->Axis(this->pass_[p].along_x, false);
  }
};

template <typename Dtype>
class ScaleInterpKernelFunctionsTest : public CPUDeviceTest<Dtype> {};

TYPED_TEST_CASE(ScaleInterpKernelFunctionsTest, TestDtypes);

TYPED_TEST(ScaleInterpKernelFunctionsTest, TestMatchCpuLoops) {
  typedef TypeParam Dtype;
  bool orders[2] = {false, false};
  for (int k = 0; k < kNumResizeCases; ++k) {
    const ResizeCase& c = kResizeCases[k];
    SCOPED_TRACE(k);
    Blob<Dtype> bottom(2, 3, c.in_h, c.in_w), top;
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(&bottom);
    vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
    ScaleInterpLayerTables<Dtype> layer(c.Param());
    layer.SetUp(bottom_vec, top_vec);
    layer.Forward(bottom_vec, top_vec);
    Blob<Dtype> top_diff(top.shape());
    filler.Fill(&top_diff);
    caffe_copy(top.count(), top_diff.cpu_data(), top.mutable_cpu_diff());
    layer.Backward(top_vec, vector<bool>(1, true), bottom_vec);
    const attention_scale::InterpPass first = layer.pass(0);
    const attention_scale::InterpPass second = layer.pass(1);
    const attention_scale::InterpAxis<Dtype> first_axis = layer.axis(0);
    const attention_scale::InterpAxis<Dtype> second_axis = layer.axis(1);
    orders[first.along_x ? 1 : 0] = true;
    const int planes = bottom.num() * bottom.channels();
    int mismatches = 0;
    for (int plane = 0; plane < planes; ++plane) {
      for (int y = 0; y < top.height(); ++y) {
        for (int x = 0; x < top.width(); ++x) {
          const Dtype v = attention_scale::scale_interp_at(plane, y, x,
              bottom.cpu_data(), first, first_axis, second, second_axis);
          mismatches += !SameBits(
              v, top.cpu_data()[(plane * top.height() + y) * top.width() + x]);
        }
      }
    }
    // The GPU backward: the second pass's gather into the intermediate planes,
    // then the first pass's into the bottom diff.
    vector<Dtype> mid(planes * second.src_h * second.src_w);
    for (int plane = 0; plane < planes; ++plane) {
      for (int y = 0; y < second.src_h; ++y) {
        for (int x = 0; x < second.src_w; ++x) {
          mid[(plane * second.src_h + y) * second.src_w + x] =
              attention_scale::scale_interp_gather_at(plane, y, x,
                  top.cpu_diff(), second, second_axis);
        }
      }
    }
    for (int plane = 0; plane < planes; ++plane) {
      for (int y = 0; y < c.in_h; ++y) {
        for (int x = 0; x < c.in_w; ++x) {
          const Dtype d = attention_scale::scale_interp_gather_at(
              plane, y, x, &mid[0], first, first_axis);
          mismatches += !SameBits(
              d, bottom.cpu_diff()[(plane * c.in_h + y) * c.in_w + x]);
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
  // Both orders of the passes were covered.
  EXPECT_TRUE(orders[0]);
  EXPECT_TRUE(orders[1]);
}

// -----------------------------------------------------------------------------
// Bad parameters and shapes stop with a message naming the layer, the bottom
// and the shapes.
// -----------------------------------------------------------------------------

class ScaleInterpLayerDeathTest : public CPUDeviceTest<float> {
 protected:
  ScaleInterpLayerDeathTest()
      : blob_bottom_(new Blob<float>(2, 3, 5, 6)),
        blob_ref_(new Blob<float>(2, 3, 7, 9)),
        blob_top_(new Blob<float>()) {
    ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
    layer_param_.set_name("interp");
    layer_param_.set_type("ScaleInterp");
    layer_param_.add_bottom("fc8");
    layer_param_.add_bottom("label");
    layer_param_.add_top("out");
  }
  virtual ~ScaleInterpLayerDeathTest() {
    delete blob_bottom_;
    delete blob_ref_;
    delete blob_top_;
  }
  void SetUpLayer(const LayerParameter& layer_param) {
    ScaleInterpLayer<float> layer(layer_param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
  }
  ScaleInterpParameter* param() {
    return layer_param_.mutable_scale_interp_param();
  }

  Blob<float>* const blob_bottom_;
  Blob<float>* const blob_ref_;
  Blob<float>* const blob_top_;
  vector<Blob<float>*> blob_bottom_vec_;
  vector<Blob<float>*> blob_top_vec_;
  LayerParameter layer_param_;
};

TEST_F(ScaleInterpLayerDeathTest, TestNoSize) {
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': give exactly one of "
      "zoom_factor and/or shrink_factor, height and width, scale, or a second "
      "bottom; got: none");
}

TEST_F(ScaleInterpLayerDeathTest, TestTwoSizes) {
  param()->set_zoom_factor(2);
  param()->set_scale(0.5f);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': give exactly one of .*"
      "got: zoom_factor/shrink_factor scale");
}

TEST_F(ScaleInterpLayerDeathTest, TestSizeAndReferenceBottom) {
  param()->set_height(4);
  param()->set_width(4);
  blob_bottom_vec_.push_back(blob_ref_);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': give exactly one of .*"
      "got: height/width second-bottom");
}

TEST_F(ScaleInterpLayerDeathTest, TestHeightWithoutWidth) {
  param()->set_height(4);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': height and width must be given together");
}

TEST_F(ScaleInterpLayerDeathTest, TestBadSizes) {
  param()->set_height(0);
  param()->set_width(4);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': height and width must be >= 1, got height "
      "0");
}

TEST_F(ScaleInterpLayerDeathTest, TestBadFactors) {
  param()->set_zoom_factor(0);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': zoom_factor must be >= 1, "
      "got 0");
  param()->clear_zoom_factor();
  param()->set_shrink_factor(-2);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': shrink_factor must be >= 1, "
      "got -2");
}

TEST_F(ScaleInterpLayerDeathTest, TestBadScale) {
  param()->set_scale(0);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': scale must be a finite "
      "number > 0, got 0");
  param()->set_scale(-0.5f);
  EXPECT_DEATH(
      SetUpLayer(layer_param_), "scale must be a finite number > 0, got -0.5");
}

TEST_F(ScaleInterpLayerDeathTest, TestPositivePad) {
  param()->set_zoom_factor(2);
  param()->set_pad_beg(1);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': pad_beg must be <= 0 "
      "\\(it crops\\), got 1");
  param()->set_pad_beg(0);
  param()->set_pad_end(2);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': pad_end must be <= 0 "
      "\\(it crops\\), got 2");
}

TEST_F(ScaleInterpLayerDeathTest, TestCropTooLarge) {
  param()->set_zoom_factor(2);
  param()->set_pad_beg(-3);
  param()->set_pad_end(-2);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has "
      "shape 2 3 5 6 \\(180\\), too small for pad_beg -3 and pad_end -2");
}

// Pads near INT_MIN: the cropped size is computed in 64 bits. (In int, 3 +
// INT_MIN + INT_MIN wrapped to 3, and 3 - 4 + INT_MIN to INT_MAX: setup passed
// and the forward read about 2^31 rows before the bottom.)
TEST_F(ScaleInterpLayerDeathTest, TestCropOverflow) {
  param()->set_zoom_factor(2);
  blob_bottom_->Reshape(1, 1, 3, 3);
  param()->set_pad_beg(INT_MIN);
  param()->set_pad_end(INT_MIN);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has shape 1 1 3 3 "
      "\\(9\\), too small for pad_beg -2147483648 and pad_end -2147483648 "
      "\\(cropped size -4294967293 x -4294967293\\)");
  param()->set_pad_beg(-4);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has shape 1 1 3 3 "
      "\\(9\\), too small for pad_beg -4 and pad_end -2147483648 "
      "\\(cropped size -2147483649 x -2147483649\\)");
}

TEST_F(ScaleInterpLayerDeathTest, TestNot4D) {
  param()->set_zoom_factor(2);
  blob_bottom_->Reshape(vector<int>(3, 4));
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has "
      "shape 4 4 4 \\(64\\), expected 4 axes");
  blob_bottom_->Reshape(2, 3, 5, 6);
  blob_ref_->Reshape(vector<int>(2, 7));
  blob_bottom_vec_.push_back(blob_ref_);
  param()->clear_zoom_factor();
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[1\\] 'label' has "
      "shape 7 7 \\(49\\), expected 4 axes");
}

TEST_F(ScaleInterpLayerDeathTest, TestTooManyBottoms) {
  blob_bottom_vec_.push_back(blob_ref_);
  blob_bottom_vec_.push_back(blob_ref_);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': takes 1 bottom .* or 2 "
      ".*, got 3");
}

TEST_F(ScaleInterpLayerDeathTest, TestTooLarge) {
  // 5 x 429496730 > INT_MAX: the tables of the y axis would not fit in a blob.
  param()->set_height(429496730);
  param()->set_width(1);
  blob_bottom_->Reshape(1, 1, 20000, 2);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': output size 429496730 x 1 "
      "for bottom\\[0\\] 'fc8' of shape 1 1 20000 2 \\(40000\\) \\(cropped "
      "20000 x 2\\) "
      "is out of range: each output side must be >= 1 and 5 x output side \\+ "
      "2 x "
      "cropped input side <= 2147483647");
}

// The cases of issue 9: each stops at setup with the same message.
TEST_F(ScaleInterpLayerDeathTest, TestHugeOutputs) {
  param()->set_zoom_factor(2000000000);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': output size 8000000001 x "
      "10000000001 for bottom\\[0\\] 'fc8' of shape 2 3 5 6 \\(180\\) "
      "\\(cropped 5 x 6\\) "
      "is out of range");
  param()->clear_zoom_factor();
  param()->set_scale(1e30f);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': output size 2147483648 x "
      "2147483648 for bottom\\[0\\] 'fc8' .* is out of range");
  param()->clear_scale();
  param()->set_height(1);
  param()->set_width(2000000000);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': output size 1 x 2000000000 "
      "for bottom\\[0\\] 'fc8' .* is out of range");
}

TEST_F(ScaleInterpLayerDeathTest, TestTopCountTooLarge) {
  // Each side is fine for the grid, but the top would hold more than INT_MAX
  // elements.
  param()->set_height(50000);
  param()->set_width(50000);
  blob_bottom_->Reshape(1, 1000, 4, 4);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': the top would have shape "
      "1 1000 50000 50000, more than a blob holds \\(2147483647 elements\\)");
}

TEST_F(ScaleInterpLayerDeathTest, TestInPlace) {
  param()->set_zoom_factor(2);
  blob_top_vec_[0] = blob_bottom_;
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': cannot run in place "
      "\\(top\\[0\\] is bottom\\[0\\] 'fc8'\\)");
  // Nor on the reference bottom.
  param()->clear_zoom_factor();
  blob_bottom_vec_.push_back(blob_ref_);
  blob_top_vec_[0] = blob_ref_;
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': cannot run in place "
      "\\(top\\[0\\] is bottom\\[1\\] 'label'\\)");
}

TEST_F(ScaleInterpLayerDeathTest, TestEmptyBottoms) {
  param()->set_zoom_factor(2);
  const int shapes[4][4] = {
      {0, 3, 5, 6}, {2, 0, 5, 6}, {2, 3, 0, 6}, {2, 3, 5, 0}};
  for (int k = 0; k < 4; ++k) {
    blob_bottom_->Reshape(
        shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]);
    EXPECT_DEATH(SetUpLayer(layer_param_),
        "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' "
        "has shape [0-9 ]+ \\(0\\), expected every axis >= 1 \\(N x C x H x W; "
        "empty "
        "blobs are not supported\\)");
  }
  // The reference bottom too, whose values are never read.
  blob_bottom_->Reshape(2, 3, 5, 6);
  param()->clear_zoom_factor();
  blob_ref_->Reshape(0, 3, 7, 9);
  blob_bottom_vec_.push_back(blob_ref_);
  EXPECT_DEATH(SetUpLayer(layer_param_),
      "ScaleInterp layer 'interp': bottom\\[1\\] 'label' "
      "has shape 0 3 7 9 \\(0\\), expected every axis >= 1");
}

}  // namespace caffe
