// Prompt rasterization. The spec is the numpy reference in earthx_sdk/ops/rasterize.py; every
// float expression here is the reference's, in the same order and precision (float64, no FMA
// contraction), so the outputs are bit-exact with it. Pixel (r, c) is tested at its center
// (c + .5, r + .5); coordinates are already mapped to the output grid.
#include "cpu/rasterize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

namespace earthx {

namespace {

// Largest |coordinate|, radius or width accepted (COORD_LIMIT in rasterize.py): keeps every
// intermediate finite and the column arithmetic exact.
constexpr double kCoordLimit = 1e9;

// Outputs smaller than this run on one thread: the fork/join would cost more than the work.
constexpr int64_t kParallelMinPixels = 1 << 16;

void check_out_hw(int64_t out_h, int64_t out_w, const char* fn) {
  if (out_h < 1 || out_w < 1)
    fail_value(fn, ": out_hw must be >= 1 in both dims, got (", out_h, ", ", out_w, ")");
}

void check_coord(double v, const char* fn, const char* name) {
  if (!std::isfinite(v)) fail_value(fn, ": ", name, " must be finite (no NaN or Inf), got ", v);
  if (std::fabs(v) > kCoordLimit)
    fail_value(fn, ": ", name, " must lie within +-", kCoordLimit, " output pixels, got ", v);
}

// Reads float64 [N, 2] (x, y) points after checking dtype, layout, N >= min_n and the values.
const double* check_points(const py::array& a, const char* fn, const char* name, py::ssize_t min_n,
                           const char* layout) {
  check_dtype<double>(a, fn, name, "float64");
  if (a.ndim() != 2 || a.shape(1) != 2 || a.shape(0) < min_n)
    fail_value(fn, ": ", name, " must be ", layout, ", got ", shape_str(a));
  check_c_contiguous(a, fn, name);
  const double* p = static_cast<const double*>(a.data());
  for (py::ssize_t i = 0; i < 2 * a.shape(0); ++i) check_coord(p[i], fn, name);
  return p;
}

py::array_t<uint8_t> new_mask(int64_t out_h, int64_t out_w) {
  return py::array_t<uint8_t>({static_cast<py::ssize_t>(out_h), static_cast<py::ssize_t>(out_w)});
}

// Index range [a, b) within [0, n) holding every pixel whose center lies in [lo, hi], with one
// pixel of margin (the reference's _span; lo, hi are within a few COORD_LIMITs, so exact).
std::pair<int64_t, int64_t> span(double lo, double hi, int64_t n) {
  const double dn = static_cast<double>(n);
  const double a = std::min(std::max(std::floor(lo) - 1.0, 0.0), dn);
  const double b = std::min(std::max(std::ceil(hi) + 1.0, 0.0), dn);
  return {static_cast<int64_t>(a), static_cast<int64_t>(std::max(a, b))};
}

// First column c in [0, n] whose center c + .5 is >= x (n when none): numpy's
// searchsorted(centers, x, side="left"). The estimate is fixed up with the exact comparison.
int64_t first_center_ge(double x, int64_t n) {
  if (!(x > 0.5)) return 0;
  if (x > static_cast<double>(n) - 0.5) return n;
  int64_t c = static_cast<int64_t>(std::ceil(x - 0.5));
  while (c > 0 && static_cast<double>(c - 1) + 0.5 >= x) --c;
  while (c < n && static_cast<double>(c) + 0.5 < x) ++c;
  return c;
}

// First column c in [0, n] whose center is > x.
int64_t first_center_gt(double x, int64_t n) {
  if (!(x >= 0.5)) return 0;
  if (x >= static_cast<double>(n) - 0.5) return n;
  int64_t c = static_cast<int64_t>(std::floor(x + 0.5));
  while (c > 0 && static_cast<double>(c - 1) + 0.5 > x) --c;
  while (c < n && static_cast<double>(c) + 0.5 <= x) ++c;
  return c;
}

// Sets the pixel holding the anchor when the shape covered no center and the anchor is on the grid.
void never_vanish(uint8_t* out, bool any, int64_t out_h, int64_t out_w, double ax, double ay) {
  if (any) return;
  if (0.0 <= ax && ax < static_cast<double>(out_w) && 0.0 <= ay && ay < static_cast<double>(out_h))
    out[static_cast<int64_t>(std::floor(ay)) * out_w + static_cast<int64_t>(std::floor(ax))] = 1;
}

// A polyline segment a -> b with its squared length and the pixel ranges its capsule can touch.
struct Segment {
  double ax, ay, dx, dy, length2;
  int64_t r0, r1, c0, c1;
};

// Squared distance from (px, py) to the segment: the reference's _segment_d2, same operations in
// the same order; a zero-length segment uses t = 0.
inline double segment_d2(const Segment& s, double px, double py) {
  double t = 0.0;
  if (s.length2 != 0.0) {
    t = ((px - s.ax) * s.dx + (py - s.ay) * s.dy) / s.length2;
    t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
  }
  const double ex = px - (s.ax + t * s.dx);
  const double ey = py - (s.ay + t * s.dy);
  return ex * ex + ey * ey;
}

}  // namespace

py::array_t<uint8_t> raster_disk(double cx, double cy, double radius, int64_t out_h,
                                 int64_t out_w) {
  const char* fn = "raster_disk";
  check_coord(cx, fn, "center x");
  check_coord(cy, fn, "center y");
  if (!std::isfinite(radius) || radius < 0.0 || radius > kCoordLimit)
    fail_value(fn, ": radius must be finite, >= 0 and <= ", kCoordLimit, ", got ", radius);
  check_out_hw(out_h, out_w, fn);
  auto out = new_mask(out_h, out_w);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const auto [r0, r1] = span(cy - radius, cy + radius, out_h);
    const auto [c0, c1] = span(cx - radius, cx + radius, out_w);
    const double radius2 = radius * radius;
    bool any = false;
#pragma omp parallel for reduction(|| : any) if (out_h * out_w >= kParallelMinPixels)
    for (int64_t r = 0; r < out_h; ++r) {
      uint8_t* row = o + r * out_w;
      std::memset(row, 0, static_cast<size_t>(out_w));
      if (r < r0 || r >= r1) continue;
      const double dy = static_cast<double>(r) + 0.5 - cy;
      const double dy2 = dy * dy;
      for (int64_t c = c0; c < c1; ++c) {
        const double dx = static_cast<double>(c) + 0.5 - cx;
        const bool in = dx * dx + dy2 <= radius2;
        row[c] = in;
        any = any || in;
      }
    }
    never_vanish(o, any, out_h, out_w, cx, cy);
  }
  return out;
}

py::array_t<uint8_t> raster_box(double x0, double y0, double x1, double y1, int64_t out_h,
                                int64_t out_w) {
  const char* fn = "raster_box";
  check_coord(x0, fn, "box x0");
  check_coord(y0, fn, "box y0");
  check_coord(x1, fn, "box x1");
  check_coord(y1, fn, "box y1");
  if (!(x0 <= x1 && y0 <= y1))
    fail_value(fn, ": box must have x0 <= x1 and y0 <= y1, got [", x0, ", ", y0, ", ", x1, ", ", y1,
               "]");
  check_out_hw(out_h, out_w, fn);
  auto out = new_mask(out_h, out_w);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    // Columns with x0 <= c + .5 <= x1 are [ca, cb); rows likewise.
    const int64_t ca = first_center_ge(x0, out_w), cb = first_center_gt(x1, out_w);
    const int64_t ra = first_center_ge(y0, out_h), rb = first_center_gt(y1, out_h);
#pragma omp parallel for if (out_h * out_w >= kParallelMinPixels)
    for (int64_t r = 0; r < out_h; ++r) {
      uint8_t* row = o + r * out_w;
      std::memset(row, 0, static_cast<size_t>(out_w));
      if (r >= ra && r < rb && cb > ca) std::memset(row + ca, 1, static_cast<size_t>(cb - ca));
    }
    never_vanish(o, ra < rb && ca < cb, out_h, out_w, 0.5 * (x0 + x1), 0.5 * (y0 + y1));
  }
  return out;
}

py::array_t<uint8_t> raster_polygon(const py::array& vertices, int64_t out_h, int64_t out_w) {
  const char* fn = "raster_polygon";
  const double* v = check_points(vertices, fn, "vertices", 3, "[N, 2] with N >= 3");
  check_out_hw(out_h, out_w, fn);
  const int64_t n = static_cast<int64_t>(vertices.shape(0));
  auto out = new_mask(out_h, out_w);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    // Edges i -> i + 1 (the last one closes the ring), and the rows any of them can cross.
    double ymin = v[1], ymax = v[1];
    for (int64_t i = 1; i < n; ++i) {
      ymin = std::min(ymin, v[2 * i + 1]);
      ymax = std::max(ymax, v[2 * i + 1]);
    }
    bool any = false;
#pragma omp parallel reduction(|| : any) if (out_h * out_w >= kParallelMinPixels)
    {
      std::vector<double> xs;  // this row's crossings
      xs.reserve(static_cast<size_t>(n));
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < out_h; ++r) {
        uint8_t* row = o + r * out_w;
        std::memset(row, 0, static_cast<size_t>(out_w));
        const double y = static_cast<double>(r) + 0.5;
        if (y < ymin || y >= ymax) continue;  // every vertex on one side: no edge crosses
        xs.clear();
        for (int64_t i = 0; i < n; ++i) {
          const int64_t j = i + 1 == n ? 0 : i + 1;
          const double xa = v[2 * i], ya = v[2 * i + 1], xb = v[2 * j], yb = v[2 * j + 1];
          if ((ya <= y) != (yb <= y)) xs.push_back(xa + (y - ya) * (xb - xa) / (yb - ya));
        }
        std::sort(xs.begin(), xs.end());
        // An even count: the ring leaves and re-enters each side of the scanline as often.
        for (size_t k = 0; k + 1 < xs.size(); k += 2) {
          const int64_t a = first_center_ge(xs[k], out_w), b = first_center_ge(xs[k + 1], out_w);
          if (b > a) {
            std::memset(row + a, 1, static_cast<size_t>(b - a));
            any = true;
          }
        }
      }
    }
    if (!any) {
      // Vertex mean summed in order, as the reference's cumsum.
      double sx = v[0], sy = v[1];
      for (int64_t i = 1; i < n; ++i) {
        sx += v[2 * i];
        sy += v[2 * i + 1];
      }
      never_vanish(o, any, out_h, out_w, sx / static_cast<double>(n), sy / static_cast<double>(n));
    }
  }
  return out;
}

py::array_t<uint8_t> raster_polyline(const py::array& points, double width, int64_t out_h,
                                     int64_t out_w) {
  const char* fn = "raster_polyline";
  const double* p = check_points(points, fn, "points", 1, "[N, 2] with N >= 1");
  if (!std::isfinite(width) || width <= 0.0 || width > kCoordLimit)
    fail_value(fn, ": width must be finite, > 0 and <= ", kCoordLimit, ", got ", width);
  check_out_hw(out_h, out_w, fn);
  const int64_t n = static_cast<int64_t>(points.shape(0));
  auto out = new_mask(out_h, out_w);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const double half = width * 0.5;
    const double half2 = half * half;
    // Segments i -> i + 1; a single point is the zero-length segment 0 -> 0.
    std::vector<Segment> segs;
    for (int64_t i = 0; i == 0 || i + 1 < n; ++i) {
      const int64_t j = n == 1 ? 0 : i + 1;
      const double ax = p[2 * i], ay = p[2 * i + 1], bx = p[2 * j], by = p[2 * j + 1];
      Segment s{ax, ay, bx - ax, by - ay, 0.0, 0, 0, 0, 0};
      s.length2 = s.dx * s.dx + s.dy * s.dy;
      std::tie(s.r0, s.r1) = span(std::min(ay, by) - half, std::max(ay, by) + half, out_h);
      std::tie(s.c0, s.c1) = span(std::min(ax, bx) - half, std::max(ax, bx) + half, out_w);
      if (s.r0 < s.r1 && s.c0 < s.c1) segs.push_back(s);
    }
    bool any = false;
#pragma omp parallel for reduction(|| : any) schedule(dynamic, 16) \
    if (out_h * out_w >= kParallelMinPixels)
    for (int64_t r = 0; r < out_h; ++r) {
      uint8_t* row = o + r * out_w;
      std::memset(row, 0, static_cast<size_t>(out_w));
      const double py = static_cast<double>(r) + 0.5;
      for (const Segment& s : segs) {
        if (r < s.r0 || r >= s.r1) continue;
        for (int64_t c = s.c0; c < s.c1; ++c) {
          if (row[c]) continue;  // the union needs one capsule per pixel
          if (segment_d2(s, static_cast<double>(c) + 0.5, py) <= half2) {
            row[c] = 1;
            any = true;
          }
        }
      }
    }
    never_vanish(o, any, out_h, out_w, p[0], p[1]);
  }
  return out;
}

py::array_t<uint8_t> resample_mask(const py::array& mask, int64_t out_h, int64_t out_w, double kx,
                                   double ky) {
  const char* fn = "resample_mask";
  if (!mask.dtype().is(py::dtype::of<bool>()) && !mask.dtype().is(py::dtype::of<uint8_t>()))
    fail_type(fn, ": mask must have dtype bool or uint8, got ", dtype_str(mask));
  check_ndim(mask, fn, "mask", 2, "[h, w]");
  check_nonempty(mask, fn, "mask");
  if (!(std::isfinite(kx) && std::isfinite(ky) && kx > 0.0 && ky > 0.0))
    fail_value(fn, ": scale must be finite and > 0, got (", kx, ", ", ky, ")");
  check_out_hw(out_h, out_w, fn);
  const int64_t mh = mask.shape(0), mw = mask.shape(1);
  const int64_t s0 = mask.strides(0), s1 = mask.strides(1);
  const void* m = mask.data();
  auto out = new_mask(out_h, out_w);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    // Byte offset of the image column under each output column, and whether there is one (the
    // float is range-checked before any integer conversion; strides may be negative).
    std::vector<int64_t> col_off(static_cast<size_t>(out_w));
    std::vector<uint8_t> col_in(static_cast<size_t>(out_w));
    for (int64_t c = 0; c < out_w; ++c) {
      const double fx = std::floor((static_cast<double>(c) + 0.5) / kx);
      col_in[c] = fx >= 0.0 && fx < static_cast<double>(mw);
      col_off[c] = col_in[c] ? static_cast<int64_t>(fx) * s1 : 0;
    }
#pragma omp parallel for if (out_h * out_w >= kParallelMinPixels)
    for (int64_t r = 0; r < out_h; ++r) {
      uint8_t* row = o + r * out_w;
      const double fy = std::floor((static_cast<double>(r) + 0.5) / ky);
      if (!(fy >= 0.0 && fy < static_cast<double>(mh))) {
        std::memset(row, 0, static_cast<size_t>(out_w));
        continue;
      }
      const int64_t row_off = static_cast<int64_t>(fy) * s0;
      for (int64_t c = 0; c < out_w; ++c)
        row[c] = col_in[c] && at_bytes<uint8_t>(m, row_off + col_off[c]) != 0;
    }
  }
  return out;
}

}  // namespace earthx
