// The learned predictor's compiled forward pass (csrc/mlp.cpp) as other kernel files see it: csrc/decision.cpp's
// mlp_proxy_dp runs it into its own buffers and hands the predictions straight to the DP.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace asd {

class MLPForward;  // asd._C.MLPForward, csrc/mlp.cpp

// The MLPForward behind a Python object (std::invalid_argument → ValueError for anything else).
const MLPForward& mlp_forward_of(const pybind11::handle& model);
int64_t mlp_members(const MLPForward& m);  // S
int64_t mlp_stages(const MLPForward& m);   // K (the checkpoint's)
// MLPForward.predict_rows(record, rows, stage, K) into r [B, S, K] and acc [B, K, K] float64 (the caller's
// buffers): record a C-contiguous float32 [N, K, F] with the checkpoint's K and F; rows, stage [B] int64.
// The same arithmetic as predict_rows, bit for bit; the same ValueErrors. The GIL stays held.
void mlp_rows_into(const MLPForward& m, const pybind11::handle& record, const int64_t* rows, const int64_t* stage,
                   int64_t B, double* r, double* acc);

}  // namespace asd
