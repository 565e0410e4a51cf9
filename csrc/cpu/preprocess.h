// Preprocess: per-sensor normalization, separable resize (bilinear / area) and pad.
// The spec is earthx_sdk/ops/preprocess.py (normalize_ref, resize_ref, preprocess_ref).
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace earthx {

// Normalization kind codes (earthx_sdk/ops/preprocess.py: _KIND_*).
enum NormKind : int {
  kLinear = 0,
  kSarAmplitude = 1,
  kSarIntensity = 2,
  kSarComplex = 3,
  kPercentile = 4,
};

// image [H, W, C] (any strides), params float64 [C, 4] -> (float32 [H, W, C], invalid pixel count).
py::tuple normalize(py::array image, int kind, py::array params, py::object nodata);

// image float32 [H, W, C] (any strides) -> float32 [out_h, out_w, C]; mode "auto|bilinear|area".
py::array resize(py::array image, int64_t out_h, int64_t out_w, const std::string& mode);

// normalize + resize to (out_h, out_w) + zero pad -> (float32 [C, size, size], invalid count).
py::tuple preprocess(py::array image, int kind, py::array params, py::object nodata, int64_t out_h,
                     int64_t out_w, int64_t size, const std::string& mode);

// The same on a CUDA device buffer (csrc/preprocess_cuda.cpp, csrc/cuda/preprocess.cu): src is a
// device pointer read through byte strides of its HWC view, dst a C-contiguous float32
// [C, size, size] device buffer. Percentile bounds [C, 2] come from the caller. Asynchronous on
// `stream`; raises RuntimeError where CUDA was not compiled.
void preprocess_cuda(uintptr_t src, std::vector<int64_t> shape, std::vector<int64_t> strides,
                     const std::string& typestr, int kind, py::array params, py::object bounds,
                     py::object nodata, uintptr_t dst, int64_t out_h, int64_t out_w, int64_t size,
                     const std::string& mode, uintptr_t stream);

}  // namespace earthx
