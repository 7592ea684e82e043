// asd._C.dp_solve — the DP stopping rule over the DAG of stages (docs/algorithm.md#decision).
//
// The readable specification is asd.core.dp.solve_ref (numpy); this kernel gives
// identical actions/next and values to rtol 1e-6 (in practice bit-identical):
//
//   ℓ̃_j    = mean_s(1 − r[s,j]) + κ·std_s(1 − r[s,j])   (ddof = 0; ℓ̃_{K−1} = 0)
//   V_{K−1} = 0
//   V_j     = min(λ·ℓ̃_j, min_{m>j} cost[j,m] + V_m)     (λ = inf: stopping before K−1 is inf)
//   tie rule: candidates in the order STOP, m = j+1 .. K−1; only a strictly smaller one replaces.
//
// Memory: one pass over r [B,S,K] and cost [B,K,K] (float32 or float64, read in place and
// widened to double), writes action [B], value [B,K], next [B,K]. No temporaries beyond a few
// K-sized stack arrays per sample. OpenMP static schedule over B; the GIL is released around the
// loop (one thread below kParallelMinBatch samples). Shapes, dtypes and scalars are checked with the GIL
// held; the array contents (NaN,
// probability range, negative costs, current out of range) inside the single pass, and the first
// offending index is reported afterwards as std::invalid_argument (→ ValueError).
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <pybind11/numpy.h>


#include "asd.h"
#include "dp_sample.h"

namespace py = pybind11;

namespace asd {
namespace {

using dp_sample::kMaxStages;
using dp_sample::kStop;
// Below this many samples the loop runs on one thread: ~30 ns per sample makes the whole batch cheaper
// than waking a team, and on a shared (oversubscribed) machine a barrier can wait a scheduler slice.
constexpr int64_t kParallelMinBatch = 8192;

struct BadIndex {  // smallest offending sample index per kind of error (B = none)
  int64_t r, cost, current;
};

// KC > 0: K known at compile time (lets the compiler unroll the K loops); KC == 0: runtime K.

template <int KC, int SC, typename TR, typename TC>
void dp_kernel(const TR* __restrict r, const TC* __restrict cost, const int64_t* __restrict current,
               int64_t B, int64_t S_dyn, int64_t K_dyn, double lam, double kappa,
               int64_t* __restrict action, double* __restrict value, int64_t* __restrict next,
               BadIndex& bad) {
  const int64_t K = KC > 0 ? KC : K_dyn;
  const int64_t S = SC > 0 ? SC : S_dyn;  // S = 1 and 8 compiled with S known: the draw loops unroll
  // upper[j*K+m] = 1 for m > j: the cost entries the DP reads (checked in one regular loop over K×K)
  unsigned char upper[kMaxStages * kMaxStages];
  for (int64_t j = 0; j < K; ++j)
    for (int64_t m = 0; m < K; ++m) upper[j * K + m] = m > j;
  int64_t bad_r = B, bad_cost = B, bad_cur = B;

#pragma omp parallel for schedule(static) if (B >= kParallelMinBatch) reduction(min : bad_r, bad_cost, bad_cur)
  for (int64_t b = 0; b < B; ++b) {
    const TR* rb = r + b * S * K;
    const TC* cb = cost + b * K * K;
    double stopv[kMaxStages], V[kMaxStages];
    int64_t nx[kMaxStages];
    if (!dp_sample::stop_values<KC, SC>(rb, S, K, lam, kappa, stopv) && b < bad_r) bad_r = b;

    // costs the DP reads must be >= 0 (NaN fails the comparison too)
    int c_bad = 0;
#if defined(__AVX2__)
    if constexpr (KC == 4) {  // rows 0..2, lanes above the diagonal (masks 1110, 1100, 1000)
      const __m256d zero = _mm256_setzero_pd();
      for (int j = 0; j < 3; ++j) {
        const int want = (0xF << (j + 1)) & 0xF;
        c_bad |= (_mm256_movemask_pd(_mm256_cmp_pd(dp_sample::load4(cb + 4 * j), zero, _CMP_GE_OQ)) & want) != want;
      }
    } else
#endif
    {
      for (int64_t i = 0; i < K * K; ++i) c_bad |= upper[i] & !(static_cast<double>(cb[i]) >= 0.0);
    }
    if (c_bad && b < bad_cost) bad_cost = b;

    // backward recursion with the tie rule (docs/dp.md)
    dp_sample::recurse<KC>(stopv, [cb, K](int64_t j, int64_t m) { return static_cast<double>(cb[j * K + m]); }, K,
                           V, nx);

    double* vb = value + b * K;
    int64_t* nb = next + b * K;
    for (int64_t k = 0; k < K; ++k) {
      vb[k] = V[k];
      nb[k] = nx[k];
    }
    const int64_t c = current[b];
    if (c < 0 || c >= K) {
      if (b < bad_cur) bad_cur = b;
      action[b] = kStop;
    } else {
      action[b] = nx[c];
    }
  }
  bad = {bad_r, bad_cost, bad_cur};
}

template <typename TR, typename TC>
void dispatch_k(const TR* r, const TC* cost, const int64_t* current, int64_t B, int64_t S, int64_t K,
                double lam, double kappa, int64_t* action, double* value, int64_t* next, BadIndex& bad) {
#define ASD_DP_CASE(KK)                                                                          \
  case KK:                                                                                       \
    if (S == 8)                                                                                  \
      dp_kernel<KK, 8>(r, cost, current, B, S, K, lam, kappa, action, value, next, bad);         \
    else if (S == 1)                                                                             \
      dp_kernel<KK, 1>(r, cost, current, B, S, K, lam, kappa, action, value, next, bad);         \
    else                                                                                         \
      dp_kernel<KK, 0>(r, cost, current, B, S, K, lam, kappa, action, value, next, bad);         \
    break;
  switch (K) {
    ASD_DP_CASE(2)
    ASD_DP_CASE(3)
    ASD_DP_CASE(4)
    ASD_DP_CASE(5)
    default: dp_kernel<0, 0>(r, cost, current, B, S, K, lam, kappa, action, value, next, bad); break;
  }
#undef ASD_DP_CASE
}

bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }
bool is_c_contig(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }

std::string shape_str(const py::array& a) {
  std::ostringstream o;
  o << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) o << (i ? ", " : "") << a.shape(i);
  o << (a.ndim() == 1 ? ",)" : ")");
  return o.str();
}

// `out`: None, or a tuple (action [B] int64, value [B,K] float64, next [B,K] int64) of writeable
// C-contiguous arrays to write into (lets repeated solves skip the kernel's zeroing of fresh pages).
py::tuple dp_solve(const py::array& r, const py::array& cost, const py::array& current, double lam,
                   double kappa, const py::object& out) {
  // --- arguments, checked with the GIL held
  dp_sample::check_lam_kappa(lam, kappa);
  if (r.ndim() != 3) throw std::invalid_argument("r must have shape [B, S, K], got shape " + shape_str(r));
  const int64_t B = r.shape(0), S = r.shape(1), K = r.shape(2);
  if (S < 1 || K < 1)
    throw std::invalid_argument("r must have S >= 1 draws and K >= 1 stages, got shape " + shape_str(r));
  if (K > kMaxStages)
    throw std::invalid_argument("r has K=" + std::to_string(K) + " stages; at most " +
                                std::to_string(kMaxStages) + " are supported");
  if (cost.ndim() != 3 || cost.shape(1) != cost.shape(2))
    throw std::invalid_argument("cost must have shape [B, K, K], got shape " + shape_str(cost));
  if (cost.shape(0) != B)
    throw std::invalid_argument("cost has batch size " + std::to_string(cost.shape(0)) + " but r has " +
                                std::to_string(B));
  if (cost.shape(1) != K)
    throw std::invalid_argument("cost has K=" + std::to_string(cost.shape(1)) + " stages but r has K=" +
                                std::to_string(K));
  if (current.ndim() != 1 || current.shape(0) != B)
    throw std::invalid_argument("current must have shape [B]=(" + std::to_string(B) + ",), got shape " +
                                shape_str(current));
  if (!(is_f32(r) || is_f64(r))) throw std::invalid_argument("r must be float32 or float64");
  if (!(is_f32(cost) || is_f64(cost))) throw std::invalid_argument("cost must be float32 or float64");
  if (!current.dtype().is(py::dtype::of<int64_t>())) throw std::invalid_argument("current must be int64");
  if (!is_c_contig(r)) throw std::invalid_argument("r must be C-contiguous");
  if (!is_c_contig(cost)) throw std::invalid_argument("cost must be C-contiguous");
  if (!is_c_contig(current)) throw std::invalid_argument("current must be C-contiguous");

  auto [action, value, next] = plan_arrays(out, B, K);
  int64_t* pa = action.mutable_data();
  double* pv = value.mutable_data();
  int64_t* pn = next.mutable_data();
  const int64_t* pc = static_cast<const int64_t*>(current.data());
  const void* pr = r.data();
  const void* pk = cost.data();
  const bool r32 = is_f32(r), c32 = is_f32(cost);

  BadIndex bad{B, B, B};
  {
    py::gil_scoped_release nogil;
    if (r32 && c32)
      dispatch_k(static_cast<const float*>(pr), static_cast<const float*>(pk), pc, B, S, K, lam, kappa, pa, pv, pn, bad);
    else if (r32)
      dispatch_k(static_cast<const float*>(pr), static_cast<const double*>(pk), pc, B, S, K, lam, kappa, pa, pv, pn, bad);
    else if (c32)
      dispatch_k(static_cast<const double*>(pr), static_cast<const float*>(pk), pc, B, S, K, lam, kappa, pa, pv, pn, bad);
    else
      dispatch_k(static_cast<const double*>(pr), static_cast<const double*>(pk), pc, B, S, K, lam, kappa, pa, pv, pn, bad);
  }
  // --- contents, reported in the same order as asd.core.dp._check_contents
  if (bad.r < B)
    throw std::invalid_argument("r must hold probabilities in [0, 1] (found NaN or a value outside at r[" +
                                std::to_string(bad.r) + "])");
  if (bad.cost < B) {
    // error path only: NaN anywhere is reported before a negative entry, as asd.core.dp does
    for (int64_t b = bad.cost; b < B; ++b)
      for (int64_t j = 0; j < K; ++j)
        for (int64_t m = j + 1; m < K; ++m) {
          const int64_t i = (b * K + j) * K + m;
          const double c = c32 ? static_cast<const float*>(pk)[i] : static_cast<const double*>(pk)[i];
          if (std::isnan(c))
            throw std::invalid_argument("cost contains NaN above the diagonal (cost[b, j, m] with m > j; at "
                                        "cost[" + std::to_string(b) + ", " + std::to_string(j) + ", " +
                                        std::to_string(m) + "])");
        }
    throw std::invalid_argument("cost must be >= 0 above the diagonal (cost[b, j, m] with m > j; first at b=" +
                                std::to_string(bad.cost) + ")");
  }
  if (bad.current < B)
    throw std::invalid_argument("current must hold stages in 0..K-1=" + std::to_string(K - 1) +
                                ", got current[" + std::to_string(bad.current) + "]=" +
                                std::to_string(pc[bad.current]));
  return py::make_tuple(action, value, next);
}

}  // namespace

PlanArrays plan_arrays(const py::object& out, int64_t B, int64_t K) {
  if (out.is_none())
    return {py::array_t<int64_t>(B), py::array_t<double>({B, K}), py::array_t<int64_t>({B, K})};
  if (!PyTuple_Check(out.ptr()) || PyTuple_GET_SIZE(out.ptr()) != 3)
    throw std::invalid_argument("out must be None or a tuple (action, value, next)");
  const char* names[3] = {"out action", "out value", "out next"};
  for (int i = 0; i < 3; ++i) {
    // borrowed items, no pybind11 casts: this build checks the GIL on every incref/decref
    const py::handle h(PyTuple_GET_ITEM(out.ptr(), i));
    if (!py::isinstance<py::array>(h)) throw std::invalid_argument(std::string(names[i]) + " must be a numpy array");
    const auto a = py::reinterpret_borrow<py::array>(h);
    const bool want_f64 = (i == 1);
    const bool dtype_ok = want_f64 ? a.dtype().is(py::dtype::of<double>()) : a.dtype().is(py::dtype::of<int64_t>());
    const bool shape_ok = (i == 0) ? (a.ndim() == 1 && a.shape(0) == B)
                                   : (a.ndim() == 2 && a.shape(0) == B && a.shape(1) == K);
    if (!dtype_ok || !shape_ok || !is_c_contig(a) || !a.writeable())
      throw std::invalid_argument(std::string(names[i]) + " must be a writeable C-contiguous " +
                                  (want_f64 ? "float64" : "int64") + " array of shape " +
                                  (i == 0 ? "[B]" : "[B, K]") + ", got shape " + shape_str(a));
  }
  return {py::reinterpret_borrow<py::array_t<int64_t>>(PyTuple_GET_ITEM(out.ptr(), 0)),
          py::reinterpret_borrow<py::array_t<double>>(PyTuple_GET_ITEM(out.ptr(), 1)),
          py::reinterpret_borrow<py::array_t<int64_t>>(PyTuple_GET_ITEM(out.ptr(), 2))};
}

void register_dp(py::module_& m) {
  m.def("dp_solve", &dp_solve, py::arg("r"), py::arg("cost"), py::arg("current"), py::arg("lam"),
        py::arg("kappa") = 0.0, py::arg("out") = py::none(),
        "DP stopping rule over the DAG of stages (private; use asd.core.dp.solve).\n"
        "r [B,S,K] f32/f64, cost [B,K,K] f32/f64 (C-contiguous), current [B] int64, lam >= 0 or inf,\n"
        "kappa >= 0, out None or (action, value, next) to write into\n"
        "-> (action [B] int64, value [B,K] float64, next [B,K] int64).");
}

}  // namespace asd
