#pragma once
// Elementwise companions of op 1 on the GPU (core/ops.hpp): the sigmoid output gate, the
// per-head row scaling and ACT's blend of two softmax results by their LSE. Memory-bound
// grid-stride loops in fp32 arithmetic on bf16, fp16 or fp32 tensors. Host-visible interface:
// plain params; each launch returns its error.
#include <cstdint>

#include <cuda_runtime_api.h>

namespace ab::cuda {

enum class EwType { f32, bf16, f16 };

// o (rows, dv) <- o ⊙ σ(gate); gate (rows, dv) elementwise or (rows, 1) headwise. o and gate
// of one type.
struct OutputGateParams {
  void* o = nullptr;
  const void* gate = nullptr;
  int64_t rows = 0, dv = 0;
  bool elementwise = true;
  EwType type = EwType::bf16;
};
cudaError_t launch_output_gate(const OutputGateParams& p, cudaStream_t stream);

// out[b, h, :, :] = x[b, h, :, :] · factor[h]: x and out (B, H, N, D) of one type, may alias.
// The H factors travel by value in the kernel's parameters (no host-to-device copy).
constexpr int kScaleHeadsMax = 512;  // 2 KiB of factors: the parameters stay under 4 KiB
struct ScaleHeadsParams {
  const void* x = nullptr;
  void* out = nullptr;
  int64_t units = 0;  // B·H
  int64_t slice = 0;  // N·D
  int heads = 0;
  EwType type = EwType::bf16;
  float factor[kScaleHeadsMax];
};
cudaError_t launch_scale_heads(const ScaleHeadsParams& p, cudaStream_t stream);

// Rows with both LSEs finite: m = 1 / (1 + exp(lse_n − lse_s)), o = β·m·o_s + (1 − β·m)·o_n;
// other rows keep o. o, o_s, o_n (rows, dv) of one type (o may alias o_s or o_n); LSEs fp32.
struct LseBlendParams {
  void* o = nullptr;
  const void* o_s = nullptr;
  const void* o_n = nullptr;
  const float* lse_s = nullptr;
  const float* lse_n = nullptr;
  int64_t rows = 0, dv = 0;
  float beta = 0;
  EwType type = EwType::bf16;
};
cudaError_t launch_lse_blend(const LseBlendParams& p, cudaStream_t stream);

}  // namespace ab::cuda
