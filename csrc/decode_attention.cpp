// asd._C.decode_attention_cuda — Python binding of the split-K decode attention (csrc/decode_attention.cu).
// Pointers and strides come from asd.models.attention.decode_attention, which checks the tensors.
#include "asd.h"
#include "decode_attention_cuda.h"

namespace py = pybind11;

namespace asd {

void register_decode_attention_cuda(py::module_& m) {
  m.def("decode_attention_workspace", &decode_attention_workspace, py::arg("B"), py::arg("H"), py::arg("R"),
        py::arg("D"), py::arg("window"),
        "float32 elements of workspace decode_attention_cuda needs for these sizes");
  m.def(
      "decode_attention_cuda",
      [](uintptr_t q, uintptr_t k, uintptr_t v, int64_t sb, int64_t sh, int64_t ss, uintptr_t pos, uintptr_t out,
         uintptr_t ws, int64_t B, int64_t H, int64_t R, int64_t T, int64_t D, int64_t window, float scale,
         int dtype, uintptr_t stream) {
        py::gil_scoped_release release;
        decode_attention_cuda_launch(q, k, v, sb, sh, ss, pos, out, ws, B, H, R, T, D, window, scale, dtype,
                                     stream);
      },
      py::arg("q_ptr"), py::arg("k_ptr"), py::arg("v_ptr"), py::arg("sb"), py::arg("sh"), py::arg("ss"),
      py::arg("pos_ptr"), py::arg("out_ptr"), py::arg("ws_ptr"), py::arg("B"), py::arg("H"), py::arg("R"),
      py::arg("T"), py::arg("D"), py::arg("window"), py::arg("scale"), py::arg("dtype"), py::arg("stream"),
      "decode_attention_cuda(q_ptr, k_ptr, v_ptr, sb, sh, ss, pos_ptr, out_ptr, ws_ptr, B, H, R, T, D, window,\n"
      "scale, dtype, stream): split-K attention of q [B,H,R,D] over k/v [B,H,window,D] (strides sb, sh, ss)\n"
      "with query (b, t = r % T) attending slots 0..pos[b,t]; out [B,H,R,D]; dtype 0 float32, 1 bfloat16,\n"
      "2 float16. Use asd.models.attention.decode_attention, which checks the tensors.");
}

}  // namespace asd
