// asd._C — shared declarations. Each kernel file registers its own functions.
#pragma once
#include <pybind11/pybind11.h>

namespace asd {
void register_dp(pybind11::module_& m);           // csrc/dp.cpp
void register_decision(pybind11::module_& m);     // csrc/decision.cpp
void register_token_stats(pybind11::module_& m);  // csrc/token_stats.cpp (CPU)
#ifdef ASD_WITH_CUDA
void register_token_stats_cuda(pybind11::module_& m);  // csrc/token_stats.cu
#endif
}  // namespace asd
