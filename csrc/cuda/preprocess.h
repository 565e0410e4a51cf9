// CUDA preprocess: the same normalize -> resize -> pad as csrc/cpu/preprocess.cpp, one fused
// kernel over the output, reading the caller's device buffer in place (any strides).
// Plain C types only: this header is shared by nvcc and the host compiler.
#pragma once

#include <cstdint>

namespace earthx {
namespace cuda {

constexpr int kMaxBands = 16;

// Element types of the source buffer.
enum SrcType : int { kU8 = 0, kU16 = 1, kI16 = 2, kI32 = 3, kF32 = 4, kF64 = 5, kC64 = 6 };

struct PreprocessArgs {
  const void* src;
  int64_t h, w, c;
  int64_t sh, sw, sc;  // byte strides of the HWC view
  int src_type;
  int kind;              // NormKind of csrc/cpu/preprocess.h
  double p[kMaxBands][4];  // per-band params, as the CPU path
  double lo[kMaxBands], hi[kMaxBands];  // percentile bounds (kind 4), computed by the caller
  int has_nodata;
  double nodata;
  float* dst;  // [c, size, size], C-contiguous
  int64_t out_h, out_w, size;
  int area;  // 1: "area" where shrinking ("auto" or "area"); 0: bilinear everywhere
};

// Launches on `stream` (a cudaStream_t as an integer; 0 = legacy default). Returns an error
// string, or nullptr on success.
const char* launch_preprocess(const PreprocessArgs& args, uintptr_t stream);

}  // namespace cuda
}  // namespace earthx
