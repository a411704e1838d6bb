#pragma once
// Op 1's probabilities P on the GPU (core/ops.hpp, AttnProbsArgs; docs/gpu.md "Attention
// probabilities"): softmax only, head map h -> h / group, the structured mask of
// cuda/common/mask_tiles.hpp.
//   column_mass  column[b, h, j] = Σ_i p_ij from q, k and the rows' LSE of an earlier sdpa call;
//                S is recomputed tile by tile on the tensor cores, P never stored
//   materialize  probs (B, Hq, Nq, Nkv) fp32 = P, from q and k (row statistics in a first pass
//                over the key tiles, P written in a second)
//   apply        o = P·V, P fp32 (batch 1 or B), V and o bf16/fp16; P rounded to V's type for
//                the tensor cores
// Host-visible interface: plain params and one dispatch per op answering "which kernel, or why
// none".
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/mask_tiles.hpp"
#include "cuda/sdpa_prefill/sdpa_prefill.hpp"  // ElemType

namespace ab::cuda {

// Query rows per CTA (4 warps × 16 rows) and keys per tile, shared by the three kernels and
// by the host's count of the pairs they compute (probs_executed_pairs).
constexpr int kProbsBlockM = 64;
constexpr int kProbsBlockN = 64;

enum class ProbsKind { column_mass, materialize, apply };

// Contiguous tensors: q (B,Hq,Nq,D), k (B,Hkv,Nkv,D), v (B,Hkv,Nkv,Dv), o (B,Hq,Nq,Dv) of
// `elem`; lse (B,Hq,Nq) fp32 natural log; column (B,Hq,Nkv) fp32; probs (probs_batch,Hq,Nq,Nkv)
// fp32.
struct ProbsParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  const float* lse = nullptr;
  float* column = nullptr;
  float* probs = nullptr;  // materialize: written; apply: read
  int batch = 0, q_heads = 0, kv_heads = 0, head_dim = 0, v_dim = 0;
  int probs_batch = 1;  // apply: 1 (one P for every batch entry) or batch
  int64_t q_len = 0, kv_len = 0;
  float scale_log2 = 0;  // softmax scale × log2(e)
  MaskDesc mask;
  ElemType elem = ElemType::bf16;
};

// Launches on `stream` (column_mass also clears `column` there first); returns the launch's
// error, cudaSuccess when fine.
using ProbsLaunchFn = cudaError_t (*)(const ProbsParams&, cudaStream_t stream);

// The kernel for (op, dtype, head_dim — v_dim for apply), or nullptr with `why` set.
ProbsLaunchFn probs_select(ProbsKind op, ElemType elem, int head_dim, int v_dim, std::string* why);

// (query, key) pairs whose scores the column_mass or materialize kernel computes, summed over
// the query tiles of one (batch, head) (the mask does not depend on them): the tiles of
// kv_tile_walk, rows and keys clipped to the shape. materialize computes each twice.
double probs_executed_pairs(ProbsKind op, const MaskDesc& mask, int64_t q_len, int64_t kv_len);

}  // namespace ab::cuda
