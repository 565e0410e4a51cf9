// Shared helpers for the _C bindings: input checks that raise Python errors naming the input, the
// rule and what came, and a parallel loop over rows.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#ifdef EARTHX_OPENMP
#include <omp.h>
#endif

namespace earthx {

namespace py = pybind11;

// Formats "[a, b, c]" for error messages.
inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << "]";
  return s.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

template <typename... Args>
[[noreturn]] inline void fail_value(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  throw py::value_error(s.str());
}

template <typename... Args>
[[noreturn]] inline void fail_type(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  throw py::type_error(s.str());
}

// Raises TypeError unless `a` has dtype T.
template <typename T>
inline void check_dtype(const py::array& a, const char* fn, const char* name, const char* expected) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>()))
    fail_type(fn, ": ", name, " must have dtype ", expected, ", got ", dtype_str(a));
}

inline void check_ndim(const py::array& a, const char* fn, const char* name, py::ssize_t ndim,
                       const char* layout) {
  if (a.ndim() != ndim)
    fail_value(fn, ": ", name, " must be ", layout, " (", ndim, " dims), got ", shape_str(a));
}

inline void check_nonempty(const py::array& a, const char* fn, const char* name) {
  if (a.size() == 0) fail_value(fn, ": ", name, " must not be empty, got shape ", shape_str(a));
}

inline void check_c_contiguous(const py::array& a, const char* fn, const char* name) {
  if (!(a.flags() & py::array::c_style))
    fail_value(fn, ": ", name, " must be C-contiguous (the Python wrapper makes it so), got strides ",
               "of a non-contiguous array of shape ", shape_str(a));
}

inline void check_positive(int64_t v, const char* fn, const char* name) {
  if (v < 1) fail_value(fn, ": ", name, " must be >= 1, got ", v);
}

// Strided element access in bytes, so that non-contiguous numpy views need no copy.
template <typename T>
inline const T& at_bytes(const void* base, int64_t offset_bytes) {
  return *reinterpret_cast<const T*>(static_cast<const char*>(base) + offset_bytes);
}

int set_num_threads(int n);

inline int num_threads() {
#ifdef EARTHX_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace earthx
