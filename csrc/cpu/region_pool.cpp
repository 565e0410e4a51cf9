// region_pool on the CPU: the arithmetic of region_pool_ref (earthx_sdk/ops/region_pool.py), which
// samples with grid_sample(bilinear, zeros, align_corners=False) in float32. Sample coordinates are
// computed in the same order of float32 operations as the reference (x = x0 + (k + 0.5) * (x1 - x0)
// / K, u = 2 x / W - 1, x_f = (u + 1) * (W_s / 2) - 0.5), so the taps and their weights are
// bit-identical; only the summation order differs.
//
// Per region, the K*K samples of each map become a list of taps (byte offset of a map pixel,
// summed weight: bilinear weight times the sample's mask weight), sorted by offset with duplicates
// merged (neighbouring samples share pixels on coarse maps). That list is built once and reused for
// every channel. Channels-first maps are read channel by channel, each one a gather of the taps
// from one plane (the next channels' taps are prefetched); channels-last maps are read tap by tap,
// each one a contiguous run of channels. Work items are (region, channel chunk), so that a few
// regions with many channels still occupy every thread.
#include "cpu/region_pool.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace earthx {

namespace {

constexpr const char* kFn = "region_pool";
// K*K*4 taps per map and region must stay small enough to allocate; 4 * 2^30 taps is plenty.
constexpr int64_t kMaxGrid = 1 << 15;
// Channels-first loop: prefetch the taps of the channel this far ahead.
constexpr int64_t kPrefetchAhead = 2;

// One float32 [B, C, H, W] feature map, strides in bytes.
struct Map {
  const char* data = nullptr;
  int64_t c = 0, h = 0, w = 0;
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;
  int64_t col = 0;              // first output column of this map (concatenation over scales)
  bool channels_inner = false;  // channels have the smallest stride: gather runs of channels
};

// The masks, float32 [B, R, Hm, Wm], strides in bytes.
struct Masks {
  const char* data = nullptr;
  int64_t h = 0, w = 0;
  int64_t sb = 0, sr = 0, sh = 0, sw = 0;
};

// One sample coordinate on one axis of a map of `size` pixels: the lower neighbour `lo`, the
// distances to it (`frac`) and to the upper neighbour (`rest` = 1 - frac), and which of the two
// neighbours lie inside the map (outside ones count as 0).
struct AxisTap {
  int64_t lo = 0;
  float frac = 0.0f, rest = 0.0f;
  bool lo_in = false, hi_in = false;
};

struct Tap {
  int64_t off;  // bytes from the map's batch plane
  float coef;
};

// Per-thread buffers, sized once before the parallel loop.
struct Scratch {
  std::vector<float> u, v;       // [K] normalized x and y of the sample grid
  std::vector<AxisTap> ax, ay;   // [K] per axis, for the map (or mask) at hand
  std::vector<float> weight;     // [K*K] mask weight per sample (row j, column k)
  std::vector<Tap> taps;         // [<= 4*K*K]
  std::vector<float> acc;        // [<= max C_s] channels-last accumulators
};

// Unnormalizes grid_sample coordinates `g` onto an axis of `size` pixels (align_corners=False).
void axis_taps(const std::vector<float>& g, int64_t size, std::vector<AxisTap>& out) {
  const float scale = static_cast<float>(size) / 2.0f;
  const float top = static_cast<float>(size);
  for (size_t k = 0; k < g.size(); ++k) {
    const float x = (g[k] + 1.0f) * scale - 0.5f;
    const float xl = std::floor(x);
    AxisTap& t = out[k];
    t.frac = x - xl;
    t.rest = 1.0f - t.frac;
    // Float comparisons (false for NaN) before any conversion: huge coordinates stay defined.
    t.lo_in = xl > -1.0f && xl < top;
    t.hi_in = xl > -2.0f && xl < top - 1.0f;
    t.lo = (t.lo_in || t.hi_in) ? static_cast<int64_t>(xl) : 0;
  }
}

// The mask of region (b, r) sampled at the K*K points into s.weight; returns the weight sum.
float mask_weights(const Masks& m, int64_t b, int64_t r, int64_t k, Scratch& s) {
  axis_taps(s.u, m.w, s.ax);
  axis_taps(s.v, m.h, s.ay);
  const char* plane = m.data + b * m.sb + r * m.sr;
  auto value = [&](int64_t y, int64_t x) { return at_bytes<float>(plane, y * m.sh + x * m.sw); };
  float den = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    const AxisTap& ty = s.ay[j];
    for (int64_t i = 0; i < k; ++i) {
      const AxisTap& tx = s.ax[i];
      // Corner weights and sum in the reference's order: nw, ne, sw, se.
      const float nw = ty.rest * tx.rest, ne = ty.rest * tx.frac;
      const float sw = ty.frac * tx.rest, se = ty.frac * tx.frac;
      const float v_nw = ty.lo_in && tx.lo_in ? value(ty.lo, tx.lo) : 0.0f;
      const float v_ne = ty.lo_in && tx.hi_in ? value(ty.lo, tx.lo + 1) : 0.0f;
      const float v_sw = ty.hi_in && tx.lo_in ? value(ty.lo + 1, tx.lo) : 0.0f;
      const float v_se = ty.hi_in && tx.hi_in ? value(ty.lo + 1, tx.lo + 1) : 0.0f;
      const float w = v_nw * nw + v_ne * ne + v_sw * sw + v_se * se;
      s.weight[j * k + i] = w;
      den += w;
    }
  }
  return den;
}

// The merged tap list of map `m` for the current sample grid (s.u, s.v) and weights.
void build_taps(const Map& m, int64_t k, bool weighted, Scratch& s) {
  axis_taps(s.u, m.w, s.ax);
  axis_taps(s.v, m.h, s.ay);
  s.taps.clear();
  for (int64_t j = 0; j < k; ++j) {
    const AxisTap& ty = s.ay[j];
    if (!ty.lo_in && !ty.hi_in) continue;
    for (int64_t i = 0; i < k; ++i) {
      const AxisTap& tx = s.ax[i];
      if (!tx.lo_in && !tx.hi_in) continue;
      const float w = weighted ? s.weight[j * k + i] : 1.0f;
      const int64_t off = ty.lo * m.sh + tx.lo * m.sw;
      if (ty.lo_in && tx.lo_in) s.taps.push_back({off, w * (ty.rest * tx.rest)});
      if (ty.lo_in && tx.hi_in) s.taps.push_back({off + m.sw, w * (ty.rest * tx.frac)});
      if (ty.hi_in && tx.lo_in) s.taps.push_back({off + m.sh, w * (ty.frac * tx.rest)});
      if (ty.hi_in && tx.hi_in) s.taps.push_back({off + m.sh + m.sw, w * (ty.frac * tx.frac)});
    }
  }
  // Sorted offsets: one weight per pixel, and the gather walks memory forwards.
  std::sort(s.taps.begin(), s.taps.end(), [](const Tap& a, const Tap& b) { return a.off < b.off; });
  size_t n = 0;
  for (size_t t = 0; t < s.taps.size(); ++t) {
    if (n > 0 && s.taps[n - 1].off == s.taps[t].off)
      s.taps[n - 1].coef += s.taps[t].coef;
    else
      s.taps[n++] = s.taps[t];
  }
  s.taps.resize(n);
}

// out[c - lo] = sum_t coef_t * map[b, c, tap_t] / den for channels [lo, hi) of map `m`.
void pool_channels(const Map& m, int64_t b, int64_t lo, int64_t hi, float den, Scratch& s,
                   float* out) {
  const char* base = m.data + b * m.sb;
  const Tap* taps = s.taps.data();
  const int64_t nt = static_cast<int64_t>(s.taps.size());
  if (m.channels_inner) {
    const int64_t n = hi - lo;
    float* acc = s.acc.data();
    std::fill(acc, acc + n, 0.0f);
    if (m.sc == static_cast<int64_t>(sizeof(float))) {
      for (int64_t t = 0; t < nt; ++t) {
        const float* p = reinterpret_cast<const float*>(base + taps[t].off) + lo;
        const float coef = taps[t].coef;
        for (int64_t i = 0; i < n; ++i) acc[i] += coef * p[i];
      }
    } else {
      for (int64_t t = 0; t < nt; ++t) {
        const char* p = base + taps[t].off + lo * m.sc;
        const float coef = taps[t].coef;
        for (int64_t i = 0; i < n; ++i) acc[i] += coef * at_bytes<float>(p, i * m.sc);
      }
    }
    for (int64_t i = 0; i < n; ++i) out[i] = acc[i] / den;
    return;
  }
  for (int64_t c = lo; c < hi; ++c) {
    const char* p = base + c * m.sc;
    if (c + kPrefetchAhead < hi) {
      const char* q = p + kPrefetchAhead * m.sc;
      for (int64_t t = 0; t < nt; ++t) __builtin_prefetch(q + taps[t].off);
    }
    float acc = 0.0f;
    for (int64_t t = 0; t < nt; ++t) acc += taps[t].coef * at_bytes<float>(p, taps[t].off);
    out[c - lo] = acc / den;
  }
}

}  // namespace

py::array_t<float> region_pool(const std::vector<py::array>& features, const py::array& boxes,
                               const std::optional<py::array>& masks, int64_t grid,
                               int64_t image_h, int64_t image_w) {
  // --- checks -----------------------------------------------------------------------------------
  if (features.empty())
    fail_value(kFn, ": features must hold at least one map, got an empty list");
  std::vector<Map> maps(features.size());
  int64_t total_c = 0, max_c = 0;
  for (size_t i = 0; i < features.size(); ++i) {
    const py::array& f = features[i];
    const std::string name = "features[" + std::to_string(i) + "]";
    check_dtype<float>(f, kFn, name.c_str(), "float32");
    check_ndim(f, kFn, name.c_str(), 4, "[B, C, H, W]");
    if (f.shape(2) < 1 || f.shape(3) < 1)
      fail_value(kFn, ": ", name, " must have H, W >= 1, got ", shape_str(f));
    if (f.shape(0) != features[0].shape(0))
      fail_value(kFn, ": all features must have one batch size B, features[0] has ",
                 features[0].shape(0), ", ", name, " has ", f.shape(0));
    Map& m = maps[i];
    m.data = static_cast<const char*>(f.data());
    m.c = f.shape(1);
    m.h = f.shape(2);
    m.w = f.shape(3);
    m.sb = f.strides(0);
    m.sc = f.strides(1);
    m.sh = f.strides(2);
    m.sw = f.strides(3);
    m.col = total_c;
    // The stride of a size-1 axis is never used, whatever numpy says it is.
    int64_t spatial = std::numeric_limits<int64_t>::max();
    if (m.h > 1) spatial = std::min(spatial, std::abs(m.sh));
    if (m.w > 1) spatial = std::min(spatial, std::abs(m.sw));
    m.channels_inner = m.c > 1 && std::abs(m.sc) < spatial;
    total_c += m.c;
    max_c = std::max(max_c, m.c);
  }
  const int64_t bsz = features[0].shape(0);

  check_dtype<float>(boxes, kFn, "boxes", "float32");
  if (boxes.ndim() != 3 || boxes.shape(2) != 4)
    fail_value(kFn, ": boxes must be [B, R, 4], got ", shape_str(boxes));
  if (boxes.shape(0) != bsz)
    fail_value(kFn, ": boxes must be [B, R, 4] with the features' B = ", bsz, ", got ",
               shape_str(boxes));
  const int64_t nreg = boxes.shape(1);

  Masks mk;
  const bool weighted = masks.has_value();
  if (weighted) {
    const py::array& m = *masks;
    check_dtype<float>(m, kFn, "masks", "float32");
    if (m.ndim() != 4 || m.shape(0) != bsz || m.shape(1) != nreg)
      fail_value(kFn, ": masks must be [B, R, Hm, Wm] with boxes' B, R = [", bsz, ", ", nreg,
                 "], got ", shape_str(m));
    if (m.shape(2) < 1 || m.shape(3) < 1)
      fail_value(kFn, ": masks must have Hm, Wm >= 1, got ", shape_str(m));
    mk.data = static_cast<const char*>(m.data());
    mk.h = m.shape(2);
    mk.w = m.shape(3);
    mk.sb = m.strides(0);
    mk.sr = m.strides(1);
    mk.sh = m.strides(2);
    mk.sw = m.strides(3);
  }
  check_positive(grid, kFn, "grid");
  if (grid > kMaxGrid) fail_value(kFn, ": grid must be <= ", kMaxGrid, ", got ", grid);
  check_positive(image_h, kFn, "image_h");
  check_positive(image_w, kFn, "image_w");

  const char* bx = static_cast<const char*>(boxes.data());
  const int64_t sbb = boxes.strides(0), sbr = boxes.strides(1), sbc = boxes.strides(2);
  auto box = [&](int64_t b, int64_t r, int64_t i) {
    return at_bytes<float>(bx, b * sbb + r * sbr + i * sbc);
  };
  for (int64_t b = 0; b < bsz; ++b)
    for (int64_t r = 0; r < nreg; ++r)
      for (int64_t i = 0; i < 4; ++i)
        if (!std::isfinite(box(b, r, i)))
          fail_value(kFn, ": boxes must be finite, got [", box(b, r, 0), ", ", box(b, r, 1), ", ",
                     box(b, r, 2), ", ", box(b, r, 3), "] at boxes[", b, ", ", r, "]");

  py::array_t<float> result({bsz, nreg, total_c});
  float* out = result.mutable_data();
  const int64_t nbr = bsz * nreg;
  if (nbr == 0 || total_c == 0) return result;

  // --- work split: (region, channel chunk) items, chunks only when regions are too few --------
  const int64_t threads = num_threads();
  int64_t chunks = 1;
  if (nbr < 4 * threads)
    chunks = std::clamp<int64_t>((4 * threads + nbr - 1) / nbr, 1,
                                 std::max<int64_t>(1, total_c / 64));
  const int64_t chunk = (total_c + chunks - 1) / chunks;
  const int64_t items = nbr * chunks;
  const int64_t k = grid;
  const double work = static_cast<double>(nbr) * static_cast<double>(total_c) * 4.0 *
                      static_cast<double>(k * k);

  std::vector<Scratch> scratch(static_cast<size_t>(std::max<int64_t>(1, threads)));
  for (Scratch& s : scratch) {
    s.u.resize(k);
    s.v.resize(k);
    s.ax.resize(k);
    s.ay.resize(k);
    s.weight.resize(weighted ? k * k : 0);
    s.taps.reserve(4 * k * k);
    s.acc.resize(max_c);
  }
  const float fk = static_cast<float>(k);
  const float fw = static_cast<float>(image_w), fh = static_cast<float>(image_h);

  {
    py::gil_scoped_release release;  // the arrays stay alive: the caller holds them
#ifdef EARTHX_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (work >= 32768.0 && items > 1)
#endif
    for (int64_t it = 0; it < items; ++it) {
#ifdef EARTHX_OPENMP
      Scratch& s = scratch[static_cast<size_t>(omp_get_thread_num())];
#else
      Scratch& s = scratch[0];
#endif
      const int64_t br = it / chunks, b = br / nreg, r = br % nreg;
      const int64_t c_lo = (it % chunks) * chunk, c_hi = std::min(total_c, c_lo + chunk);
      if (c_lo >= c_hi) continue;
      float* row = out + br * total_c;

      // Sample grid in the reference's float32 operations (see the file comment).
      const float x0 = box(b, r, 0), y0 = box(b, r, 1), x1 = box(b, r, 2), y1 = box(b, r, 3);
      for (int64_t i = 0; i < k; ++i) {
        const float kk = static_cast<float>(i) + 0.5f;
        const float x = x0 + kk * (x1 - x0) / fk;
        const float y = y0 + kk * (y1 - y0) / fk;
        s.u[i] = 2.0f * x / fw - 1.0f;
        s.v[i] = 2.0f * y / fh - 1.0f;
      }
      const float den = weighted ? mask_weights(mk, b, r, k, s) : static_cast<float>(k * k);
      if (den == 0.0f) {  // a mask empty under every sample: exactly 0
        std::fill(row + c_lo, row + c_hi, 0.0f);
        continue;
      }
      for (const Map& m : maps) {
        const int64_t lo = std::max(c_lo, m.col) - m.col;
        const int64_t hi = std::min(c_hi, m.col + m.c) - m.col;
        if (lo >= hi) continue;
        build_taps(m, k, weighted, s);
        pool_channels(m, b, lo, hi, den, s, row + m.col + lo);
      }
    }
  }
  return result;
}

}  // namespace earthx
