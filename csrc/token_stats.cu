// asd._C.token_stats_cuda — the CUDA twin of csrc/token_stats.cpp (docs/algorithm.md#compiled-hot-path, docs/gpu.md).
//
// Same statistics, same rules (see token_stats.cpp and asd/tokstats.py): per row of logits
// x[0..V) with chosen token c, m = max x, Z = Σ exp(x − m), T = Σ exp(x − m)·(x − m):
//   entropy = log Z − T/Z, max prob = 1/Z, margin = (1 − exp(x₂ − m))/Z,
//   logprob = (x[c] − m) − log Z, argmax = first index of m (as float);
// a row with NaN or +inf, or only −inf, gives five NaN; an out-of-range chosen gives a NaN logprob.
//
// One pass over V: each thread streams 16-byte vectors (8 bf16/fp16 or 4 fp32) of its row,
// keeping an online-softmax state (top-2 values, first argmax, Z and T relative to its own max;
// T in log2 units so that exp is one ex2.approx). The max/top-2/argmax update is a cold branch,
// taken only when a vector holds a value above the thread's second largest (or a NaN). States are
// merged across the warp (shuffles) and the block (shared memory) with the online-softmax rescale.
// Grid: one block per row when there are enough rows to fill the GPU; otherwise each row is cut
// into `pieces` blocks that write partial states to a stream-ordered workspace, merged by a second
// kernel (one warp per row). Every output element is written by exactly one thread.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "token_stats_cuda.h"

namespace asd {
namespace {

constexpr int kBlock = 512;    // threads per block; 2 blocks per SM
constexpr int kUnroll = 4;     // 16-byte loads in flight per thread before the first use
constexpr int kMinPiece = 4096;  // smallest piece of a row given to one block (elements)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kMinD = -250.0f;  // clamp of (x − m)·log2 e: ex2 gives 0 and 0·d stays 0 for −inf

enum Dtype : int { kF32 = 0, kBF16 = 1, kF16 = 2 };  // = asd.tokstats.DTYPE_*

struct State {  // online-softmax state of a set of entries of one row
  float m1, m2;  // largest, second largest (= m1 on a tie)
  float z, t;    // Σ 2^d, Σ 2^d·d with d = (x − m1)·log2 e; z = 0 when empty or all −inf
  int arg;       // first index of m1 (INT_MAX if none)
  int bad;       // NaN or +inf seen
};

__device__ __forceinline__ float ex2(float d) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  return r;
}
__device__ __forceinline__ float max_nan(float a, float b) {  // NaN if either is NaN (sm_80+)
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

__device__ __forceinline__ State empty_state() {
  State s;
  s.m1 = s.m2 = -INFINITY;
  s.z = s.t = 0.0f;
  s.arg = INT32_MAX;
  s.bad = 0;
  return s;
}

// Merge b into a (any order of indices: ties in the max keep the smaller index).
__device__ __forceinline__ void merge(State& a, const State& b) {
  a.bad |= b.bad;
  const float m2 = fmaxf(fminf(a.m1, b.m1), fmaxf(a.m2, b.m2));
  const float m = fmaxf(a.m1, b.m1);
  float z = 0.0f, t = 0.0f;
  // d is clamped: a difference of two huge values can overflow to −inf, and 0·(−inf) is NaN
  if (a.z > 0.0f) {
    const float d = fmaxf((a.m1 - m) * kLog2e, kMinD);
    const float s = ex2(d);
    z += s * a.z;
    t += s * (a.t + d * a.z);
  }
  if (b.z > 0.0f) {
    const float d = fmaxf((b.m1 - m) * kLog2e, kMinD);
    const float s = ex2(d);
    z += s * b.z;
    t += s * (b.t + d * b.z);
  }
  int arg;
  if (a.m1 > b.m1) arg = a.arg;
  else if (b.m1 > a.m1) arg = b.arg;
  else arg = min(a.arg, b.arg);
  a.m1 = m;
  a.m2 = m2;
  a.z = z;
  a.t = t;
  a.arg = arg;
}

// Entries f[0..W) of the row at indices idx0 + k, in increasing index order. Branch-free top-2
// (a per-thread branch here diverged in almost every warp step: with ~40 vectors per thread some
// lane nearly always meets a new top-2 value). s.m1 propagates NaN (max.NaN), which ends the sums
// for that thread; the row is flagged at the end. s.arg holds the start of the first group in
// which s.m1 was reached; resolve_arg() finds the element at the end.
// s.m1 := b1 (≥ s.m1, or NaN); on a strictly larger max rescale the sums to it and remember the
// group start idx0 for the argmax.
__device__ __forceinline__ void new_max(State& s, float b1, int idx0) {
  if (b1 > s.m1) {
    if (s.z > 0.0f) {
      const float d = fmaxf((s.m1 - b1) * kLog2e, kMinD);
      const float sc = ex2(d);
      s.t = sc * (s.t + d * s.z);
      s.z *= sc;
    }
    s.arg = idx0;
  }
  s.m1 = b1;
}

template <int W>
__device__ __forceinline__ void update(State& s, const float (&f)[W], int idx0) {
  float b1 = s.m1, b2 = s.m2;
#pragma unroll
  for (int k = 0; k < W; ++k) {
    b2 = fmaxf(b2, fminf(b1, f[k]));  // a tie with the max makes it the second value too
    b1 = max_nan(b1, f[k]);
  }
  new_max(s, b1, idx0);
  s.m2 = b2;
  if (!(fabsf(b1) < INFINITY)) return;  // nothing finite yet, or +inf / NaN: the row is undefined
#pragma unroll
  for (int k = 0; k < W; ++k) {
    const float d = fmaxf((f[k] - b1) * kLog2e, kMinD);
    const float e = ex2(d);
    s.z += e;
    s.t = fmaf(e, d, s.t);
  }
}

template <typename T> struct Elem;
template <> struct Elem<float> {
  static constexpr int W = 4;
  __device__ static float one(const float* p) { return *p; }
  __device__ static void unpack(const uint4& r, float (&f)[4]) {
    f[0] = __uint_as_float(r.x); f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z); f[3] = __uint_as_float(r.w);
  }
};
template <> struct Elem<__nv_bfloat16> {
  static constexpr int W = 8;
  __device__ static float one(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  __device__ static void unpack(const uint4& r, float (&f)[8]) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // bf16 = top half of a float32
      f[2 * k] = __uint_as_float(w[k] << 16);
      f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
};
template <> struct Elem<__half> {
  static constexpr int W = 8;
  __device__ static float one(const __half* p) { return __half2float(*p); }
  __device__ static void unpack(const uint4& r, float (&f)[8]) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      __half2 h;
      memcpy(&h, &w[k], 4);
      const float2 v = __half22float2(h);
      f[2 * k] = v.x;
      f[2 * k + 1] = v.y;
    }
  }
};

// Scan policies: how one thread folds its logits into its State.
// FloatScan (all dtypes): widen every logit to float, then update() (float top-2, clamp in float).
template <typename T>
struct FloatScan {
  State s;
  __device__ FloatScan() : s(empty_state()) {}
  __device__ void one(const T* x, int64_t i) {
    const float f[1] = {Elem<T>::one(x + i)};
    update<1>(s, f, static_cast<int>(i));
  }
  __device__ void vec(const uint4& r, int idx0) {
    float f[Elem<T>::W];
    Elem<T>::unpack(r, f);
    update<Elem<T>::W>(s, f, idx0);
  }
  __device__ State finish() { return s; }
};

// PackedScan (bf16, fp16): the top-2 runs on packed pairs (HMNMX2: 1.5 instructions a logit instead
// of 3) and −inf is clamped in the packed domain, which takes the float clamp off the hot path. On
// Hopper min/max run on the half-rate ALU pipe, which bound the float version. The sums still use
// float. The pair lanes (even, odd logits) keep their own top-2, merged in finish().
template <typename T> struct Pair;
template <> struct Pair<__nv_bfloat16> {
  using P = __nv_bfloat162;
  static constexpr float kClamp = -1e30f;    // −inf → this; exp(that − max) = 0 while max > kFastMin
  static constexpr float kFastMin = -1e29f;
  __device__ static P splat(float v) { return __float2bfloat162_rn(v); }
  __device__ static P pair(__nv_bfloat16 lo, __nv_bfloat16 hi) { return __halves2bfloat162(lo, hi); }
  __device__ static float2 f2(P p) { return __bfloat1622float2(p); }
  __device__ static __nv_bfloat16 ninf() { return __float2bfloat16_rn(-INFINITY); }
};
template <> struct Pair<__half> {
  using P = __half2;
  static constexpr float kClamp = -65504.0f;  // the most negative finite half
  static constexpr float kFastMin = -60000.0f;
  __device__ static P splat(float v) { return __float2half2_rn(v); }
  __device__ static P pair(__half lo, __half hi) { return __halves2half2(lo, hi); }
  __device__ static float2 f2(P p) { return __half22float2(p); }
  __device__ static __half ninf() { return __float2half_rn(-INFINITY); }
};

template <typename T>
struct PackedScan {
  using PT = Pair<T>;
  using P = typename PT::P;
  State s;
  P a1, a2;  // per pair lane: largest, second largest
  __device__ PackedScan() : s(empty_state()), a1(PT::splat(-INFINITY)), a2(PT::splat(-INFINITY)) {}

  template <int NP>
  __device__ __forceinline__ void pairs(const P (&w)[NP], int idx0) {
#pragma unroll
    for (int k = 0; k < NP; ++k) {
      a2 = __hmax2(a2, __hmin2(a1, w[k]));
      a1 = __hmax2_nan(a1, w[k]);
    }
    const float2 m = PT::f2(a1);
    const float b1 = max_nan(s.m1, max_nan(m.x, m.y));
    new_max(s, b1, idx0);
    if (b1 > PT::kFastMin && b1 < 1e37f) {  // −inf → kClamp in packed form: no float clamp
      const P lo = PT::splat(PT::kClamp);
#pragma unroll
      for (int k = 0; k < NP; ++k) {
        const float2 f = PT::f2(__hmax2(w[k], lo));
        const float d0 = (f.x - b1) * kLog2e, d1 = (f.y - b1) * kLog2e;
        const float e0 = ex2(d0), e1 = ex2(d1);
        s.z += e0 + e1;
        s.t = fmaf(e0, d0, fmaf(e1, d1, s.t));
      }
    } else if (fabsf(b1) < INFINITY) {  // a huge or very negative max: clamp in float
#pragma unroll
      for (int k = 0; k < NP; ++k) {
        const float2 f = PT::f2(w[k]);
        const float d0 = fmaxf((f.x - b1) * kLog2e, kMinD), d1 = fmaxf((f.y - b1) * kLog2e, kMinD);
        const float e0 = ex2(d0), e1 = ex2(d1);
        s.z += e0 + e1;
        s.t = fmaf(e0, d0, fmaf(e1, d1, s.t));
      }
    }  // else nothing finite yet, or NaN / +inf (the row is undefined)
  }
  __device__ void one(const T* x, int64_t i) {  // a lone logit: paired with −inf
    const P w[1] = {PT::pair(x[i], PT::ninf())};
    pairs<1>(w, static_cast<int>(i));
  }
  __device__ void vec(const uint4& r, int idx0) {
    P w[4];
    memcpy(w, &r, sizeof w);
    pairs<4>(w, idx0);
  }
  __device__ State finish() {
    const float2 h1 = PT::f2(a1), h2 = PT::f2(a2);
    s.m2 = fmaxf(fminf(h1.x, h1.y), fmaxf(h2.x, h2.y));  // s.m1 is already the max of both lanes
    return s;
  }
};

__device__ __forceinline__ State shfl_state(const State& s, int off) {
  State o;
  o.m1 = __shfl_xor_sync(0xffffffffu, s.m1, off);
  o.m2 = __shfl_xor_sync(0xffffffffu, s.m2, off);
  o.z = __shfl_xor_sync(0xffffffffu, s.z, off);
  o.t = __shfl_xor_sync(0xffffffffu, s.t, off);
  o.arg = __shfl_xor_sync(0xffffffffu, s.arg, off);
  o.bad = __shfl_xor_sync(0xffffffffu, s.bad, off);
  return o;
}
__device__ __forceinline__ void warp_reduce(State& s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) merge(s, shfl_state(s, off));
}

// The five outputs of a row from its merged state.
template <typename T>
__device__ void finalize(const State& s, const T* row, int64_t V, int64_t c, float* out) {
  if (s.bad || !(s.z > 0.0f)) {
#pragma unroll
    for (int k = 0; k < 5; ++k) out[k] = NAN;
    return;
  }
  const float log_z = logf(s.z);
  const float p1 = 1.0f / s.z;
  out[0] = log_z - kLn2 * s.t / s.z;
  out[1] = p1;
  out[2] = -p1 * expm1f(s.m2 - s.m1);  // accurate when the top two are close
  out[3] = (c >= 0 && c < V) ? (Elem<T>::one(row + c) - s.m1) - log_z : NAN;
  out[4] = static_cast<float>(s.arg);
}

// grid = N·pieces blocks; block b handles piece b % pieces of row b / pieces.
template <typename T, typename Scan>
__global__ void __launch_bounds__(kBlock, 2)
stats_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t V, int pieces,
             const int64_t* __restrict__ chosen, float* __restrict__ out, State* __restrict__ partial) {
  constexpr int W = Elem<T>::W;
  const int64_t row = blockIdx.x / pieces;
  const int piece = blockIdx.x % pieces;
  const T* x = logits + row * row_stride;
  // elements before the first 16-byte boundary of the row are read one by one
  const uintptr_t addr = reinterpret_cast<uintptr_t>(x);
  int64_t head = static_cast<int64_t>(((16u - (addr & 15u)) & 15u) / sizeof(T));
  if (head > V) head = V;
  const int64_t nvec = (V - head) / W;
  const int64_t body_end = head + nvec * W;
  const int64_t vb = nvec * piece / pieces, ve = nvec * (piece + 1) / pieces;

  Scan scan;
  if (piece == 0) {
    for (int64_t i = threadIdx.x; i < head; i += kBlock) scan.one(x, i);
  }
  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
  for (int64_t j0 = vb + threadIdx.x; j0 < ve; j0 += static_cast<int64_t>(kBlock) * kUnroll) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * kBlock;
      if (j < ve) raw[u] = __ldcs(xv + j);  // streamed once: evict-first
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * kBlock;
      if (j < ve) scan.vec(raw[u], static_cast<int>(head + j * W));
    }
  }
  if (piece == pieces - 1) {
    for (int64_t i = body_end + threadIdx.x; i < V; i += kBlock) scan.one(x, i);
  }
  State s = scan.finish();

  // flag NaN / +inf; turn the group start of the max into its first index (≤ W re-reads, cached)
  s.bad = isnan(s.m1) || s.m1 == INFINITY;
  if (!s.bad && s.m1 > -INFINITY) {
    const int64_t i0 = s.arg;
    for (int k = 0; k < W && i0 + k < V; ++k) {
      if (Elem<T>::one(x + i0 + k) == s.m1) {
        s.arg = static_cast<int>(i0 + k);
        break;
      }
    }
  } else {
    s.arg = INT32_MAX;
    if (s.bad) s.m1 = s.m2 = -INFINITY, s.z = s.t = 0.0f;  // keep the merges free of NaN
  }

  // block reduction: warps, then the first warp over the warps' states
  __shared__ State warp_states[kBlock / 32];
  warp_reduce(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_states[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < kBlock / 32 ? warp_states[lane] : empty_state();
    warp_reduce(s);
    if (lane == 0) {
      if (pieces == 1) finalize(s, x, V, chosen[row], out + 5 * row);
      else partial[blockIdx.x] = s;
    }
  }
}

// One warp per row: merge the row's `pieces` partial states and write its five outputs.
template <typename T>
__global__ void merge_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t N, int64_t V,
                             int pieces, const int64_t* __restrict__ chosen, float* __restrict__ out,
                             const State* __restrict__ partial) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= N) return;  // whole warps leave together
  State s = empty_state();
  for (int p = lane; p < pieces; p += 32) merge(s, partial[row * pieces + p]);
  warp_reduce(s);
  if (lane == 0) finalize(s, logits + row * row_stride, V, chosen[row], out + 5 * row);
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("token_stats_cuda: ") + what + ": " + cudaGetErrorString(err));
  }
}

int sm_count(int device) {
  static int cache[64] = {0};
  if (device < 0 || device >= 64) throw std::invalid_argument("token_stats_cuda: device index out of range");
  if (cache[device] == 0) {
    check(cudaDeviceGetAttribute(&cache[device], cudaDevAttrMultiProcessorCount, device), "SM count");
  }
  return cache[device];
}

template <typename T, typename Scan>
void launch(uintptr_t logits, int64_t N, int64_t V, int64_t row_stride, uintptr_t chosen, uintptr_t out,
            cudaStream_t stream, int device, int64_t pieces_req) {
  const T* x = reinterpret_cast<const T*>(logits);
  const int64_t* c = reinterpret_cast<const int64_t*>(chosen);
  float* o = reinterpret_cast<float*>(out);
  // Fewer rows than SMs: cut rows into pieces, enough for two blocks per SM, none shorter than
  // kMinPiece elements. Otherwise one block per row (a single merge-free kernel).
  const int64_t sms = sm_count(device), want = 2 * sms;
  int64_t pieces = 1;
  if (pieces_req > 0) {
    pieces = std::min<int64_t>(pieces_req, std::max<int64_t>(1, V / kMinPiece));
  } else if (N < sms) {
    pieces = (want + N - 1) / N;
    pieces = std::max<int64_t>(1, std::min<int64_t>(pieces, V / kMinPiece));
  }
  if (N * pieces > INT32_MAX) throw std::invalid_argument("token_stats_cuda: too many rows");
  const unsigned grid = static_cast<unsigned>(N * pieces);
  if (pieces == 1) {
    stats_kernel<T, Scan><<<grid, kBlock, 0, stream>>>(x, row_stride, V, 1, c, o, nullptr);
    check(cudaGetLastError(), "stats_kernel launch");
    return;
  }
  State* ws = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&ws), sizeof(State) * N * pieces, stream), "workspace");
  stats_kernel<T, Scan><<<grid, kBlock, 0, stream>>>(x, row_stride, V, static_cast<int>(pieces), c, o, ws);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    const int threads = 256;
    const unsigned mgrid = static_cast<unsigned>((N * 32 + threads - 1) / threads);
    merge_kernel<T><<<mgrid, threads, 0, stream>>>(x, row_stride, N, V, static_cast<int>(pieces), c, o, ws);
    err = cudaGetLastError();
  }
  cudaFreeAsync(ws, stream);
  check(err, "kernel launch");
}

}  // namespace

void token_stats_cuda_launch(uintptr_t logits, int64_t N, int64_t V, int64_t row_stride, int dtype,
                             uintptr_t chosen, uintptr_t out, uintptr_t stream, int device, int64_t pieces,
                             int variant) {
  if (N < 0) throw std::invalid_argument("token_stats_cuda: N (rows of logits) must be >= 0");
  if (V < 1 || V > INT32_MAX) throw std::invalid_argument("token_stats_cuda: V (columns of logits) must be in [1, 2^31)");
  if (row_stride < V) throw std::invalid_argument("token_stats_cuda: row_stride must be >= V");
  if (dtype != kF32 && dtype != kBF16 && dtype != kF16) {
    throw std::invalid_argument("token_stats_cuda: dtype code must be 0 (float32), 1 (bfloat16) or 2 (float16), got " +
                                std::to_string(dtype));
  }
  if (N == 0) return;
  if (!logits || !chosen || !out) throw std::invalid_argument("token_stats_cuda: null logits, chosen or out pointer");
  const size_t esize = dtype == kF32 ? 4 : 2;
  if (logits % esize != 0) throw std::invalid_argument("token_stats_cuda: logits pointer is not aligned to its dtype");
  check(cudaSetDevice(device), "cudaSetDevice");
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (variant < 0 || variant > 2) {
    throw std::invalid_argument("token_stats_cuda: variant must be 0 (auto), 1 (float scan) or 2 (packed scan)");
  }
  const bool packed = variant != 1;  // float32 always uses the float scan
  if (dtype == kF32) {
    launch<float, FloatScan<float>>(logits, N, V, row_stride, chosen, out, s, device, pieces);
  } else if (dtype == kBF16) {
    if (packed) launch<__nv_bfloat16, PackedScan<__nv_bfloat16>>(logits, N, V, row_stride, chosen, out, s, device, pieces);
    else launch<__nv_bfloat16, FloatScan<__nv_bfloat16>>(logits, N, V, row_stride, chosen, out, s, device, pieces);
  } else {
    if (packed) launch<__half, PackedScan<__half>>(logits, N, V, row_stride, chosen, out, s, device, pieces);
    else launch<__half, FloatScan<__half>>(logits, N, V, row_stride, chosen, out, s, device, pieces);
  }
}

}  // namespace asd
