// pybind11 module asd._C: the hot path of asd (docs/architecture.md, "The compiled extension"). One kernel
// file per Python twin module registers its functions here. Private: use the typed wrappers (asd.core.dp.solve,
// asd.core.features, asd.core.routing, asd.core.decision, asd.tokstats.token_stats), which fall back to their
// readable twins when this module is absent.
#include "asd.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "asd hot-path kernels (DP stopping rule, token statistics)";
  asd::register_dp(m);
  asd::register_features(m);
  asd::register_routing(m);
  asd::register_decision(m);
  asd::register_token_stats(m);
  asd::register_mlp(m);
#ifdef ASD_WITH_CUDA
  asd::register_token_stats_cuda(m);
  asd::register_decode_attention_cuda(m);
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
#ifdef ASD_WITH_OPENMP
  m.attr("WITH_OPENMP") = true;
#else
  m.attr("WITH_OPENMP") = false;
#endif
}
