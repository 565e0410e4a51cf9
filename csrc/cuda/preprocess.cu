#include <cuda_runtime.h>

#include <cmath>

#include "preprocess.h"

namespace earthx {
namespace cuda {
namespace {

constexpr double kDbFloor = 1e-10;

// Raw sample as double and its validity; complex samples yield intensity (mirrors Sample<T>).
template <typename T>
__device__ __forceinline__ bool load(const char* p, double& x) {
  const T v = *reinterpret_cast<const T*>(p);
  x = static_cast<double>(v);
  if constexpr (std::is_floating_point_v<T>) return isfinite(v);
  return true;
}
template <>
__device__ __forceinline__ bool load<float2>(const char* p, double& x) {
  const float2 z = *reinterpret_cast<const float2*>(p);
  const double re = z.x, im = z.y;
  x = re * re + im * im;
  return isfinite(z.x) && isfinite(z.y);
}

__device__ __forceinline__ float norm_value(double x, const PreprocessArgs& a, int b) {
  const double* p = a.p[b];
  if (a.kind == 0) return static_cast<float>(x * p[0] + p[1]);
  if (a.kind >= 1 && a.kind <= 3) {
    const double intensity = a.kind == 1 ? x * x : x;
    double db = 10.0 * log10(fmax(intensity, kDbFloor));
    db = fmin(fmax(db, p[2]), p[3]);
    return static_cast<float>(db * p[0] + p[1]);
  }
  const double lo = a.lo[b], hi = a.hi[b];
  double t = 0.0;
  if (hi > lo) t = fmin(fmax((x - lo) / (hi - lo), 0.0), 1.0);
  return static_cast<float>((t - p[2]) / p[3]);
}

template <typename T>
__device__ __forceinline__ float sample(const PreprocessArgs& a, int64_t y, int64_t x, int b) {
  const char* s = static_cast<const char*>(a.src) + y * a.sh + x * a.sw + b * a.sc;
  double v;
  bool ok = load<T>(s, v);
  if (ok && a.has_nodata) ok = v != a.nodata;
  return ok ? norm_value(v, a, b) : 0.0f;
}

// The taps of one axis, computed on the fly with the CPU's double formulas (axis_taps). Zero-weight
// padding taps of the CPU path add exact zeros and are skipped here.
struct Axis {
  int64_t n_in, n_out;
  double s;
  bool area;
  __device__ Axis(int64_t in, int64_t out, int area_mode)
      : n_in(in), n_out(out), s(static_cast<double>(in) / static_cast<double>(out)),
        area(area_mode && out < in) {}
  __device__ void range(int64_t j, int64_t& first, int64_t& end) const {
    if (area) {
      first = static_cast<int64_t>(floor(static_cast<double>(j) * s));
      end = min(static_cast<int64_t>(ceil((static_cast<double>(j) + 1.0) * s)), n_in);
    } else {
      first = 0;
      end = 2;
    }
  }
  __device__ void tap(int64_t j, int64_t q, int64_t first, int64_t end, int64_t& idx,
                      float& w) const {
    if (area) {
      const double start = static_cast<double>(j) * s, stop = (static_cast<double>(j) + 1.0) * s;
      const double lo = fmax(static_cast<double>(q), start);
      const double hi = fmin(static_cast<double>(q + 1), stop);
      idx = q;
      w = static_cast<float>((hi - lo) / s);
      return;
    }
    const double src = fmin(fmax((static_cast<double>(j) + 0.5) * s - 0.5, 0.0),
                            static_cast<double>(n_in - 1));
    const int64_t i0 = static_cast<int64_t>(floor(src));
    const double f = src - static_cast<double>(i0);
    idx = q == 0 ? i0 : min(i0 + 1, n_in - 1);
    w = static_cast<float>(q == 0 ? 1.0 - f : f);
  }
};

template <typename T>
__global__ void preprocess_kernel(const PreprocessArgs a) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int b = blockIdx.z;
  if (j >= a.size || i >= a.size) return;
  float* out = a.dst + (static_cast<int64_t>(b) * a.size + i) * a.size + j;
  if (i >= a.out_h || j >= a.out_w) {
    *out = 0.0f;  // padding
    return;
  }
  const Axis ax(a.w, a.out_w, a.area), ay(a.h, a.out_h, a.area);
  int64_t x0, x1, y0, y1;
  ax.range(j, x0, x1);
  ay.range(i, y0, y1);
  const bool ya = ay.area, xa = ax.area;
  float acc = 0.0f;
  for (int64_t qy = ya ? y0 : 0; qy < (ya ? y1 : 2); ++qy) {
    int64_t iy;
    float wy;
    ay.tap(i, qy, y0, y1, iy, wy);
    float row = 0.0f;  // the horizontal pass of source row iy at output column j
    for (int64_t qx = xa ? x0 : 0; qx < (xa ? x1 : 2); ++qx) {
      int64_t ix;
      float wx;
      ax.tap(j, qx, x0, x1, ix, wx);
      row += sample<T>(a, iy, ix, b) * wx;
    }
    acc += row * wy;
  }
  *out = acc;
}

}  // namespace

const char* launch_preprocess(const PreprocessArgs& args, uintptr_t stream) {
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((args.size + block.x - 1) / block.x),
                  static_cast<unsigned>((args.size + block.y - 1) / block.y),
                  static_cast<unsigned>(args.c));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (args.src_type) {
    case kU8: preprocess_kernel<uint8_t><<<grid, block, 0, s>>>(args); break;
    case kU16: preprocess_kernel<uint16_t><<<grid, block, 0, s>>>(args); break;
    case kI16: preprocess_kernel<int16_t><<<grid, block, 0, s>>>(args); break;
    case kI32: preprocess_kernel<int32_t><<<grid, block, 0, s>>>(args); break;
    case kF32: preprocess_kernel<float><<<grid, block, 0, s>>>(args); break;
    case kF64: preprocess_kernel<double><<<grid, block, 0, s>>>(args); break;
    case kC64: preprocess_kernel<float2><<<grid, block, 0, s>>>(args); break;
    default: return "unsupported source type";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace cuda
}  // namespace earthx
