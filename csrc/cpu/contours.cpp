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
// Outer contours
// ================================================================================================

struct Run {
  int32_t row, c0, c1;  // foreground pixels [c0, c1) of one row
};

int64_t find_root(std::vector<int64_t>& parent, int64_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

// Keeps the smaller run index as the root, so a component's root is its first run in raster order.
void unite(std::vector<int64_t>& parent, int64_t a, int64_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) parent[b] = a;
  else if (b < a) parent[a] = b;
}

// Directions: 0 right (+x), 1 down (+y), 2 left, 3 up. Pixel ahead-left / ahead-right of a vertex
// (x, y) when moving in direction d, as (row, col) offsets from pixel (y, x).
constexpr int kDx[4] = {1, 0, -1, 0};
constexpr int kDy[4] = {0, 1, 0, -1};
constexpr int kAheadLeftR[4] = {-1, 0, 0, -1};
constexpr int kAheadLeftC[4] = {0, 0, -1, -1};
constexpr int kAheadRightR[4] = {0, 0, -1, -1};
constexpr int kAheadRightC[4] = {0, -1, -1, 0};

// Outer boundary of the component whose first pixel is (y0, x0), foreground on the right
// (clockwise on screen). `pad` is the 0/1 mask with a one-pixel zero border, pw columns wide.
// At each vertex: turn left if the ahead-left pixel is foreground (this joins diagonal pixels:
// 8-connectivity), else straight if the ahead-right one is, else turn right.
void trace_outer(const uint8_t* pad, int64_t pw, int64_t x0, int64_t y0, std::vector<int32_t>& xy) {
  int64_t off_l[4], off_r[4];
  for (int d = 0; d < 4; ++d) {
    off_l[d] = kAheadLeftR[d] * pw + kAheadLeftC[d];
    off_r[d] = kAheadRightR[d] * pw + kAheadRightC[d];
  }
  xy.push_back(static_cast<int32_t>(x0));
  xy.push_back(static_cast<int32_t>(y0));
  int d = 0;
  int64_t x = x0 + 1, y = y0;
  while (x != x0 || y != y0) {  // the start vertex is passed once only: not a diagonal corner
    const uint8_t* v = pad + (y + 1) * pw + (x + 1);
    const int nd = v[off_l[d]] ? (d + 3) & 3 : v[off_r[d]] ? d : (d + 1) & 3;
    if (nd != d) {
      xy.push_back(static_cast<int32_t>(x));
      xy.push_back(static_cast<int32_t>(y));
      d = nd;
    }
    x += kDx[d];
    y += kDy[d];
  }
}
}  // namespace

py::list mask_to_polygons(py::array mask) {
  const char* fn = "mask_to_polygons";
  check_mask_dtype(mask, fn);
  check_ndim(mask, fn, "mask", 2, "[H, W]");
  check_nonempty(mask, fn, "mask");
  const int64_t h = mask.shape(0), w = mask.shape(1), s0 = mask.strides(0), s1 = mask.strides(1);
  const auto* src = static_cast<const uint8_t*>(mask.data());
  std::vector<std::vector<int32_t>> polys;
  {
    py::gil_scoped_release release;
    const int64_t pw = w + 2;
    std::vector<uint8_t> pad(static_cast<size_t>((h + 2) * pw), 0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) pad[(r + 1) * pw + c + 1] = src[r * s0 + c * s1] != 0;
    // Horizontal runs, row by row, joined into 8-connected components (union-find).
    std::vector<Run> runs;
    std::vector<int64_t> row_begin(static_cast<size_t>(h + 1), 0);
    std::vector<int64_t> parent;
    for (int64_t r = 0; r < h; ++r) {
      row_begin[r] = static_cast<int64_t>(runs.size());
      const uint8_t* row = pad.data() + (r + 1) * pw + 1;
      int64_t c = 0;
      while (c < w) {
        while (c < w && !row[c]) ++c;
        if (c == w) break;
        const int64_t c0 = c;
        while (c < w && row[c]) ++c;
        runs.push_back(Run{static_cast<int32_t>(r), static_cast<int32_t>(c0),
                           static_cast<int32_t>(c)});
      }
    }
    row_begin[h] = static_cast<int64_t>(runs.size());
    parent.resize(runs.size());
    for (size_t i = 0; i < runs.size(); ++i) parent[i] = static_cast<int64_t>(i);
    for (int64_t r = 1; r < h; ++r) {
      int64_t p = row_begin[r - 1];
      const int64_t pe = row_begin[r];
      for (int64_t q = row_begin[r]; q < row_begin[r + 1]; ++q) {
        // Previous-row run [p0, p1) touches [c0, c1) (diagonals included) iff p0 <= c1, p1 >= c0.
        while (p < pe && runs[p].c1 < runs[q].c0) ++p;
        for (int64_t k = p; k < pe && runs[k].c0 <= runs[q].c1; ++k) unite(parent, k, q);
      }
    }
    std::vector<int64_t> firsts;
    for (size_t i = 0; i < runs.size(); ++i)
      if (find_root(parent, static_cast<int64_t>(i)) == static_cast<int64_t>(i))
        firsts.push_back(static_cast<int64_t>(i));
    polys.resize(firsts.size());
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t k = 0; k < firsts.size(); ++k) {
      const Run& run = runs[firsts[k]];
      trace_outer(pad.data(), pw, run.c0, run.row, polys[k]);
    }
  }
  py::list out;
  for (const auto& xy : polys) {
    const py::ssize_t k = static_cast<py::ssize_t>(xy.size() / 2);
    py::array_t<double> a(std::vector<py::ssize_t>{k, 2});
    double* p = a.mutable_data();
    for (size_t i = 0; i < xy.size(); ++i) p[i] = xy[i];
    out.append(a);
  }
  return out;
}

}  // namespace earthx
