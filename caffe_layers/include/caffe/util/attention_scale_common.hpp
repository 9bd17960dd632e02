// Attention to Scale for Caffe: what the three layers' maths and checks share.
//
// ATS_HOST_DEVICE marks the element functions of caffe/util/scale_interp.hpp,
// softmax_over_scales.hpp and weighted_scale_sum.hpp: host and device
// functions under nvcc, plain inline functions elsewhere, so the CPU loops and
// the CUDA kernels run one body. The host-only helpers build the error
// messages: "<Type> layer '<name>'", "bottom[i] '<blob>'" and shapes written
// as Blob::shape_string() writes them.
#ifndef CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_
#define CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_

#include <sstream>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/proto/caffe.pb.h"

#ifdef __CUDACC__
#define ATS_HOST_DEVICE __host__ __device__
#else
#define ATS_HOST_DEVICE
#endif

namespace caffe {
namespace attention_scale {

/// "<type> layer '<name>'", the start of every message of the three layers.
inline std::string LayerLabel(const char* type, const LayerParameter& param) {
  std::ostringstream os;
  os << type << " layer '" << param.name() << "'";
  return os.str();
}

/// "bottom[i] '<blob name>'" (the name where the layer parameter has one).
inline std::string BottomLabel(const LayerParameter& param, int i) {
  std::ostringstream os;
  os << "bottom[" << i << "]";
  if (i < param.bottom_size()) {
    os << " '" << param.bottom(i) << "'";
  }
  return os.str();
}

/// A shape written as Blob::shape_string() writes it: "2 1 4 5 (40)".
inline std::string ShapeString(const std::vector<int>& shape) {
  std::ostringstream os;
  int64_t count = 1;
  for (int i = 0; i < shape.size(); ++i) {
    os << shape[i] << " ";
    count *= shape[i];
  }
  os << "(" << count << ")";
  return os.str();
}

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_
