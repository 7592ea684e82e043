// asd._C.MLPForward — the learned quality predictor's forward pass: normalise → deep-ensemble MLP → calibrate.
//
// Readable twin: asd.core.mlp.mlp_forward_ref (numpy, float64); the formulas are in asd/core/mlp.py's module
// docstring. Equal to the twin within 1e-6 (in practice ~1e-15: both compute in float64; the summation order of
// the matrix products differs) — tests/core/test_mlp.py checks it on fresh random weights and inputs.
//
// MLPForward(feature_names [F] str, K, mean [F], scale [F], Ws (L arrays [S, in, out]), bs (L arrays [S, out]),
//            head_w [K−1, S, H, O], head_b [K−1, S, O], temperature [K−1, K−1], iso_x [K−1, K−1, Q],
//            iso_y [K−1, K−1, Q], iso_n [K−1, K−1] int64)
//   copies the weights (float64) into the layouts the loops below read: the first trunk layer of all S members
//   side by side, [F_active, S·H₀] padded to 16 columns (one pass over the features feeds every member; columns
//   with scale 0 — a feature group left out in training — are skipped), the heads padded to 16 outputs.
// .predict(x [B, F], stage [B], K) / .predict_rows(record [N, K, F], rows [B], stage [B], K) / .forward(x, rows,
//   stage) → (r [B, S, K] float64, accept [B, K, K] float64); x float32/float64; predict_rows reads
//   record[rows[b], stage[b], :] in place (the cascade's record). K must be the checkpoint's.
//   Checks → ValueError: K, shapes and dtypes (with the GIL), then, inside the pass with the GIL released,
//   non-finite features (the first one is named: row, column index and column name) and rows/stages out of
//   range. Nothing is returned when a check fails.
// Work at batch 16, 5 members, one 16-unit layer, 39 features: ~60k multiply-adds in 4×16 register blocks, then
// one vectorised σ pass over the ~21 logits per row that are used (e^x by a polynomial: std::exp in a loop does
// not vectorise without -ffast-math).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "asd.h"
#include "mlp.h"

namespace py = pybind11;

namespace asd {
namespace {

using f64c = py::array_t<double, py::array::c_style | py::array::forcecast>;
using i64c = py::array_t<int64_t, py::array::c_style>;

// e^x for x <= 0 in plain arithmetic that the compiler vectorises (std::exp in a loop does not, without
// -ffast-math): x clamped at −700, Cody–Waite reduction x = n·ln 2 + t with |t| <= ln2/2, Taylor polynomial of
// degree 12 for e^t (truncation < 1e-14 relative), 2^n from the exponent bits. Relative error ~1e-15.
inline double exp_nonpositive(double x) {
  x = x < -700.0 ? -700.0 : x;
  const double n = std::nearbyint(x * 1.4426950408889634);
  const double t = (x - n * 0.693147180369123816490) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 479001600.0;  // 1/12!
  p = p * t + 1.0 / 39916800.0;
  p = p * t + 1.0 / 3628800.0;
  p = p * t + 1.0 / 362880.0;
  p = p * t + 1.0 / 40320.0;
  p = p * t + 1.0 / 5040.0;
  p = p * t + 1.0 / 720.0;
  p = p * t + 1.0 / 120.0;
  p = p * t + 1.0 / 24.0;
  p = p * t + 1.0 / 6.0;
  p = p * t + 0.5;
  p = p * t + 1.0;
  p = p * t + 1.0;
  const uint64_t bits = static_cast<uint64_t>(static_cast<int64_t>(n) + 1023) << 52;  // n >= -1010
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// σ(z) as asd.core.mlp.sigmoid defines it: 1/(1 + e^−z) for z ≥ 0, e^z/(1 + e^z) below.
inline double sigmoid_fast(double z) {
  const double e = exp_nonpositive(-std::fabs(z));
  return (z >= 0 ? 1.0 : e) / (1.0 + e);
}

// np.interp(x, xp[:n], fp[:n]) for increasing xp, n >= 2: clamped outside, linear inside. The segment is found by
// counting the knots <= x (a branch-free loop the compiler vectorises; tables hold at most a few dozen knots).
inline double interp(double x, const double* xp, const double* fp, int64_t n) {
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) cnt += xp[i] <= x;
  const int64_t j = cnt - 1;  // xp[j] <= x < xp[j + 1]
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  return slope * (x - xp[j]) + fp[j];
}

f64c checked(const py::handle& h, const char* name, std::vector<int64_t> shape) {
  auto a = f64c::ensure(h);
  if (!a) throw std::invalid_argument(std::string(name) + " must be a float64 array");
  bool ok = a.ndim() == static_cast<int64_t>(shape.size());
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] < 0 || a.shape(d) == shape[d];
  if (!ok) {
    std::string s = "(";
    for (size_t d = 0; d < shape.size(); ++d) s += (shape[d] < 0 ? "*" : std::to_string(shape[d])) + (d + 1 < shape.size() ? ", " : "");
    throw std::invalid_argument(std::string(name) + " must have shape " + s + ")");
  }
  for (int64_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a.data()[i])) throw std::invalid_argument(std::string(name) + " holds a non-finite value");
  return a;
}

// Raw numpy access (as csrc/decision.cpp): type number, C-contiguity, data pointer.
inline int type_num(PyObject* a) {
  return py::detail::array_descriptor_proxy(py::detail::array_proxy(a)->descr)->type_num;
}
inline bool c_contig(PyObject* a) {
  return (py::detail::array_proxy(a)->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
}
inline void* data_of(PyObject* a) { return py::detail::array_proxy(a)->data; }
inline bool is_ndarray(PyObject* a) { return py::detail::npy_api::get().PyArray_Check_(a); }
constexpr int kF32 = py::detail::npy_api::NPY_FLOAT_, kF64 = py::detail::npy_api::NPY_DOUBLE_;
constexpr int kI64 = py::detail::npy_api::NPY_LONG_;

// A 1-D integer array as int64: an int64 C-contiguous one in place, another integer dtype converted into `keep`;
// anything else (floats included) → ValueError naming the argument.
const int64_t* int_view(const py::handle& h, const char* name, py::object& keep, int64_t& len) {
  PyObject* a = h.ptr();
  if (!is_ndarray(a)) {
    keep = py::array::ensure(h);
    if (!keep) throw std::invalid_argument(std::string(name) + " must be a 1-D integer array");
    a = keep.ptr();
  }
  const char kind = py::detail::array_descriptor_proxy(py::detail::array_proxy(a)->descr)->kind;
  if (py::detail::array_proxy(a)->nd != 1 || (kind != 'i' && kind != 'u'))
    throw std::invalid_argument(std::string(name) + " must be a 1-D integer array");
  len = py::detail::array_proxy(a)->dimensions[0];
  if (type_num(a) != kI64 || !c_contig(a)) {
    keep = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(py::handle(a));
    a = keep.ptr();
  }
  return static_cast<const int64_t*>(data_of(a));
}

// Whether any of x[0..n) is NaN or ±inf: all exponent bits set (float32: 0x7f800000, float64: 0x7ff0…).
inline bool any_nonfinite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof u);
    bad |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return bad != 0;
}
inline bool any_nonfinite(const double* x, int64_t n) {
  uint64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t u;
    std::memcpy(&u, x + i, sizeof u);
    bad |= (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
  }
  return bad != 0;
}

// A fresh C-contiguous float64 array (straight through the numpy C API: ~0.1 µs).
py::array new_f64(std::initializer_list<int64_t> shape) {
  auto& api = py::detail::npy_api::get();
  Py_intptr_t dims[3];
  int nd = 0;
  for (const int64_t d : shape) dims[nd++] = static_cast<Py_intptr_t>(d);
  PyObject* o = api.PyArray_NewFromDescr_(api.PyArray_Type_, api.PyArray_DescrFromType_(kF64), nd, dims, nullptr,
                                          nullptr, 0, nullptr);
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::array>(o);
}

}  // namespace

class MLPForward {
 public:
  MLPForward(std::vector<std::string> names, int64_t K, const py::handle& mean, const py::handle& scale,
             const std::vector<py::handle>& Ws, const std::vector<py::handle>& bs, const py::handle& head_w,
             const py::handle& head_b, const py::handle& temperature, const py::handle& iso_x,
             const py::handle& iso_y, const py::handle& iso_n)
      : names_(std::move(names)), K_(K), F_(static_cast<int64_t>(names_.size())) {
    if (K_ < 2) throw std::invalid_argument("K must be >= 2");
    if (Ws.empty() || Ws.size() != bs.size()) throw std::invalid_argument("Ws and bs must hold the same L >= 1 layers");
    auto m = checked(mean, "mean", {F_}), s = checked(scale, "scale", {F_});
    // the active columns (scale != 0): an ablated column (scale 0) adds 0 · W to layer 0 and is skipped there
    for (int64_t f = 0; f < F_; ++f)
      if (s.data()[f] != 0.0) {
        act_.push_back(f);
        mean_.push_back(m.data()[f]);
        scale_.push_back(s.data()[f]);
      }
    const int64_t FA = static_cast<int64_t>(act_.size());
    int64_t width = F_;
    for (size_t l = 0; l < Ws.size(); ++l) {
      const std::string nm = "layer " + std::to_string(l);
      auto W = checked(Ws[l], (nm + " W").c_str(), {l == 0 ? -1 : S_, width, -1});
      if (l == 0) S_ = W.shape(0);
      const int64_t out = W.shape(2);
      auto b = checked(bs[l], (nm + " b").c_str(), {S_, out});
      if (l == 0) {  // [S, F, H0] → [FA, SH0p]: active rows; member q at columns q·H0.., zero columns up to SH0p
        SH0p_ = (S_ * out + kJB - 1) / kJB * kJB;
        std::vector<float> w(static_cast<size_t>(std::max<int64_t>(FA, 1) * SH0p_), 0.0f),
            bb(static_cast<size_t>(SH0p_), 0.0f);
        for (int64_t q = 0; q < S_; ++q)
          for (int64_t i = 0; i < FA; ++i)
            for (int64_t h = 0; h < out; ++h)
              w[i * SH0p_ + q * out + h] = static_cast<float>(W.data()[(q * width + act_[i]) * out + h]);
        for (int64_t i = 0; i < b.size(); ++i) bb[i] = static_cast<float>(b.data()[i]);
        W_.push_back(std::move(w));
        b_.push_back(std::move(bb));
      } else {
        W_.emplace_back(W.data(), W.data() + W.size());  // float64 → float32, element by element
        b_.emplace_back(b.data(), b.data() + b.size());
      }
      dims_.push_back(out);
      width = out;
    }
    H_ = width;
    O_ = (K_ - 1) + K_ * (K_ - 1) / 2;
    auto hw = checked(head_w, "head_w", {K_ - 1, S_, H_, O_}), hb = checked(head_b, "head_b", {K_ - 1, S_, O_});
    // heads padded to Op (a multiple of 16) outputs: [K−1, S, H, Op], [K−1, S, Op]; zeros in the padding
    Op_ = (O_ + kJB - 1) / kJB * kJB;
    hw_.assign(static_cast<size_t>((K_ - 1) * S_ * H_ * Op_), 0.0f);
    hb_.assign(static_cast<size_t>((K_ - 1) * S_ * Op_), 0.0f);
    for (int64_t i = 0; i < (K_ - 1) * S_ * H_; ++i)
      for (int64_t o = 0; o < O_; ++o) hw_[i * Op_ + o] = static_cast<float>(hw.data()[i * O_ + o]);
    for (int64_t i = 0; i < (K_ - 1) * S_; ++i)
      for (int64_t o = 0; o < O_; ++o) hb_[i * Op_ + o] = static_cast<float>(hb.data()[i * O_ + o]);
    auto T = checked(temperature, "temperature", {K_ - 1, K_ - 1});
    for (int64_t i = 0; i < T.size(); ++i)
      if (!(T.data()[i] > 0)) throw std::invalid_argument("temperature must be > 0");
    // invT_[k, o]: 1/T[k, o] for the r̂ logits (o < K−1), 1 for the â logits and the padding
    invT_.assign(static_cast<size_t>(K_ * Op_), 1.0);  // K rows: finish_vec reads row K − 1 too (all 1)
    for (int64_t k = 0; k < K_ - 1; ++k)
      for (int64_t m = 0; m < K_ - 1; ++m) invT_[k * Op_ + m] = 1.0 / T.data()[k * (K_ - 1) + m];
    auto ix = checked(iso_x, "iso_x", {K_ - 1, K_ - 1, -1});
    Q_ = ix.shape(2);
    auto iy = checked(iso_y, "iso_y", {K_ - 1, K_ - 1, Q_});
    auto in = i64c::ensure(iso_n);
    if (!in || in.ndim() != 2 || in.shape(0) != K_ - 1 || in.shape(1) != K_ - 1)
      throw std::invalid_argument("iso_n must be an integer array of shape [K-1, K-1]");
    ix_.assign(ix.data(), ix.data() + ix.size());
    iy_.assign(iy.data(), iy.data() + iy.size());
    in_.assign(in.data(), in.data() + in.size());
    for (int64_t c = 0; c < (K_ - 1) * (K_ - 1); ++c) {
      if (in_[c] < 0 || in_[c] > Q_) throw std::invalid_argument("iso_n outside 0..Q");
      for (int64_t q = 1; q < in_[c]; ++q)
        if (!(ix_[c * Q_ + q] > ix_[c * Q_ + q - 1])) throw std::invalid_argument("iso_x must increase");
    }
    // lane masks of the vectorised step 5 (finish_vec, K <= 5: the r̂ logits fit 8 lanes, the head outputs 16,
    // the [K, K] accept block 32), per stage k: r̂ lanes m = k..K−2; pair columns o0(k)..O−1 of the head row
    // (lanes 0–7, 8–15); positions j·K + m (j ≥ k, m > j) of the accept block, in four chunks of 8
    for (int64_t k = 0; K_ <= 5 && k < K_; ++k) {
      uint32_t mr = 0, mp = 0, ma = 0;
      for (int64_t m = k; m < K_ - 1; ++m) mr |= 1u << m;
      const int64_t o0 = (K_ - 1) + (k * K_ - k * (k + 1) / 2);
      for (int64_t o = o0; k < K_ - 1 && o < O_; ++o) mp |= 1u << o;
      for (int64_t j = k; j < K_ - 1; ++j)
        for (int64_t m = j + 1; m < K_; ++m) ma |= 1u << (j * K_ + m);
      vmask_.push_back({mr, mp, ma});
    }
  }

  int64_t num_members() const { return S_; }
  int64_t num_features() const { return F_; }

  // predict(x [B, F], stage [B], K) / predict_rows(record [N, K, F], rows [B], stage [B], K): the K the caller
  // runs with must be the checkpoint's (MLPPredictor binds these two directly: no Python frame in between).
  py::tuple predict(const py::handle& x, const py::handle& stage, int64_t K) const {
    check_K(K);
    return forward(x, py::none(), stage);
  }
  py::tuple predict_rows(const py::handle& rec, const py::handle& rows, const py::handle& stage, int64_t K) const {
    check_K(K);
    return forward(rec, rows, stage);
  }

  py::tuple forward(const py::handle& x, const py::handle& rows, const py::handle& stage) const {
    // arguments read through their raw numpy structs (pybind11's array_t casters cost ~0.2 µs each)
    py::object xkeep;
    PyObject* xa = x.ptr();
    if (!is_ndarray(xa) || !(type_num(xa) == kF32 || type_num(xa) == kF64) || !c_contig(xa)) {
      auto any = py::array::ensure(x);
      if (!any || any.dtype().kind() != 'f') throw std::invalid_argument("features must be a float32 or float64 array");
      xkeep = type_num(any.ptr()) == kF32 ? py::object(py::array_t<float, py::array::c_style>::ensure(any))
                                          : py::object(f64c::ensure(any));
      xa = xkeep.ptr();
    }
    const bool f32 = type_num(xa) == kF32;
    py::object skeep, rkeep;
    int64_t B = 0, nrows = 0;
    const int64_t* ps = int_view(stage, "stage", skeep, B);
    const int64_t* pr = nullptr;
    const auto* xp = py::detail::array_proxy(xa);
    int64_t N = 0, Kr = 0;
    if (rows.is_none()) {
      if (xp->nd != 2 || xp->dimensions[1] != F_ || xp->dimensions[0] != B)
        throw std::invalid_argument("features must have shape [B, F]=(" + std::to_string(B) + ", " +
                                    std::to_string(F_) + ") (F: the checkpoint's columns), got " + shape_str(xa));
    } else {
      pr = int_view(rows, "rows", rkeep, nrows);
      if (nrows != B)
        throw std::invalid_argument("rows has " + std::to_string(nrows) + " entries; stage has " + std::to_string(B));
      if (xp->nd != 3 || xp->dimensions[2] != F_)
        throw std::invalid_argument("the feature record must have shape [N, K, F] with F=" + std::to_string(F_) +
                                    ", got " + shape_str(xa));
      N = xp->dimensions[0];
      Kr = xp->dimensions[1];
    }
    py::array r = new_f64({B, S_, K_}), acc = new_f64({B, K_, K_});
    const void* px = data_of(xa);
    double* po = static_cast<double*>(data_of(r.ptr()));
    double* pa = static_cast<double*>(data_of(acc.ptr()));
    Bad bad;
    {
      py::gil_scoped_release nogil;
      if (f32)
        run(static_cast<const float*>(px), pr, ps, B, N, Kr, po, pa, bad);
      else
        run(static_cast<const double*>(px), pr, ps, B, N, Kr, po, pa, bad);
    }
    raise_bad(bad, pr, ps, N, Kr);
    return py::make_tuple(r, acc);
  }

  // predict_rows into the caller's buffers r [B, S, K], acc [B, K, K] (csrc/decision.cpp's mlp_proxy_dp): the
  // record must be a C-contiguous float32 [N, K, F] with the checkpoint's K and F; rows and stage [B] int64.
  // The GIL stays held (a few µs of work at batch 16: releasing it would cost more than it lets run).
  void rows_into(const py::handle& record, const int64_t* rows, const int64_t* stage, int64_t B, double* r,
                 double* acc) const {
    PyObject* xa = record.ptr();
    if (!is_ndarray(xa) || type_num(xa) != kF32 || !c_contig(xa))
      throw std::invalid_argument("the feature record must be a C-contiguous float32 array [N, K, F]");
    const auto* xp = py::detail::array_proxy(xa);
    if (xp->nd != 3 || xp->dimensions[2] != F_)
      throw std::invalid_argument("the feature record must have shape [N, K, F] with F=" + std::to_string(F_) +
                                  ", got " + shape_str(xa));
    check_K(xp->dimensions[1]);
    const int64_t N = xp->dimensions[0], Kr = xp->dimensions[1];
    Bad bad;
    run(static_cast<const float*>(data_of(xa)), rows, stage, B, N, Kr, r, acc, bad);
    raise_bad(bad, rows, stage, N, Kr);
  }

  int64_t K() const { return K_; }

 private:
  struct Bad {
    int kind = 0;  // 0 none, 1 stage, 2 row, 3 non-finite feature
    int64_t b = 0, f = 0;
    double v = 0;
  };

  // the ValueError of a failed check inside run (nothing when bad.kind == 0)
  void raise_bad(const Bad& bad, const int64_t* pr, const int64_t* ps, int64_t N, int64_t Kr) const {
    if (bad.kind == 1)
      throw std::invalid_argument("stage[" + std::to_string(bad.b) + "]=" + std::to_string(ps[bad.b]) +
                                  " outside 0..K-1=" + std::to_string(K_ - 1));
    if (bad.kind == 2)
      throw std::invalid_argument("rows[" + std::to_string(bad.b) + "]=" + std::to_string(pr[bad.b]) + " (stage " +
                                  std::to_string(ps[bad.b]) + ") outside the record's [N, K]=(" + std::to_string(N) +
                                  ", " + std::to_string(Kr) + ")");
    if (bad.kind == 3)
      throw std::invalid_argument("features[" + std::to_string(bad.b) + ", " + std::to_string(bad.f) + "] (" +
                                  names_[bad.f] + ") is " + std::to_string(bad.v) +
                                  ": the predictor needs finite features");
  }

  void check_K(int64_t K) const {
    if (K != K_)
      throw std::invalid_argument("the predictor was trained for K=" + std::to_string(K_) +
                                  " stages; the cascade has K=" + std::to_string(K));
  }

  static std::string shape_str(PyObject* a) {
    const auto* p = py::detail::array_proxy(a);
    std::string s = "(";
    for (int d = 0; d < p->nd; ++d) s += std::to_string(p->dimensions[d]) + (d + 1 < p->nd ? ", " : "");
    return s + (p->nd == 1 ? ",)" : ")");
  }

  static constexpr int64_t kJB = 16;  // outputs per register block (one AVX-512 register of floats)
  static constexpr int64_t kNB = 8;   // rows per register block

  // out[i][0..16) = bias[0..16) ⊕ x[i][0] · w[0, :] ⊕ … ⊕ x[i][n−1] · w[n−1, :] for i < 8, where ⊕ is a float32
  // fused multiply-add applied in order c = 0, 1, … (relu: max(·, 0) at the end). The twin
  // (asd.core.mlp.ensemble_logits_ref) applies the same FMAs in the same order. One block of a matrix product with
  // its 8 accumulators in registers: trunk layer 0 (x: normalised features, w: every member's first layer side
  // by side) and the heads (x: one member's hidden units, w: its head of the rows' stage) both run on it.
  static void block8x16(const float* const x[kNB], int64_t n, const float* w, int64_t ldw, const float* bias,
                        float* const out[kNB], bool relu) {
#if defined(__AVX512F__)
    const __m512 bb = _mm512_loadu_ps(bias);
    __m512 a0 = bb, a1 = bb, a2 = bb, a3 = bb, a4 = bb, a5 = bb, a6 = bb, a7 = bb;
    for (int64_t c = 0; c < n; ++c) {
      const __m512 wc = _mm512_loadu_ps(w + c * ldw);
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[0][c]), wc, a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[1][c]), wc, a1);
      a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[2][c]), wc, a2);
      a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[3][c]), wc, a3);
      a4 = _mm512_fmadd_ps(_mm512_set1_ps(x[4][c]), wc, a4);
      a5 = _mm512_fmadd_ps(_mm512_set1_ps(x[5][c]), wc, a5);
      a6 = _mm512_fmadd_ps(_mm512_set1_ps(x[6][c]), wc, a6);
      a7 = _mm512_fmadd_ps(_mm512_set1_ps(x[7][c]), wc, a7);
    }
    if (relu) {
      const __m512 z = _mm512_setzero_ps();
      a0 = _mm512_max_ps(a0, z), a1 = _mm512_max_ps(a1, z), a2 = _mm512_max_ps(a2, z), a3 = _mm512_max_ps(a3, z);
      a4 = _mm512_max_ps(a4, z), a5 = _mm512_max_ps(a5, z), a6 = _mm512_max_ps(a6, z), a7 = _mm512_max_ps(a7, z);
    }
    _mm512_storeu_ps(out[0], a0), _mm512_storeu_ps(out[1], a1), _mm512_storeu_ps(out[2], a2);
    _mm512_storeu_ps(out[3], a3), _mm512_storeu_ps(out[4], a4), _mm512_storeu_ps(out[5], a5);
    _mm512_storeu_ps(out[6], a6), _mm512_storeu_ps(out[7], a7);
#else
    for (int64_t i = 0; i < kNB; ++i) {
      float a[kJB];
      for (int64_t j = 0; j < kJB; ++j) a[j] = bias[j];
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < kJB; ++j) a[j] = std::fma(x[i][c], w[c * ldw + j], a[j]);
      for (int64_t j = 0; j < kJB; ++j) out[i][j] = relu ? (a[j] > 0 ? a[j] : 0.0f) : a[j];
    }
#endif
  }

  template <typename TX>
  void run(const TX* x, const int64_t* rows, const int64_t* stage, int64_t B, int64_t N, int64_t Kr, double* r,
           double* acc, Bad& bad) const {
    const int64_t S = S_, K = K_, F = F_, Op = Op_, H = H_, FA = static_cast<int64_t>(act_.size());
    const int64_t Bp = (B + kNB - 1) / kNB * kNB;
    int64_t widest = 1;
    for (size_t l = 0; l < dims_.size(); ++l) widest = std::max(widest, dims_[l]);
    // one float32 workspace: xn [Bp, FA], h0 [Bp, SH0p], further layers' activations 2 × [B, S, widest],
    // z [B, S, Op], a zero row and a scratch row (the padding of 8-row blocks)
    const int64_t hsz = W_.size() > 1 ? B * S * widest : 0;
    const int64_t row = std::max(widest, std::max(F, Op));
    float* xn = ws_f32(Bp * FA + Bp * SH0p_ + 2 * hsz + B * S * Op + 2 * row);
    float* h0 = xn + Bp * FA;
    float* hA = h0 + Bp * SH0p_;
    float* hB = hA + hsz;
    float* z = hB + hsz;
    float* zero = z + B * S * Op;
    float* scratch = zero + row;
    std::fill(zero, zero + row, 0.0f);
    std::fill(xn + B * FA, xn + Bp * FA, 0.0f);  // padding rows of layer 0
    // 1. checks, gather and normalise (float64, then rounded to float32)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      if (k < 0 || k >= K) {
        bad = {1, b, 0, 0};
        return;
      }
      const TX* xb;
      if (rows) {
        if (rows[b] < 0 || rows[b] >= N || k >= Kr) {
          bad = {2, b, 0, 0};
          return;
        }
        xb = x + (rows[b] * Kr + k) * F;
      } else {
        xb = x + b * F;
      }
      // non-finite entries, by their exponent bits (an integer OR the compiler vectorises), and the normalised row
      const bool finite = !any_nonfinite(xb, F);
      float* xo = xn + b * FA;
      if (FA == F) {  // every column active: contiguous, vectorised
        for (int64_t f = 0; f < F; ++f) xo[f] = static_cast<float>((static_cast<double>(xb[f]) - mean_[f]) * scale_[f]);
      } else {
        for (int64_t i = 0; i < FA; ++i) xo[i] = static_cast<float>((static_cast<double>(xb[act_[i]]) - mean_[i]) * scale_[i]);
      }
      if (!finite)
        for (int64_t f = 0; f < F; ++f)
          if (!std::isfinite(static_cast<double>(xb[f]))) {
            bad = {3, b, f, static_cast<double>(xb[f])};
            return;
          }
    }
    // 2. trunk layer 0, every member at once: h0 [Bp, SH0p] (rows past B: zeros in, ignored out)
    for (int64_t i0 = 0; i0 < Bp; i0 += kNB) {
      const float* xr[kNB];
      for (int64_t i = 0; i < kNB; ++i) xr[i] = xn + (i0 + i) * FA;
      for (int64_t jc = 0; jc < SH0p_; jc += kJB) {
        float* orow[kNB];
        for (int64_t i = 0; i < kNB; ++i) orow[i] = h0 + (i0 + i) * SH0p_ + jc;
        block8x16(xr, FA, W_[0].data() + jc, SH0p_, b_[0].data() + jc, orow, true);
      }
    }
    // 3. further trunk layers, member by member (the same FMAs in the same order); the last one's output of
    // sample b, member s is at hl + b·hstride + s·H
    const float* hl = h0;
    int64_t hstride = SH0p_;
    for (size_t l = 1; l < W_.size(); ++l) {
      const int64_t win = dims_[l - 1], wout = dims_[l];
      float* ho = (l % 2 == 1) ? hA : hB;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < S; ++s) {
          float* o = ho + (b * S + s) * wout;
          std::copy(b_[l].begin() + s * wout, b_[l].begin() + (s + 1) * wout, o);
          const float* Wl = W_[l].data() + s * win * wout;
          const float* hin = hl + b * hstride + s * win;
          for (int64_t i = 0; i < win; ++i)
            for (int64_t j = 0; j < wout; ++j) o[j] = std::fma(hin[i], Wl[i * wout + j], o[j]);
          for (int64_t j = 0; j < wout; ++j) o[j] = o[j] > 0 ? o[j] : 0.0f;
        }
      hl = ho;
      hstride = S * wout;
    }
    // 4. heads: the samples of each stage k in blocks of 8, member by member → logits z [B, S, Op]
    thread_local std::vector<int64_t> group;
    for (int64_t k = 0; k < K - 1; ++k) {
      group.clear();
      for (int64_t b = 0; b < B; ++b)
        if (stage[b] == k) group.push_back(b);
      for (size_t g0 = 0; g0 < group.size(); g0 += kNB)
        for (int64_t s = 0; s < S; ++s) {
          const float* xr[kNB];
          float* orow[kNB];
          for (size_t i = 0; i < static_cast<size_t>(kNB); ++i) {
            const bool real = g0 + i < group.size();
            const int64_t b = real ? group[g0 + i] : 0;
            xr[i] = real ? hl + b * hstride + s * H : zero;
            orow[i] = real ? z + (b * S + s) * Op : scratch;
          }
          for (int64_t oc = 0; oc < Op; oc += kJB) {
            float* o8[kNB];
            for (int64_t i = 0; i < kNB; ++i) o8[i] = orow[i] + oc;
            block8x16(xr, H, hw_.data() + (k * S + s) * H * Op + oc, Op, hb_.data() + (k * S + s) * Op + oc, o8,
                      false);
          }
        }
    }
    // 5. σ, calibration, outputs (K known at compile time for the usual hierarchies: the per-sample loops over
    // stages and pairs unroll)
#if defined(__AVX512F__)
    if (Op == kJB && K <= 5) {
      finish_vec(z, stage, B, r, acc);
      return;
    }
#endif
    if (K == 4)
      finish<4>(z, stage, B, r, acc);
    else if (K == 3)
      finish<3>(z, stage, B, r, acc);
    else
      finish<0>(z, stage, B, r, acc);
  }

#if defined(__AVX512F__)
  // Step 5 for K <= 5 (a head row of Op = 16 outputs), the same values as finish<KC>: per sample, the r̂ logits of
  // each member (8 lanes, · 1/T) and the members' sequential float64 sum of the pair logits (16 lanes, / S) are
  // built in registers and compress-stored into u (only the lanes the sample needs, in finish<KC>'s order); after
  // the σ pass, masked expand-loads put u back into the rows of r (0.5 / 1 elsewhere) and acc (0 elsewhere).
  void finish_vec(const float* z, const int64_t* stage, int64_t B, double* r, double* acc) const {
    const int64_t K = K_, S = S_, Op = Op_;
    double* u = ws_u(B * (S * (K - 1) + (K * (K - 1)) / 2));
    const __m512d sd = _mm512_set1_pd(static_cast<double>(S));
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      const LaneMasks& mk = vmask_[stage[b]];
      const float* zb = z + b * S * Op;
      const __m512d it = _mm512_loadu_pd(invT_.data() + stage[b] * Op);  // row k = K−1: mk.r = mk.pair = 0
      const int cr = __builtin_popcount(mk.r);
      __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(zb)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(zb + 8));
      _mm512_mask_compressstoreu_pd(u + n, static_cast<__mmask8>(mk.r), _mm512_mul_pd(lo, it));
      n += cr;
      for (int64_t s = 1; s < S; ++s) {
        const __m512d zl = _mm512_cvtps_pd(_mm256_loadu_ps(zb + s * Op));
        _mm512_mask_compressstoreu_pd(u + n, static_cast<__mmask8>(mk.r), _mm512_mul_pd(zl, it));
        n += cr;
        lo = _mm512_add_pd(lo, zl);
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_loadu_ps(zb + s * Op + 8)));
      }
      _mm512_mask_compressstoreu_pd(u + n, static_cast<__mmask8>(mk.pair), _mm512_div_pd(lo, sd));
      n += __builtin_popcount(mk.pair & 0xFFu);
      _mm512_mask_compressstoreu_pd(u + n, static_cast<__mmask8>(mk.pair >> 8), _mm512_div_pd(hi, sd));
      n += __builtin_popcount(mk.pair >> 8);
    }
    for (int64_t i = 0; i < n; ++i) u[i] = sigmoid_fast(u[i]);
    alignas(64) double base[8];  // a row of r without predictions: 0.5 before the last stage, 1 at it
    for (int64_t m = 0; m < 8; ++m) base[m] = m < K - 1 ? 0.5 : 1.0;
    const __m512d vbase = _mm512_load_pd(base);
    const __mmask8 rowK = static_cast<__mmask8>((1u << K) - 1);
    n = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      const LaneMasks& mk = vmask_[k];
      const int cr = __builtin_popcount(mk.r);
      double* rb = r + b * S * K;
      for (int64_t s = 0; s < S; ++s) {
        _mm512_mask_storeu_pd(rb + s * K, rowK, _mm512_mask_expandloadu_pd(vbase, static_cast<__mmask8>(mk.r), u + n));
        n += cr;
      }
      for (int64_t m = k; m < K - 1; ++m) {  // the isotonic tables
        const int64_t c = k * (K - 1) + m;
        if (in_[c] >= 2)
          for (int64_t s = 0; s < S; ++s)
            rb[s * K + m] = interp(rb[s * K + m], ix_.data() + c * Q_, iy_.data() + c * Q_, in_[c]);
      }
      double* ab = acc + b * K * K;
      for (int64_t c0 = 0; c0 < K * K; c0 += 8) {
        const __mmask8 ma = static_cast<__mmask8>(mk.acc >> c0);
        const __mmask8 keep = static_cast<__mmask8>(K * K - c0 >= 8 ? 0xFFu : (1u << (K * K - c0)) - 1);
        _mm512_mask_storeu_pd(ab + c0, keep, _mm512_maskz_expandloadu_pd(ma, u + n));
        n += __builtin_popcount(ma);
      }
    }
  }
#endif

  // Step 5 of run: the logits each sample needs, gathered into u: per member the r̂ logits m = k..K−2 divided by
  // T[k, m], then per pair j ≥ k the members' mean â logit (a sequential float64 sum over the members, / S); one
  // vectorised σ pass over u; then the tables and the outputs r [B, S, K], acc [B, K, K]. KC > 0: K = KC.
  template <int KC>
  void finish(const float* z, const int64_t* stage, int64_t B, double* r, double* acc) const {
    const int64_t K = KC > 0 ? KC : K_;
    const int64_t S = S_, Op = Op_, O = (K - 1) + K * (K - 1) / 2;
    const int64_t per = S * (K - 1) + (K * (K - 1)) / 2;  // at most, per sample
    double* u = ws_u(B * per);
    const double sd = static_cast<double>(S);
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      if (k == K - 1) continue;
      const float* zb = z + b * S * Op;
      const double* it = invT_.data() + k * Op;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t m = k; m < K - 1; ++m) u[n++] = static_cast<double>(zb[s * Op + m]) * it[m];
      // the pairs j ≥ k are the tail of the row-major pair order: columns K−1+p0(k) .. O−1
      const int64_t o0 = (K - 1) + (k * K - k * (k + 1) / 2);
      for (int64_t o = o0; o < O; ++o) {
        double a = static_cast<double>(zb[o]);
        for (int64_t s = 1; s < S; ++s) a += static_cast<double>(zb[s * Op + o]);
        u[n++] = a / sd;
      }
    }
    for (int64_t i = 0; i < n; ++i) u[i] = sigmoid_fast(u[i]);
    n = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      double* rb = r + b * S * K;
      double* ab = acc + b * K * K;
      for (int64_t i = 0; i < K * K; ++i) ab[i] = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        for (int64_t m = 0; m < K - 1; ++m) rb[s * K + m] = 0.5;
        rb[s * K + K - 1] = 1.0;
      }
      if (k == K - 1) continue;
      for (int64_t m = k; m < K - 1; ++m) {  // member by member in u: u[n + s·(K−1−k) + (m − k)]
        const int64_t c = k * (K - 1) + m, w = K - 1 - k;
        const double* um = u + n + (m - k);
        if (in_[c] >= 2) {
          const double *xp = ix_.data() + c * Q_, *fp = iy_.data() + c * Q_;
          for (int64_t s = 0; s < S; ++s) rb[s * K + m] = interp(um[s * w], xp, fp, in_[c]);
        } else {
          for (int64_t s = 0; s < S; ++s) rb[s * K + m] = um[s * w];
        }
      }
      n += S * (K - 1 - k);
      for (int64_t j = k; j < K - 1; ++j)
        for (int64_t m = j + 1; m < K; ++m) ab[j * K + m] = u[n++];
    }
  }

  // Per-thread scratch (no zeroing, reused across calls): ws_main for the activations, ws_u for the σ inputs.
  static float* ws_f32(int64_t n) {
    thread_local std::vector<float> buf;
    if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
    return buf.data();
  }
  static double* ws_u(int64_t n) {
    thread_local std::vector<double> buf;
    if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
    return buf.data();
  }

  std::vector<std::string> names_;
  int64_t K_, F_, S_ = 0, H_ = 0, O_ = 0, Op_ = 0, Q_ = 0, SH0p_ = 0;
  std::vector<int64_t> act_;        // active feature columns (scale != 0)
  std::vector<double> mean_, scale_;  // their normalisation
  std::vector<std::vector<float>> W_, b_;  // W_[0]: [FA, SH0p]; b_[0]: [SH0p]; W_[l ≥ 1]: [S, in, out]; b_[l]: [S, out]
  std::vector<int64_t> dims_;
  std::vector<float> hw_, hb_;  // heads [K−1, S, H, Op], [K−1, S, Op]
  std::vector<double> invT_, ix_, iy_;
  std::vector<int64_t> in_;
  struct LaneMasks {
    uint32_t r, pair, acc;  // bits: r̂ lanes, head-output lanes of the pairs, accept-block positions
  };
  std::vector<LaneMasks> vmask_;  // per stage k (K <= 5 only)
};


const MLPForward& mlp_forward_of(const py::handle& model) {
  try {
    return py::cast<const MLPForward&>(model);
  } catch (const py::cast_error&) {
    throw std::invalid_argument("model must be an asd._C.MLPForward (MLPPredictor.compiled)");
  }
}
int64_t mlp_members(const MLPForward& m) { return m.num_members(); }
int64_t mlp_stages(const MLPForward& m) { return m.K(); }
void mlp_rows_into(const MLPForward& m, const py::handle& record, const int64_t* rows, const int64_t* stage, int64_t B,
                   double* r, double* acc) {
  m.rows_into(record, rows, stage, B, r, acc);
}

void register_mlp(py::module_& m) {
  py::class_<MLPForward>(m, "MLPForward",
                         "The quality predictor's forward pass (normalise → ensemble MLP → calibrate); twin: "
                         "asd.core.mlp.mlp_forward_ref")
      .def(py::init<std::vector<std::string>, int64_t, const py::handle&, const py::handle&,
                    const std::vector<py::handle>&, const std::vector<py::handle>&, const py::handle&,
                    const py::handle&, const py::handle&, const py::handle&, const py::handle&, const py::handle&>(),
           py::arg("feature_names"), py::arg("K"), py::arg("mean"), py::arg("scale"), py::arg("Ws"), py::arg("bs"),
           py::arg("head_w"), py::arg("head_b"), py::arg("temperature"), py::arg("iso_x"), py::arg("iso_y"),
           py::arg("iso_n"))
      .def("predict", &MLPForward::predict, py::arg("features"), py::arg("stage"), py::arg("K"),
           "(r [B, S, K], accept [B, K, K]) from features [B, F] (asd.core.mlp.MLPPredictor.predict)")
      .def("predict_rows", &MLPForward::predict_rows, py::arg("record"), py::arg("rows"), py::arg("stage"),
           py::arg("K"), "(r, accept) of record[rows[b], stage[b], :] (asd.core.mlp.MLPPredictor.predict_rows)")
      .def("forward", &MLPForward::forward, py::arg("x"), py::arg("rows"), py::arg("stage"),
           "(r [B, S, K] float64, accept [B, K, K] float64) from x [B, F] (rows None) or the record [N, K, F] "
           "read at (rows[b], stage[b])")
      .def_property_readonly("num_members", &MLPForward::num_members)
      .def_property_readonly("num_features", &MLPForward::num_features);
}

}  // namespace asd
