// asd._C — the CUDA token_stats entry point, free of pybind11 so that nvcc never compiles the
// pybind11 headers (two compilers instantiating the same inline templates invite ODR trouble).
// Defined in csrc/token_stats.cu; bound to Python in csrc/token_stats.cpp.
#pragma once
#include <cstdint>

namespace asd {
// logits: device pointer to [N,V] (row stride in elements, last axis contiguous) of dtype code
// 0 float32 / 1 bfloat16 / 2 float16; chosen: device int64 [N]; out: device float32 [N,5];
// stream: a cudaStream_t as an integer; device: its index; pieces: blocks per row (0 = automatic);
// variant: 0 auto (= 2 for bf16/fp16), 1 float scan, 2 packed scan (bf16/fp16; fp32 always float).
// Enqueues the work on `stream` and returns. Throws std::invalid_argument (bad arguments) or
// std::runtime_error (CUDA errors).
void token_stats_cuda_launch(std::uintptr_t logits, std::int64_t N, std::int64_t V, std::int64_t row_stride,
                             int dtype, std::uintptr_t chosen, std::uintptr_t out, std::uintptr_t stream,
                             int device, std::int64_t pieces, int variant);
}  // namespace asd
