// Split-K ("flash-decoding") attention for decode and short verification chunks over a static KV cache
// (docs/algorithm.md#compiled-hot-path; asd/models/cuda_graph.py). Readable twin: asd.models.attention.decode_attention_ref.
//
// Why: at decode a KV head has only R = G*T query rows, and a generic attention kernel runs one block
// per (batch, head): 4 blocks for Qwen2.5-7B at batch 1, ≈ 19 µs a layer on an H200 for 1.2 MB of K/V
// (docs/gpu.md). Here the window is cut into chunks of kChunk = 32 slots, one block each:
//   pass 1 (grid [chunks, B*H]): stage the chunk's K and V in shared memory (float), scores
//     S[r][c] = scale * q_r · k_c for the R rows (masked: slot > pos[b, r % T] → -inf), per-row max m,
//     p = exp(S - m), l = Σ p, acc[r][:] = Σ_c p[r][c] v_c  → workspace (m, l, acc) per chunk;
//     chunks wholly past every row's pos are skipped (m = -inf, nothing read).
//   pass 2 (grid [B*H, R]): out[r] = Σ_s e^{m_s - M} acc_s[r] / Σ_s e^{m_s - M} l_s,  M = max_s m_s.
// Loads are 16-byte vectors, all of a thread's issued before the first is used (latency, not
// bandwidth, bounds a kernel this small).
// Every output element is written; slot 0 is always allowed (pos >= 0), so M is finite.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "decode_attention_cuda.h"

namespace asd {
namespace {

constexpr int kChunk = 32;   // slots per block == warp size (one lane per slot in the softmax)
constexpr int kThreads = 128;
constexpr int kMaxRows = 64;
constexpr int64_t kMaxWindow = 1 << 16;   // combine's weights: chunks floats of shared memory

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

// workspace layout per (b*H + h): m [chunks][R], l [chunks][R], acc [chunks][R][D]
__host__ __device__ inline int64_t ws_per_head(int64_t R, int64_t D, int64_t chunks) {
  return chunks * R * (2 + D);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) partial_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                           const T* __restrict__ v, int64_t sb, int64_t sh,
                                                           int64_t ss, const int64_t* __restrict__ pos,
                                                           float* __restrict__ ws, int H, int R, int nt,
                                                           int window, float scale) {
  // dynamic shared memory (smem_bytes<D>(R)): K [kChunk][D+1] (+1: the rows of a column fall in
  // different banks), V [kChunk][D], Q [R][D], S [R][kChunk] as float; lim [R] int64
  extern __shared__ __align__(16) unsigned char smem_raw[];
  int64_t* lim = reinterpret_cast<int64_t*>(smem_raw);                 // per query row: last allowed slot
  float* Ks = reinterpret_cast<float*>(smem_raw + kMaxRows * sizeof(int64_t));
  float* Vs = Ks + kChunk * (D + 1);
  float* Qs = Vs + kChunk * D;
  float* S = Qs + R * D;

  const int chunk = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
  const int chunks = gridDim.x, c0 = chunk * kChunk;
  const int n = min(kChunk, window - c0);
  float* m_out = ws + bh * ws_per_head(R, D, chunks) + int64_t(chunk) * R;
  float* l_out = m_out + int64_t(chunks) * R;
  float* acc_out = ws + bh * ws_per_head(R, D, chunks) + 2 * int64_t(chunks) * R + int64_t(chunk) * R * D;

  for (int r = threadIdx.x; r < R; r += kThreads) lim[r] = pos[int64_t(b) * nt + (r % nt)];
  __syncthreads();
  int64_t maxlim = -1;
  for (int r = 0; r < R; ++r) maxlim = max(maxlim, lim[r]);
  if (c0 > maxlim) {   // the whole chunk is masked for every row: contribute nothing (uniform branch)
    for (int r = threadIdx.x; r < R; r += kThreads) { m_out[r] = -INFINITY; l_out[r] = 0.f; }
    return;
  }
  // K, V chunk and q: 16-byte vector loads, all issued before any is used (the host checked alignment)
  constexpr int kVec = 16 / sizeof(T);            // elements per vector
  constexpr int kRowVecs = D / kVec;              // vectors per slot row
  constexpr int kPer = (kChunk * kRowVecs + kThreads - 1) / kThreads;
  const T* kb = k + b * sb + h * sh + int64_t(c0) * ss;
  const T* vb = v + b * sb + h * sh + int64_t(c0) * ss;
  uint4 kr[kPer], vr[kPer];
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * kThreads, c = i / kRowVecs, dv = i % kRowVecs;
    const bool in = i < kChunk * kRowVecs && c < n;
    kr[p] = in ? *reinterpret_cast<const uint4*>(kb + int64_t(c) * ss + dv * kVec) : make_uint4(0, 0, 0, 0);
    vr[p] = in ? *reinterpret_cast<const uint4*>(vb + int64_t(c) * ss + dv * kVec) : make_uint4(0, 0, 0, 0);
  }
  const T* qb = q + (int64_t(b) * H + h) * R * D;
  for (int i = threadIdx.x; i < R * kRowVecs; i += kThreads) {
    const uint4 x = *reinterpret_cast<const uint4*>(qb + i * kVec);
    const T* e = reinterpret_cast<const T*>(&x);
#pragma unroll
    for (int j = 0; j < kVec; ++j) Qs[i * kVec + j] = to_f(e[j]);
  }
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * kThreads, c = i / kRowVecs, dv = i % kRowVecs;
    if (i < kChunk * kRowVecs) {
      const T* ke = reinterpret_cast<const T*>(&kr[p]);
      const T* ve = reinterpret_cast<const T*>(&vr[p]);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        Ks[c * (D + 1) + dv * kVec + j] = to_f(ke[j]);
        Vs[c * D + dv * kVec + j] = to_f(ve[j]);
      }
    }
  }
  __syncthreads();

  // scores: thread -> (r, c) pairs
  for (int i = threadIdx.x; i < R * kChunk; i += kThreads) {
    const int r = i / kChunk, c = i % kChunk;
    float s = 0.f;
#pragma unroll 8
    for (int d = 0; d < D; ++d) s += Qs[r * D + d] * Ks[c * (D + 1) + d];
    const bool ok = c < n && int64_t(c0 + c) <= lim[r];
    S[r * kChunk + c] = ok ? s * scale : -INFINITY;
  }
  __syncthreads();

  // softmax pieces: warp w takes rows w, w+4, ...; lane = slot in the chunk
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < R; r += kThreads / 32) {
    const float s = S[r * kChunk + lane];
    float m = s;
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    const float p = (m == -INFINITY) ? 0.f : expf(s - m);
    float l = p;
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    S[r * kChunk + lane] = p;
    if (lane == 0) { m_out[r] = m; l_out[r] = l; }
  }
  __syncthreads();

  // acc[r][d] = sum_c p[r][c] v[c][d]: thread -> (r, d)
  for (int i = threadIdx.x; i < R * D; i += kThreads) {
    const int r = i / D, d = i % D;
    float a = 0.f;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) a += S[r * kChunk + c] * Vs[c * D + d];
    acc_out[i] = a;
  }
}

// one block per (b*H + h, row r), max(D, 32) threads: warp 0 turns the chunks' (m, l) into weights
// w_s = e^{m_s - M} / Σ e^{m_s - M} l_s (shared memory), then thread d sums w_s acc_s[r][d]
template <typename T, int D>
__global__ void combine_kernel(const float* __restrict__ ws, T* __restrict__ out, int R, int chunks) {
  extern __shared__ float w[];   // [chunks]
  const int bh = blockIdx.x, r = blockIdx.y;
  const float* m_in = ws + bh * ws_per_head(R, D, chunks);
  const float* l_in = m_in + int64_t(chunks) * R;
  const float* acc = m_in + 2 * int64_t(chunks) * R;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float M = -INFINITY;
    for (int s = lane; s < chunks; s += 32) M = fmaxf(M, m_in[s * R + r]);
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.f;
    for (int s = lane; s < chunks; s += 32) {
      const float ms = m_in[s * R + r];
      const float e = ms == -INFINITY ? 0.f : expf(ms - M);   // skipped or fully masked chunk: weight 0
      w[s] = e;
      L += e * (ms == -INFINITY ? 0.f : l_in[s * R + r]);
    }
    for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
    __syncwarp();
    for (int s = lane; s < chunks; s += 32) w[s] /= L;
  }
  __syncthreads();
  const int d = threadIdx.x;
  if (d >= D) return;
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;   // four independent sums: loads in flight
  const float* col = acc + int64_t(r) * D + d;      // acc[s][r][d] = col[s * R * D]
  const int64_t step = int64_t(R) * D;
  int s = 0;
  for (; s + 4 <= chunks; s += 4) {
    if (w[s] != 0.f) a0 += w[s] * col[s * step];
    if (w[s + 1] != 0.f) a1 += w[s + 1] * col[(s + 1) * step];
    if (w[s + 2] != 0.f) a2 += w[s + 2] * col[(s + 2) * step];
    if (w[s + 3] != 0.f) a3 += w[s + 3] * col[(s + 3) * step];
  }
  for (; s < chunks; ++s)
    if (w[s] != 0.f) a0 += w[s] * col[s * step];
  out[(int64_t(bh) * R + r) * D + d] = from_f<T>((a0 + a1) + (a2 + a3));
}

template <int D>
size_t smem_bytes(int64_t R) {
  return kMaxRows * sizeof(int64_t) + sizeof(float) * (kChunk * (D + 1) + kChunk * D + R * D + R * kChunk);
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("decode_attention_cuda: ") + what + ": " + cudaGetErrorString(err));
  }
}

template <typename T, int D>
void launch(uintptr_t q, uintptr_t k, uintptr_t v, int64_t sb, int64_t sh, int64_t ss, uintptr_t pos,
            uintptr_t out, uintptr_t ws, int64_t B, int64_t H, int64_t R, int64_t nt, int64_t window, float scale,
            cudaStream_t stream) {
  const int64_t chunks = (window + kChunk - 1) / kChunk;
  dim3 grid1(static_cast<unsigned>(chunks), static_cast<unsigned>(B * H));
  static const cudaError_t attr = cudaFuncSetAttribute(   // once per instantiation: up to R = kMaxRows
      partial_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes<D>(kMaxRows)));
  check(attr, "shared memory attribute");
  partial_kernel<T, D><<<grid1, kThreads, smem_bytes<D>(R), stream>>>(
      reinterpret_cast<const T*>(q), reinterpret_cast<const T*>(k), reinterpret_cast<const T*>(v), sb, sh, ss,
      reinterpret_cast<const int64_t*>(pos), reinterpret_cast<float*>(ws), static_cast<int>(H),
      static_cast<int>(R), static_cast<int>(nt), static_cast<int>(window), scale);
  check(cudaGetLastError(), "partial_kernel launch");
  dim3 grid2(static_cast<unsigned>(B * H), static_cast<unsigned>(R));
  combine_kernel<T, D><<<grid2, D < 32 ? 32 : D, sizeof(float) * chunks, stream>>>(
      reinterpret_cast<const float*>(ws), reinterpret_cast<T*>(out), static_cast<int>(R),
      static_cast<int>(chunks));
  check(cudaGetLastError(), "combine_kernel launch");
}

template <typename T>
void launch_d(int64_t D, uintptr_t q, uintptr_t k, uintptr_t v, int64_t sb, int64_t sh, int64_t ss,
              uintptr_t pos, uintptr_t out, uintptr_t ws, int64_t B, int64_t H, int64_t R, int64_t nt,
              int64_t window, float scale, cudaStream_t st) {
  switch (D) {
    case 16: return launch<T, 16>(q, k, v, sb, sh, ss, pos, out, ws, B, H, R, nt, window, scale, st);
    case 32: return launch<T, 32>(q, k, v, sb, sh, ss, pos, out, ws, B, H, R, nt, window, scale, st);
    case 64: return launch<T, 64>(q, k, v, sb, sh, ss, pos, out, ws, B, H, R, nt, window, scale, st);
    case 128: return launch<T, 128>(q, k, v, sb, sh, ss, pos, out, ws, B, H, R, nt, window, scale, st);
    default: throw std::invalid_argument("decode_attention_cuda: head dim D must be 16, 32, 64 or 128, got " +
                                         std::to_string(D));
  }
}

}  // namespace

int64_t decode_attention_workspace(int64_t B, int64_t H, int64_t R, int64_t D, int64_t window) {
  return B * H * ws_per_head(R, D, (window + kChunk - 1) / kChunk);
}

void decode_attention_cuda_launch(uintptr_t q, uintptr_t k, uintptr_t v, int64_t sb, int64_t sh, int64_t ss,
                                  uintptr_t pos, uintptr_t out, uintptr_t ws, int64_t B, int64_t H, int64_t R,
                                  int64_t T, int64_t D, int64_t window, float scale, int dtype,
                                  uintptr_t stream) {
  if (B < 1 || H < 1 || T < 1) throw std::invalid_argument("decode_attention_cuda: B, H and T must be >= 1");
  if (R < 1 || R > kMaxRows || R % T != 0) {
    throw std::invalid_argument("decode_attention_cuda: R (query rows per KV head) must be a multiple of T in [1, " +
                                std::to_string(kMaxRows) + "], got R=" + std::to_string(R) +
                                ", T=" + std::to_string(T));
  }
  if (window < 1 || window > kMaxWindow) {
    throw std::invalid_argument("decode_attention_cuda: window must be in [1, " + std::to_string(kMaxWindow) +
                                "], got " + std::to_string(window));
  }
  if (ss < D || sh < 1 || sb < 1) throw std::invalid_argument("decode_attention_cuda: bad K/V strides");
  if (B * H > 65535) throw std::invalid_argument("decode_attention_cuda: B*H must be <= 65535");
  if (!q || !k || !v || !pos || !out || !ws) throw std::invalid_argument("decode_attention_cuda: null pointer");
  const int64_t esize = dtype == 0 ? 4 : 2;   // 16-byte vector loads: pointers and strides aligned
  if (q % 16 || k % 16 || v % 16 || (sb * esize) % 16 || (sh * esize) % 16 || (ss * esize) % 16 ||
      (D * esize) % 16) {
    throw std::invalid_argument("decode_attention_cuda: q, k, v and the K/V strides must be 16-byte aligned");
  }
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0: return launch_d<float>(D, q, k, v, sb, sh, ss, pos, out, ws, B, H, R, T, window, scale, st);
    case 1: return launch_d<__nv_bfloat16>(D, q, k, v, sb, sh, ss, pos, out, ws, B, H, R, T, window, scale, st);
    case 2: return launch_d<__half>(D, q, k, v, sb, sh, ss, pos, out, ws, B, H, R, T, window, scale, st);
    default: throw std::invalid_argument("decode_attention_cuda: dtype code must be 0 (float32), 1 (bfloat16) or "
                                         "2 (float16), got " + std::to_string(dtype));
  }
}

}  // namespace asd
