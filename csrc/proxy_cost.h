// The cost proxy of one (sample, j → m) entry, shared by proxy_costs (csrc/routing.cpp) and proxy_dp
// (csrc/decision.cpp) so that both evaluate it exactly as the numpy twin asd.core.routing.proxy_costs_ref does.
#pragma once

#include <algorithm>
#include <cmath>

namespace asd {

// c_{j→m} of one entry as the twin evaluates it: (ρ·(P + L) + (1 − â)·L) · (size_m / size_{K−1}) / (ρ·P + L),
// with pre = ρ·(P + L), den = ρ·P + L, ratio_m = size_m / size_{K−1}; â clipped to [0, 1] (NaN stays NaN).
inline double proxy_cost(double pre, double den, double L, double a, double ratio_m) {
  a = a < 0.0 ? 0.0 : (a > 1.0 ? 1.0 : a);  // np.clip
  return (pre + (1.0 - a) * L) * ratio_m / den;
}

}  // namespace asd
