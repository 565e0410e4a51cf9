#include "cpu/masks.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace earthx {
namespace {

// ================================================================================================
// Argument parsing
// ================================================================================================

const char* type_name(const py::handle& o) { return Py_TYPE(o.ptr())->tp_name; }

bool is_int_like(const py::handle& v) {
  return !PyBool_Check(v.ptr()) && PyIndex_Check(v.ptr());
}

// Python int (or numpy integer) -> int64; `ok` false when it does not fit.
int64_t as_int64(const py::handle& v, bool& ok) {
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!idx) throw py::error_already_set();
  int overflow = 0;
  const long long r = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  ok = overflow == 0;
  return r;
}

bool is_pair_sequence(const py::handle& o) {
  return py::isinstance<py::sequence>(o) && !py::isinstance<py::str>(o) &&
         !py::isinstance<py::bytes>(o);
}

// (h, w) pair of ints >= 1.
std::pair<int64_t, int64_t> parse_hw(const py::object& o, const char* fn, const char* name) {
  if (!is_pair_sequence(o))
    fail_type(fn, ": ", name, " must be a pair of ints (h, w), got ", type_name(o));
  auto s = py::reinterpret_borrow<py::sequence>(o);
  if (s.size() != 2)
    fail_value(fn, ": ", name, " must be a pair of ints (h, w), got ", s.size(), " values");
  int64_t v[2];
  for (int k = 0; k < 2; ++k) {
    py::object e = s[k];
    if (!is_int_like(e)) fail_type(fn, ": ", name, " must hold ints, got ", type_name(e));
    bool ok = true;
    v[k] = as_int64(e, ok);
    if (!ok) fail_value(fn, ": ", name, " values must fit in int64");
  }
  if (v[0] < 1 || v[1] < 1)
    fail_value(fn, ": ", name, " must be >= 1, got (", v[0], ", ", v[1], ")");
  return {v[0], v[1]};
}

void check_mask_dtype(const py::array& a, const char* fn) {
  if (!a.dtype().is(py::dtype::of<bool>()) && !a.dtype().is(py::dtype::of<uint8_t>()))
    fail_type(fn, ": mask must have dtype bool or uint8, got ", dtype_str(a));
}

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

// ================================================================================================
// COCO RLE
// ================================================================================================

// A 2-D byte mask with byte strides (non-contiguous views are read in place).
struct Mask2D {
  const uint8_t* data;
  int64_t h, w;
  int64_t s0, s1;
};

constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
constexpr uint64_t kHigh = 0x8080808080808080ULL;

// The high bit of every nonzero byte of x.
inline uint64_t nonzero_bytes(uint64_t x) { return (((x & kLow7) + kLow7) | x) & kHigh; }

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Index, within a loaded 8-byte word, of the byte whose high bit is bit `bit`.
inline int byte_of_bit(int bit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return 7 - (bit >> 3);
#else
  return bit >> 3;
#endif
}

// Per column, the rows r >= 1 where the foreground flag differs from row r - 1 (ascending).
using ColumnChanges = std::vector<std::vector<int32_t>>;

constexpr int64_t kStrip = 64;  // columns scanned together in a row-major mask

// Row-major rows (s1 == 1): columns [c0, c1) of every row, 8 bytes at a time.
void changes_row_major(const Mask2D& m, int64_t c0, int64_t c1, ColumnChanges& ch) {
  const int64_t words = (c1 - c0) / 8;
  const int64_t t0 = c0 + words * 8;  // first column of the byte-wise tail
  uint64_t prev[kStrip / 8];
  uint8_t prev_tail[8];
  for (int64_t k = 0; k < words; ++k) prev[k] = nonzero_bytes(load64(m.data + c0 + 8 * k));
  for (int64_t c = t0; c < c1; ++c) prev_tail[c - t0] = m.data[c] != 0;
  for (int64_t r = 1; r < m.h; ++r) {
    const uint8_t* row = m.data + r * m.s0;
    for (int64_t k = 0; k < words; ++k) {
      const uint64_t cur = nonzero_bytes(load64(row + c0 + 8 * k));
      uint64_t d = cur ^ prev[k];
      if (d == 0) continue;
      prev[k] = cur;
      while (d) {
        ch[c0 + 8 * k + byte_of_bit(__builtin_ctzll(d))].push_back(static_cast<int32_t>(r));
        d &= d - 1;
      }
    }
    for (int64_t c = t0; c < c1; ++c) {
      const uint8_t v = row[c] != 0;
      if (v != prev_tail[c - t0]) {
        prev_tail[c - t0] = v;
        ch[c].push_back(static_cast<int32_t>(r));
      }
    }
  }
}

// One contiguous column of h bytes: skips 8 bytes at a time while the run goes on.
void changes_column(const uint8_t* p, int64_t h, std::vector<int32_t>& out) {
  bool v = p[0] != 0;
  int64_t r = 1;
  while (r < h) {
    if (!v) {
      while (r + 8 <= h && load64(p + r) == 0) r += 8;
      while (r < h && p[r] == 0) ++r;
    } else {
      while (r + 8 <= h && nonzero_bytes(load64(p + r)) == kHigh) r += 8;
      while (r < h && p[r] != 0) ++r;
    }
    if (r < h) {
      out.push_back(static_cast<int32_t>(r));
      v = !v;
      ++r;
    }
  }
}

// Column-major run lengths of m (pycocotools' rleEncode: the first run counts zeros).
std::vector<int64_t> encode_counts(Mask2D m) {
  if (m.w == 1) m.s1 = 1;  // a stride along a single element is never used
  if (m.h == 1) m.s0 = 1;
  std::vector<uint8_t> copy;
  if (m.s1 != 1 && m.s0 != 1) {  // neither rows nor columns contiguous: copy to row-major
    copy.resize(static_cast<size_t>(m.h * m.w));
    for (int64_t r = 0; r < m.h; ++r)
      for (int64_t c = 0; c < m.w; ++c) copy[r * m.w + c] = m.data[r * m.s0 + c * m.s1];
    m = Mask2D{copy.data(), m.h, m.w, m.w, 1};
  }
  ColumnChanges ch(static_cast<size_t>(m.w));
  if (m.s1 == 1) {
    const int64_t strips = (m.w + kStrip - 1) / kStrip;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t s = 0; s < strips; ++s)
      changes_row_major(m, s * kStrip, std::min(m.w, (s + 1) * kStrip), ch);
  } else {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t c = 0; c < m.w; ++c) changes_column(m.data + c * m.s1, m.h, ch[c]);
  }
  std::vector<int64_t> cnts;
  size_t total = 1;
  for (const auto& c : ch) total += c.size() + 1;
  cnts.reserve(total);
  uint8_t p = 0;
  int64_t last = 0;
  for (int64_t c = 0; c < m.w; ++c) {
    const int64_t col = c * m.h;
    const uint8_t v0 = m.data[c * m.s1] != 0;
    if (v0 != p) {
      cnts.push_back(col - last);
      last = col;
      p = v0;
    }
    for (const int32_t r : ch[c]) {
      cnts.push_back(col + r - last);
      last = col + r;
    }
    if (ch[c].size() & 1) p ^= 1;
  }
  cnts.push_back(m.h * m.w - last);
  return cnts;
}

// pycocotools' rleToString: each run minus the run two before (for i > 2), in 5-bit groups
// (low first; 0x20 = more groups follow) + 48.
std::string counts_to_string(const std::vector<int64_t>& cnts) {
  std::string s;
  s.reserve(cnts.size() * 2);
  for (size_t i = 0; i < cnts.size(); ++i) {
    int64_t x = cnts[i];
    if (i > 2) x -= cnts[i - 2];
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;  // arithmetic shift
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

constexpr int64_t kMaxSide = 2147483647;  // 2**31 - 1: H * W and every run fit in int64

struct Rle {
  int64_t h, w;
  std::vector<int64_t> cnts;
};

// Range and total of the runs, in the reference's order: the first run outside [0, H*W], then the
// running total.
void check_runs(const std::vector<int64_t>& cnts, int64_t hw, const char* fn) {
  int64_t total = 0;
  for (size_t i = 0; i < cnts.size(); ++i) {
    total += cnts[i];  // every run is in [0, hw] and the total stays <= hw: no overflow
    if (total > hw)
      fail_value(fn, ": rle['counts'] must sum to H*W = ", hw, ", the first ", i + 1,
                 " runs already sum to ", total);
  }
  if (total != hw) fail_value(fn, ": rle['counts'] must sum to H*W = ", hw, ", got ", total);
}

void check_run_range(int64_t v, size_t i, int64_t hw, const char* fn) {
  if (v < 0)
    fail_value(fn, ": rle['counts'] must be non-negative run lengths, got ", v, " at index ", i);
  if (v > hw)
    fail_value(fn, ": rle['counts'] must sum to H*W = ", hw, ", got a run of ", v, " at index ", i);
}

// pycocotools' rleFrString, with every malformation reported (see rle_decode_ref).
std::vector<int64_t> parse_counts_string(const std::string& s, int64_t hw, const char* fn) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 48 || c > 111) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02x", c);
      fail_value(fn, ": rle['counts'] has a bad character ", hex, " at index ", i,
                 " (COCO counts use '0'..'o')");
    }
  }
  if (!s.empty() && ((s.back() - 48) & 0x20))
    fail_value(fn, ": rle['counts'] ends inside a value (its last character has the "
                   "continuation bit)");
  std::vector<int64_t> x;
  size_t p = 0;
  while (p < s.size()) {
    int64_t v = 0;
    int k = 0, c = 0;
    bool more = true;
    while (more) {
      if (k == 12)
        fail_value(fn, ": rle['counts'] value ", x.size(), " is longer than 12 characters");
      c = s[p] - 48;
      v |= static_cast<int64_t>(c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
    }
    if (c & 0x10) v -= static_cast<int64_t>(1) << (5 * k);  // sign extension
    x.push_back(v);
  }
  // |x| < 2**59 and the run two before is in [0, hw]: no overflow up to the first bad run.
  for (size_t i = 0; i < x.size(); ++i) {
    if (i > 2) x[i] += x[i - 2];
    check_run_range(x[i], i, hw, fn);
  }
  return x;
}

Rle read_rle(const py::object& obj, const char* fn) {
  if (!py::isinstance<py::dict>(obj))
    fail_type(fn, ": rle must be a dict {'size': [H, W], 'counts': ...}, got ", type_name(obj));
  auto d = py::reinterpret_borrow<py::dict>(obj);
  if (!d.contains("size") || !d.contains("counts"))
    fail_value(fn, ": rle must have the keys 'size' and 'counts', got ",
               py::str(py::list(d.attr("keys")())).cast<std::string>());
  py::object size = d["size"];
  bool good = is_pair_sequence(size) && py::len(size) == 2;
  int64_t hw[2] = {-1, -1};
  if (good) {
    auto s = py::reinterpret_borrow<py::sequence>(size);
    for (int k = 0; k < 2 && good; ++k) {
      py::object e = s[k];
      bool ok = is_int_like(e);
      if (ok) hw[k] = as_int64(e, ok);
      good = ok && hw[k] >= 0 && hw[k] <= kMaxSide;
    }
  }
  if (!good)
    fail_value(fn, ": rle['size'] must be two non-negative ints [H, W] (each < 2**31), got ",
               py::repr(size).cast<std::string>());
  Rle r{hw[0], hw[1], {}};
  const int64_t n = r.h * r.w;
  py::object counts = d["counts"];
  if (py::isinstance<py::bytes>(counts) || py::isinstance<py::str>(counts)) {
    r.cnts = parse_counts_string(counts.cast<std::string>(), n, fn);
  } else if (py::isinstance<py::array>(counts)) {
    auto a = py::reinterpret_borrow<py::array>(counts);
    if (!a.dtype().is(py::dtype::of<int64_t>()) || a.ndim() != 1)
      fail_type(fn, ": rle['counts'] as an array must be int64 [K] (the Python wrapper converts "
                    "lists), got ", dtype_str(a), " ", shape_str(a));
    r.cnts.resize(a.shape(0));
    for (py::ssize_t i = 0; i < a.shape(0); ++i)
      r.cnts[i] = at_bytes<int64_t>(a.data(), i * a.strides(0));
    for (size_t i = 0; i < r.cnts.size(); ++i) check_run_range(r.cnts[i], i, n, fn);
  } else {
    fail_type(fn, ": rle['counts'] must be bytes, str or an int64 array, got ", type_name(counts));
  }
  check_runs(r.cnts, n, fn);
  return r;
}

// Runs -> row-major uint8 [h, w]: the value of row 0 of each column, plus the rows where a column
// toggles (bucketed by row); then one sweep copies the running state row by row.
void decode_runs(const Rle& r, uint8_t* out) {
  const int64_t h = r.h, w = r.w, n = h * w;
  if (n == 0) return;
  std::vector<uint8_t> state(static_cast<size_t>(w), 0);
  std::vector<int64_t> row_start(static_cast<size_t>(h + 1), 0);
  // Runs of ones: [a, b) in column-major positions.
  auto for_each_toggle = [&](auto&& toggle) {
    int64_t a = 0;
    for (size_t i = 0; i < r.cnts.size(); ++i) {
      const int64_t b = a + r.cnts[i];
      if ((i & 1) && b > a) {
        const int64_t ca = a / h, ra = a % h, cl = (b - 1) / h;
        if (ra != 0) toggle(ra, ca);
        if (b < n && b % h != 0) toggle(b % h, b / h);
        if (ra == 0) state[ca] = 1;
        for (int64_t c = ca + 1; c <= cl; ++c) state[c] = 1;
      }
      a = b;
    }
  };
  for_each_toggle([&](int64_t row, int64_t) { ++row_start[row + 1]; });
  for (int64_t i = 0; i < h; ++i) row_start[i + 1] += row_start[i];
  std::vector<int32_t> cols(static_cast<size_t>(row_start[h]));
  std::vector<int64_t> fill(row_start.begin(), row_start.end() - 1);
  for_each_toggle([&](int64_t row, int64_t col) { cols[fill[row]++] = static_cast<int32_t>(col); });
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t k = row_start[i]; k < row_start[i + 1]; ++k) state[cols[k]] ^= 1;
    std::memcpy(out + i * w, state.data(), static_cast<size_t>(w));
  }
}

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

// ================================================================================================
// Exported
// ================================================================================================

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

py::object rle_encode(py::array mask) {
  const char* fn = "rle_encode";
  check_mask_dtype(mask, fn);
  if (mask.ndim() != 2 && mask.ndim() != 3)
    fail_value(fn, ": mask must be [H, W] or [N, H, W] (ndim 2 or 3), got ", shape_str(mask));
  check_nonempty(mask, fn, "mask");
  const bool batched = mask.ndim() == 3;
  const int a = batched ? 1 : 0;
  const int64_t n = batched ? mask.shape(0) : 1;
  const int64_t h = mask.shape(a), w = mask.shape(a + 1);
  const auto* base = static_cast<const uint8_t*>(mask.data());
  std::vector<std::string> strings(static_cast<size_t>(n));
  {
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) {
      const Mask2D m{base + i * (batched ? mask.strides(0) : 0), h, w, mask.strides(a),
                     mask.strides(a + 1)};
      strings[i] = counts_to_string(encode_counts(m));
    }
  }
  py::list out;
  for (const auto& s : strings) {
    py::dict d;
    py::list size;
    size.append(h);
    size.append(w);
    d["size"] = size;
    d["counts"] = py::bytes(s);
    out.append(d);
  }
  if (!batched) return out[0];
  return std::move(out);
}

py::array rle_decode(py::object rle) {
  const Rle r = read_rle(rle, "rle_decode");
  py::array_t<uint8_t> out(std::vector<py::ssize_t>{r.h, r.w});
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    decode_runs(r, o);
  }
  return out;
}

int64_t rle_area(py::object rle) {
  const Rle r = read_rle(rle, "rle_area");
  int64_t area = 0;
  for (size_t i = 1; i < r.cnts.size(); i += 2) area += r.cnts[i];
  return area;
}

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
