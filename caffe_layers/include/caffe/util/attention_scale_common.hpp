// Attention to Scale for Caffe: what the three layers' maths and checks share.
//
// ATS_HOST_DEVICE marks the element functions of caffe/util/scale_interp.hpp,
// softmax_over_scales.hpp and weighted_scale_sum.hpp: host and device
// functions under nvcc, plain inline functions elsewhere, so the CPU loops and
// the CUDA kernels run one body. The host-only helpers build the error
// messages: "<Type> layer '<name>'", "bottom[i] '<blob>'" and shapes written
// as Blob::shape_string() writes them, and the shape check every bottom passes.
#ifndef CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_
#define CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_

#include <stdint.h>
#include <string.h>

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

// ATS_UNROLL: "#pragma unroll" for the device compiler (loops over small
// register arrays), nothing for the host compiler, which does not know it.
#ifdef __CUDA_ARCH__
#define ATS_UNROLL _Pragma("unroll")
#else
#define ATS_UNROLL
#endif

// The CPU loops' row and block helpers stay out of line (ATS_NOINLINE):
// inlined into their callers, GCC 12 no longer used the __restrict__ of their
// parameters and did not vectorize them.
#if defined(__GNUC__)
#define ATS_NOINLINE __attribute__((noinline))
#else
#define ATS_NOINLINE
#endif

// ATS_CPU_LOOP marks those helpers, which GCC on x86-64 Linux also compiles
// twice, for AVX2 and for the baseline (SSE2), the loader picking the one the
// CPU runs (function multiversioning, as OpenCV dispatches its own loops).
// AVX2 alone, without FMA: the same operations on wider registers, in the same
// order per element, so the same results to the bit. target_clones needs the
// loader's ifunc support (glibc) and GCC 6 or later; Clang (14 tried) refuses
// it on function templates and with noinline, so Clang builds take the
// baseline loops only.
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute) && \
    defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && \
    !defined(ATS_NO_CPU_DISPATCH)
#if __has_attribute(target_clones)
#define ATS_CPU_LOOP __attribute__((noinline, target_clones("avx2", "default")))
#endif
#endif
#ifndef ATS_CPU_LOOP
#define ATS_CPU_LOOP ATS_NOINLINE
#endif

// The CPU loops share independent blocks of outputs out among OpenMP threads
// where Caffe was built with OpenMP (USE_OPENMP, tools/build_caffe.py
// --openmp). Every output is computed by one thread in the same order as
// without threads, so the results do not depend on the thread count.
#ifdef _OPENMP
#include <omp.h>
#endif

namespace caffe {
namespace attention_scale {

// ATS_KERNEL_LOOP(i, n): the kernels' grid-stride loop over [0, n), in place
// of Caffe's CUDA_KERNEL_LOOP, on a grid of at most AtsBlocks(n, threads)
// blocks. Caffe's int index overflows: with a grid that covers n, a thread's
// second index i + blockDim.x * gridDim.x passes INT_MAX for every n above
// 2^30, wraps negative, still passes i < n, and the body ran with a negative
// index. Here i is unsigned: i < n <= INT_MAX < 2^31 and the stride is at most
// 2^31 (AtsBlocks caps the grid), so i + stride < 2^32 never wraps; the body
// hands i to the element functions as an int. (A 64-bit index is as correct
// but took up to 11 more registers a thread, 8 in AttentionForward<float, 6>,
// with ptxas for sm_90; this one compiles to the registers of Caffe's loop.)
#define ATS_KERNEL_LOOP(i, n)                                              \
  for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;             \
       i < static_cast<unsigned int>(n); i += blockDim.x * gridDim.x)

/// Blocks of `threads` threads for ATS_KERNEL_LOOP over n elements (0 <= n <=
/// INT_MAX): enough to cover n, computed in 64 bits (Caffe's
/// CAFFE_GET_BLOCKS(n) computes n + 511 in int, negative within 511 of
/// INT_MAX), but at most 2^31 threads in all, which the loop relies on (a
/// power of two threads a block covers any such n within it).
inline int AtsBlocks(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t most = (static_cast<int64_t>(1) << 31) / threads;
  return static_cast<int>(blocks < most ? blocks : most);
}

/// Threads the CPU loops may use (OMP_NUM_THREADS; 1 without OpenMP).
inline int MaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// The calling thread's number within its parallel loop (0 outside).
inline int ThreadNum() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Unsigned integers of the size of float and double, for selects on bits.
template <typename Dtype> struct AtsBits;
template <> struct AtsBits<float> { typedef uint32_t Type; };
template <> struct AtsBits<double> { typedef uint64_t Type; };

/// cond ? a : b for floats, without a branch. On the host a select on the
/// bits: compilers turn a ?: between floating-point values into a branch and
/// then refuse to vectorize the loop (the arithmetic of the other arm may
/// trap), while an integer select vectorizes; on the device the plain ?:.
template <typename Dtype>
ATS_HOST_DEVICE inline Dtype ats_select(bool cond, Dtype a, Dtype b) {
#ifdef __CUDA_ARCH__
  return cond ? a : b;
#else
  typedef typename AtsBits<Dtype>::Type Bits;
  Bits a_bits, b_bits;
  memcpy(&a_bits, &a, sizeof(a));  // NOLINT(caffe/alt_fn): bits, not Dtypes
  memcpy(&b_bits, &b, sizeof(b));  // NOLINT(caffe/alt_fn): bits, not Dtypes
  const Bits mask = Bits(0) - static_cast<Bits>(cond);
  const Bits bits = (a_bits & mask) | (b_bits & ~mask);
  Dtype result;
  memcpy(&result, &bits, sizeof(result));  // NOLINT(caffe/alt_fn): bits
  return result;
#endif
}

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

/// Stops, naming the layer, the bottom and its shape, unless bottom i is 4-D
/// with every axis at least 1; `axes` names the axes ("N x C x H x W"). Empty
/// bottoms are refused in all three layers: there is nothing to compute, and an
/// empty blob in a multi-scale net is a mistake upstream (a crop or a resize to
/// nothing) better reported where it first shows.
template <typename Dtype>
inline void CheckBottom4D(const std::string& layer, const LayerParameter& param,
    const Blob<Dtype>& blob, int i, const char* axes) {
  CHECK_EQ(blob.num_axes(), 4)
      << layer << ": " << BottomLabel(param, i) << " has shape "
      << blob.shape_string() << ", expected 4 axes (" << axes << ")";
  CHECK_GT(blob.count(), 0)
      << layer << ": " << BottomLabel(param, i) << " has shape "
      << blob.shape_string() << ", expected every axis >= 1 (" << axes
      << "; empty blobs are not supported)";
}

}  // namespace attention_scale
}  // namespace caffe

#endif  // CAFFE_UTIL_ATTENTION_SCALE_COMMON_HPP_
