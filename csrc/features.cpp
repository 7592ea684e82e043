// asd._C.decision_features / asd._C.record_features — the cascade's per-decision stage features
// (asd.core.features) in one call each.
//
// Readable twins: asd.core.features.batch_features_ref and record_batch_features_ref (numpy). The kernels give
// bit-identical results (tests/core/test_features.py, tests/core/test_decision.py, on fresh random inputs): the
// same float64 arithmetic in the same order, including numpy's summation order of np.add.reduceat (first
// element + pairwise sum of the rest, numpy's 8-accumulator pairwise scheme). At batch 16 the numpy twin costs
// ~90 µs, ~20 numpy calls of a few µs; the kernel is a single pass over the responses (a few hundred tokens).
//
// decision_features(out [R, F] float32, stage, prompt_len [R], prompt_nll [R], stats: R × [n_i, 5]
//                   float32/float64, tokens: R × [n_i] int32/int64, ended_eos [R] or None, accept_prev [R],
//                   table [V, 4] float64, eos_token_ids (ints; used when ended_eos is None)) → None
//   writes columns 0..22 of `out` (the scalar, token-statistic and text features of asd.features;
//   the hidden-state projection, columns 23.., stays with numpy's matmul and is left untouched).
// record_features(features [N, K, F] float32, rows [R] int64, stage, prompt_len [N], prompt_nll [R], stats
//   (N arrays), tokens (N arrays), accept_prev [R] or None (none: column 19 = 1, as for NaN), proj [R, F − 23]
//   float32 or None, table, eos_token_ids)
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

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "asd.h"
#include "numpy_view.h"

namespace py = pybind11;

namespace asd {
namespace {

using namespace npview;  // NOLINT: the raw-pointer readers of numpy_view.h

constexpr int kStats = 5;           // asd.tokstats columns: entropy, maxprob, margin, logprob, (5th unused here)
constexpr int kFirstHidden = 23;    // columns 0..22 are written here
constexpr double kLowConfidence = 0.5;
constexpr int kPwBlock = 128;       // numpy's PW_BLOCKSIZE

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

#if defined(__AVX2__)
inline __m256d load_stats4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
inline __m256d load_stats4(const double* p) { return _mm256_loadu_pd(p); }
#endif

template <typename TS, typename TT>
void one_response(const TS* st, const TT* tk, int64_t n, const double* table, int64_t V, float* o,
                  std::vector<double>& buf) {
  // buf: [n, 8] float64 per-token values: entropy, maxprob, margin, logprob, low-confidence, chars, digits,
  // newlines (each column is summed on its own, so the order of the columns does not change any sum)
  buf.resize(static_cast<size_t>(n) * 8);
  double* __restrict bp = buf.data();  // local pointer: the stores below cannot alias the vector's own
  double mn[4], mx[4], first_nan[4];
  bool has_nan[4] = {false, false, false, false};
  double depth = 0.0, best = -std::numeric_limits<double>::infinity();
#if defined(__AVX2__)
  // the first four statistics of a token in one 4-lane vector (lane 3, logprob, rides along in min/max/NaN and
  // is not read from them): branch-free min/max (min_pd(v, m) = v < m ? v : m, NaN keeps m, as the scalar
  // loop), NaNs kept aside (np.minimum and np.maximum propagate the first NaN they meet)
  __m256d vmn = load_stats4(st), vmx = vmn, vnan = _mm256_setzero_pd(), vfirst = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = static_cast<int64_t>(tk[i]);
    if (t < 0 || t >= V)
      throw py::index_error("token id " + std::to_string(t) + " outside the token table (V=" + std::to_string(V) + ")");
    const TS* s = st + i * kStats;
    const double* tab = table + t * 4;
    double* b = bp + i * 8;
    const __m256d v = load_stats4(s);
    _mm256_storeu_pd(b, v);
    vmn = _mm256_min_pd(v, vmn);
    vmx = _mm256_max_pd(v, vmx);
    vfirst = _mm256_blendv_pd(v, vfirst, vnan);  // the value of the first NaN, once one was seen
    vnan = _mm256_or_pd(vnan, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
    b[4] = s[1] < kLowConfidence ? 1.0 : 0.0;
    b[5] = tab[0];
    b[6] = tab[1];
    b[7] = tab[2];
    depth += tab[3];  // running bracket depth inside this response (integer-valued: exact)
    best = depth > best ? depth : best;
  }
  _mm256_storeu_pd(mn, vmn);
  _mm256_storeu_pd(mx, vmx);
  _mm256_storeu_pd(first_nan, vfirst);
  const int nan_bits = _mm256_movemask_pd(vnan);
  for (int c = 0; c < 3; ++c) has_nan[c] = (nan_bits >> c) & 1;
#else
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
    b[3] = static_cast<double>(s[3]);
    b[4] = s[1] < kLowConfidence ? 1.0 : 0.0;
    b[5] = tab[0];
    b[6] = tab[1];
    b[7] = tab[2];
    depth += tab[3];  // running bracket depth inside this response (integer-valued: exact)
    best = depth > best ? depth : best;
  }
#endif
  for (int c = 0; c < 3; ++c)
    if (has_nan[c]) mn[c] = mx[c] = first_nan[c];
  const double cnt = static_cast<double>(n);
  // np.add.reduceat over the segment: the first row + the pairwise sum of the rest, then / count (one vector
  // division for the 8 columns)
  double mean[8];
  if (n > 1) {
    pairwise_sum8(bp + 8, n - 1, mean);
    for (int c = 0; c < 8; ++c) mean[c] = bp[c] + mean[c];
  } else {
    for (int c = 0; c < 8; ++c) mean[c] = bp[c];
  }
  for (int c = 0; c < 8; ++c) mean[c] /= cnt;
  const TS* last = st + (n - 1) * kStats;
  for (int c = 0; c < 3; ++c) {
    o[5 + 4 * c] = static_cast<float>(mean[c]);
    o[6 + 4 * c] = static_cast<float>(mn[c]);
    o[7 + 4 * c] = static_cast<float>(mx[c]);
    o[8 + 4 * c] = static_cast<float>(static_cast<double>(last[c]));
  }
  o[17] = static_cast<float>(mean[4]);  // low-confidence fraction
  o[18] = static_cast<float>(mean[3]);  // mean logprob
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
                   const Vec& nll, const Vec* eos, const std::vector<int64_t>& eos_ids, const Vec* ap,
                   PyObject* stats, PyObject* tokens, const Table& table) {
  const bool lists = PyList_Check(stats) && PyList_Check(tokens);
  thread_local std::vector<double> buf;  // per-token scratch, reused across calls
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
    const double a = ap ? (*ap)[r] : 1.0;  // no accept_prev (None): 1, as for NaN
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
    PyObject* o = eos_token_ids.ptr();
    if (PyTuple_Check(o) || PyList_Check(o)) {  // the cascade's tuple of ints, read without pybind11 casts
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
      PyObject** items = PySequence_Fast_ITEMS(o);
      for (Py_ssize_t i = 0; i < n; ++i) {
        const long long v = PyLong_Check(items[i]) ? PyLong_AsLongLong(items[i]) : -1;
        if (!PyLong_Check(items[i]) || (v == -1 && PyErr_Occurred())) {
          PyErr_Clear();
          throw std::invalid_argument("eos_token_ids must hold ints");
        }
        ids.push_back(static_cast<int64_t>(v));
      }
    } else {
      for (const auto& e : eos_token_ids) ids.push_back(e.cast<int64_t>());
    }
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
  features_core(out.mutable_data(), dst.data(), nullptr, R, stage, pl, nll, eos.get(), ids, &ap, stats.ptr(),
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
  thread_local std::vector<int64_t> dst;  // reused across calls
  dst.resize(static_cast<size_t>(R));
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
  const Vec pl(prompt_len, N, "prompt_len"), nll(prompt_nll, R, "prompt_nll");
  std::unique_ptr<Vec> ap;  // None: no previous acceptance for any row (column 19 = 1)
  if (!accept_prev.is_none()) ap.reset(new Vec(accept_prev, R, "accept_prev"));
  const Table tab(table);
  float* base = static_cast<float*>(fa.mutable_data());
  features_core(base, dst.data(), src, R, static_cast<double>(stage), pl, nll, nullptr, ids, ap.get(), stats.ptr(),
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
}  // namespace

void register_features(py::module_& m) {
  m.def("decision_features", &decision_features, py::arg("out"), py::arg("stage"), py::arg("prompt_len"),
        py::arg("prompt_nll"), py::arg("stats"), py::arg("tokens"), py::arg("ended_eos"), py::arg("accept_prev"),
        py::arg("table"), py::arg("eos_token_ids") = py::none(),
        "Columns 0..22 of asd.core.features.batch_features, written into out [R, F] float32.");
  m.def("record_features", &record_features, py::arg("features"), py::arg("rows"), py::arg("stage"),
        py::arg("prompt_len"), py::arg("prompt_nll"), py::arg("stats"), py::arg("tokens"), py::arg("accept_prev"),
        py::arg("proj"), py::arg("table"), py::arg("eos_token_ids"),
        "features[rows, stage] = asd.core.features.batch_features(...) with EOS from the last tokens, in place.");
}

}  // namespace asd
