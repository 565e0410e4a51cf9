#include "cpu/preprocess.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <vector>

namespace earthx {
namespace {

constexpr double kDbFloor = 1e-10;  // intensity floor before log10 (-100 dB), as in the reference

// A strided HWC view of the caller's array: non-contiguous inputs are read in place.
struct View {
  const char* data;
  int64_t h, w, c;
  int64_t sh, sw, sc;  // byte strides
};

View make_view(const py::array& a, const char* fn) {
  check_ndim(a, fn, "image", 3, "[H, W, C]");
  check_nonempty(a, fn, "image");
  return View{static_cast<const char*>(a.data()), a.shape(0), a.shape(1), a.shape(2),
              a.strides(0), a.strides(1), a.strides(2)};
}

// Raw value of one sample as double, and whether it is finite. Complex samples yield intensity.
template <typename T>
struct Sample {
  static double value(const char* p) { return static_cast<double>(*reinterpret_cast<const T*>(p)); }
  static bool finite(const char* p) {
    if constexpr (std::is_floating_point_v<T>) return std::isfinite(*reinterpret_cast<const T*>(p));
    return true;
  }
};
template <typename F>
struct Sample<std::complex<F>> {
  static double value(const char* p) {
    const auto z = *reinterpret_cast<const std::complex<F>*>(p);
    const double re = static_cast<double>(z.real()), im = static_cast<double>(z.imag());
    return re * re + im * im;
  }
  static bool finite(const char* p) {
    const auto z = *reinterpret_cast<const std::complex<F>*>(p);
    return std::isfinite(z.real()) && std::isfinite(z.imag());
  }
};

struct Params {
  int kind;
  int64_t bands;
  std::vector<double> p;  // [C, 4]
  bool has_nodata;
  double nodata;
  std::vector<double> lo, hi;  // percentile bounds per band
};

// Normalized value of a valid sample of band b (mirrors normalize_ref).
inline float norm_value(double x, const Params& P, int64_t b) {
  const double* p = &P.p[b * 4];
  switch (P.kind) {
    case kLinear:
      return static_cast<float>(x * p[0] + p[1]);
    case kSarAmplitude:
    case kSarIntensity:
    case kSarComplex: {
      const double intensity = P.kind == kSarAmplitude ? x * x : x;
      double db = 10.0 * std::log10(std::max(intensity, kDbFloor));
      db = std::min(std::max(db, p[2]), p[3]);
      return static_cast<float>(db * p[0] + p[1]);
    }
    default: {  // kPercentile
      const double lo = P.lo[b], hi = P.hi[b];
      double t = 0.0;
      if (hi > lo) t = std::min(std::max((x - lo) / (hi - lo), 0.0), 1.0);
      return static_cast<float>((t - p[2]) / p[3]);
    }
  }
}

// Normalizes row y of the view into out[W * C]; returns the number of invalid pixels in the row.
template <typename T>
int64_t load_row(const View& v, int64_t y, const Params& P, float* out) {
  int64_t invalid = 0;
  const char* row = v.data + y * v.sh;
  for (int64_t x = 0; x < v.w; ++x) {
    const char* px = row + x * v.sw;
    bool pixel_valid = true;
    for (int64_t b = 0; b < v.c; ++b) {
      const char* s = px + b * v.sc;
      bool ok = Sample<T>::finite(s);
      if (ok && P.has_nodata) ok = Sample<T>::value(s) != P.nodata;
      // NaN/Inf/nodata samples become 0.0 (the band mean), never propagate.
      out[x * v.c + b] = ok ? norm_value(Sample<T>::value(s), P, b) : 0.0f;
      pixel_valid &= ok;
    }
    invalid += pixel_valid ? 0 : 1;
  }
  return invalid;
}

// k-th smallest (0-based) of the valid samples of a band, for two ranks at once.
// Integer images of up to 16 bits use an exact histogram (O(n), no copy); others nth_element.
template <typename T>
void order_stats(const View& v, int64_t b, const Params& P, const int64_t rank[4], double out[4],
                 int64_t& n) {
  if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t>) {
    constexpr int64_t bins = int64_t(1) << (8 * sizeof(T));
    std::vector<int64_t> hist(bins, 0);
#pragma omp parallel
    {
      std::vector<int64_t> local(bins, 0);
#pragma omp for schedule(static) nowait
      for (int64_t y = 0; y < v.h; ++y)
        for (int64_t x = 0; x < v.w; ++x)
          ++local[at_bytes<T>(v.data, y * v.sh + x * v.sw + b * v.sc)];
#pragma omp critical
      for (int64_t i = 0; i < bins; ++i) hist[i] += local[i];
    }
    if (P.has_nodata && P.nodata >= 0 && P.nodata < bins && P.nodata == std::floor(P.nodata))
      hist[static_cast<int64_t>(P.nodata)] = 0;
    n = 0;
    for (int64_t i = 0; i < bins; ++i) n += hist[i];
    if (n == 0) return;
    for (int q = 0; q < 4; ++q) {
      int64_t seen = 0, i = 0;
      while (seen + hist[i] <= rank[q]) seen += hist[i++];
      out[q] = static_cast<double>(i);
    }
  } else {
    std::vector<double> vals;
    vals.reserve(static_cast<size_t>(v.h * v.w));
    for (int64_t y = 0; y < v.h; ++y)
      for (int64_t x = 0; x < v.w; ++x) {
        const char* s = v.data + y * v.sh + x * v.sw + b * v.sc;
        if (!Sample<T>::finite(s)) continue;
        const double val = Sample<T>::value(s);
        if (P.has_nodata && val == P.nodata) continue;
        vals.push_back(val);
      }
    n = static_cast<int64_t>(vals.size());
    if (n == 0) return;
    for (int q = 0; q < 4; ++q) {
      std::nth_element(vals.begin(), vals.begin() + rank[q], vals.end());
      out[q] = vals[rank[q]];
    }
  }
}

// Valid-sample count of a band, needed before the ranks are known.
template <typename T>
int64_t valid_count(const View& v, int64_t b, const Params& P) {
  if constexpr (std::is_integral_v<T>) {
    if (!P.has_nodata) return v.h * v.w;
  }
  int64_t n = 0;
#pragma omp parallel for schedule(static) reduction(+ : n)
  for (int64_t y = 0; y < v.h; ++y)
    for (int64_t x = 0; x < v.w; ++x) {
      const char* s = v.data + y * v.sh + x * v.sw + b * v.sc;
      n += Sample<T>::finite(s) && !(P.has_nodata && Sample<T>::value(s) == P.nodata);
    }
  return n;
}

// Percentile bounds per band from the valid samples (mirrors _percentile_pair).
template <typename T>
void percentile_bounds(const View& v, Params& P) {
  P.lo.assign(v.c, 0.0);
  P.hi.assign(v.c, 0.0);
  for (int64_t b = 0; b < v.c; ++b) {
    const int64_t n = valid_count<T>(v, b, P);
    if (n == 0)
      fail_value("image: band ", b, " has no valid pixel (all NaN, Inf or nodata): percentile ",
                 "scaling needs at least one");
    double pos[2];
    int64_t rank[4];
    for (int q = 0; q < 2; ++q) {
      pos[q] = P.p[b * 4 + q] / 100.0 * static_cast<double>(n - 1);
      rank[2 * q] = std::min(static_cast<int64_t>(std::floor(pos[q])), n - 1);
      rank[2 * q + 1] = std::min(rank[2 * q] + 1, n - 1);
    }
    double val[4];
    int64_t counted = 0;
    order_stats<T>(v, b, P, rank, val, counted);
    double bound[2];
    for (int q = 0; q < 2; ++q) {
      const double a = val[2 * q], bb = val[2 * q + 1];
      bound[q] = a + (bb - a) * (pos[q] - static_cast<double>(rank[2 * q]));
    }
    P.lo[b] = bound[0];
    P.hi[b] = bound[1];
  }
}

// Source indices and weights of one axis (mirrors _axis_taps).
struct Taps {
  int64_t k = 0;
  std::vector<int64_t> idx;  // [n_out, k]
  std::vector<float> w;      // [n_out, k]
};

Taps axis_taps(int64_t n_in, int64_t n_out, const std::string& mode) {
  Taps t;
  const double s = static_cast<double>(n_in) / static_cast<double>(n_out);
  const bool area = (mode == "area" || mode == "auto") && n_out < n_in;
  if (area) {
    std::vector<int64_t> k0(n_out), k1(n_out);
    for (int64_t j = 0; j < n_out; ++j) {
      k0[j] = static_cast<int64_t>(std::floor(static_cast<double>(j) * s));
      k1[j] = std::min(static_cast<int64_t>(std::ceil((static_cast<double>(j) + 1.0) * s)), n_in);
      t.k = std::max(t.k, k1[j] - k0[j]);
    }
    t.idx.resize(n_out * t.k);
    t.w.resize(n_out * t.k);
    for (int64_t j = 0; j < n_out; ++j) {
      const double start = static_cast<double>(j) * s, end = (static_cast<double>(j) + 1.0) * s;
      for (int64_t q = 0; q < t.k; ++q) {
        const int64_t i = k0[j] + q;
        const double lo = std::max(static_cast<double>(i), start);
        const double hi = std::min(static_cast<double>(i + 1), end);
        t.w[j * t.k + q] = i < k1[j] ? static_cast<float>((hi - lo) / s) : 0.0f;
        t.idx[j * t.k + q] = std::min(i, k1[j] - 1);
      }
    }
    return t;
  }
  t.k = 2;
  t.idx.resize(n_out * 2);
  t.w.resize(n_out * 2);
  for (int64_t j = 0; j < n_out; ++j) {
    const double src = std::min(std::max((static_cast<double>(j) + 0.5) * s - 0.5, 0.0),
                                static_cast<double>(n_in - 1));
    const int64_t i0 = static_cast<int64_t>(std::floor(src));
    const double f = src - static_cast<double>(i0);
    t.idx[j * 2] = i0;
    t.idx[j * 2 + 1] = std::min(i0 + 1, n_in - 1);
    t.w[j * 2] = static_cast<float>(1.0 - f);
    t.w[j * 2 + 1] = static_cast<float>(f);
  }
  return t;
}

// The fused loop: rows come from `load(y, buf)`, are resampled along W into tmp [H, out_w, C],
// then along H; the result goes to out as HWC [out_h, out_w, C] or, with chw_size > 0, as CHW into
// a [C, chw_size, chw_size] buffer whose padding the caller has zeroed.
template <typename Load>
int64_t resample(int64_t h, int64_t w, int64_t c, int64_t out_h, int64_t out_w,
                 const std::string& mode, Load load, float* out, int64_t chw_size) {
  const Taps tx = axis_taps(w, out_w, mode), ty = axis_taps(h, out_h, mode);
  std::vector<float> tmp(static_cast<size_t>(h * out_w * c));
  int64_t invalid = 0;
#pragma omp parallel reduction(+ : invalid)
  {
    std::vector<float> row(static_cast<size_t>(w * c));
#pragma omp for schedule(static)
    for (int64_t y = 0; y < h; ++y) {
      invalid += load(y, row.data());
      float* dst = &tmp[y * out_w * c];
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t* idx = &tx.idx[j * tx.k];
        const float* wt = &tx.w[j * tx.k];
        for (int64_t b = 0; b < c; ++b) {
          float acc = 0.0f;
          for (int64_t q = 0; q < tx.k; ++q) acc += row[idx[q] * c + b] * wt[q];
          dst[j * c + b] = acc;
        }
      }
    }
  }
  const int64_t n = out_w * c;
#pragma omp parallel
  {
    std::vector<float> acc(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < out_h; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t q = 0; q < ty.k; ++q) {
        const float* src = &tmp[ty.idx[i * ty.k + q] * n];
        const float wt = ty.w[i * ty.k + q];
        for (int64_t e = 0; e < n; ++e) acc[e] += src[e] * wt;
      }
      if (chw_size > 0) {
        for (int64_t b = 0; b < c; ++b) {
          float* dst = out + (b * chw_size + i) * chw_size;
          for (int64_t j = 0; j < out_w; ++j) dst[j] = acc[j * c + b];
        }
      } else {
        std::memcpy(out + i * n, acc.data(), sizeof(float) * n);
      }
    }
  }
  return invalid;
}

Params make_params(const py::array& image, int kind, const py::array& params,
                   const py::object& nodata, const char* fn) {
  if (kind < kLinear || kind > kPercentile)
    fail_value(fn, ": kind must be a code in 0..4 (earthx_sdk.ops.preprocess), got ", kind);
  check_dtype<double>(params, fn, "params", "float64");
  if (params.ndim() != 2 || params.shape(0) != image.shape(2) || params.shape(1) != 4)
    fail_value(fn, ": params must be [C, 4] with C = ", image.shape(2), " bands, got ",
               shape_str(params));
  Params P;
  P.kind = kind;
  P.bands = image.shape(2);
  auto pc = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(params);
  P.p.assign(pc.data(), pc.data() + pc.size());
  P.has_nodata = !nodata.is_none();
  P.nodata = P.has_nodata ? nodata.cast<double>() : 0.0;
  if (P.has_nodata && std::isnan(P.nodata)) fail_value(fn, ": nodata must not be NaN");
  return P;
}

// Calls f.template operator()<T>() with T the image's element type, or raises TypeError.
template <typename F>
auto dispatch_dtype(const py::array& a, int kind, const char* fn, F&& f) {
  const bool is_complex = a.dtype().kind() == 'c';
  if (is_complex != (kind == kSarComplex))
    fail_type(fn, ": image dtype ", dtype_str(a), " does not fit the normalization kind ", kind,
              " (complex input needs sar_input='complex', and only it)");
  if (a.dtype().is(py::dtype::of<uint8_t>())) return f.template operator()<uint8_t>();
  if (a.dtype().is(py::dtype::of<uint16_t>())) return f.template operator()<uint16_t>();
  if (a.dtype().is(py::dtype::of<int16_t>())) return f.template operator()<int16_t>();
  if (a.dtype().is(py::dtype::of<int32_t>())) return f.template operator()<int32_t>();
  if (a.dtype().is(py::dtype::of<float>())) return f.template operator()<float>();
  if (a.dtype().is(py::dtype::of<double>())) return f.template operator()<double>();
  if (a.dtype().is(py::dtype::of<std::complex<float>>()))
    return f.template operator()<std::complex<float>>();
  if (a.dtype().is(py::dtype::of<std::complex<double>>()))
    return f.template operator()<std::complex<double>>();
  fail_type(fn, ": image must have dtype uint8, uint16, int16, int32, float32, float64, complex64 ",
            "or complex128, got ", dtype_str(a));
}

void check_mode(const std::string& mode, const char* fn) {
  if (mode != "auto" && mode != "bilinear" && mode != "area")
    fail_value(fn, ": mode must be 'auto', 'bilinear' or 'area', got '", mode, "'");
}

}  // namespace

py::tuple normalize(py::array image, int kind, py::array params, py::object nodata) {
  const char* fn = "normalize";
  const View v = make_view(image, fn);
  Params P = make_params(image, kind, params, nodata, fn);
  py::array_t<float> out({v.h, v.w, v.c});
  float* o = out.mutable_data();
  int64_t invalid = dispatch_dtype(image, kind, fn, [&]<typename T>() {
    py::gil_scoped_release nogil;
    if (P.kind == kPercentile) percentile_bounds<T>(v, P);
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int64_t y = 0; y < v.h; ++y) bad += load_row<T>(v, y, P, o + y * v.w * v.c);
    return bad;
  });
  return py::make_tuple(out, invalid);
}

py::array resize(py::array image, int64_t out_h, int64_t out_w, const std::string& mode) {
  const char* fn = "resize";
  check_dtype<float>(image, fn, "image", "float32");
  const View v = make_view(image, fn);
  check_positive(out_h, fn, "out_h");
  check_positive(out_w, fn, "out_w");
  check_mode(mode, fn);
  py::array_t<float> out({out_h, out_w, v.c});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    auto load = [&](int64_t y, float* row) -> int64_t {
      const char* r = v.data + y * v.sh;
      for (int64_t x = 0; x < v.w; ++x)
        for (int64_t b = 0; b < v.c; ++b)
          row[x * v.c + b] = at_bytes<float>(r, x * v.sw + b * v.sc);
      return 0;
    };
    resample(v.h, v.w, v.c, out_h, out_w, mode, load, o, 0);
  }
  return out;
}

py::tuple preprocess(py::array image, int kind, py::array params, py::object nodata, int64_t out_h,
                     int64_t out_w, int64_t size, const std::string& mode) {
  const char* fn = "preprocess";
  const View v = make_view(image, fn);
  Params P = make_params(image, kind, params, nodata, fn);
  check_positive(size, fn, "size");
  check_positive(out_h, fn, "out_h");
  check_positive(out_w, fn, "out_w");
  if (out_h > size || out_w > size)
    fail_value(fn, ": the resized image (", out_h, ", ", out_w, ") must fit in size ", size);
  check_mode(mode, fn);
  py::array_t<float> out({v.c, size, size});
  float* o = out.mutable_data();
  int64_t invalid = dispatch_dtype(image, kind, fn, [&]<typename T>() {
    py::gil_scoped_release nogil;
    if (P.kind == kPercentile) percentile_bounds<T>(v, P);
    // Zero the padding only: the right strip of each resized row and the rows below.
    for (int64_t b = 0; b < v.c; ++b) {
      float* plane = o + b * size * size;
      for (int64_t i = 0; i < out_h; ++i)
        std::fill(plane + i * size + out_w, plane + (i + 1) * size, 0.0f);
      std::fill(plane + out_h * size, plane + size * size, 0.0f);
    }
    auto load = [&](int64_t y, float* row) { return load_row<T>(v, y, P, row); };
    return resample(v.h, v.w, v.c, out_h, out_w, mode, load, o, size);
  });
  return py::make_tuple(out, invalid);
}

}  // namespace earthx
