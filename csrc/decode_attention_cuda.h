// asd._C — the CUDA decode attention entry point (split-K attention of a few query rows over a KV cache),
// free of pybind11 headers (as token_stats_cuda.h). Defined in csrc/decode_attention.cu; bound in
// csrc/decode_attention.cpp; readable twin: asd.models.attention.decode_attention_ref.
#pragma once
#include <cstdint>

namespace asd {
// Device buffers (pointers as integers), element strides; the last axis of q, k, v, out is contiguous.
//   q   [B, H, R, D]        H = KV heads, R = G*T query rows of a KV head, row r = g*T + t
//   k,v [B, H, window, D]   strides (sb, sh, ss) in elements, shared by k and v
//   pos [B, T] int64        query (b, t) attends cache slots 0..pos[b,t] (inclusive; < window)
//   out [B, H, R, D]        contiguous, q's dtype
//   ws  float32 workspace of at least decode_attention_workspace(B, H, R, D, window) elements
// dtype: 0 float32 / 1 bfloat16 / 2 float16 (q, k, v, out alike); D in {16, 32, 64, 128}; R <= 64;
// window <= 65536; q, k, v and the strides 16-byte aligned.
// Enqueues two kernels on `stream` (capturable in a CUDA graph: no allocation, no sync) and returns.
// Throws std::invalid_argument (bad arguments) or std::runtime_error (CUDA errors).
std::int64_t decode_attention_workspace(std::int64_t B, std::int64_t H, std::int64_t R, std::int64_t D,
                                        std::int64_t window);
void decode_attention_cuda_launch(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::int64_t sb,
                                  std::int64_t sh, std::int64_t ss, std::uintptr_t pos, std::uintptr_t out,
                                  std::uintptr_t ws, std::int64_t B, std::int64_t H, std::int64_t R,
                                  std::int64_t T, std::int64_t D, std::int64_t window, float scale, int dtype,
                                  std::uintptr_t stream);
}  // namespace asd
