// One sample of the DP stopping rule (asd/core/dp.py, docs/dp.md): the risk-adjusted stop values and the
// backward recursion with the tie rule. Shared by csrc/dp.cpp (dp_solve) and csrc/decision.cpp (proxy_dp);
// both compile with -ffp-contract=off, so every value is bit-identical to the numpy twin solve_ref.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace asd {
namespace dp_sample {

constexpr int64_t kStop = -1;
constexpr int64_t kMaxStages = 64;  // stack arrays per sample; real hierarchies have K <= 8

// λ ≥ 0 (inf allowed) and a finite κ ≥ 0, as asd.core.dp._check_scalars: std::invalid_argument → ValueError.
inline void check_lam_kappa(double lam, double kappa) {
  if (std::isnan(lam) || lam < 0.0)
    throw std::invalid_argument("lam must be >= 0 or inf, got " + std::to_string(lam));
  if (!std::isfinite(kappa) || kappa < 0.0)
    throw std::invalid_argument("kappa must be a finite number >= 0, got " + std::to_string(kappa));
}

#if defined(__AVX2__)
// K = 4: one 4-lane double vector holds a draw's four stages, so the per-stage sums run in the same
// order (draw 0, 1, …) as the scalar loop and numpy: bit-identical. min/max keep the scalar loop's
// NaN behaviour (_mm256_min_pd(v, lo) == v < lo ? v : lo).
inline __m256d load4(const double* p) { return _mm256_loadu_pd(p); }
inline __m256d load4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }

template <int SC, typename TR>
inline bool stop_values_k4(const TR* rb, int64_t S, double lam, double kappa, double* stopv) {
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
  __m256d sum = zero, lo = zero, hi = one;
  for (int64_t s = 0; s < (SC > 0 ? SC : S); ++s) {
    const __m256d v = load4(rb + 4 * s);
    sum = _mm256_add_pd(sum, _mm256_sub_pd(one, v));
    lo = _mm256_min_pd(v, lo);
    hi = _mm256_max_pd(v, hi);
  }
  const __m256d ok = _mm256_and_pd(_mm256_and_pd(_mm256_cmp_pd(lo, zero, _CMP_GE_OQ), _mm256_cmp_pd(hi, one, _CMP_LE_OQ)),
                                   _mm256_cmp_pd(sum, sum, _CMP_EQ_OQ));
  const __m256d sdv = _mm256_set1_pd(static_cast<double>(S));
  const __m256d mean = _mm256_div_pd(sum, sdv);
  __m256d st;
  if (kappa > 0.0) {
    __m256d var = zero;
    for (int64_t s = 0; s < (SC > 0 ? SC : S); ++s) {
      const __m256d d = _mm256_sub_pd(_mm256_sub_pd(one, load4(rb + 4 * s)), mean);
      var = _mm256_add_pd(var, _mm256_mul_pd(d, d));
    }
    const __m256d sdev = _mm256_sqrt_pd(_mm256_div_pd(var, sdv));
    st = _mm256_mul_pd(_mm256_set1_pd(lam), _mm256_add_pd(mean, _mm256_mul_pd(_mm256_set1_pd(kappa), sdev)));
  } else {
    st = _mm256_mul_pd(_mm256_set1_pd(lam), mean);
  }
  if (std::isinf(lam)) st = _mm256_set1_pd(std::numeric_limits<double>::infinity());
  _mm256_storeu_pd(stopv, st);
  return _mm256_movemask_pd(ok) == 0xF;
}
#endif

// stopv[k] = λ·ℓ̃_k (∞ for every k when λ = ∞) of one sample, rb = its r block [S, K]; false if an r is
// outside [0, 1] or NaN. Two passes over the block (it sits in L1), as numpy's mean and std: sums in draw
// order, divide by S (not multiply by 1/S), population std. KC/SC > 0: K/S known at compile time.
template <int KC, int SC, typename TR>
inline bool stop_values(const TR* rb, int64_t S_dyn, int64_t K_dyn, double lam, double kappa, double* stopv) {
  const int64_t K = KC > 0 ? KC : K_dyn;
  const int64_t S = SC > 0 ? SC : S_dyn;
#if defined(__AVX2__)
  if constexpr (KC == 4) return stop_values_k4<SC>(rb, S, lam, kappa, stopv);
#endif
  const double sd = static_cast<double>(S);
  double sum[kMaxStages], lo[kMaxStages], hi[kMaxStages];
  for (int64_t k = 0; k < K; ++k) {
    sum[k] = 0.0;
    lo[k] = 0.0;
    hi[k] = 1.0;
  }
  for (int64_t s = 0; s < S; ++s)
    for (int64_t k = 0; k < K; ++k) {  // the range check rides along as min/max; NaN shows up in the sum
      const double v = static_cast<double>(rb[s * K + k]);
      sum[k] += 1.0 - v;
      lo[k] = v < lo[k] ? v : lo[k];
      hi[k] = v > hi[k] ? v : hi[k];
    }
  bool r_ok = true;
  for (int64_t k = 0; k < K; ++k) r_ok &= (lo[k] >= 0.0) & (hi[k] <= 1.0) & (sum[k] == sum[k]);
  for (int64_t k = 0; k < K; ++k) sum[k] = sum[k] / sd;  // now the mean of 1 − r
  if (kappa > 0.0) {
    double var[kMaxStages];
    for (int64_t k = 0; k < K; ++k) var[k] = 0.0;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t k = 0; k < K; ++k) {
        const double d = (1.0 - static_cast<double>(rb[s * K + k])) - sum[k];
        var[k] += d * d;
      }
    for (int64_t k = 0; k < K; ++k) stopv[k] = lam * (sum[k] + kappa * std::sqrt(var[k] / sd));
  } else {
    for (int64_t k = 0; k < K; ++k) stopv[k] = lam * sum[k];
  }
  if (std::isinf(lam))
    for (int64_t k = 0; k < K; ++k) stopv[k] = std::numeric_limits<double>::infinity();
  return r_ok;
}

// V [K], nx [K]: V[K−1] = 0, V[j] = min(stopv[j], min_{m>j} cost(j, m) + V[m]). Tie rule: candidates in
// the order STOP, m = j+1 … K−1, each replacing the incumbent only if strictly smaller (branch-free selects).
template <int KC, typename CostAt>
inline void recurse(const double* stopv, CostAt cost, int64_t K_dyn, double* V, int64_t* nx) {
  const int64_t K = KC > 0 ? KC : K_dyn;
  V[K - 1] = 0.0;
  nx[K - 1] = kStop;
  for (int64_t j = K - 2; j >= 0; --j) {
    double best = stopv[j];
    int64_t arg = kStop;
    for (int64_t m = j + 1; m < K; ++m) {
      const double cand = cost(j, m) + V[m];
      // arithmetic selects: with a ?: GCC emitted data-dependent branches here (mispredicted on real data)
      const int64_t take = -static_cast<int64_t>(cand < best);  // all ones iff strictly better
      arg = (arg & ~take) | (m & take);
      best = std::min(best, cand);  // == cand < best ? cand : best (one minsd), NaN never taken
    }
    V[j] = best;
    nx[j] = arg;
  }
}

}  // namespace dp_sample
}  // namespace asd
