// asd._C.decision_features / asd._C.proxy_costs — the per-decision numpy work of the cascade in one call each.
//
// Readable twins: asd.features.batch_features_ref (numpy) and asd.core.routing.proxy_costs_ref. Both
// kernels give bit-identical results to their twins (tests/test_features.py and tests/core/test_routing.py check it on fresh random
// inputs): the same float64 arithmetic in the same order, including numpy's summation order of
// np.add.reduceat (first element + pairwise sum of the rest, numpy's 8-accumulator pairwise scheme).
// At batch 16 the numpy twins cost ~90 µs (features) and ~14 µs (costs), ~20 numpy calls of a few µs;
// these are single passes over the responses (a few hundred tokens), well under a microsecond of work.
//
// decision_features(out [R, F] float32, stage, prompt_len [R], prompt_nll [R], stats: R × [n_i, 5]
//                   float32/float64, tokens: R × [n_i] int32/int64, ended_eos [R], accept_prev [R],
//                   table [V, 4] float64) → None
//   writes columns 0..22 of `out` (the scalar, token-statistic and text features of asd.features;
//   the hidden-state projection, columns 23.., stays with numpy's matmul and is left untouched).
// proxy_costs(prompt_len [B], resp_len [B], accept [B, K, K], size [K], prefill_ratio) → [B, K, K] float64
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>

#include "asd.h"

namespace py = pybind11;

namespace asd {
namespace {

constexpr int kStats = 5;           // asd.tokstats columns: entropy, maxprob, margin, logprob, (5th unused here)
constexpr int kFirstHidden = 23;    // columns 0..22 are written here
constexpr double kLowConfidence = 0.5;
constexpr int kPwBlock = 128;       // numpy's PW_BLOCKSIZE

using f64c = py::array_t<double, py::array::c_style | py::array::forcecast>;

// numpy's pairwise summation (npy_math: DOUBLE_pairwise_sum) of the 8 columns of a row-major [n, 8] block at
// once: column c gets exactly the sum numpy forms for that column alone (the column loops vectorise).
void pairwise_sum8(const double* a, int64_t n, double* res) {
  if (n < 8) {
    for (int c = 0; c < 8; ++c) res[c] = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 8; ++c) res[c] += a[i * 8 + c];
    return;
  }
  if (n <= kPwBlock) {
    double r[8][8];
    for (int j = 0; j < 8; ++j)
      for (int c = 0; c < 8; ++c) r[j][c] = a[j * 8 + c];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j)
        for (int c = 0; c < 8; ++c) r[j][c] += a[(i + j) * 8 + c];
    for (int c = 0; c < 8; ++c)
      res[c] = ((r[0][c] + r[1][c]) + (r[2][c] + r[3][c])) + ((r[4][c] + r[5][c]) + (r[6][c] + r[7][c]));
    for (; i < n; ++i)
      for (int c = 0; c < 8; ++c) res[c] += a[i * 8 + c];
    return;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  double lo[8], hi[8];
  pairwise_sum8(a, n2, lo);
  pairwise_sum8(a + n2 * 8, n - n2, hi);
  for (int c = 0; c < 8; ++c) res[c] = lo[c] + hi[c];
}

// Type number, data and C-contiguity of a numpy array, read straight from the object (the py::dtype
// route allocates a descriptor per call: ~100 ns × 2 per response adds up at batch 16).
inline int type_num(PyObject* a) { return py::detail::array_descriptor_proxy(py::detail::array_proxy(a)->descr)->type_num; }
inline bool c_contig(PyObject* a) { return (py::detail::array_proxy(a)->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0; }
inline const void* data_of(PyObject* a) { return py::detail::array_proxy(a)->data; }
constexpr int kF32 = py::detail::npy_api::NPY_FLOAT_, kF64 = py::detail::npy_api::NPY_DOUBLE_;
constexpr int kI32 = py::detail::npy_api::NPY_INT_, kI64 = py::detail::npy_api::NPY_LONG_;

// A [R] argument of any numeric dtype, read element-wise as double (no converted copy for the common dtypes).
struct Vec {
  py::array keep;  // owns a converted copy when the dtype is unusual
  const char* p = nullptr;
  int64_t stride = 0;
  int tn = 0;
  Vec(const py::handle& h, int64_t R, const char* name) {
    // an ndarray is borrowed as is (py::array::ensure would go through PyArray_FromAny, ~0.2 µs each)
    keep = py::isinstance<py::array>(h) ? py::reinterpret_borrow<py::array>(h) : py::array::ensure(h);
    if (!keep || keep.ndim() != 1 || keep.shape(0) != R)
      throw std::invalid_argument(std::string(name) + " must have shape [R]=(" + std::to_string(R) + ",)");
    tn = type_num(keep.ptr());
    if (tn != kF64 && tn != kF32 && tn != kI64 && tn != kI32 && tn != py::detail::npy_api::NPY_BOOL_) {
      keep = f64c::ensure(keep);
      if (!keep) throw std::invalid_argument(std::string(name) + " must be numeric");
      tn = kF64;
    }
    p = static_cast<const char*>(keep.data());
    stride = keep.strides(0);
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

template <typename TS, typename TT>
void one_response(const TS* st, const TT* tk, int64_t n, const double* table, int64_t V, float* o,
                  std::vector<double>& buf) {
  // buf: [n, 8] float64 per-token values in the twin's column order: entropy, maxprob, margin,
  // low-confidence, logprob, chars, digits, newlines
  buf.resize(static_cast<size_t>(n) * 8);
  double mn[3], mx[3];
  double depth = 0.0, best = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = static_cast<int64_t>(tk[i]);
    if (t < 0 || t >= V)
      throw py::index_error("token id " + std::to_string(t) + " outside the token table (V=" + std::to_string(V) + ")");
    const TS* s = st + i * kStats;
    const double* tab = table + t * 4;
    double* b = buf.data() + i * 8;
    for (int c = 0; c < 3; ++c) {
      const double v = static_cast<double>(s[c]);
      b[c] = v;
      mn[c] = (i == 0 || v < mn[c] || v != v) ? v : mn[c];  // NaN propagates, as np.minimum
      mx[c] = (i == 0 || v > mx[c] || v != v) ? v : mx[c];
    }
    b[3] = s[1] < kLowConfidence ? 1.0 : 0.0;
    b[4] = static_cast<double>(s[3]);
    b[5] = tab[0];
    b[6] = tab[1];
    b[7] = tab[2];
    depth += tab[3];  // running bracket depth inside this response (integer-valued: exact)
    best = depth > best ? depth : best;
  }
  const double cnt = static_cast<double>(n);
  // np.add.reduceat over the segment: the first row + the pairwise sum of the rest
  double mean[8];
  if (n > 1) pairwise_sum8(buf.data() + 8, n - 1, mean);
  for (int c = 0; c < 8; ++c) mean[c] = (n > 1 ? buf[c] + mean[c] : buf[c]) / cnt;
  const TS* last = st + (n - 1) * kStats;
  for (int c = 0; c < 3; ++c) {
    o[5 + 4 * c] = static_cast<float>(mean[c]);
    o[6 + 4 * c] = static_cast<float>(mn[c]);
    o[7 + 4 * c] = static_cast<float>(mx[c]);
    o[8 + 4 * c] = static_cast<float>(static_cast<double>(last[c]));
  }
  o[17] = static_cast<float>(mean[3]);
  o[18] = static_cast<float>(mean[4]);
  const double chars = mean[5] * cnt;
  const double has = chars > 0 ? 1.0 : 0.0;
  o[20] = static_cast<float>(mean[6] / std::max(mean[5], 1e-12) * has);
  o[21] = static_cast<float>(mean[7] * cnt + has);
  o[22] = static_cast<float>(std::max(best, 0.0));
}

template <typename TS>
void dispatch_tokens(const TS* st, const py::handle& tok, int64_t n, const double* table, int64_t V, float* o,
                     std::vector<double>& buf) {
  PyObject* a = tok.ptr();
  const int tn = type_num(a);
  if (tn == kI64 && c_contig(a))
    one_response(st, static_cast<const int64_t*>(data_of(a)), n, table, V, o, buf);
  else if (tn == kI32 && c_contig(a))
    one_response(st, static_cast<const int32_t*>(data_of(a)), n, table, V, o, buf);
  else {
    auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(tok);
    if (!c) throw std::invalid_argument("tokens must be integer arrays");
    one_response(st, c.data(), n, table, V, o, buf);
  }
}

void decision_features(py::array_t<float> out, double stage, const py::handle& prompt_len,
                       const py::handle& prompt_nll, const py::sequence& stats, const py::sequence& tokens,
                       const py::handle& ended_eos, const py::handle& accept_prev, const f64c& table) {
  const int64_t R = static_cast<int64_t>(py::len(tokens));
  if (out.ndim() != 2 || out.shape(0) != R || out.shape(1) < kFirstHidden || !(out.flags() & py::array::c_style) ||
      !out.writeable())
    throw std::invalid_argument("out must be a writeable C-contiguous float32 array of shape [R, F>=23]");
  if (static_cast<int64_t>(py::len(stats)) != R)
    throw std::invalid_argument("stats has " + std::to_string(py::len(stats)) + " entries for " + std::to_string(R) +
                                " token arrays");
  const Vec pl(prompt_len, R, "prompt_len"), nll(prompt_nll, R, "prompt_nll"), eos(ended_eos, R, "ended_eos"),
      ap(accept_prev, R, "accept_prev");
  if (table.ndim() != 2 || table.shape(1) != 4) throw std::invalid_argument("table must have shape [V, 4]");
  const int64_t F = out.shape(1), V = table.shape(0);
  float* po = out.mutable_data();
  const bool lists = PyList_Check(stats.ptr()) && PyList_Check(tokens.ptr());
  std::vector<double> buf;
  for (int64_t r = 0; r < R; ++r) {
    float* o = po + r * F;
    py::object sh, th;
    if (lists) {
      sh = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(stats.ptr(), r));
      th = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(tokens.ptr(), r));
    } else {
      sh = stats[r];
      th = tokens[r];
    }
    if (!py::isinstance<py::array>(sh) || !py::isinstance<py::array>(th))
      throw std::invalid_argument("stats and tokens must be sequences of numpy arrays");
    PyObject* sa = sh.ptr();
    const int64_t n = py::reinterpret_borrow<py::array>(th).size();
    if (py::reinterpret_borrow<py::array>(sh).size() != n * kStats)
      throw std::invalid_argument("stats[" + std::to_string(r) + "] must have shape [n, 5] with n = len(tokens[" +
                                  std::to_string(r) + "])");
    o[0] = static_cast<float>(stage);
    o[1] = static_cast<float>(pl[r]);
    o[2] = static_cast<float>(nll[r]);
    o[3] = static_cast<float>(n);
    o[4] = static_cast<float>(eos[r]);
    std::fill(o + 5, o + kFirstHidden, 0.0f);
    const double a = ap[r];
    o[19] = static_cast<float>(std::isfinite(a) ? a : 1.0);
    if (n == 0) continue;
    const int tn = type_num(sa);
    if (c_contig(sa) && tn == kF32)
      dispatch_tokens(static_cast<const float*>(data_of(sa)), th, n, table.data(), V, o, buf);
    else if (c_contig(sa) && tn == kF64)
      dispatch_tokens(static_cast<const double*>(data_of(sa)), th, n, table.data(), V, o, buf);
    else {
      auto s64 = f64c::ensure(sh);
      if (!s64) throw std::invalid_argument("stats must be float arrays");
      dispatch_tokens(s64.data(), th, n, table.data(), V, o, buf);
    }
  }
}

// c_{j→m} = size_m·(ρ·(P + L) + (1 − â)·L) / (size_{K−1}·(ρ·P + L)), evaluated as the twin does:
// (ρ·(P + L) + (1 − â)·L) · (size_m / size_{K−1}) / (ρ·P + L); inf where m <= j.
py::array_t<double> proxy_costs(const py::handle& prompt_len, const py::handle& resp_len, const f64c& accept,
                                const f64c& size, double rho) {
  if (size.ndim() != 1) throw std::invalid_argument("size must have shape [K]");
  const int64_t K = size.shape(0), B = py::len(prompt_len);
  if (accept.ndim() != 3 || accept.shape(0) != B || accept.shape(1) != K || accept.shape(2) != K)
    throw std::invalid_argument("accept_mean must have shape [B, K, K]=(" + std::to_string(B) + ", " +
                                std::to_string(K) + ", " + std::to_string(K) + ")");
  const Vec P(prompt_len, B, "prompt_len"), Lr(resp_len, B, "resp_len");
  py::array_t<double> out({B, K, K});
  double* po = out.mutable_data();
  const double *A = accept.data(), *s = size.data();
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < B; ++b) {
    const double L = std::max(Lr[b], 1.0);
    const double pre = rho * (P[b] + L), den = rho * P[b] + L;
    for (int64_t j = 0; j < K; ++j)
      for (int64_t m = 0; m < K; ++m) {
        const int64_t i = (b * K + j) * K + m;
        if (m <= j) {
          po[i] = inf;
          continue;
        }
        double a = A[i];
        a = a < 0.0 ? 0.0 : (a > 1.0 ? 1.0 : a);  // np.clip; NaN stays NaN
        po[i] = (pre + (1.0 - a) * L) * (s[m] / s[K - 1]) / den;
      }
  }
  return out;
}

}  // namespace

void register_decision(py::module_& m) {
  m.def("decision_features", &decision_features, py::arg("out"), py::arg("stage"), py::arg("prompt_len"),
        py::arg("prompt_nll"), py::arg("stats"), py::arg("tokens"), py::arg("ended_eos"), py::arg("accept_prev"),
        py::arg("table"), "Columns 0..22 of asd.features.batch_features, written into out [R, F] float32.");
  m.def("proxy_costs", &proxy_costs, py::arg("prompt_len"), py::arg("resp_len"), py::arg("accept_mean"),
        py::arg("size"), py::arg("prefill_ratio"), "asd.core.routing.proxy_costs: [B, K, K] float64.");
}

}  // namespace asd
