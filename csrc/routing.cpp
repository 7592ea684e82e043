// asd._C.proxy_costs — the cascade's cost proxy (asd.core.routing) in one call.
//
// Readable twin: asd.core.routing.proxy_costs_ref; bit-identical (tests/core/test_routing.py, fresh random inputs).
// proxy_costs(prompt_len [B], resp_len [B], accept [B, K, K], size [K], prefill_ratio) → [B, K, K] float64
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
#include "numpy_view.h"
#include "proxy_cost.h"

namespace py = pybind11;

namespace asd {
namespace {

using namespace npview;  // NOLINT: the raw-pointer readers of numpy_view.h

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

}  // namespace

void register_routing(py::module_& m) {
  m.def("proxy_costs", &proxy_costs, py::arg("prompt_len"), py::arg("resp_len"), py::arg("accept_mean"),
        py::arg("size"), py::arg("prefill_ratio"), "asd.core.routing.proxy_costs: [B, K, K] float64.");
}

}  // namespace asd
