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
// COCO RLE
// ================================================================================================

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
}  // namespace

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

}  // namespace earthx
