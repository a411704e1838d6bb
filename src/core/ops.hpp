#pragma once
// The op vocabulary (docs/architecture.md): plain argument structs that cross from variants into
// backends. Kernels see only pointers, shapes and scalars, never spec types.
#include <cstdint>
#include <string>
#include <vector>

#include "core/mask.hpp"
#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// "Can you run this?" answered by the dispatch that would run it.
struct Support {
  bool ok = true;
  std::string reason;
  static Support yes() { return {}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
};

// Score transforms of op 1 (docs/variants.md §26 S1). With s = scale·q·k, the weight of an
// allowed key is
//   softmax  exp(s - lse)                       rows sum to 1; lse = log Σ exp(s)
//   sigmoid  σ(s + transform_bias)              (Attention-Sink §16a; unnormalised unless
//                                                transform_normalize: w / (Σ w + 1e-8))
//   relu     max(s, 0)                          (TransNormer's ReLA DiagAttention; same
//                                                normalisation option)
//   softcap  softmax of cap·tanh(s / cap)       (LAMA's tanh scores with cap 1; Gemma-2's
//                                                logit soft-capping)
// o = Σ w_j v_j. For every transform but softmax, lse receives log Σ_j w_j, the row's total
// weight before normalisation (-inf when it is 0).
enum class ScoreTransform { softmax, sigmoid, relu, softcap };

// Op 1: dense SDPA with a query-head -> kv-head map and a mask.
//   q   (B, Hq,  Nq,  D)     k (B, Hkv, Nkv, D)     v (B, Hkv, Nkv, Dv)
//   o   (B, Hq,  Nq,  Dv)    lse (B, Hq, Nq, 1), natural log, fp32; may be null
// Query head h reads kv head kv_head_of(h) = h / (Hq / Hkv) unless head_map is given.
struct SdpaArgs {
  AttnShape shape;
  TensorRef q, k, v, o, lse;
  float scale = 0.0f;  // 0 = 1/sqrt(D)
  Mask mask;
  ScoreTransform transform = ScoreTransform::softmax;
  float transform_bias = 0.0f;       // sigmoid: added to scale·q·k
  bool transform_normalize = false;  // sigmoid, relu: divide each row by Σ w + 1e-8
  float softcap = 0.0f;              // softcap: the cap (> 0)
  const int* head_map = nullptr;  // optional, Hq entries, host memory

  int kv_head_of(int h) const { return head_map ? head_map[h] : h / (shape.q_heads / shape.kv_heads); }
  float effective_scale() const;
};

// Sigmoid output gate after op 1 (Gated Attention, arXiv 2505.06708, position G1):
// o <- o ⊙ σ(gate), where gate is (B, Hq, Nq, 1) (headwise) or (B, Hq, Nq, Dv) (elementwise)
// and o is (B, Hq, Nq, Dv).
struct OutputGateArgs {
  TensorRef o, gate;
};

// What is built from op 1's probabilities P (docs/variants.md §26 S1, "optionally P"): softmax
// only, with sdpa's shape, mask, scale and head map.
//   column_mass  column (B, Hq, 1, Nkv) fp32 <- Σ_i p_ij, from sdpa.q, sdpa.k and the rows'
//                LSE in sdpa.lse (from a previous sdpa call); P is never materialised
//   materialize  probs (B, Hq, Nq, Nkv) fp32 <- P from sdpa.q, sdpa.k
//   apply        sdpa.o <- probs · V per head, with sdpa.v (B, Hkv, Nkv, Dv); probs may have
//                batch 1 (one P shared by every batch entry, e.g. positional attention)
enum class ProbsOp { column_mass, materialize, apply };
struct AttnProbsArgs {
  ProbsOp op = ProbsOp::column_mass;
  SdpaArgs sdpa;
  TensorRef probs, column;
};

// Blend of two softmax results over disjoint key sets, o_s over the "sink" keys and o_n over
// the rest (ACT's recalibration, docs/variants.md §25): with the sink part's probability mass
// m = 1 / (1 + exp(ℓn − ℓs)) (fp32),
//   o <- β·m·o_s + (1 − β·m)·o_n        for rows where ℓs and ℓn are both finite;
// other rows keep o (no sink in view, or nothing but sinks). o, o_s, o_n (B, H, N, Dv);
// ℓs, ℓn (B, H, N, 1) fp32.
struct LseBlendArgs {
  TensorRef o, o_s, lse_s, o_n, lse_n;
  float beta = 0.0f;
};

// Per-head scaling of rows: out[b, h, n, :] = x[b, h, n, :] · factor[h] (fp32 products, stored
// at out's dtype). x and out (B, H, N, D) of one shape; they may be the same tensor. factor: H
// entries in host memory (a handful of scalars the variant computes, e.g. LAMA's context
// scales u_h).
struct ScaleHeadsArgs {
  TensorRef x, out;
  const float* factor = nullptr;
};

// Per-(batch, kv head) lists of key indices, CSR-style: the keys of list r = b*Hkv + kvh are
// indices[offsets[r] .. offsets[r+1]). Made by Backend::upload_indices, so they live where the
// backend's kernels read them.
struct IndexLists {
  const int32_t* offsets = nullptr;  // B*Hkv + 1 entries
  const int32_t* indices = nullptr;
  int64_t lists = 0;
  int64_t total = 0;
  bool on_device = false;
};

// Op 3: token-gather decode. Every query row of query head h (batch b) attends to the keys
// of list b*Hkv + kv_head_of(h) only (no causal mask: the list is the mask).
//   q (B, Hq, Nq, D) with small Nq, k/v caches (B, Hkv, Nkv, D/Dv), o (B, Hq, Nq, Dv),
//   lse (B, Hq, Nq, 1) fp32, for merging with other sources by LSE.
struct GatherDecodeArgs {
  AttnShape shape;
  TensorRef q, k, v, o, lse;
  float scale = 0.0f;
  IndexLists lists;
  int kv_head_of(int h) const { return h / (shape.q_heads / shape.kv_heads); }
  float effective_scale() const;
};

}  // namespace ab
