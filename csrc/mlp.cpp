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
//   side by side, [F, S·H₀] (one pass over the features feeds every member), the others per member.
// .forward(x, rows, stage) → (r [B, S, K] float64, accept [B, K, K] float64)
//   x [B, F] float32/float64 with rows None, or the cascade's record [N, K, F] float32/float64 with rows [B]
//   int64 (row b reads x[rows[b], stage[b], :], in place); stage [B] int64 in 0..K−1.
//   Checks → ValueError: shapes and dtypes (with the GIL), then, inside the single pass with the GIL released,
//   non-finite features (the first one is named: row, column index and column name) and rows/stages out of
//   range. Nothing is returned when a check fails.
// At batch 16 with 5 members of one 32-unit layer over 39 features the pass is ~8k multiply-adds per sample.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "asd.h"

namespace py = pybind11;

namespace asd {
namespace {

using f64c = py::array_t<double, py::array::c_style | py::array::forcecast>;
using i64c = py::array_t<int64_t, py::array::c_style>;  // no forcecast: integer inputs only (int32 widens)

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

// np.interp(x, xp[:n], fp[:n]) for increasing xp, n >= 2: clamped outside, linear inside.
inline double interp(double x, const double* xp, const double* fp, int64_t n) {
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  const int64_t j = (std::upper_bound(xp, xp + n, x) - xp) - 1;  // xp[j] <= x < xp[j + 1]
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
    mean_.assign(m.data(), m.data() + F_);
    scale_.assign(s.data(), s.data() + F_);
    int64_t width = F_;
    for (size_t l = 0; l < Ws.size(); ++l) {
      const std::string nm = "layer " + std::to_string(l);
      auto W = checked(Ws[l], (nm + " W").c_str(), {l == 0 ? -1 : S_, width, -1});
      if (l == 0) S_ = W.shape(0);
      const int64_t out = W.shape(2);
      auto b = checked(bs[l], (nm + " b").c_str(), {S_, out});
      if (l == 0) {  // [S, F, H0] → [F, SH0p] (member q at columns q·H0.., zero columns up to SH0p)
        SH0p_ = (S_ * out + kJB - 1) / kJB * kJB;
        std::vector<double> w(static_cast<size_t>(width * SH0p_), 0.0), bb(static_cast<size_t>(SH0p_), 0.0);
        for (int64_t q = 0; q < S_; ++q)
          for (int64_t f = 0; f < width; ++f)
            for (int64_t h = 0; h < out; ++h) w[f * SH0p_ + q * out + h] = W.data()[(q * width + f) * out + h];
        std::copy(b.data(), b.data() + b.size(), bb.begin());
        W_.push_back(std::move(w));
        b_.push_back(std::move(bb));
      } else {
        W_.emplace_back(W.data(), W.data() + W.size());
        b_.emplace_back(b.data(), b.data() + b.size());
      }
      dims_.push_back(out);
      width = out;
    }
    H_ = width;
    O_ = (K_ - 1) + K_ * (K_ - 1) / 2;
    auto hw = checked(head_w, "head_w", {K_ - 1, S_, H_, O_}), hb = checked(head_b, "head_b", {K_ - 1, S_, O_});
    // heads padded to Op (a multiple of 8) outputs: [K−1, S, H, Op], [K−1, S, Op]; zeros in the padding
    Op_ = (O_ + kJB - 1) / kJB * kJB;
    hw_.assign(static_cast<size_t>((K_ - 1) * S_ * H_ * Op_), 0.0);
    hb_.assign(static_cast<size_t>((K_ - 1) * S_ * Op_), 0.0);
    for (int64_t i = 0; i < (K_ - 1) * S_ * H_; ++i) std::copy(hw.data() + i * O_, hw.data() + (i + 1) * O_, &hw_[i * Op_]);
    for (int64_t i = 0; i < (K_ - 1) * S_; ++i) std::copy(hb.data() + i * O_, hb.data() + (i + 1) * O_, &hb_[i * Op_]);
    auto T = checked(temperature, "temperature", {K_ - 1, K_ - 1});
    for (int64_t i = 0; i < T.size(); ++i)
      if (!(T.data()[i] > 0)) throw std::invalid_argument("temperature must be > 0");
    // invT_[k, o]: 1/T[k, o] for the r̂ logits (o < K−1), 1 for the â logits and the padding
    invT_.assign(static_cast<size_t>((K_ - 1) * Op_), 1.0);
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
  }

  int64_t num_members() const { return S_; }
  int64_t num_features() const { return F_; }

  py::tuple forward(const py::handle& x, const py::handle& rows, const py::handle& stage) const {
    auto xa = py::array::ensure(x);
    if (!xa) throw std::invalid_argument("features must be a numpy array");
    const bool f32 = py::isinstance<py::array_t<float>>(xa), f64 = py::isinstance<py::array_t<double>>(xa);
    if (!(f32 || f64)) throw std::invalid_argument("features must be float32 or float64");
    if (!(xa.flags() & py::array::c_style)) xa = f32 ? py::array(py::array_t<float, py::array::c_style>::ensure(xa))
                                                    : py::array(f64c::ensure(xa));
    auto st = i64c::ensure(stage);
    if (!st || st.ndim() != 1) throw std::invalid_argument("stage must be a 1-D integer array");
    const int64_t B = st.shape(0);
    i64c rw;
    int64_t N = 0, Kr = 0;
    if (rows.is_none()) {
      if (xa.ndim() != 2 || xa.shape(1) != F_ || xa.shape(0) != B)
        throw std::invalid_argument("features must have shape [B, F]=(" + std::to_string(B) + ", " +
                                    std::to_string(F_) + ") (F: the checkpoint's columns), got " + shape_str(xa));
    } else {
      rw = i64c::ensure(rows);
      if (!rw || rw.ndim() != 1 || rw.shape(0) != B)
        throw std::invalid_argument("rows must be an integer array of shape [B]=(" + std::to_string(B) + ",)");
      if (xa.ndim() != 3 || xa.shape(2) != F_)
        throw std::invalid_argument("the feature record must have shape [N, K, F] with F=" + std::to_string(F_) +
                                    ", got " + shape_str(xa));
      N = xa.shape(0);
      Kr = xa.shape(1);
    }
    py::array_t<double> r({B, S_, K_}), acc({B, K_, K_});
    const int64_t* ps = st.data();
    const int64_t* pr = rows.is_none() ? nullptr : rw.data();
    const void* px = xa.data();
    double *po = r.mutable_data(), *pa = acc.mutable_data();
    Bad bad;
    {
      py::gil_scoped_release nogil;
      if (f32)
        run(static_cast<const float*>(px), pr, ps, B, N, Kr, po, pa, bad);
      else
        run(static_cast<const double*>(px), pr, ps, B, N, Kr, po, pa, bad);
    }
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
    return py::make_tuple(r, acc);
  }

 private:
  struct Bad {
    int kind = 0;  // 0 none, 1 stage, 2 row, 3 non-finite feature
    int64_t b = 0, f = 0;
    double v = 0;
  };

  static std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (int64_t d = 0; d < a.ndim(); ++d) s += std::to_string(a.shape(d)) + (d + 1 < a.ndim() ? ", " : "");
    return s + (a.ndim() == 1 ? ",)" : ")");
  }

  static constexpr int64_t kJB = 16;  // outputs per register block (2 AVX-512 registers of doubles)

  // out[i][0..16) = bias[0..16) + Σ_{c < n} x[i][c] · w[c·ldw + 0..16), i < 4 (relu: max(·, 0)): one block of a
  // matrix product with its 8 accumulators in registers. Trunk layer 0 (x: normalised features, w: the first
  // layer of every member side by side) and the heads (x: one member's hidden units, w: its head) both run on it.
  static void block4x16(const double* const x[4], int64_t n, const double* w, int64_t ldw, const double* bias,
                        double* const out[4], bool relu) {
    double a0[kJB], a1[kJB], a2[kJB], a3[kJB];
    for (int64_t j = 0; j < kJB; ++j) a0[j] = a1[j] = a2[j] = a3[j] = bias[j];
    const double *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    for (int64_t c = 0; c < n; ++c) {
      const double* wc = w + c * ldw;
      const double v0 = x0[c], v1 = x1[c], v2 = x2[c], v3 = x3[c];
      for (int64_t j = 0; j < kJB; ++j) {
        a0[j] += v0 * wc[j];
        a1[j] += v1 * wc[j];
        a2[j] += v2 * wc[j];
        a3[j] += v3 * wc[j];
      }
    }
    double *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
    if (relu)
      for (int64_t j = 0; j < kJB; ++j) {
        o0[j] = a0[j] > 0 ? a0[j] : 0.0;
        o1[j] = a1[j] > 0 ? a1[j] : 0.0;
        o2[j] = a2[j] > 0 ? a2[j] : 0.0;
        o3[j] = a3[j] > 0 ? a3[j] : 0.0;
      }
    else
      for (int64_t j = 0; j < kJB; ++j) {
        o0[j] = a0[j];
        o1[j] = a1[j];
        o2[j] = a2[j];
        o3[j] = a3[j];
      }
  }

  template <typename TX>
  void run(const TX* x, const int64_t* rows, const int64_t* stage, int64_t B, int64_t N, int64_t Kr, double* r,
           double* acc, Bad& bad) const {
    const int64_t S = S_, K = K_, F = F_, Op = Op_, H = H_;
    const int64_t Bp = (B + 3) / 4 * 4;
    int64_t widest = 1;
    for (size_t l = 0; l < dims_.size(); ++l) widest = std::max(widest, dims_[l]);
    // one workspace: xn [Bp, F], h0 [Bp, SH0p], further layers' activations 2 × [B, S, widest], z [B, S, Op],
    // a zero row and a scratch row (the padding of 4-row blocks)
    const int64_t hsz = W_.size() > 1 ? B * S * widest : 0;
    std::vector<double> ws(static_cast<size_t>(Bp * F + Bp * SH0p_ + 2 * hsz + B * S * Op + 2 * std::max(widest, std::max(F, Op))), 0.0);
    double* xn = ws.data();
    double* h0 = xn + Bp * F;
    double* hA = h0 + Bp * SH0p_;
    double* hB = hA + hsz;
    double* z = hB + hsz;
    const double* zero = z + B * S * Op;
    double* scratch = z + B * S * Op + std::max(widest, std::max(F, Op));
    // 1. checks, gather and normalise
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
      bool finite = true;
      for (int64_t f = 0; f < F; ++f) {
        const double v = static_cast<double>(xb[f]);
        finite &= std::isfinite(v);
        xn[b * F + f] = (v - mean_[f]) * scale_[f];
      }
      if (!finite)
        for (int64_t f = 0; f < F; ++f)
          if (!std::isfinite(static_cast<double>(xb[f]))) {
            bad = {3, b, f, static_cast<double>(xb[f])};
            return;
          }
    }
    // 2. trunk layer 0, every member at once: h0 [Bp, SH0p] (rows past B: zeros in, ignored out)
    for (int64_t i0 = 0; i0 < Bp; i0 += 4) {
      const double* xr[4] = {xn + i0 * F, xn + (i0 + 1) * F, xn + (i0 + 2) * F, xn + (i0 + 3) * F};
      for (int64_t jc = 0; jc < SH0p_; jc += kJB) {
        double* orow[4] = {h0 + i0 * SH0p_ + jc, h0 + (i0 + 1) * SH0p_ + jc, h0 + (i0 + 2) * SH0p_ + jc,
                           h0 + (i0 + 3) * SH0p_ + jc};
        block4x16(xr, F, W_[0].data() + jc, SH0p_, b_[0].data() + jc, orow, true);
      }
    }
    // 3. further trunk layers, member by member: the last one's output of sample b, member s is at
    // hid(b) + s·H
    const double* hl = h0;
    int64_t hstride = SH0p_;
    for (size_t l = 1; l < W_.size(); ++l) {
      const int64_t win = dims_[l - 1], wout = dims_[l];
      double* ho = (l % 2 == 1) ? hA : hB;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < S; ++s) {
          double* o = ho + (b * S + s) * wout;
          std::copy(b_[l].begin() + s * wout, b_[l].begin() + (s + 1) * wout, o);
          const double* Wl = W_[l].data() + s * win * wout;
          const double* hin = hl + b * hstride + s * win;
          for (int64_t i = 0; i < win; ++i) {
            const double v = hin[i];
            const double* w = Wl + i * wout;
            for (int64_t j = 0; j < wout; ++j) o[j] += v * w[j];
          }
          for (int64_t j = 0; j < wout; ++j) o[j] = o[j] > 0 ? o[j] : 0.0;
        }
      hl = ho;
      hstride = S * wout;
    }
    // 4. heads: the samples of each stage k in blocks of 4, member by member → logits z [B, S, Op]
    std::vector<int64_t> group;
    for (int64_t k = 0; k < K - 1; ++k) {
      group.clear();
      for (int64_t b = 0; b < B; ++b)
        if (stage[b] == k) group.push_back(b);
      for (size_t g0 = 0; g0 < group.size(); g0 += 4)
        for (int64_t s = 0; s < S; ++s) {
          const double* xr[4];
          double* orow[4];
          for (size_t i = 0; i < 4; ++i) {
            const bool real = g0 + i < group.size();
            const int64_t b = real ? group[g0 + i] : 0;
            xr[i] = real ? hl + b * hstride + s * H : zero;
            orow[i] = real ? z + (b * S + s) * Op : scratch;
          }
          for (int64_t oc = 0; oc < Op; oc += kJB) {
            double* o4[4] = {orow[0] + oc, orow[1] + oc, orow[2] + oc, orow[3] + oc};
            block4x16(xr, H, hw_.data() + (k * S + s) * H * Op + oc, Op, hb_.data() + (k * S + s) * Op + oc, o4, false);
          }
        }
    }
    // logits → probabilities: the r̂ logits divided by T[k, m] first, then σ (a vectorised loop)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      if (k == K - 1) continue;
      double* zb = z + b * S * Op;
      const double* it = invT_.data() + k * Op;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t o = 0; o < Op; ++o) zb[s * Op + o] = sigmoid_fast(zb[s * Op + o] * it[o]);
    }
    // 5. calibration tables, draws and accepted-fraction means
    for (int64_t b = 0; b < B; ++b) {
      const int64_t k = stage[b];
      double* rb = r + b * S * K;
      double* ab = acc + b * K * K;
      std::fill(ab, ab + K * K, 0.0);
      for (int64_t s = 0; s < S; ++s) {
        for (int64_t m = 0; m < K - 1; ++m) rb[s * K + m] = 0.5;
        rb[s * K + K - 1] = 1.0;
      }
      if (k == K - 1) continue;
      const double* zb = z + b * S * Op;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t m = k; m < K - 1; ++m) {
          const int64_t c = k * (K - 1) + m;
          double p = zb[s * Op + m];
          if (in_[c] >= 2) p = interp(p, ix_.data() + c * Q_, iy_.data() + c * Q_, in_[c]);
          rb[s * K + m] = p;
        }
      int64_t pair = 0;
      for (int64_t j = 0; j < K - 1; ++j)
        for (int64_t m = j + 1; m < K; ++m, ++pair) {
          if (j < k) continue;
          double sum = 0.0;
          for (int64_t s = 0; s < S; ++s) sum += zb[s * Op + K - 1 + pair];
          ab[j * K + m] = sum / static_cast<double>(S);
        }
    }
  }

  std::vector<std::string> names_;
  int64_t K_, F_, S_ = 0, H_ = 0, O_ = 0, Op_ = 0, Q_ = 0, SH0p_ = 0;
  std::vector<double> mean_, scale_;
  std::vector<std::vector<double>> W_, b_;  // W_[0]: [F, SH0p]; b_[0]: [SH0p]; W_[l ≥ 1]: [S, in, out]; b_[l]: [S, out]
  std::vector<int64_t> dims_;
  std::vector<double> hw_, hb_, invT_, ix_, iy_;
  std::vector<int64_t> in_;
};

}  // namespace

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
      .def("forward", &MLPForward::forward, py::arg("x"), py::arg("rows"), py::arg("stage"),
           "(r [B, S, K] float64, accept [B, K, K] float64) from x [B, F] (rows None) or the record [N, K, F] "
           "read at (rows[b], stage[b])")
      .def_property_readonly("num_members", &MLPForward::num_members)
      .def_property_readonly("num_features", &MLPForward::num_features);
}

}  // namespace asd
