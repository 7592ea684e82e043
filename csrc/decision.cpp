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
//                   float32/float64, tokens: R × [n_i] int32/int64, ended_eos [R] or None, accept_prev [R],
//                   table [V, 4] float64, eos_token_ids (ints; used when ended_eos is None)) → None
//   writes columns 0..22 of `out` (the scalar, token-statistic and text features of asd.features;
//   the hidden-state projection, columns 23.., stays with numpy's matmul and is left untouched).
// proxy_costs(prompt_len [B], resp_len [B], accept [B, K, K], size [K], prefill_ratio) → [B, K, K] float64
// proxy_dp(prompt_len [B], resp_len [B] numbers or B arrays (their lengths), accept [B, K, K] float64,
//           size [K], prefill_ratio, r [B, S, K] float32/float64, current [B] int64, lam, kappa, out)
//   → (action [B] int64, value [B, K] float64, next [B, K] int64): proxy_costs then the DP (asd._C.dp_solve)
//   in one call, the costs never leaving the stack. Twin: asd.cascade.decide_proxy_dp_ref (proxy_costs_ref,
//   then asd.core.dp.solve_ref); same float64 arithmetic in the same order as proxy_costs and dp.cpp's
//   kernel, so the plan is bit-identical to proxy_costs → dp_solve (tests/test_decision_fused.py).
//   Optional rows [B] int64: prompt_len and resp_len hold N entries, read at rows[b] (the cascade's live
//   samples); optional predictions [N, K, K] float32: r.mean(axis=1) written at [rows[b], current[b], :].
// record_features(features [N, K, F] float32, rows [R] int64, stage, prompt_len [N], prompt_nll [R], stats
//   (N arrays), tokens (N arrays), accept_prev [R], proj [R, F − 23] float32 or None, table, eos_token_ids)
//   → None: features[rows, stage] = batch_features(...) (EOS from the last tokens) written in place.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>

#include "asd.h"
#include "dp_sample.h"

namespace py = pybind11;

namespace asd {
namespace {

constexpr int kStats = 5;           // asd.tokstats columns: entropy, maxprob, margin, logprob, (5th unused here)
constexpr int kFirstHidden = 23;    // columns 0..22 are written here
constexpr double kLowConfidence = 0.5;
constexpr int kPwBlock = 128;       // numpy's PW_BLOCKSIZE
using dp_sample::kMaxStages;
using dp_sample::kStop;

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
const int64_t* int64_view(const py::handle& h, int64_t n, const char* name, py::array& keep, int64_t& len) {
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

template <typename TS, typename TT>
void one_response(const TS* st, const TT* tk, int64_t n, const double* table, int64_t V, float* o,
                  std::vector<double>& buf) {
  // buf: [n, 8] float64 per-token values in the twin's column order: entropy, maxprob, margin,
  // low-confidence, logprob, chars, digits, newlines
  buf.resize(static_cast<size_t>(n) * 8);
  double* __restrict bp = buf.data();  // local pointer: the stores below cannot alias the vector's own
  double mn[3], mx[3], first_nan[3];
  bool has_nan[3] = {false, false, false};
  double depth = 0.0, best = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < 3; ++c) mn[c] = mx[c] = static_cast<double>(st[c]);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = static_cast<int64_t>(tk[i]);
    if (t < 0 || t >= V)
      throw py::index_error("token id " + std::to_string(t) + " outside the token table (V=" + std::to_string(V) + ")");
    const TS* s = st + i * kStats;
    const double* tab = table + t * 4;
    double* b = bp + i * 8;
    for (int c = 0; c < 3; ++c) {
      const double v = static_cast<double>(s[c]);
      b[c] = v;
      // branch-free min/max (vminsd/vmaxsd); a NaN (rare: a well-predicted branch) is kept aside: np.minimum
      // and np.maximum propagate the first NaN they meet
      mn[c] = v < mn[c] ? v : mn[c];
      mx[c] = v > mx[c] ? v : mx[c];
      if (v != v && !has_nan[c]) {
        has_nan[c] = true;
        first_nan[c] = v;
      }
    }
    b[3] = s[1] < kLowConfidence ? 1.0 : 0.0;
    b[4] = static_cast<double>(s[3]);
    b[5] = tab[0];
    b[6] = tab[1];
    b[7] = tab[2];
    depth += tab[3];  // running bracket depth inside this response (integer-valued: exact)
    best = depth > best ? depth : best;
  }
  for (int c = 0; c < 3; ++c)
    if (has_nan[c]) mn[c] = mx[c] = first_nan[c];
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

// The last token of a response, as int64 (n >= 1).
int64_t last_token(const py::handle& tok, int64_t n) {
  PyObject* a = tok.ptr();
  const int tn = type_num(a);
  if (tn == kI64 && c_contig(a)) return static_cast<const int64_t*>(data_of(a))[n - 1];
  if (tn == kI32 && c_contig(a)) return static_cast<const int32_t*>(data_of(a))[n - 1];
  auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(tok);
  if (!c) throw std::invalid_argument("tokens must be integer arrays");
  return c.data()[n - 1];
}

// Table [V, 4] float64 C-contiguous, borrowed when it is one already (f64c's conversion costs ~0.3 µs a call).
struct Table {
  py::array keep;  // a converted copy, when needed
  const double* p = nullptr;
  int64_t V = 0;
  explicit Table(const py::handle& h) {
    PyObject* a = h.ptr();
    if (!(is_ndarray(a) && type_num(a) == kF64 && c_contig(a))) {
      keep = f64c::ensure(h);
      if (!keep) throw std::invalid_argument("table must be a float64 array of shape [V, 4]");
      a = keep.ptr();
    }
    const auto* ap = py::detail::array_proxy(a);
    if (ap->nd != 2 || ap->dimensions[1] != 4) throw std::invalid_argument("table must have shape [V, 4]");
    p = static_cast<const double*>(data_of(a));
    V = ap->dimensions[0];
  }
};

// Columns 0..22 of R rows: row i goes to po + dst[i] and describes entry src[i] of stats/tokens/prompt_len
// (src == nullptr: entry i) and entry i of prompt_nll/ended_eos/accept_prev.
void features_core(float* po, const int64_t* dst, const int64_t* src, int64_t R, double stage, const Vec& pl,
                   const Vec& nll, const Vec* eos, const std::vector<int64_t>& eos_ids, const Vec& ap,
                   PyObject* stats, PyObject* tokens, const Table& table) {
  const bool lists = PyList_Check(stats) && PyList_Check(tokens);
  std::vector<double> buf;
  for (int64_t r = 0; r < R; ++r) {
    float* o = po + dst[r];
    const int64_t e = src ? src[r] : r;
    // borrowed pointers from a list (no reference counting: this build checks the GIL on every pybind11
    // incref/decref, ~30 ns each); other sequences hand out owned references, kept in held_*
    py::object held_s, held_t;
    PyObject *sa, *ta;
    if (lists) {
      sa = PyList_GET_ITEM(stats, e);
      ta = PyList_GET_ITEM(tokens, e);
    } else {
      held_s = py::reinterpret_borrow<py::sequence>(stats)[e];
      held_t = py::reinterpret_borrow<py::sequence>(tokens)[e];
      sa = held_s.ptr();
      ta = held_t.ptr();
    }
    if (!is_ndarray(sa) || !is_ndarray(ta))
      throw std::invalid_argument("stats and tokens must be sequences of numpy arrays");
    const py::handle sh(sa), th(ta);
    const int64_t n = size_of(ta);
    if (size_of(sa) != n * kStats)
      throw std::invalid_argument("stats[" + std::to_string(e) + "] must have shape [n, 5] with n = len(tokens[" +
                                  std::to_string(e) + "])");
    o[0] = static_cast<float>(stage);
    o[1] = static_cast<float>(pl[e]);
    o[2] = static_cast<float>(nll[r]);
    o[3] = static_cast<float>(n);
    if (eos == nullptr) {  // ended at EOS: the last token is one of eos_ids
      bool ended = false;
      if (n > 0) {
        const int64_t t = last_token(th, n);
        for (const int64_t id : eos_ids) ended |= t == id;
      }
      o[4] = ended ? 1.0f : 0.0f;
    } else {
      o[4] = static_cast<float>((*eos)[r]);
    }
    std::fill(o + 5, o + kFirstHidden, 0.0f);
    const double a = ap[r];
    o[19] = static_cast<float>(std::isfinite(a) ? a : 1.0);
    if (n == 0) continue;
    const int tn = type_num(sa);
    if (c_contig(sa) && tn == kF32)
      dispatch_tokens(static_cast<const float*>(data_of(sa)), th, n, table.p, table.V, o, buf);
    else if (c_contig(sa) && tn == kF64)
      dispatch_tokens(static_cast<const double*>(data_of(sa)), th, n, table.p, table.V, o, buf);
    else {
      auto s64 = f64c::ensure(sh);
      if (!s64) throw std::invalid_argument("stats must be float arrays");
      dispatch_tokens(s64.data(), th, n, table.p, table.V, o, buf);
    }
  }
}

std::vector<int64_t> eos_list(const py::handle& ended_eos, const py::object& eos_token_ids) {
  std::vector<int64_t> ids;
  if (ended_eos.is_none()) {
    if (eos_token_ids.is_none()) throw std::invalid_argument("ended_eos is None: eos_token_ids must be given");
    for (const auto& e : eos_token_ids) ids.push_back(e.cast<int64_t>());
  }
  return ids;
}

void decision_features(py::array_t<float> out, double stage, const py::handle& prompt_len,
                       const py::handle& prompt_nll, const py::sequence& stats, const py::sequence& tokens,
                       const py::handle& ended_eos, const py::handle& accept_prev, const py::handle& table,
                       const py::object& eos_token_ids) {
  const int64_t R = static_cast<int64_t>(py::len(tokens));
  if (out.ndim() != 2 || out.shape(0) != R || out.shape(1) < kFirstHidden || !(out.flags() & py::array::c_style) ||
      !out.writeable())
    throw std::invalid_argument("out must be a writeable C-contiguous float32 array of shape [R, F>=23]");
  if (static_cast<int64_t>(py::len(stats)) != R)
    throw std::invalid_argument("stats has " + std::to_string(py::len(stats)) + " entries for " + std::to_string(R) +
                                " token arrays");
  // ended_eos None: column 4 is whether the response's last token is one of eos_token_ids
  const std::vector<int64_t> ids = eos_list(ended_eos, eos_token_ids);
  const Vec pl(prompt_len, R, "prompt_len"), nll(prompt_nll, R, "prompt_nll"), ap(accept_prev, R, "accept_prev");
  std::unique_ptr<Vec> eos;
  if (!ended_eos.is_none()) eos.reset(new Vec(ended_eos, R, "ended_eos"));
  const Table tab(table);
  const int64_t F = out.shape(1);
  std::vector<int64_t> dst(R);
  for (int64_t r = 0; r < R; ++r) dst[r] = r * F;
  features_core(out.mutable_data(), dst.data(), nullptr, R, stage, pl, nll, eos.get(), ids, ap, stats.ptr(),
                tokens.ptr(), tab);
}

// The cascade's record: features[rows[i], stage, :] for i < R, in one call. Columns 0..22 as decision_features
// (responses stats[rows[i]], tokens[rows[i]], prompt_len[rows[i]]; prompt_nll, accept_prev per i), columns
// 23.. copied from proj [R, F − 23] float32 (the hidden projection, computed by numpy's matmul) or zeros.
void record_features(const py::handle& features, const py::handle& rows, int64_t stage, const py::handle& prompt_len,
                     const py::handle& prompt_nll, const py::handle& stats, const py::handle& tokens,
                     const py::handle& accept_prev, const py::handle& proj, const py::handle& table,
                     const py::object& eos_token_ids) {
  PyObject* fo = features.ptr();
  if (!py::isinstance<py::array>(features) || type_num(fo) != kF32 || !c_contig(fo) ||
      py::reinterpret_borrow<py::array>(features).ndim() != 3 ||
      !py::reinterpret_borrow<py::array>(features).writeable())
    throw std::invalid_argument("features must be a writeable C-contiguous float32 array of shape [N, K, F]");
  auto fa = py::reinterpret_borrow<py::array>(features);
  const int64_t N = fa.shape(0), K = fa.shape(1), F = fa.shape(2);
  if (F < kFirstHidden) throw std::invalid_argument("features must have F >= 23 columns");
  if (stage < 0 || stage >= K) throw std::invalid_argument("stage must be in 0..K-1=" + std::to_string(K - 1));
  py::array rows_keep;
  int64_t R = 0;
  const int64_t* src = int64_view(rows, -1, "rows", rows_keep, R);
  if (!PyList_Check(stats.ptr()) || !PyList_Check(tokens.ptr()) || PyList_GET_SIZE(stats.ptr()) != N ||
      PyList_GET_SIZE(tokens.ptr()) != N)
    throw std::invalid_argument("stats and tokens must be lists of N=" + std::to_string(N) + " arrays");
  std::vector<int64_t> dst(R);
  for (int64_t i = 0; i < R; ++i) {
    if (src[i] < 0 || src[i] >= N)
      throw std::invalid_argument("rows[" + std::to_string(i) + "]=" + std::to_string(src[i]) + " outside 0..N-1=" +
                                  std::to_string(N - 1));
    dst[i] = (src[i] * K + stage) * F;
  }
  const float* pp = nullptr;
  if (!proj.is_none()) {
    PyObject* po = proj.ptr();
    if (!py::isinstance<py::array>(proj) || type_num(po) != kF32 || !c_contig(po) ||
        py::reinterpret_borrow<py::array>(proj).ndim() != 2 || py::reinterpret_borrow<py::array>(proj).shape(0) != R ||
        py::reinterpret_borrow<py::array>(proj).shape(1) != F - kFirstHidden)
      throw std::invalid_argument("proj must be a C-contiguous float32 array of shape [R, F-23]=(" +
                                  std::to_string(R) + ", " + std::to_string(F - kFirstHidden) + ")");
    pp = static_cast<const float*>(data_of(po));
  }
  const std::vector<int64_t> ids = eos_list(py::none(), eos_token_ids);
  const Vec pl(prompt_len, N, "prompt_len"), nll(prompt_nll, R, "prompt_nll"), ap(accept_prev, R, "accept_prev");
  const Table tab(table);
  float* base = static_cast<float*>(fa.mutable_data());
  features_core(base, dst.data(), src, R, static_cast<double>(stage), pl, nll, nullptr, ids, ap, stats.ptr(),
                tokens.ptr(), tab);
  const int64_t H = F - kFirstHidden;
  for (int64_t i = 0; i < R; ++i) {
    float* o = base + dst[i] + kFirstHidden;
    if (pp)
      std::copy(pp + i * H, pp + (i + 1) * H, o);
    else
      std::fill(o, o + H, 0.0f);
  }
}

// c_{j→m} of one entry as the twin evaluates it: (ρ·(P + L) + (1 − â)·L) · (size_m / size_{K−1}) / (ρ·P + L),
// with pre = ρ·(P + L), den = ρ·P + L, ratio_m = size_m / size_{K−1}; â clipped to [0, 1] (NaN stays NaN).
inline double proxy_cost(double pre, double den, double L, double a, double ratio_m) {
  a = a < 0.0 ? 0.0 : (a > 1.0 ? 1.0 : a);  // np.clip
  return (pre + (1.0 - a) * L) * ratio_m / den;
}

// c_{j→m} = size_m·(ρ·(P + L) + (1 − â)·L) / (size_{K−1}·(ρ·P + L)) (proxy_cost); inf where m <= j.
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
        po[i] = proxy_cost(pre, den, L, A[i], s[m] / s[K - 1]);
      }
  }
  return out;
}


// Lengths of a list/tuple of arrays (the responses themselves) or a numeric [B] array, as double.
struct Lengths {
  std::vector<double> own;
  const Vec* vec = nullptr;
  std::unique_ptr<Vec> keep;
  Lengths(const py::handle& h, int64_t B, const char* name) {
    PyObject* o = h.ptr();
    if (PyList_Check(o) || PyTuple_Check(o)) {
      if (PySequence_Fast_GET_SIZE(o) != B)
        throw std::invalid_argument(std::string(name) + " has " + std::to_string(PySequence_Fast_GET_SIZE(o)) +
                                    " entries for B=" + std::to_string(B));
      own.resize(B);
      PyObject** items = PySequence_Fast_ITEMS(o);
      for (int64_t b = 0; b < B; ++b) {
        const Py_ssize_t n = PyObject_Length(items[b]);
        if (n < 0) {
          PyErr_Clear();
          throw std::invalid_argument(std::string(name) + "[" + std::to_string(b) + "] has no length");
        }
        own[b] = static_cast<double>(n);
      }
    } else {
      keep.reset(new Vec(h, B, name));
      vec = keep.get();
    }
  }
  double operator[](int64_t b) const { return vec ? (*vec)[b] : own[b]; }
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

// The per-sample loop of proxy_dp (KC > 0: K known at compile time, as dp.cpp's kernel).
template <int KC, typename TR>
void proxy_dp_kernel(const TR* __restrict r, int64_t B, int64_t S, int64_t K_dyn, const int64_t* src, const Vec& P,
                     const Lengths& Lr, const double* A, const double* ratio, double rho, const int64_t* pc,
                     double lam, double kappa, int64_t* pa, double* pv, int64_t* pn, float* pred, int64_t& bad_r,
                     int64_t& bad_cost, int64_t& bad_cur) {
  const int64_t K = KC > 0 ? KC : K_dyn;
  for (int64_t b = 0; b < B; ++b) {
    // the costs of proxy_costs (only m > j is read), then the per-sample DP of csrc/dp_sample.h on them
    double c[KC > 0 ? KC * KC : kMaxStages * kMaxStages];
    const int64_t e = src ? src[b] : b;
    const double L = std::max(Lr[e], 1.0);
    const double pre = rho * (P[e] + L), den = rho * P[e] + L;
    bool c_bad = false;
    for (int64_t j = 0; j < K; ++j)
      for (int64_t m = j + 1; m < K; ++m) {
        const double v = proxy_cost(pre, den, L, A[(b * K + j) * K + m], ratio[m]);
        c[j * K + m] = v;
        c_bad |= !(v >= 0.0);
      }
    if (c_bad && b < bad_cost) bad_cost = b;
    double stopv[kMaxStages], V[kMaxStages];
    int64_t nx[kMaxStages];
    const TR* rb = r + b * S * K;
    // dp.cpp's per-sample DP (csrc/dp_sample.h) on these costs
    if (!dp_sample::stop_values<KC, 0>(rb, S, K, lam, kappa, stopv) && b < bad_r) bad_r = b;
    dp_sample::recurse<KC>(stopv, [&c, K](int64_t j, int64_t m) { return c[j * K + m]; }, K, V, nx);
    for (int64_t k = 0; k < K; ++k) {
      pv[b * K + k] = V[k];
      pn[b * K + k] = nx[k];
    }
    const int64_t cu = pc[b];
    if (cu < 0 || cu >= K) {
      if (b < bad_cur) bad_cur = b;
      pa[b] = kStop;
      continue;
    }
    pa[b] = nx[cu];
    if (pred) {  // numpy's r.mean(axis=1): a sequential sum over the draws (strided axis), then / S
      float* pw = pred + (e * K + cu) * K;
      for (int64_t k = 0; k < K; ++k) {  // in r's own dtype, as numpy (float32: float32 sum and quotient)
        TR acc = rb[k];
        for (int64_t s = 1; s < S; ++s) acc += rb[s * K + k];
        pw[k] = static_cast<float>(acc / static_cast<TR>(S));
      }
    }
  }
}

py::tuple proxy_dp(const py::handle& prompt_len, const py::handle& resp_len, const py::handle& accept_h,
                   const py::handle& size_h, double rho, const py::array& r, const py::handle& current, double lam,
                   double kappa,
                   const py::object& out, const py::handle& rows, const py::handle& predictions) {
  // --- arguments (the checks of proxy_costs and dp_solve, once)
  if (std::isnan(lam) || lam < 0.0)
    throw std::invalid_argument("lam must be >= 0 or inf, got " + std::to_string(lam));
  if (!std::isfinite(kappa) || kappa < 0.0)
    throw std::invalid_argument("kappa must be a finite number >= 0, got " + std::to_string(kappa));
  if (r.ndim() != 3) throw std::invalid_argument("r must have shape [B, S, K]");
  const int64_t B = r.shape(0), S = r.shape(1), K = r.shape(2);
  if (S < 1 || K < 1) throw std::invalid_argument("r must have S >= 1 draws and K >= 1 stages");
  if (K > kMaxStages) throw std::invalid_argument("r has K=" + std::to_string(K) + " stages; at most 64 are supported");
  const F64 accept(accept_h, "accept_mean"), size(size_h, "size");
  if (size.ndim() != 1 || size.shape(0) != K)
    throw std::invalid_argument("size must have shape [K]=(" + std::to_string(K) + ",)");
  if (accept.ndim() != 3 || accept.shape(0) != B || accept.shape(1) != K || accept.shape(2) != K)
    throw std::invalid_argument("accept_mean must have shape [B, K, K]=(" + std::to_string(B) + ", " +
                                std::to_string(K) + ", " + std::to_string(K) + ")");
  const int rt = type_num(r.ptr());
  if ((rt != kF32 && rt != kF64) || !c_contig(r.ptr()))
    throw std::invalid_argument("r must be a C-contiguous float32 or float64 array");
  py::array cur_keep, rows_keep;
  int64_t len = 0;
  const int64_t* pc = int64_view(current, B, "current", cur_keep, len);
  // rows given: prompt_len [N] and resp_len (N entries) are read at rows[b]; predictions [N, K, K] float32
  // gets r.mean(axis=1) at [rows[b] (b without rows), current[b], :]
  const int64_t* src = nullptr;
  int64_t N = B;
  if (!rows.is_none()) {
    src = int64_view(rows, B, "rows", rows_keep, len);
    N = py::len(prompt_len);
    for (int64_t b = 0; b < B; ++b)
      if (src[b] < 0 || src[b] >= N)
        throw std::invalid_argument("rows[" + std::to_string(b) + "] outside 0..N-1=" + std::to_string(N - 1));
  }
  float* pred = nullptr;
  if (!predictions.is_none()) {
    PyObject* po = predictions.ptr();
    if (!py::isinstance<py::array>(predictions) || type_num(po) != kF32 || !c_contig(po) ||
        py::reinterpret_borrow<py::array>(predictions).ndim() != 3 ||
        py::reinterpret_borrow<py::array>(predictions).shape(0) != N ||
        py::reinterpret_borrow<py::array>(predictions).shape(1) != K ||
        py::reinterpret_borrow<py::array>(predictions).shape(2) != K ||
        !py::reinterpret_borrow<py::array>(predictions).writeable())
      throw std::invalid_argument("predictions must be a writeable C-contiguous float32 array of shape [N, K, K]");
    pred = static_cast<float*>(py::reinterpret_borrow<py::array>(predictions).mutable_data());
  }
  const Vec P(prompt_len, N, "prompt_len");
  const Lengths Lr(resp_len, N, "resp_len");
  auto [action, value, next] = plan_arrays(out, B, K);
  int64_t* pa = action.mutable_data();
  double* pv = value.mutable_data();
  int64_t* pn = next.mutable_data();
  const double* A = accept.data();
  const double* sz = size.data();
  double ratio[kMaxStages];  // size_m / size_{K−1}, the same double proxy_costs forms for every entry
  for (int64_t m = 0; m < K; ++m) ratio[m] = sz[m] / sz[K - 1];
  int64_t bad_r = B, bad_cost = B, bad_cur = B;
#define ASD_PDP(KC, TR)                                                                                           \
  proxy_dp_kernel<KC, TR>(static_cast<const TR*>(r.data()), B, S, K, src, P, Lr, A, ratio, rho, pc, lam, kappa, pa, \
                          pv, pn, pred, bad_r, bad_cost, bad_cur)
  if (rt == kF32) {
    if (K == 4) ASD_PDP(4, float); else if (K == 3) ASD_PDP(3, float); else ASD_PDP(0, float);
  } else {
    if (K == 4) ASD_PDP(4, double); else if (K == 3) ASD_PDP(3, double); else ASD_PDP(0, double);
  }
#undef ASD_PDP
  // contents, reported in the order of asd.core.dp._check_contents
  if (bad_r < B)
    throw std::invalid_argument("r must hold probabilities in [0, 1] (found NaN or a value outside at r[" +
                                std::to_string(bad_r) + "])");
  if (bad_cost < B)
    throw std::invalid_argument("cost contains NaN or a negative entry above the diagonal (from prompt_len, "
                                "resp_len, accept_mean or size of sample " + std::to_string(bad_cost) + ")");
  if (bad_cur < B)
    throw std::invalid_argument("current must hold stages in 0..K-1=" + std::to_string(K - 1) + ", got current[" +
                                std::to_string(bad_cur) + "]=" + std::to_string(pc[bad_cur]));
  return py::make_tuple(action, value, next);
}

}  // namespace

void register_decision(py::module_& m) {
  m.def("decision_features", &decision_features, py::arg("out"), py::arg("stage"), py::arg("prompt_len"),
        py::arg("prompt_nll"), py::arg("stats"), py::arg("tokens"), py::arg("ended_eos"), py::arg("accept_prev"),
        py::arg("table"), py::arg("eos_token_ids") = py::none(),
        "Columns 0..22 of asd.features.batch_features, written into out [R, F] float32.");
  m.def("record_features", &record_features, py::arg("features"), py::arg("rows"), py::arg("stage"),
        py::arg("prompt_len"), py::arg("prompt_nll"), py::arg("stats"), py::arg("tokens"), py::arg("accept_prev"),
        py::arg("proj"), py::arg("table"), py::arg("eos_token_ids"),
        "features[rows, stage] = asd.features.batch_features(...) with EOS from the last tokens, in place.");
  m.def("proxy_costs", &proxy_costs, py::arg("prompt_len"), py::arg("resp_len"), py::arg("accept_mean"),
        py::arg("size"), py::arg("prefill_ratio"), "asd.core.routing.proxy_costs: [B, K, K] float64.");
  m.def("proxy_dp", &proxy_dp, py::arg("prompt_len"), py::arg("resp_len"), py::arg("accept_mean"), py::arg("size"),
        py::arg("prefill_ratio"), py::arg("r"), py::arg("current"), py::arg("lam"), py::arg("kappa"),
        py::arg("out") = py::none(), py::arg("rows") = py::none(), py::arg("predictions") = py::none(),
        "proxy_costs then dp_solve in one call -> (action [B] int64, value [B, K] float64, next [B, K] int64).");
}

}  // namespace asd
