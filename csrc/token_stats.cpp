// asd._C.token_stats — per-token statistics of a batch of logit rows in ONE pass over V (docs/algorithm.md#compiled-hot-path).
//
// The readable specification is asd.tokstats.token_stats_ref (torch log_softmax, topk, gather,
// argmax). For a row x[0..V) and the chosen token c, with m = max x and Z = Σ exp(x − m):
//
//   entropy  = −Σ p log p = log Z − T / Z,   T = Σ exp(x − m)·(x − m)      (nats)
//   max prob = 1 / Z
//   margin   = (1 − exp(x₂ − m)) / Z          x₂ = second largest entry (= m on a tie)
//   logprob  = (x[c] − m) − log Z
//   argmax   = first index of m, as float
//
// Online softmax: a row is cut into chunks of kChunk elements that stay in L1. Per chunk, pass A
// reads the chunk from memory and tracks the top-2 values per SIMD lane; pass B re-reads it from
// L1 and sums exp(x − m_chunk) and exp(x − m_chunk)·(x − m_chunk) in float lanes with a
// vectorisable exp. The chunk state (m, x₂, Z, T) is merged into the row state in double:
// rescaling by exp(m_old − m_new), the usual online-softmax update. Rows are split into several
// segments when N is small (N < 4 × threads) so that all cores work on a single row too; the
// segment states are merged the same way. Inputs under 2^20 logits run on one thread (fork/join
// overhead). Memory traffic: each logit is read once from DRAM.
//
// Undefined rows: a row containing NaN or +inf, or made only of −inf, has no softmax: all five
// outputs are NaN (torch's log_softmax gives NaN there too). −inf entries elsewhere are tokens of
// probability 0 (the chosen one gets logprob −inf).
//
// Inputs: logits float32 [N,V] or uint16 [N,V] holding bfloat16 bits (the top half of a float32);
// the last axis contiguous, any row stride. chosen int64 [N] in [0, V). Output float32 [N,5].
// Shapes, dtypes and the range of chosen are checked with the GIL held (std::invalid_argument →
// ValueError naming the argument); the loop runs with the GIL released.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>

#include "asd.h"
#ifdef ASD_WITH_CUDA
#include "token_stats_cuda.h"
#endif

#ifdef ASD_WITH_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace asd {
namespace {

constexpr int kLanes = 16;             // one AVX-512 register of floats (two AVX2 ones)
constexpr int64_t kChunk = 2048;       // 8 KB of float32: pass B re-reads it from L1
constexpr int64_t kMinSegment = 16384;  // smallest piece of a row given to one thread
// Below this many logits (≈ 0.5 ms on one core) one thread does all: the fork/join costs more
// than it saves, and on an oversubscribed machine a descheduled team member stalls the join.
constexpr int64_t kMinParallel = int64_t{1} << 20;
constexpr float kMinExpArg = -87.0f;    // exp(-87) ≈ 1.6e-38 is still a normal float
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Explicit SIMD through GCC/Clang vector extensions: 16 floats, one AVX-512 register (or two AVX2
// ones). Plain per-lane loops were left scalar by GCC 12, which keeps float reductions in order.
typedef float vf __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));
static_assert(sizeof(vf) == kLanes * sizeof(float), "vf holds kLanes floats");

inline float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t as_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline vf as_float(vu u) { return (vf)u; }  // same-size vector cast = bit cast
inline vu as_bits(vf f) { return (vu)f; }
inline vf splat(float f) { return vf{} + f; }

// Input element(s) → float. bfloat16 is the top half of a float32.
inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return as_float(static_cast<uint32_t>(p[i]) << 16); }
inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline vf loadv(const uint16_t* p) {
  vh h;
  std::memcpy(&h, p, sizeof h);
  return as_float(__builtin_convertvector(h, vu) << 16);
}

// exp(d) for d in [kMinExpArg, 0] (the caller takes exp = 0 below that; NaN in → NaN out), for a
// float or a vf: d = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2), exp(r) by the Cephes
// expf polynomial (≈ 1 ulp), 2^n assembled in the exponent bits (unsigned arithmetic: no UB on NaN).
template <typename F>
inline F exp_nonpos(F d) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const F z = d * kLog2e + kRound;
  const F n = z - kRound;
  const auto ni = as_bits(z) - as_bits(kRound);  // n as an integer (two's complement)
  const F r = (d - n * kLn2Hi) - n * kLn2Lo;
  F p = d * 0.0f + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * as_float((ni + 127u) << 23);
}

// Online-softmax state of a piece of a row. z and t are relative to m1:
// z = Σ exp(x − m1), t = Σ exp(x − m1)·(x − m1). An empty or all −inf piece has m1 = −inf, z = 0.
struct State {
  float m1 = kNegInf;  // largest value
  float m2 = kNegInf;  // second largest (= m1 when the largest occurs twice)
  double z = 0.0, t = 0.0;
  int64_t arg = -1;  // first index of m1 within the row
  bool bad = false;  // NaN or +inf seen
};

// Merge b into a; a covers indices before b's (ties in the max keep a's index).
inline void merge(State& a, const State& b) {
  a.bad = a.bad || b.bad;
  const float m2 = std::max(std::min(a.m1, b.m1), std::max(a.m2, b.m2));
  if (b.z > 0.0 && b.m1 > a.m1) {  // b holds the new max: rescale a to it
    if (a.z > 0.0) {
      const double delta = static_cast<double>(a.m1) - b.m1;  // < 0, finite
      const double s = std::exp(delta);
      a.t = b.t + s * (a.t + delta * a.z);
      a.z = b.z + s * a.z;
    } else {
      a.z = b.z;
      a.t = b.t;
    }
    a.m1 = b.m1;
    a.arg = b.arg;
  } else if (b.z > 0.0) {  // a.m1 >= b.m1
    const double delta = static_cast<double>(b.m1) - a.m1;  // <= 0, finite
    const double s = std::exp(delta);
    a.t += s * (b.t + delta * b.z);
    a.z += s * b.z;
  }
  a.m2 = m2;
}

// State of x[begin, end) (indices into the row). Each chunk: pass A (top-2 per lane), pass B
// (exp sums per lane relative to the chunk max), then a merge into the running state.
template <typename T>
State scan_segment(const T* __restrict x, int64_t begin, int64_t end) {
  State st;
  for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const int64_t len = std::min(kChunk, end - c0);
    const T* __restrict xc = x + c0;
    const int64_t vec_len = len - len % kLanes;

    // pass A: top-2 per lane (NaN compares false and is ignored here; pass B catches it)
    vf v1 = splat(kNegInf), v2 = splat(kNegInf);
    for (int64_t i = 0; i < vec_len; i += kLanes) {
      const vf v = loadv(xc + i);
      const vf lo = v > v1 ? v1 : v;
      v2 = lo > v2 ? lo : v2;
      v1 = v > v1 ? v : v1;
    }
    float a1[kLanes], a2[kLanes];
    std::memcpy(a1, &v1, sizeof v1);
    std::memcpy(a2, &v2, sizeof v2);
    for (int64_t i = vec_len; i < len; ++i) {  // tail: lane i − vec_len
      const int l = static_cast<int>(i - vec_len);
      const float v = load(xc, i);
      const float lo = v > a1[l] ? a1[l] : v;
      a2[l] = lo > a2[l] ? lo : a2[l];
      a1[l] = v > a1[l] ? v : a1[l];
    }
    State ch;
    for (int l = 0; l < kLanes; ++l) {
      ch.m2 = std::max(std::min(ch.m1, a1[l]), std::max(ch.m2, a2[l]));
      ch.m1 = std::max(ch.m1, a1[l]);
    }

    if (ch.m1 == kNegInf) {  // all −inf (or NaN): contributes nothing but a possible NaN
      for (int64_t i = 0; i < len; ++i) ch.bad |= std::isnan(load(xc, i));
    } else if (ch.m1 == -kNegInf) {  // +inf: softmax undefined
      ch.bad = true;
    } else {
      // pass B: Z and T relative to the chunk max, float lanes (≤ kChunk / kLanes terms each)
      const float m = ch.m1;
      vf zv = splat(0.0f), tv = splat(0.0f);
      for (int64_t i = 0; i < vec_len; i += kLanes) {
        const vf d0 = loadv(xc + i) - m;
        const vf d = d0 < kMinExpArg ? splat(kMinExpArg) : d0;  // NaN passes through
        const vf e = d0 < kMinExpArg ? splat(0.0f) : exp_nonpos(d);  // exactly 0 for −inf
        zv += e;
        tv += e * d;
      }
      float zs[kLanes], ts[kLanes];
      std::memcpy(zs, &zv, sizeof zv);
      std::memcpy(ts, &tv, sizeof tv);
      for (int64_t i = vec_len; i < len; ++i) {
        const int l = static_cast<int>(i - vec_len);
        const float d0 = load(xc, i) - m;
        const float d = d0 < kMinExpArg ? kMinExpArg : d0;
        const float e = d0 < kMinExpArg ? 0.0f : exp_nonpos(d);
        zs[l] += e;
        ts[l] += e * d;
      }
      double z = 0.0, t = 0.0;
      for (int l = 0; l < kLanes; ++l) {
        z += zs[l];
        t += ts[l];
      }
      ch.z = z;
      ch.t = t;
      ch.bad = !std::isfinite(z) || !std::isfinite(t);
      if (ch.m1 > st.m1) {  // only then is the chunk's first max the row's (so far): find it
        for (int64_t i = 0; i < len; ++i) {
          if (load(xc, i) == m) {
            ch.arg = c0 + i;
            break;
          }
        }
      }
    }
    merge(st, ch);
  }
  return st;
}

// Final formulas (double), see the header. Undefined rows → five NaN.
inline void finalize(const State& st, double x_chosen, float* out) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (st.bad || !(st.z > 0.0)) {
    for (int k = 0; k < 5; ++k) out[k] = nan;
    return;
  }
  const double log_z = std::log(st.z);
  const double p1 = 1.0 / st.z;
  out[0] = static_cast<float>(log_z - st.t / st.z);
  out[1] = static_cast<float>(p1);
  out[2] = static_cast<float>(p1 * (1.0 - std::exp(static_cast<double>(st.m2) - st.m1)));
  out[3] = static_cast<float>((x_chosen - st.m1) - log_z);
  out[4] = static_cast<float>(st.arg);
}

template <typename T>
void token_stats_cpu(const T* logits, int64_t row_stride, int64_t N, int64_t V,
                     const int64_t* chosen, float* out) {
  if (N == 0) return;
  int threads = 1;
#ifdef ASD_WITH_OPENMP
  threads = omp_get_max_threads();
#endif
  const bool parallel = N * V >= kMinParallel && threads > 1;
  if (!parallel) threads = 1;
  // Enough pieces for every thread when N is small, none shorter than kMinSegment (except V itself).
  int64_t segs = 1;
  if (N < 4 * threads) {
    segs = (4 * threads + N - 1) / N;
    segs = std::max<int64_t>(1, std::min<int64_t>(segs, V / kMinSegment));
  }
  if (segs == 1) {
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int64_t n = 0; n < N; ++n) {
      const T* row = logits + n * row_stride;
      const State st = scan_segment(row, 0, V);
      finalize(st, static_cast<double>(load(row, chosen[n])), out + 5 * n);
    }
    return;
  }
  // Split rows: piece length rounded to whole chunks so that segments align with chunks.
  const int64_t piece = ((V + segs - 1) / segs + kChunk - 1) / kChunk * kChunk;
  segs = (V + piece - 1) / piece;
  std::vector<State> parts(static_cast<size_t>(N * segs));
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t task = 0; task < N * segs; ++task) {
    const int64_t n = task / segs, s = task % segs;
    parts[static_cast<size_t>(task)] =
        scan_segment(logits + n * row_stride, s * piece, std::min(V, (s + 1) * piece));
  }
  for (int64_t n = 0; n < N; ++n) {
    State st = parts[static_cast<size_t>(n * segs)];
    for (int64_t s = 1; s < segs; ++s) merge(st, parts[static_cast<size_t>(n * segs + s)]);
    finalize(st, static_cast<double>(load(logits + n * row_stride, chosen[n])), out + 5 * n);
  }
}

// logits: float32 [N,V], or uint16 [N,V] with bfloat16 bits; chosen: int64 [N]. → float32 [N,5]
py::array_t<float> token_stats_py(const py::array& logits, const py::array& chosen) {
  if (logits.ndim() != 2) {
    throw std::invalid_argument("token_stats: logits must be 2-D [N, V], got " +
                                std::to_string(logits.ndim()) + "-D");
  }
  const bool is_f32 = py::isinstance<py::array_t<float>>(logits) && logits.itemsize() == 4;
  const bool is_bf16 = logits.dtype().kind() == 'u' && logits.itemsize() == 2;
  if (!is_f32 && !is_bf16) {
    throw std::invalid_argument("token_stats: logits dtype must be float32 or uint16 (bfloat16 bits), got " +
                                std::string(py::str(logits.dtype())));
  }
  const int64_t N = logits.shape(0), V = logits.shape(1);
  if (V < 1) throw std::invalid_argument("token_stats: logits must have V >= 1 columns, got 0");
  const int64_t item = logits.itemsize();
  if (V > 1 && logits.strides(1) != item) {
    throw std::invalid_argument("token_stats: logits rows must be contiguous (stride of axis 1 = itemsize)");
  }
  if (logits.strides(0) % item != 0 || logits.strides(0) < 0) {
    throw std::invalid_argument("token_stats: logits row stride must be a non-negative multiple of itemsize");
  }
  const int64_t row_stride = logits.strides(0) / item;
  if (chosen.ndim() != 1 || chosen.shape(0) != N) {
    std::string got = "ndim " + std::to_string(chosen.ndim());
    if (chosen.ndim() == 1) got += " length " + std::to_string(chosen.shape(0));
    throw std::invalid_argument("token_stats: chosen must have shape [N] = [" + std::to_string(N) +
                                "] (one token per logits row), got " + got);
  }
  if (chosen.dtype().kind() != 'i' || chosen.itemsize() != 8) {
    throw std::invalid_argument("token_stats: chosen dtype must be int64, got " +
                                std::string(py::str(chosen.dtype())));
  }
  auto ch = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(chosen);
  const int64_t* cp = ch.data();
  for (int64_t n = 0; n < N; ++n) {
    if (cp[n] < 0 || cp[n] >= V) {
      throw std::invalid_argument("token_stats: chosen[" + std::to_string(n) + "] = " + std::to_string(cp[n]) +
                                  " is out of range [0, " + std::to_string(V) + ")");
    }
  }
  py::array_t<float> out({N, static_cast<int64_t>(5)});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (is_f32) {
      token_stats_cpu(static_cast<const float*>(logits.data()), row_stride, N, V, cp, op);
    } else {
      token_stats_cpu(static_cast<const uint16_t*>(logits.data()), row_stride, N, V, cp, op);
    }
  }
  return out;
}

}  // namespace

void register_token_stats(py::module_& m) {
  m.def("token_stats", &token_stats_py, py::arg("logits"), py::arg("chosen"),
        "token_stats(logits[N,V] float32 | uint16 bf16 bits, chosen[N] int64) -> float32 [N,5]:\n"
        "entropy (nats), max prob, top1-top2 prob margin, logprob of chosen, argmax (as float).\n"
        "One pass over V (online softmax), OpenMP over rows (and over pieces of a row when N is small).\n"
        "Rows with NaN or +inf, or all -inf, give NaN in all five columns.");
}

#ifdef ASD_WITH_CUDA
void register_token_stats_cuda(py::module_& m) {
  m.def(
      "token_stats_cuda",
      [](uintptr_t logits, int64_t n, int64_t v, int64_t row_stride, int dtype, uintptr_t chosen, uintptr_t out,
         uintptr_t stream, int device, int64_t pieces, int variant) {
        py::gil_scoped_release release;
        token_stats_cuda_launch(logits, n, v, row_stride, dtype, chosen, out, stream, device, pieces, variant);
      },
      py::arg("logits_ptr"), py::arg("n"), py::arg("v"), py::arg("row_stride"), py::arg("dtype"),
      py::arg("chosen_ptr"), py::arg("out_ptr"), py::arg("stream"), py::arg("device"), py::arg("pieces") = 0,
      py::arg("variant") = 0,
      "token_stats_cuda(logits_ptr, n, v, row_stride, dtype, chosen_ptr, out_ptr, stream, device, pieces=0,\n"
      "variant=0):\n"
      "the CUDA token_stats (csrc/token_stats.cu) on device buffers: dtype 0 float32, 1 bfloat16,\n"
      "2 float16; chosen int64 [n]; out float32 [n,5]; enqueued on `stream` (an integer cudaStream_t).\n"
      "pieces: blocks per row (0 = chosen from n and the SM count); variant: 0 auto, 1 float scan,\n"
      "2 packed scan (bf16/fp16 top-2 on pairs). Use asd.tokstats.token_stats,\n"
      "which checks the tensors.");
}
#endif

}  // namespace asd
