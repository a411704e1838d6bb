// Elementwise companions of op 1 (elementwise.hpp): grid-stride loops, fp32 arithmetic, one
// rounding to the tensor's type on the store. Memory-bound: each element is read and written
// once; the launches cap the grid at a few waves of 256-thread blocks.
#include <cmath>

#include "cuda/common/device_helpers.cuh"
#include "cuda/elementwise/elementwise.hpp"

namespace ab::cuda {
namespace {

using namespace dev;

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float load(const T* p, int64_t i);
template <>
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
template <>
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }

template <typename T>
__device__ __forceinline__ void store(T* p, int64_t i, float x);
template <>
__device__ __forceinline__ void store(float* p, int64_t i, float x) { p[i] = x; }
template <>
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float x) { p[i] = __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ void store(__half* p, int64_t i, float x) { p[i] = __float2half_rn(x); }

// σ(g) by fast_sigmoid: two MUFU operations, relative error ~1e-7 over the whole range (its
// comment in device_helpers.cuh), far below the output's bf16/fp16 rounding.
template <typename T>
__global__ void __launch_bounds__(kThreads) output_gate_kernel(const OutputGateParams p) {
  T* o = static_cast<T*>(p.o);
  const T* gate = static_cast<const T*>(p.gate);
  const int64_t n = p.rows * p.dv;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const float g = load(gate, p.elementwise ? i : i / p.dv);
    store(o, i, load(o, i) * fast_sigmoid(g));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) scale_heads_kernel(const ScaleHeadsParams p) {
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  const int64_t n = p.units * p.slice;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    store(out, i, load(x, i) * p.factor[(i / p.slice) % p.heads]);
}

// m by expf and an IEEE division (fp32 as the CPU's std::exp form; once per element, the loop
// is memory-bound). −inf on either side: the row keeps o (no sink in view, or only sinks).
template <typename T>
__global__ void __launch_bounds__(kThreads) lse_blend_kernel(const LseBlendParams p) {
  T* o = static_cast<T*>(p.o);
  const T* os = static_cast<const T*>(p.o_s);
  const T* on = static_cast<const T*>(p.o_n);
  const int64_t n = p.rows * p.dv;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / p.dv;
    const float ls = p.lse_s[r], ln = p.lse_n[r];
    if (ls == -INFINITY || ln == -INFINITY) continue;
    const float m = 1.0f / (1.0f + expf(ln - ls));
    const float bm = p.beta * m;
    store(o, i, bm * load(os, i) + (1.0f - bm) * load(on, i));
  }
}

unsigned blocks_for(int64_t n) {
  // Enough blocks for every SM several times over (132 SMs × 8 resident 256-thread blocks),
  // the grid-stride loop covers the rest.
  const int64_t want = (n + kThreads - 1) / kThreads;
  return unsigned(want < 4096 ? (want > 0 ? want : 1) : 4096);
}

// One instantiation per type of each kernel, chosen at run time.
#define AB_EW_LAUNCH(kernel, p, n, stream)                                                  \
  do {                                                                                      \
    if ((n) <= 0) return cudaSuccess;                                                       \
    const unsigned grid = blocks_for(n);                                                    \
    switch ((p).type) {                                                                     \
      case EwType::f32: kernel<float><<<grid, kThreads, 0, stream>>>(p); break;             \
      case EwType::bf16: kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p); break;    \
      case EwType::f16: kernel<__half><<<grid, kThreads, 0, stream>>>(p); break;            \
    }                                                                                       \
    return cudaGetLastError();                                                              \
  } while (0)

}  // namespace

cudaError_t launch_output_gate(const OutputGateParams& p, cudaStream_t stream) {
  if (p.dv <= 0) return cudaSuccess;
  AB_EW_LAUNCH(output_gate_kernel, p, p.rows * p.dv, stream);
}

cudaError_t launch_scale_heads(const ScaleHeadsParams& p, cudaStream_t stream) {
  if (p.heads <= 0 || p.heads > kScaleHeadsMax || p.slice <= 0) return p.units * p.slice > 0 ? cudaErrorInvalidValue : cudaSuccess;
  AB_EW_LAUNCH(scale_heads_kernel, p, p.units * p.slice, stream);
}

cudaError_t launch_lse_blend(const LseBlendParams& p, cudaStream_t stream) {
  if (p.dv <= 0) return cudaSuccess;
  AB_EW_LAUNCH(lse_blend_kernel, p, p.rows * p.dv, stream);
}

#undef AB_EW_LAUNCH

}  // namespace ab::cuda
