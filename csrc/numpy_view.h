// Reading numpy arguments straight through their raw pointers: shared by the kernels of csrc/features.cpp,
// csrc/routing.cpp and csrc/decision.cpp. The cascade calls them once per decision on a few hundred numbers,
// so the per-argument overhead matters: no py::dtype descriptors, no pybind11 references (this build checks
// the GIL on every incref/decref), no converted copies for the common dtypes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>

namespace asd {
namespace npview {

namespace py = pybind11;

using f64c = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Type number, data and C-contiguity of a numpy array, read straight from the object (the py::dtype
// route allocates a descriptor per call: ~100 ns × 2 per response adds up at batch 16).
inline int type_num(PyObject* a) { return py::detail::array_descriptor_proxy(py::detail::array_proxy(a)->descr)->type_num; }
inline bool c_contig(PyObject* a) { return (py::detail::array_proxy(a)->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0; }
inline const void* data_of(PyObject* a) { return py::detail::array_proxy(a)->data; }
inline bool is_ndarray(PyObject* a) { return py::detail::npy_api::get().PyArray_Check_(a); }
inline int64_t size_of(PyObject* a) {
  const auto* p = py::detail::array_proxy(a);
  int64_t n = 1;
  for (int d = 0; d < p->nd; ++d) n *= p->dimensions[d];
  return n;
}
constexpr int kF32 = py::detail::npy_api::NPY_FLOAT_, kF64 = py::detail::npy_api::NPY_DOUBLE_;
constexpr int kI32 = py::detail::npy_api::NPY_INT_, kI64 = py::detail::npy_api::NPY_LONG_;

// A [n] integer array (n < 0: any length) as int64: int64 C-contiguous ones in place, other integer
// dtypes converted into `keep`.
inline const int64_t* int64_view(const py::handle& h, int64_t n, const char* name, py::array& keep, int64_t& len) {
  PyObject* a = h.ptr();
  auto fail = [&]() {  // the message is built on the error path only
    return std::invalid_argument(std::string(name) + " must be a 1-D integer array" +
                                 (n >= 0 ? " of shape [B]=(" + std::to_string(n) + ",)" : std::string()));
  };
  if (!is_ndarray(a) || py::detail::array_proxy(a)->nd != 1) throw fail();
  len = py::detail::array_proxy(a)->dimensions[0];
  const char kind = py::detail::array_descriptor_proxy(py::detail::array_proxy(a)->descr)->kind;
  if ((n >= 0 && len != n) || (kind != 'i' && kind != 'u')) throw fail();
  if (type_num(a) == kI64 && c_contig(a)) return static_cast<const int64_t*>(data_of(a));
  keep = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(h);
  if (!keep) throw fail();
  return static_cast<const int64_t*>(keep.data());
}

// A [R] argument of any numeric dtype, read element-wise as double (no converted copy for the common dtypes).
struct Vec {
  py::array keep;  // owns a converted copy when the argument is no ndarray or its dtype is unusual
  const char* p = nullptr;
  int64_t stride = 0;
  int tn = 0;
  Vec(const py::handle& h, int64_t R, const char* name) {
    // an ndarray is read in place through its raw pointer (py::array::ensure would go through
    // PyArray_FromAny, ~0.2 µs; a pybind11 reference costs a GIL check per incref/decref in this build)
    PyObject* a = h.ptr();
    if (!is_ndarray(a)) {
      keep = py::array::ensure(h);
      if (!keep) throw std::invalid_argument(std::string(name) + " must be a numeric array");
      a = keep.ptr();
    }
    if (py::detail::array_proxy(a)->nd != 1 || py::detail::array_proxy(a)->dimensions[0] != R)
      throw std::invalid_argument(std::string(name) + " must have shape [R]=(" + std::to_string(R) + ",)");
    tn = type_num(a);
    if (tn != kF64 && tn != kF32 && tn != kI64 && tn != kI32 && tn != py::detail::npy_api::NPY_BOOL_) {
      keep = f64c::ensure(py::handle(a));
      if (!keep) throw std::invalid_argument(std::string(name) + " must be numeric");
      a = keep.ptr();
      tn = kF64;
    }
    p = static_cast<const char*>(data_of(a));
    stride = py::detail::array_proxy(a)->strides[0];
  }
  double operator[](int64_t i) const {
    const char* q = p + i * stride;
    switch (tn) {
      case kF64: return *reinterpret_cast<const double*>(q);
      case kF32: return *reinterpret_cast<const float*>(q);
      case kI64: return static_cast<double>(*reinterpret_cast<const int64_t*>(q));
      case kI32: return static_cast<double>(*reinterpret_cast<const int32_t*>(q));
      default: return *reinterpret_cast<const bool*>(q) ? 1.0 : 0.0;
    }
  }
};

// A float64 C-contiguous array, read in place when it is one already (f64c's caster costs ~0.3 µs a call).
struct F64 {
  py::array keep;  // a converted copy, when needed
  PyObject* a = nullptr;
  F64(const py::handle& h, const char* name) : a(h.ptr()) {
    if (!(is_ndarray(a) && type_num(a) == kF64 && c_contig(a))) {
      keep = f64c::ensure(h);
      if (!keep) throw std::invalid_argument(std::string(name) + " must be a float64 array");
      a = keep.ptr();
    }
  }
  int ndim() const { return py::detail::array_proxy(a)->nd; }
  int64_t shape(int d) const { return py::detail::array_proxy(a)->dimensions[d]; }
  const double* data() const { return static_cast<const double*>(data_of(a)); }
};

}  // namespace npview
}  // namespace asd
