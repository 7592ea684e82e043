// asd._C.proxy_dp — one cascade decision of policy dp on the proxy costs (asd.core.decision) in one call.
//
// proxy_dp(prompt_len [B], resp_len [B] numbers or B arrays (their lengths), accept [B, K, K] float64,
//           size [K], prefill_ratio, r [B, S, K] float32/float64, current [B] int64, lam, kappa, out)
//   → (action [B] int64, value [B, K] float64, next [B, K] int64): proxy_costs then the DP (asd._C.dp_solve)
//   in one call, the costs never leaving the stack. Twin: asd.core.decision.decide_proxy_dp_ref (proxy_costs_ref,
//   then asd.core.dp.solve_ref); same float64 arithmetic in the same order as proxy_costs and dp.cpp's
//   kernel, so the plan is bit-identical to proxy_costs → dp_solve (tests/core/test_decision.py).
//   Optional rows [B] int64: prompt_len and resp_len hold N entries, read at rows[b] (the cascade's live
//   samples); optional predictions [N, K, K] float32: r.mean(axis=1) written at [rows[b], current[b], :].
//
// mlp_proxy_dp(model (asd._C.MLPForward), record [N, K, F] float32, prompt_len [N], resp_len (N entries),
//              rows [B] int64, current [B] int64, size [K], prefill_ratio, lam, kappa, predictions [N, K, K] or None)
//   → (action, value, next): model.predict_rows(record, rows, current, K) then proxy_dp(..., rows=rows,
//   predictions=predictions) in one call: r̂ [B, S, K] and â [B, K, K] go from the forward pass (csrc/mlp.h) into
//   per-thread buffers that the DP reads, never becoming numpy arrays. The same plan, bit for bit, as the two
//   calls; twin: asd.core.decision.decide_mlp_proxy_dp_ref (mlp_forward_ref, then decide_proxy_dp_ref).
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
#include "mlp.h"
#include "numpy_view.h"
#include "proxy_cost.h"

namespace py = pybind11;

namespace asd {
namespace {

using namespace npview;  // NOLINT: the raw-pointer readers of numpy_view.h
using dp_sample::kMaxStages;
using dp_sample::kStop;

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

// predictions [N, K, K] float32 (writeable, C-contiguous) → its data; None → nullptr.
float* predictions_ptr(const py::handle& predictions, int64_t N, int64_t K) {
  if (predictions.is_none()) return nullptr;
  PyObject* po = predictions.ptr();
  const auto* p = is_ndarray(po) ? py::detail::array_proxy(po) : nullptr;
  if (!p || type_num(po) != kF32 || !c_contig(po) || p->nd != 3 || p->dimensions[0] != N || p->dimensions[1] != K ||
      p->dimensions[2] != K || !(p->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
    throw std::invalid_argument("predictions must be a writeable C-contiguous float32 array of shape [N, K, K]");
  return reinterpret_cast<float*>(p->data);
}

// The proxy costs and the DP of B samples whose r̂ [B, S, K] and â [B, K, K] are known (the tail of proxy_dp and
// of mlp_proxy_dp): prompt_len and resp_len hold N entries, read at src[b] (src == nullptr: b, N = B).
template <typename TR>
py::tuple solve_proxy(const TR* r, int64_t B, int64_t S, int64_t K, const double* A, const int64_t* pc,
                      const int64_t* src, int64_t N, const py::handle& prompt_len, const py::handle& resp_len,
                      const double* sz, double rho, double lam, double kappa, const py::object& out, float* pred) {
  const Vec P(prompt_len, N, "prompt_len");
  const Lengths Lr(resp_len, N, "resp_len");
  auto [action, value, next] = plan_arrays(out, B, K);
  int64_t* pa = action.mutable_data();
  double* pv = value.mutable_data();
  int64_t* pn = next.mutable_data();
  double ratio[kMaxStages];  // size_m / size_{K−1}, the same double proxy_costs forms for every entry
  for (int64_t m = 0; m < K; ++m) ratio[m] = sz[m] / sz[K - 1];
  int64_t bad_r = B, bad_cost = B, bad_cur = B;
#define ASD_PDP(KC) \
  proxy_dp_kernel<KC, TR>(r, B, S, K, src, P, Lr, A, ratio, rho, pc, lam, kappa, pa, pv, pn, pred, bad_r, bad_cost, bad_cur)
  if (K == 4) ASD_PDP(4); else if (K == 3) ASD_PDP(3); else ASD_PDP(0);
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

// rows [B] int64 (or another integer dtype) read in place, each in 0..N-1.
const int64_t* rows_view(const py::handle& rows, int64_t B, int64_t N, py::array& keep) {
  int64_t len = 0;
  const int64_t* src = int64_view(rows, B, "rows", keep, len);
  for (int64_t b = 0; b < B; ++b)
    if (src[b] < 0 || src[b] >= N)
      throw std::invalid_argument("rows[" + std::to_string(b) + "] outside 0..N-1=" + std::to_string(N - 1));
  return src;
}

py::tuple proxy_dp(const py::handle& prompt_len, const py::handle& resp_len, const py::handle& accept_h,
                   const py::handle& size_h, double rho, const py::array& r, const py::handle& current, double lam,
                   double kappa,
                   const py::object& out, const py::handle& rows, const py::handle& predictions) {
  // --- arguments (the checks of proxy_costs and dp_solve, once)
  dp_sample::check_lam_kappa(lam, kappa);
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
    N = py::len(prompt_len);
    src = rows_view(rows, B, N, rows_keep);
  }
  float* pred = predictions_ptr(predictions, N, K);
  if (rt == kF32)
    return solve_proxy(static_cast<const float*>(r.data()), B, S, K, accept.data(), pc, src, N, prompt_len, resp_len,
                       size.data(), rho, lam, kappa, out, pred);
  return solve_proxy(static_cast<const double*>(r.data()), B, S, K, accept.data(), pc, src, N, prompt_len, resp_len,
                     size.data(), rho, lam, kappa, out, pred);
}

// mlp_proxy_dp: model.predict_rows(record, rows, current, K) → proxy_dp(..., rows=rows, predictions=predictions) in
// one call, r̂ and â in per-thread buffers instead of two numpy arrays (and one Python→C transition fewer).
py::tuple mlp_proxy_dp(const py::handle& model, const py::handle& record, const py::handle& prompt_len,
                       const py::handle& resp_len, const py::handle& rows, const py::handle& current,
                       const py::handle& size_h, double rho, double lam, double kappa, const py::handle& predictions) {
  dp_sample::check_lam_kappa(lam, kappa);
  const MLPForward& m = mlp_forward_of(model);
  const int64_t S = mlp_members(m), K = mlp_stages(m);
  if (K > kMaxStages) throw std::invalid_argument("K=" + std::to_string(K) + " stages; at most 64 are supported");
  py::array cur_keep, rows_keep;
  int64_t B = 0;
  const int64_t* pc = int64_view(current, -1, "current", cur_keep, B);
  const int64_t N = py::len(prompt_len);
  const int64_t* src = rows_view(rows, B, N, rows_keep);
  thread_local std::vector<double> buf;  // r [B, S, K] then â [B, K, K]
  const size_t need = static_cast<size_t>(B * S * K + B * K * K);
  if (buf.size() < need) buf.resize(need);
  double* r = buf.data();
  double* A = r + B * S * K;
  mlp_rows_into(m, record, src, pc, B, r, A);  // checks the record (N, K, F), stages, finiteness
  const F64 size(size_h, "size");
  if (size.ndim() != 1 || size.shape(0) != K)
    throw std::invalid_argument("size must have shape [K]=(" + std::to_string(K) + ",)");
  float* pred = predictions_ptr(predictions, N, K);
  return solve_proxy(static_cast<const double*>(r), B, S, K, A, pc, src, N, prompt_len, resp_len, size.data(), rho,
                     lam, kappa, py::none(), pred);
}

}  // namespace

void register_decision(py::module_& m) {
  m.def("proxy_dp", &proxy_dp, py::arg("prompt_len"), py::arg("resp_len"), py::arg("accept_mean"), py::arg("size"),
        py::arg("prefill_ratio"), py::arg("r"), py::arg("current"), py::arg("lam"), py::arg("kappa"),
        py::arg("out") = py::none(), py::arg("rows") = py::none(), py::arg("predictions") = py::none(),
        "proxy_costs then dp_solve in one call -> (action [B] int64, value [B, K] float64, next [B, K] int64).");
  m.def("mlp_proxy_dp", &mlp_proxy_dp, py::arg("model"), py::arg("record"), py::arg("prompt_len"),
        py::arg("resp_len"), py::arg("rows"), py::arg("current"), py::arg("size"), py::arg("prefill_ratio"),
        py::arg("lam"), py::arg("kappa"), py::arg("predictions"),
        "model.predict_rows(record, rows, current) then proxy_dp(rows=rows) in one call -> (action, value, next).");
}

}  // namespace asd
