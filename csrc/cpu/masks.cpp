#include "cpu/masks.h"
#include "cpu/mask_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace earthx {
namespace {

using namespace mask_util;

// ================================================================================================
// Logit upsampling
// ================================================================================================

// Bilinear taps of one axis: output pixel j reads i0[j] * w0[j] + i1[j] * w1[j].
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> w0, w1;
};

// Source position of output pixel j: (j + 0.5) * (resized / out) * (in / size) - 0.5, in float64
// and in this order (the reference's), clamped to [0, in - 1].
Taps axis_taps(int64_t out, int64_t in, int64_t resized, int64_t size) {
  Taps t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w0.resize(out);
  t.w1.resize(out);
  const double s_resize = static_cast<double>(resized) / static_cast<double>(out);
  const double s_logits = static_cast<double>(in) / static_cast<double>(size);
  const double hi = static_cast<double>(in - 1);
  for (int64_t j = 0; j < out; ++j) {
    double x = (static_cast<double>(j) + 0.5) * s_resize * s_logits - 0.5;
    x = std::min(std::max(x, 0.0), hi);
    const double x0 = std::floor(x);
    const double f = x - x0;
    t.i0[j] = static_cast<int64_t>(x0);
    t.i1[j] = std::min(t.i0[j] + 1, in - 1);
    t.w0[j] = static_cast<float>(1.0 - f);
    t.w1[j] = static_cast<float>(f);
  }
  return t;
}

struct Upsample {
  const char* data;
  int64_t n, h, w;
  int64_t sn, sh, sw;  // byte strides
  bool batched;
  int64_t out_h, out_w;
  Taps tx, ty;
};

Upsample prepare_upsample(const py::array& logits, int64_t size, const py::object& resized_hw,
                          const py::object& orig_hw, const char* fn) {
  check_dtype<float>(logits, fn, "logits", "float32");
  if (logits.ndim() != 2 && logits.ndim() != 3)
    fail_value(fn, ": logits must be [N, h, w] or [h, w] (ndim 3 or 2), got ", shape_str(logits));
  check_nonempty(logits, fn, "logits");
  check_positive(size, fn, "size");
  const auto [nh, nw] = parse_hw(resized_hw, fn, "resized_hw");
  const auto [oh, ow] = parse_hw(orig_hw, fn, "orig_hw");
  if (nh > size || nw > size)
    fail_value(fn, ": resized_hw must fit in the size x size input (each <= ", size, "), got (",
               nh, ", ", nw, ")");
  Upsample u;
  u.data = static_cast<const char*>(logits.data());
  u.batched = logits.ndim() == 3;
  const int a = u.batched ? 1 : 0;
  u.n = u.batched ? logits.shape(0) : 1;
  u.sn = u.batched ? logits.strides(0) : 0;
  u.h = logits.shape(a);
  u.w = logits.shape(a + 1);
  u.sh = logits.strides(a);
  u.sw = logits.strides(a + 1);
  u.out_h = oh;
  u.out_w = ow;
  u.tx = axis_taps(ow, u.w, nw, size);
  u.ty = axis_taps(oh, u.h, nh, size);
  return u;
}

// Vertical pass of output row i of image n: tmp[k] = row(y0)[k] * wy0 + row(y1)[k] * wy1.
inline void vertical_row(const Upsample& u, int64_t n, int64_t i, float* tmp) {
  const char* base = u.data + n * u.sn;
  const char* r0 = base + u.ty.i0[i] * u.sh;
  const char* r1 = base + u.ty.i1[i] * u.sh;
  const float a = u.ty.w0[i], b = u.ty.w1[i];
  if (u.sw == static_cast<int64_t>(sizeof(float))) {
    const float* p0 = reinterpret_cast<const float*>(r0);
    const float* p1 = reinterpret_cast<const float*>(r1);
    for (int64_t k = 0; k < u.w; ++k) tmp[k] = p0[k] * a + p1[k] * b;
  } else {
    for (int64_t k = 0; k < u.w; ++k)
      tmp[k] = at_bytes<float>(r0, k * u.sw) * a + at_bytes<float>(r1, k * u.sw) * b;
  }
}

// Runs `emit(row_index, tmp)` for every output row (n, i) in parallel; tmp holds its vertical pass.
template <typename Emit>
void for_each_row(const Upsample& u, Emit&& emit) {
  const int64_t rows = u.n * u.out_h;
  const int threads = num_threads();
  std::vector<float> scratch(static_cast<size_t>(threads) * static_cast<size_t>(u.w));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
#ifdef EARTHX_OPENMP
    float* tmp = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * u.w;
#else
    float* tmp = scratch.data();
#endif
    vertical_row(u, r / u.out_h, r % u.out_h, tmp);
    emit(r, tmp);
  }
}

std::vector<py::ssize_t> out_shape(const Upsample& u) {
  if (u.batched) return {u.n, u.out_h, u.out_w};
  return {u.out_h, u.out_w};
}
}  // namespace

py::array upsample_logits(py::array logits, int64_t size, py::object resized_hw,
                          py::object orig_hw) {
  const Upsample u = prepare_upsample(logits, size, resized_hw, orig_hw, "upsample_logits");
  py::array_t<float> out(out_shape(u));
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const int64_t W = u.out_w;
    const int64_t* x0 = u.tx.i0.data();
    const int64_t* x1 = u.tx.i1.data();
    const float* w0 = u.tx.w0.data();
    const float* w1 = u.tx.w1.data();
    for_each_row(u, [&](int64_t r, const float* tmp) {
      float* dst = o + r * W;
      for (int64_t j = 0; j < W; ++j) dst[j] = tmp[x0[j]] * w0[j] + tmp[x1[j]] * w1[j];
    });
  }
  return out;
}

py::array postprocess_masks(py::array logits, int64_t size, py::object resized_hw,
                            py::object orig_hw, double threshold) {
  const char* fn = "postprocess_masks";
  const Upsample u = prepare_upsample(logits, size, resized_hw, orig_hw, fn);
  if (std::isnan(threshold)) fail_value(fn, ": threshold must not be NaN");
  py::array_t<uint8_t> out(out_shape(u));
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const int64_t W = u.out_w;
    const int64_t* x0 = u.tx.i0.data();
    const int64_t* x1 = u.tx.i1.data();
    const float* w0 = u.tx.w0.data();
    const float* w1 = u.tx.w1.data();
    for_each_row(u, [&](int64_t r, const float* tmp) {
      uint8_t* dst = o + r * W;
      for (int64_t j = 0; j < W; ++j) {
        const float v = tmp[x0[j]] * w0[j] + tmp[x1[j]] * w1[j];  // the upsampled logit, exactly
        dst[j] = static_cast<double>(v) > threshold;  // NaN compares false: pixel off
      }
    });
  }
  return out;
}

}  // namespace earthx
