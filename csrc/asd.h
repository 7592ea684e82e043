// asd._C — shared declarations. Each kernel file registers its own functions.
#pragma once
#include <pybind11/pybind11.h>

#include <pybind11/numpy.h>

#include <cstdint>

namespace asd {
// The DP's result arrays (action [B] int64, value [B, K] float64, next [B, K] int64): fresh when `out` is None,
// else the arrays of the tuple `out` after checking dtype, shape, layout and writeability (ValueError naming
// the array). Shared by dp_solve (csrc/dp.cpp, where it is defined) and proxy_dp (csrc/decision.cpp).
struct PlanArrays {
  pybind11::array_t<int64_t> action;
  pybind11::array_t<double> value;
  pybind11::array_t<int64_t> next;
};
PlanArrays plan_arrays(const pybind11::object& out, int64_t B, int64_t K);

void register_dp(pybind11::module_& m);           // csrc/dp.cpp
void register_features(pybind11::module_& m);     // csrc/features.cpp
void register_routing(pybind11::module_& m);      // csrc/routing.cpp
void register_decision(pybind11::module_& m);     // csrc/decision.cpp
void register_token_stats(pybind11::module_& m);  // csrc/token_stats.cpp (CPU)
void register_mlp(pybind11::module_& m);          // csrc/mlp.cpp
#ifdef ASD_WITH_CUDA
void register_token_stats_cuda(pybind11::module_& m);  // csrc/token_stats.cu
void register_decode_attention_cuda(pybind11::module_& m);  // csrc/decode_attention.cpp
#endif
}  // namespace asd
