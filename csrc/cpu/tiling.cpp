// Stitching of per-tile outputs into one scene: a weighted blend whose ramp weights cross-fade the
// overlaps. Same arithmetic as the numpy reference in earthx_sdk/ops/tiling.py (stitch_ref): per
// pixel, num += (wy[i] * wx[j]) * v and den += wy[i] * wx[j] in float32, tile by tile in
// increasing tile order, then num / den. Rows of the output are independent, so threads split the
// rows; no weight image is materialized, only the two 1-D ramps.
#include "cpu/tiling.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace earthx {

namespace {

// Checked geometry of one stitch call.
struct Layout {
  int64_t n = 0, channels = 1, th = 0, tw = 0;
  int64_t height = 0, width = 0, overlap = 0;
  const int64_t* boxes = nullptr;  // [n, 4] rows (y0, x0, y1, x1)
  // Byte strides of the values [N, C, th, tw] (stride_c is 0 without a channel axis).
  int64_t stride_n = 0, stride_c = 0, stride_h = 0, stride_w = 0;
};

// One axis of the blend weights: w[i] = min(i + 1, n - i, ramp) / ramp, ramp = max(1, overlap).
std::vector<float> blend_ramp(int64_t n, int64_t overlap) {
  const int64_t ramp = std::max<int64_t>(1, overlap);
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    w[i] = static_cast<float>(std::min({i + 1, n - i, ramp})) / static_cast<float>(ramp);
  return w;
}

// Checks shared by stitch and stitch_masks (the dtype of `values` is checked by the caller).
Layout check_layout(const py::array& values, const py::array& boxes, int64_t height, int64_t width,
                    int64_t overlap, const char* fn, const char* name, bool allow_channels) {
  check_positive(height, fn, "height");
  check_positive(width, fn, "width");
  if (overlap < 0) fail_value(fn, ": overlap must be >= 0, got ", overlap);

  Layout g;
  const py::ssize_t nd = values.ndim();
  if (nd != 3 && !(allow_channels && nd == 4)) {
    if (allow_channels)
      fail_value(fn, ": ", name, " must be [N, C, th, tw] or [N, th, tw], got ", shape_str(values));
    fail_value(fn, ": ", name, " must be [N, th, tw], got ", shape_str(values));
  }
  g.n = values.shape(0);
  g.channels = nd == 4 ? values.shape(1) : 1;
  g.th = values.shape(nd - 2);
  g.tw = values.shape(nd - 1);
  if (g.channels < 1 || g.th < 1 || g.tw < 1)
    fail_value(fn, ": ", name, " must have channels and tile sides >= 1, got ", shape_str(values));
  g.stride_n = values.strides(0);
  g.stride_c = nd == 4 ? values.strides(1) : 0;
  g.stride_h = values.strides(nd - 2);
  g.stride_w = values.strides(nd - 1);
  g.height = height;
  g.width = width;
  g.overlap = overlap;

  check_dtype<int64_t>(boxes, fn, "boxes", "int64");
  if (boxes.ndim() != 2 || boxes.shape(1) != 4)
    fail_value(fn, ": boxes must be [N, 4] rows (y0, x0, y1, x1), got ", shape_str(boxes));
  check_c_contiguous(boxes, fn, "boxes");
  if (boxes.shape(0) != g.n)
    fail_value(fn, ": ", name, " and boxes must have the same N, got ", g.n, " and ",
               boxes.shape(0));
  g.boxes = static_cast<const int64_t*>(boxes.data());
  for (int64_t k = 0; k < g.n; ++k) {
    const int64_t* b = g.boxes + 4 * k;
    // Bounds first: they make the differences below overflow-free.
    if (b[0] < 0 || b[1] < 0 || b[2] > height || b[3] > width)
      fail_value(fn, ": boxes must lie inside the image (0 <= y0, 0 <= x0, y1 <= ", height,
                 ", x1 <= ", width, "), got box ", k, " = [", b[0], ", ", b[1], ", ", b[2], ", ",
                 b[3], "]");
    if (b[2] - b[0] != g.th || b[3] - b[1] != g.tw)
      fail_value(fn, ": boxes must have the tiles' size (y1 - y0, x1 - x0) = (", g.th, ", ", g.tw,
                 "), got box ", k, " = [", b[0], ", ", b[1], ", ", b[2], ", ", b[3], "]");
  }
  return g;
}

// For each output row y, the tiles that cover it in increasing tile order (the order in which the
// reference accumulates): tiles[start[y] .. start[y + 1]). Size O(N * th + H).
struct RowTiles {
  std::vector<int64_t> start, tiles;
};

RowTiles index_rows(const Layout& g) {
  RowTiles r;
  r.start.assign(static_cast<size_t>(g.height) + 1, 0);
  for (int64_t k = 0; k < g.n; ++k)
    for (int64_t y = g.boxes[4 * k]; y < g.boxes[4 * k + 2]; ++y) ++r.start[y + 1];
  for (int64_t y = 0; y < g.height; ++y) r.start[y + 1] += r.start[y];
  r.tiles.resize(static_cast<size_t>(r.start[g.height]));
  std::vector<int64_t> fill(r.start.begin(), r.start.end() - 1);
  for (int64_t k = 0; k < g.n; ++k)
    for (int64_t y = g.boxes[4 * k]; y < g.boxes[4 * k + 2]; ++y) r.tiles[fill[y]++] = k;
  return r;
}

// den[x0 + j] += wy[i] * wx[j] for every tile covering row y.
void accumulate_weights(const Layout& g, const RowTiles& r, int64_t y, const float* wy,
                        const float* wx, float* den) {
  for (int64_t t = r.start[y]; t < r.start[y + 1]; ++t) {
    const int64_t* b = g.boxes + 4 * r.tiles[t];
    const float wyi = wy[y - b[0]];
    float* d = den + b[1];
    for (int64_t j = 0; j < g.tw; ++j) d[j] += wyi * wx[j];
  }
}

// The two helpers below choose between floats with integer arithmetic on their bits: gcc does not
// if-convert a float select or a branch (trapping math), and the loops using them would not
// vectorize (8x slower stitch_masks).

// w where the mask byte is nonzero, else +0.0f: the reference's w * 1.0f or w * 0.0f (w > 0).
inline float weight_if(float w, uint8_t m) {
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(m != 0);
  std::memcpy(&w, &bits, sizeof bits);
  return w;
}

// den where den > 0, else 1.0f. den is a sum of positive weights (>= 0, never -0 or NaN), and num
// is 0 where den is 0, so num / nonzero_den(den) is the reference's "num / den where den > 0, else
// 0".
inline float nonzero_den(float den) {
  uint32_t bits;
  std::memcpy(&bits, &den, sizeof bits);
  bits |= static_cast<uint32_t>(bits == 0) * 0x3f800000u;  // the bits of 1.0f
  std::memcpy(&den, &bits, sizeof bits);
  return den;
}

// num[x0 + j] += (wy[i] * wx[j]) * v[j] for one tile row of float values.
void accumulate_values(float* __restrict num, const float* __restrict wx, float wyi,
                       const char* src, int64_t stride_w, int64_t tw) {
  if (stride_w == static_cast<int64_t>(sizeof(float))) {
    const float* __restrict v = reinterpret_cast<const float*>(src);
    for (int64_t j = 0; j < tw; ++j) num[j] += (wyi * wx[j]) * v[j];
  } else {
    for (int64_t j = 0; j < tw; ++j) num[j] += (wyi * wx[j]) * at_bytes<float>(src, j * stride_w);
  }
}

// The same for one tile row of a mask: v = 1.0 where the byte is nonzero, else 0.0.
void accumulate_votes(float* __restrict num, const float* __restrict wx, float wyi,
                      const char* src, int64_t stride_w, int64_t tw) {
  if (stride_w == 1) {
    const uint8_t* __restrict m = reinterpret_cast<const uint8_t*>(src);
    for (int64_t j = 0; j < tw; ++j) num[j] += weight_if(wyi * wx[j], m[j]);
  } else {
    for (int64_t j = 0; j < tw; ++j)
      num[j] += weight_if(wyi * wx[j], at_bytes<uint8_t>(src, j * stride_w));
  }
}

}  // namespace

py::array_t<float> stitch(const py::array& tiles, const py::array& boxes, int64_t height,
                          int64_t width, int64_t overlap) {
  const char* fn = "stitch";
  check_dtype<float>(tiles, fn, "tiles", "float32");
  const Layout g = check_layout(tiles, boxes, height, width, overlap, fn, "tiles", true);
  const bool has_channels = tiles.ndim() == 4;
  py::array_t<float> out = has_channels ? py::array_t<float>({g.channels, height, width})
                                        : py::array_t<float>({height, width});
  float* dst = out.mutable_data();
  const char* base = static_cast<const char*>(tiles.data());
  {
    py::gil_scoped_release release;
    const std::vector<float> wy = blend_ramp(g.th, overlap), wx = blend_ramp(g.tw, overlap);
    const RowTiles r = index_rows(g);
#pragma omp parallel
    {
      std::vector<float> den(static_cast<size_t>(width));
#pragma omp for schedule(dynamic, 8)
      for (int64_t y = 0; y < height; ++y) {
        std::fill(den.begin(), den.end(), 0.0f);
        accumulate_weights(g, r, y, wy.data(), wx.data(), den.data());
        for (int64_t c = 0; c < g.channels; ++c) {
          float* num = dst + (c * height + y) * width;
          std::fill(num, num + width, 0.0f);
          for (int64_t t = r.start[y]; t < r.start[y + 1]; ++t) {
            const int64_t k = r.tiles[t];
            const int64_t* b = g.boxes + 4 * k;
            const int64_t i = y - b[0];
            const char* src = base + k * g.stride_n + c * g.stride_c + i * g.stride_h;
            accumulate_values(num + b[1], wx.data(), wy[i], src, g.stride_w, g.tw);
          }
          for (int64_t x = 0; x < width; ++x) num[x] = num[x] / nonzero_den(den[x]);
        }
      }
    }
  }
  return out;
}

py::array_t<uint8_t> stitch_masks(const py::array& masks, const py::array& boxes, int64_t height,
                                  int64_t width, int64_t overlap) {
  const char* fn = "stitch_masks";
  if (!masks.dtype().is(py::dtype::of<uint8_t>()) && !masks.dtype().is(py::dtype::of<bool>()))
    fail_type(fn, ": masks must have dtype uint8 or bool, got ", dtype_str(masks));
  const Layout g = check_layout(masks, boxes, height, width, overlap, fn, "masks", false);
  py::array_t<uint8_t> out({height, width});
  uint8_t* dst = out.mutable_data();
  const char* base = static_cast<const char*>(masks.data());
  {
    py::gil_scoped_release release;
    const std::vector<float> wy = blend_ramp(g.th, overlap), wx = blend_ramp(g.tw, overlap);
    const RowTiles r = index_rows(g);
#pragma omp parallel
    {
      std::vector<float> den(static_cast<size_t>(width)), num(static_cast<size_t>(width));
#pragma omp for schedule(dynamic, 8)
      for (int64_t y = 0; y < height; ++y) {
        std::fill(den.begin(), den.end(), 0.0f);
        std::fill(num.begin(), num.end(), 0.0f);
        accumulate_weights(g, r, y, wy.data(), wx.data(), den.data());
        for (int64_t t = r.start[y]; t < r.start[y + 1]; ++t) {
          const int64_t k = r.tiles[t];
          const int64_t* b = g.boxes + 4 * k;
          const int64_t i = y - b[0];
          const char* src = base + k * g.stride_n + i * g.stride_h;
          accumulate_votes(num.data() + b[1], wx.data(), wy[i], src, g.stride_w, g.tw);
        }
        // Tie rule of the reference: a vote of exactly 0.5 (after the float32 division) is 1.
        uint8_t* o = dst + y * width;
        for (int64_t x = 0; x < width; ++x)
          o[x] = static_cast<uint8_t>(num[x] / nonzero_den(den[x]) >= 0.5f);
      }
    }
  }
  return out;
}

}  // namespace earthx
