#pragma once
// Op 4, chunked linear attention (core/ops_linear.hpp), on the GPU: Lightning Attention-2's
// block algorithm (Qin et al., arXiv 2401.04658, Algorithm 1) with the feature maps,
// normalisers (none / denominator / MALA), per-head decay and decode states of the op.
// Host-visible interface: plain pointers, shapes and scalars.
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/sdpa_prefill/sdpa_prefill.hpp"  // ElemType

namespace ab::cuda {

// The decay slopes travel inside the kernel parameters (the op hands them over in host
// memory; a copy to the device would be a host transfer inside the timed op).
constexpr int kLinearMaxHeads = 256;
// Rows (and keys) per chunk, and value columns per CTA.
constexpr int kLinearChunk = 64;
constexpr int kLinearDvTile = 64;

// The op's enums as integers (core/ops_linear.hpp order).
enum class LinFeature : int { identity = 0, elu = 1, elu_plus_one = 2, relu = 3, silu = 4 };
enum class LinNormalizer : int { none = 0, denominator = 1, mala = 2 };
enum class LinOutputNorm : int { none = 0, rms = 1, layer = 2 };

// q (B,Hq,Nq,D), k (B,Hkv,Nkv,D), v (B,Hkv,Nkv,Dv) in the element type; o (B,Hq,Nq,Dv) in the
// element type, or o32 (fp32, same shape) when an output norm follows (linear_norm_launch).
// States fp32: kv (B,Hq,D,Dv), ksum (B,Hq,1,D), vsum (B,Hq,1,Dv); null when absent.
struct LinearParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* o32 = nullptr;
  const float* in_kv = nullptr;
  const float* in_ksum = nullptr;
  const float* in_vsum = nullptr;
  float* out_kv = nullptr;
  float* out_ksum = nullptr;
  float* out_vsum = nullptr;
  int batch = 0, q_heads = 0, kv_heads = 0, head_dim = 0, v_dim = 0;
  int64_t q_len = 0, kv_len = 0;
  int64_t first = 0;        // absolute position of query row 0 (P)
  bool causal = true;
  bool build_state = false;  // only the state over [0, P): no queries, no output
  LinFeature feature = LinFeature::identity;
  LinNormalizer normalizer = LinNormalizer::none;
  float mala_scale = 0;     // s (already resolved: > 0)
  float eps = 1e-6f;
  bool decay = false;
  float slopes[kLinearMaxHeads] = {};  // λ_h = exp(-slopes[h])
  ElemType elem = ElemType::bf16;
};

// Why no kernel runs these sizes ("" when one does): head_dim and v_dim in {64, 128}.
std::string linear_refusal(int head_dim, int v_dim);

// The chunked kernel; grid (Dv/64, Hq, B). Returns the launch's error.
cudaError_t linear_attention_launch(const LinearParams& p, cudaStream_t stream);

// Output norm (no affine) of o32 into o: `groups` rows, each `segments` runs of `width`
// contiguous floats, run s of group g at g_base(g) + s·seg_stride, where group g is (outer,
// inner) = (g / inner_count, g % inner_count) at outer·outer_stride + inner·width.
// Scope head: segments 1, inner_count 1, outer_stride width. Scope heads: per (b, position),
// segments Hq, seg_stride Nq·Dv, inner_count Nq, outer_stride Hq·Nq·Dv.
struct LinearNormParams {
  const float* in = nullptr;
  void* out = nullptr;
  int64_t groups = 0, inner_count = 1, outer_stride = 0, seg_stride = 0;
  int segments = 1, width = 0;
  LinOutputNorm norm = LinOutputNorm::rms;
  float eps = 1e-6f;
  ElemType elem = ElemType::bf16;
};
cudaError_t linear_norm_launch(const LinearNormParams& p, cudaStream_t stream);

}  // namespace ab::cuda
