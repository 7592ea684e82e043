// placeholder until the DP kernel lands (issue 2)
#include "asd.h"
namespace asd { void register_dp(pybind11::module_&) {} }
