// Attention to Scale for Caffe: tests of the ScaleInterp layer (forward, gradients, errors).
#include <algorithm>
#include <cmath>
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

// ---------------------------------------------------------------------------------------------
// Independent references: real-valued source coordinates in double, no shared code with the layer.
// ---------------------------------------------------------------------------------------------

static double RefSource(int dst, int in, int out) {
  return out == 1 ? 0.0 : static_cast<double>(dst) * (in - 1) / (out - 1);
}

// The (up to) two source cells and weights of output index dst along one axis.
static void RefTaps(int dst, int in, int out, bool nearest, int idx[2], double w[2]) {
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
static vector<double> RefInterp(const Blob<Dtype>& bottom, int pad_beg, int pad_end, int out_h,
    int out_w, bool nearest) {
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
                v += wy[a] * wx[b] * bottom.data_at(n, c, iy[a] - pad_beg, ix[b] - pad_beg);
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

// Backward reference by scattering every top diff onto its source cells (the layer gathers).
template <typename Dtype>
static vector<double> RefInterpBackward(const Blob<Dtype>& top, const Blob<Dtype>& bottom,
    int pad_beg, int pad_end, bool nearest) {
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
              diff[bottom.offset(n, c, iy[a] - pad_beg, ix[b] - pad_beg)] +=
                  wy[a] * wx[b] * top.diff_at(n, c, y, x);
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

// f(n, c, y, x) = a y + b x + plane + 0.25: bilinear interpolation of it is exact.
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
    const vector<double> expected = RefInterp(*blob_bottom_, p.pad_beg(), p.pad_end(),
        blob_top_->height(), blob_top_->width(),
        p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST);
    ASSERT_EQ(expected.size(), blob_top_->count());
    for (int i = 0; i < blob_top_->count(); ++i) {
      EXPECT_NEAR(blob_top_->cpu_data()[i], expected[i], Tolerance(expected[i])) << "at " << i;
    }
  }

  // Runs backward with a random top diff and compares with the scatter reference.
  void CheckBackward(const LayerParameter& layer_param) {
    ScaleInterpLayer<Dtype> layer(layer_param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    Blob<Dtype> top_diff(blob_top_->shape());
    filler.Fill(&top_diff);
    caffe_copy(top_diff.count(), top_diff.cpu_data(), blob_top_->mutable_cpu_diff());
    vector<bool> propagate_down(blob_bottom_vec_.size(), false);
    propagate_down[0] = true;
    layer.Backward(blob_top_vec_, propagate_down, blob_bottom_vec_);
    const ScaleInterpParameter& p = layer_param.scale_interp_param();
    const vector<double> expected = RefInterpBackward(*blob_top_, *blob_bottom_, p.pad_beg(),
        p.pad_end(), p.interpolation() == ScaleInterpParameter_Interpolation_NEAREST);
    for (int i = 0; i < blob_bottom_->count(); ++i) {
      EXPECT_NEAR(blob_bottom_->cpu_diff()[i], expected[i], Tolerance(expected[i]))
          << "at " << i << " for top " << blob_top_->shape_string();
    }
  }

  void CheckGradient(const LayerParameter& layer_param, int check_bottom = -1) {
    ScaleInterpLayer<Dtype> layer(layer_param);
    GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradientExhaustive(&layer, blob_bottom_vec_, blob_top_vec_, check_bottom);
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_ref_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(ScaleInterpLayerTest, TestDtypesAndDevices);

// ---------------------------------------------------------------------------------------------
// Forward, hand-worked cases.
// ---------------------------------------------------------------------------------------------

TYPED_TEST(ScaleInterpLayerTest, TestShrink8) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 2, 17, 17);
  this->FillGaussian(this->blob_bottom_);
  LayerParameter layer_param;
  layer_param.mutable_scale_interp_param()->set_shrink_factor(8);
  ScaleInterpLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "1 2 3 3 (18)");  // (17 - 1) / 8 + 1
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
          const double expected = 2.5 * y / 8.0 - 1.5 * x / 8.0 + (n * 2 + c) + 0.25;
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
  // 1 x 9 -> shrink 4 -> 1 x 3 -> zoom 3 -> 1 x 7; output j reads source 4 j / 3.
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
    EXPECT_NEAR(this->blob_top_->cpu_data()[x], expected[x], 1e-4) << "at " << x;
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
  // 8 x 10 cropped by 1 at the start and 2 at the end: 5 x 7, zoomed by 2: 9 x 13.
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
  // Output i sits at source i / 2 of the cropped map, i.e. row i / 2 + 1 of the bottom.
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 9; ++y) {
      for (int x = 0; x < 13; ++x) {
        const double expected = 3.0 * (y / 2.0 + 1) + 2.0 * (x / 2.0 + 1) + c + 0.25;
        EXPECT_NEAR(this->blob_top_->data_at(0, c, y, x), expected, 1e-4);
      }
    }
  }
  // Cropped-away bottom cells get no gradient.
  caffe_set(this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(1, true), this->blob_bottom_vec_);
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 10; ++x) {
        const bool kept = y >= 1 && y < 6 && x >= 1 && x < 8;
        if (kept) {
          EXPECT_GT(this->blob_bottom_->diff_at(0, c, y, x), 0) << y << " " << x;
        } else {
          EXPECT_EQ(this->blob_bottom_->diff_at(0, c, y, x), 0) << y << " " << x;
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
  struct Case { int in; int pad_end; float scale; int out; };
  const Case cases[] = {
    {321, 0, 0.75f, 241}, {321, 0, 0.5f, 161}, {321, 0, 1.0f, 321}, {41, 0, 2.0f, 81},
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
    EXPECT_EQ(this->blob_top_->height(), cases[i].out) << cases[i].in << " at "
        << cases[i].scale;
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
  caffe_set(this->blob_ref_->count(), Dtype(7), this->blob_ref_->mutable_cpu_diff());
  caffe_set(this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(2, true), this->blob_bottom_vec_);
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
      EXPECT_EQ(this->blob_top_->cpu_data()[j], expected[j]) << "axis " << axis << " at " << j;
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
      EXPECT_EQ(allowed.count(this->blob_top_->cpu_data()[i]), 1) << "new value "
          << this->blob_top_->cpu_data()[i];
    }
  }
  // Shrink 8 of a 41 x 41 label map (DeepLab's label shrink) reads every 8th cell exactly.
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
        EXPECT_EQ(this->blob_top_->data_at(n, c, 0, 0), this->blob_bottom_->data_at(n, c, 1, 1));
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
      EXPECT_EQ(this->blob_top_->cpu_data()[c * 12 + i], this->blob_bottom_->cpu_data()[c]);
    }
  }
}

// The gather backward against a scatter of the top diffs, over many size ratios.
TYPED_TEST(ScaleInterpLayerTest, TestBackwardMatchesScatter) {
  struct Case { int in_h, in_w, pad_beg, pad_end, out_h, out_w; bool nearest; };
  const Case cases[] = {
    {17, 17, 0, 0, 3, 3, false}, {3, 3, 0, 0, 17, 17, false}, {6, 7, 0, 0, 41, 49, false},
    {9, 9, 0, 0, 7, 7, false}, {13, 11, 0, 0, 4, 3, false}, {7, 5, 0, 0, 3, 11, false},
    {8, 10, -1, -2, 9, 13, false}, {1, 5, 0, 0, 5, 1, false}, {5, 1, 0, 0, 1, 6, false},
    {12, 10, -3, 0, 2, 2, false}, {11, 9, 0, 0, 11, 9, false},
    {3, 3, 0, 0, 5, 5, true}, {9, 11, 0, 0, 17, 21, true}, {17, 15, 0, 0, 3, 4, true},
    {8, 10, -1, -2, 7, 9, true}, {5, 5, 0, 0, 1, 1, true}, {1, 1, 0, 0, 3, 2, true},
    // Long windows along x (gathered element by element) after a crop, resampled first along
    // y and first along x; a crop with one axis up and the other down, nearest.
    {30, 6, -1, -1, 4, 40, false}, {5, 6, -1, -1, 20, 30, false}, {9, 8, -2, -1, 30, 2, true},
  };
  const int num_cases = sizeof(cases) / sizeof(cases[0]);
  for (int k = 0; k < num_cases; ++k) {
    const Case& c = cases[k];
    this->blob_bottom_->Reshape(2, 2, c.in_h, c.in_w);
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
    SCOPED_TRACE(k);
    this->CheckForward(layer_param);
    this->CheckBackward(layer_param);
  }
}

// One layer reshaped between runs (as a net does every forward) rebuilds its grid tables.
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
      EXPECT_NEAR(this->blob_top_->cpu_data()[i], expected[i], Tolerance(expected[i]))
          << "size " << k << " at " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The per-axis tables: the forward's grid, and backward windows holding exactly the forward's
// weights (the gather is the transpose of the forward).
// ---------------------------------------------------------------------------------------------

template <typename Dtype>
static void CheckInterpAxisTables(int in, int out, bool nearest) {
  SCOPED_TRACE(testing::Message() << in << " -> " << out << (nearest ? " nearest" : ""));
  const int width = attention_scale::interp_axis_width(in, out);
  ASSERT_GE(width, 1);
  ASSERT_LE(width, out);
  vector<int> index(attention_scale::interp_axis_index_count(in, out), -7);
  vector<Dtype> value(attention_scale::interp_axis_value_count(in, out, width), Dtype(-7));
  attention_scale::fill_interp_axis(in, out, nearest, width, &index[0], &value[0]);
  const attention_scale::InterpAxis<Dtype> axis =
      attention_scale::interp_axis_view(&index[0], &value[0], in, out, width, nearest);
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
      if (axis.i0[dst] == src) { forward += Dtype(1) - axis.lambda[dst]; }
      if (axis.i1[dst] == src) { forward += axis.lambda[dst]; }
      if (nearest) { forward = (axis.i0[dst] == src) ? Dtype(1) : Dtype(0); }
      const int k = dst - first;
      if (k >= 0 && k < width) {
        EXPECT_EQ(axis.weight[src * width + k], forward) << "src " << src << " dst " << dst;
      } else {
        EXPECT_EQ(forward, Dtype(0)) << "src " << src << " dst " << dst << " outside window";
      }
    }
  }
}

TEST(ScaleInterpTablesTest, TestTablesTransposeForward) {
  const int sizes[][2] = {{1, 1}, {1, 5}, {5, 1}, {2, 2}, {2, 9}, {9, 2}, {3, 17}, {17, 3},
      {65, 513}, {321, 241}, {321, 41}, {41, 321}, {7, 7}, {10, 11}, {11, 10}, {6, 49}};
  for (int k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k) {
    for (int nearest = 0; nearest < 2; ++nearest) {
      CheckInterpAxisTables<float>(sizes[k][0], sizes[k][1], nearest);
      CheckInterpAxisTables<double>(sizes[k][0], sizes[k][1], nearest);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gradients.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Bad parameters and shapes stop with a message naming the layer, the bottom and the shapes.
// ---------------------------------------------------------------------------------------------

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
  ScaleInterpParameter* param() { return layer_param_.mutable_scale_interp_param(); }

  Blob<float>* const blob_bottom_;
  Blob<float>* const blob_ref_;
  Blob<float>* const blob_top_;
  vector<Blob<float>*> blob_bottom_vec_;
  vector<Blob<float>*> blob_top_vec_;
  LayerParameter layer_param_;
};

TEST_F(ScaleInterpLayerDeathTest, TestNoSize) {
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': give exactly one of "
               "zoom_factor and/or shrink_factor, height and width, scale, or a second "
               "bottom; got: none");
}

TEST_F(ScaleInterpLayerDeathTest, TestTwoSizes) {
  param()->set_zoom_factor(2);
  param()->set_scale(0.5f);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': give exactly one of .*"
               "got: zoom_factor/shrink_factor scale");
}

TEST_F(ScaleInterpLayerDeathTest, TestSizeAndReferenceBottom) {
  param()->set_height(4);
  param()->set_width(4);
  blob_bottom_vec_.push_back(blob_ref_);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': give exactly one of .*"
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
               "ScaleInterp layer 'interp': height and width must be >= 1, got height 0");
}

TEST_F(ScaleInterpLayerDeathTest, TestBadFactors) {
  param()->set_zoom_factor(0);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': zoom_factor must be >= 1, "
               "got 0");
  param()->clear_zoom_factor();
  param()->set_shrink_factor(-2);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': shrink_factor must be >= 1, "
               "got -2");
}

TEST_F(ScaleInterpLayerDeathTest, TestBadScale) {
  param()->set_scale(0);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': scale must be a finite "
               "number > 0, got 0");
  param()->set_scale(-0.5f);
  EXPECT_DEATH(SetUpLayer(layer_param_), "scale must be a finite number > 0, got -0.5");
}

TEST_F(ScaleInterpLayerDeathTest, TestPositivePad) {
  param()->set_zoom_factor(2);
  param()->set_pad_beg(1);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': pad_beg must be <= 0 "
               "\\(it crops\\), got 1");
  param()->set_pad_beg(0);
  param()->set_pad_end(2);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': pad_end must be <= 0 "
               "\\(it crops\\), got 2");
}

TEST_F(ScaleInterpLayerDeathTest, TestCropTooLarge) {
  param()->set_zoom_factor(2);
  param()->set_pad_beg(-3);
  param()->set_pad_end(-2);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has "
               "shape 2 3 5 6 \\(180\\), too small for pad_beg -3 and pad_end -2");
}

TEST_F(ScaleInterpLayerDeathTest, TestNot4D) {
  param()->set_zoom_factor(2);
  blob_bottom_->Reshape(vector<int>(3, 4));
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': bottom\\[0\\] 'fc8' has "
               "shape 4 4 4 \\(64\\), expected 4 axes");
  blob_bottom_->Reshape(2, 3, 5, 6);
  blob_ref_->Reshape(vector<int>(2, 7));
  blob_bottom_vec_.push_back(blob_ref_);
  param()->clear_zoom_factor();
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': bottom\\[1\\] 'label' has "
               "shape 7 7 \\(49\\), expected 4 axes");
}

TEST_F(ScaleInterpLayerDeathTest, TestTooManyBottoms) {
  blob_bottom_vec_.push_back(blob_ref_);
  blob_bottom_vec_.push_back(blob_ref_);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': takes 1 bottom .* or 2 "
               ".*, got 3");
}

TEST_F(ScaleInterpLayerDeathTest, TestTooLarge) {
  param()->set_height(100000);
  param()->set_width(100000);
  blob_bottom_->Reshape(1, 1, 20000, 2);
  EXPECT_DEATH(SetUpLayer(layer_param_), "ScaleInterp layer 'interp': output size 100000 x 100000 "
               "for bottom\\[0\\] 'fc8' of shape 1 1 20000 2 \\(40000\\) .*too large");
}

}  // namespace caffe
