// Helpers shared by the mask ops (masks.cpp, rle.cpp, contours.cpp): argument parsing and the
// mask dtype rule. Internal to _C.
#pragma once

#include <utility>

#include "common.h"

namespace earthx {
namespace mask_util {

// ================================================================================================
// Argument parsing
// ================================================================================================

inline const char* type_name(const py::handle& o) { return Py_TYPE(o.ptr())->tp_name; }

inline bool is_int_like(const py::handle& v) {
  return !PyBool_Check(v.ptr()) && PyIndex_Check(v.ptr());
}

// Python int (or numpy integer) -> int64; `ok` false when it does not fit.
inline int64_t as_int64(const py::handle& v, bool& ok) {
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!idx) throw py::error_already_set();
  int overflow = 0;
  const long long r = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  ok = overflow == 0;
  return r;
}

inline bool is_pair_sequence(const py::handle& o) {
  return py::isinstance<py::sequence>(o) && !py::isinstance<py::str>(o) &&
         !py::isinstance<py::bytes>(o);
}

// (h, w) pair of ints >= 1.
inline std::pair<int64_t, int64_t> parse_hw(const py::object& o, const char* fn, const char* name) {
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

inline void check_mask_dtype(const py::array& a, const char* fn) {
  if (!a.dtype().is(py::dtype::of<bool>()) && !a.dtype().is(py::dtype::of<uint8_t>()))
    fail_type(fn, ": mask must have dtype bool or uint8, got ", dtype_str(a));
}


// A 2-D byte mask with byte strides (non-contiguous views are read in place).
struct Mask2D {
  const uint8_t* data;
  int64_t h, w;
  int64_t s0, s1;
};

}  // namespace mask_util
}  // namespace earthx
