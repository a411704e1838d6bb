#pragma once
// Warp-level building blocks shared by the CUDA attention kernels (sm_80+ instructions, used on
// sm_90a): cp.async with zero fill, ldmatrix, mma.sync m16n8k16 with fp32 accumulation, and the
// XOR swizzle that makes both the 16-byte cp.async stores and the ldmatrix reads of a tile
// conflict-free.
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ab::cuda::dev {

// Element type traits: packing two fp32 values into the 32-bit register an mma operand takes.
template <typename T>
struct Elem;
template <>
struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t u) {
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162*>(&u);
    return __bfloat1622float2(v);
  }
  static constexpr bool is_bf16 = true;
};
template <>
struct Elem<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t u) {
    __half2 v = *reinterpret_cast<__half2*>(&u);
    return __half22float2(v);
  }
  static constexpr bool is_bf16 = false;
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes = 0 fills the destination with zeros (rows past the
// end of a tensor), so masked keys never feed NaN/Inf garbage into the tensor cores.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A·B + D, m16n8k16, A row-major (4 regs), B column-major (2 regs), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (Elem<T>::is_bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float fast_rcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// σ(x) = 1 / (1 + 2^(-x·log2 e)): two MUFU operations, relative error ~1e-7 over the whole range
// (also for the tiny weights that sigmoid attention's bias −log N produces, where the
// 0.5 + 0.5·tanh.approx form loses everything to cancellation). σ(−inf) = rcp(inf) = 0.
// The IEEE __frcp_rn/expf forms compile to a range check and a called slow path per element:
// measured on the H100 (d 128, bf16, causal, N 4k–16k) they ran the prefill kernel at 0.34× its
// softmax speed.
__device__ __forceinline__ float fast_sigmoid(float x) {
  return fast_rcp(1.f + fast_exp2(-1.4426950408889634f * x));
}

// tanh(y) = 1 − 2 / (e^(2y) + 1), for softcapping; absolute error ~1e-7 (the logits it feeds
// are multiplied by the cap, so absolute accuracy is what matters; tanh.approx's 2^-11 relative
// error times a cap of 30–50 would move the weights by several percent).
__device__ __forceinline__ float fast_tanh(float y) {
  return 1.f - 2.f * fast_rcp(fast_exp2(2.8853900817779268f * y) + 1.f);
}

// Offset in elements of the 16-byte chunk `chunk` of row `row` in a tile whose rows hold D
// elements (D/8 chunks). XOR with the row's low 3 bits spreads the 8 rows one ldmatrix reads
// (same logical chunk) over all 32 banks; rows of 128 or 256 bytes keep the XOR in-row.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

}  // namespace ab::cuda::dev
