// Python glue of the CUDA preprocess (csrc/cuda/preprocess.cu): checks the arguments and launches.
// Always compiled, so the ABI is the same with or without CUDA; without it the call raises.
#include <cmath>
#include <cstring>

#include "common.h"
#include "cpu/preprocess.h"
#include "cuda/preprocess.h"

namespace earthx {

void preprocess_cuda(uintptr_t src, std::vector<int64_t> shape, std::vector<int64_t> strides,
                     const std::string& typestr, int kind, py::array params, py::object bounds,
                     py::object nodata, uintptr_t dst, int64_t out_h, int64_t out_w, int64_t size,
                     const std::string& mode, uintptr_t stream) {
  const char* fn = "preprocess_cuda";
#ifndef EARTHX_WITH_CUDA
  (void)src, (void)shape, (void)strides, (void)typestr, (void)kind, (void)params, (void)bounds;
  (void)nodata, (void)dst, (void)out_h, (void)out_w, (void)size, (void)mode, (void)stream;
  throw std::runtime_error(std::string(fn) + ": this build of earthx_sdk._C has no CUDA (built "
                           "with EARTHX_CUDA=OFF or without nvcc)");
#else
  if (src == 0 || dst == 0) fail_value(fn, ": src and dst must be device pointers, got 0");
  if (shape.size() != 3 || strides.size() != 3)
    fail_value(fn, ": shape and strides must have 3 entries (H, W, C), got ", shape.size(), " and ",
               strides.size());
  for (auto d : shape)
    if (d < 1) fail_value(fn, ": image must not be empty, got a dim of ", d);
  if (shape[2] > cuda::kMaxBands)
    fail_value(fn, ": at most ", cuda::kMaxBands, " bands on CUDA, got ", shape[2]);
  static const char* types[] = {"<u1", "<u2", "<i2", "<i4", "<f4", "<f8", "<c8"};
  int src_type = -1;
  for (int t = 0; t < 7; ++t)
    if (typestr == types[t] || (t == 0 && typestr == "|u1")) src_type = t;
  if (src_type < 0)
    fail_type(fn, ": image typestr must be one of <u1 <u2 <i2 <i4 <f4 <f8 <c8, got '", typestr, "'");
  if ((src_type == cuda::kC64) != (kind == kSarComplex))
    fail_type(fn, ": image type '", typestr, "' does not fit the normalization kind ", kind);
  if (kind < kLinear || kind > kPercentile) fail_value(fn, ": kind must be in 0..4, got ", kind);
  check_positive(size, fn, "size");
  check_positive(out_h, fn, "out_h");
  check_positive(out_w, fn, "out_w");
  if (out_h > size || out_w > size)
    fail_value(fn, ": the resized image (", out_h, ", ", out_w, ") must fit in size ", size);
  if (mode != "auto" && mode != "bilinear" && mode != "area")
    fail_value(fn, ": mode must be 'auto', 'bilinear' or 'area', got '", mode, "'");
  check_dtype<double>(params, fn, "params", "float64");
  if (params.ndim() != 2 || params.shape(0) != shape[2] || params.shape(1) != 4)
    fail_value(fn, ": params must be [C, 4] with C = ", shape[2], ", got ", shape_str(params));

  cuda::PreprocessArgs a{};
  a.src = reinterpret_cast<const void*>(src);
  a.h = shape[0], a.w = shape[1], a.c = shape[2];
  a.sh = strides[0], a.sw = strides[1], a.sc = strides[2];
  a.src_type = src_type;
  a.kind = kind;
  auto pc = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(params);
  for (int64_t b = 0; b < a.c; ++b)
    for (int q = 0; q < 4; ++q) a.p[b][q] = pc.data()[b * 4 + q];
  if (kind == kPercentile) {
    if (bounds.is_none())
      fail_value(fn, ": percentile scaling needs bounds [C, 2] (lo, hi) computed by the caller");
    auto bd = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(bounds);
    if (!bd || bd.ndim() != 2 || bd.shape(0) != a.c || bd.shape(1) != 2)
      fail_value(fn, ": bounds must be float64 [C, 2] with C = ", a.c);
    for (int64_t b = 0; b < a.c; ++b) a.lo[b] = bd.data()[b * 2], a.hi[b] = bd.data()[b * 2 + 1];
  }
  a.has_nodata = !nodata.is_none();
  a.nodata = a.has_nodata ? nodata.cast<double>() : 0.0;
  if (a.has_nodata && std::isnan(a.nodata)) fail_value(fn, ": nodata must not be NaN");
  a.dst = reinterpret_cast<float*>(dst);
  a.out_h = out_h, a.out_w = out_w, a.size = size;
  a.area = mode != "bilinear";
  const char* err = cuda::launch_preprocess(a, stream);
  if (err) throw std::runtime_error(std::string(fn) + ": kernel launch failed: " + err);
#endif
}

}  // namespace earthx
