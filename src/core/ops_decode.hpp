#pragma once
// Decode-time selection ops (docs/decode.md, "Decode-time ops"): what the sparse decode
// variants (src/variants/sparse_decode/) and the per-step loop (variants/decode_steps.hpp)
// compute on backend tensors, beside the generic ones of core/ops_select.hpp (their LSE merge). A decode step has a handful of query rows and a long cache, so
// these ops are batched over items — one (batch, kv head, step) each — rather than over
// query blocks. Kernels see only these plain structs.
#include <cstdint>

#include "core/ops.hpp"
#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// Row copy along the sequence axis, for every (batch, head):
//   dst[b, h, dst_row + i, :] = src[b, h, src_row + i, :]   for i < rows
//   src (B, H, Ns, C)   dst (B, H, Nd, C); B, H and C must agree.
// The step loop's query gather (row t of Q into a (B, Hq, 1, D) step tensor), its output
// store (the step's O and LSE into row t), and the copy of cached prompt rows.
struct CopyRowsArgs {
  TensorRef src, dst;
  int64_t src_row = 0;
  int64_t dst_row = 0;
  int64_t rows = 1;
};

// Mean over blocks of key rows, per (batch, kv head):
//   out[b, h, out_row + p, :] = mean_{j in [offset + p·block, offset + (p+1)·block)} k[b, h, j, :]
//   for p < blocks; k (B, Hkv, N, D), out (B, Hkv, M, D) with out_row + blocks <= M.
// The block-mean keys that Kinetics (§17) scores as its pages' compressed keys and Landmark
// (§14) as the stand-in for its landmark tokens.
struct BlockMeanKeysArgs {
  TensorRef k, out;
  int64_t offset = 0;
  int64_t block = 1;
  int64_t blocks = 0;
  int64_t out_row = 0;
};

// Symmetric fake quantisation of every row of the last axis (SpAtten §15's MSB pass):
//   out[.., c] = round(x[.., c] / s)·s,  s = max_c |x[.., c]| / (2^(bits−1) − 1)
// (an all-zero row stays 0). x and out have one shape; bits in 2..16.
struct FakeQuantizeArgs {
  TensorRef x, out;
  int bits = 8;
};

// Which query rows an item of decode_scores scores, for the rows m < q_rows of the item:
//   group       the G = Hq/Hkv query heads of kv head kh at rows q_row + m: (G·q_rows, D),
//               head-major (row g·q_rows + m)
//   group_mean  their mean, one row per m: q̄[c] = Σ_g q_g[c]/G, summed in head order
//               (Kinetics §17): (q_rows, D)
enum class DecodeQueryRows { group, group_mean };

// What decode_scores writes per item, with s (R, n) = scale · Q_rows · K_keysᵀ (R = G·q_rows
// or q_rows):
//   raw             out (R, n) = s
//   probs           out (R, n) = softmax_j(s_r·), each row over the item's n keys
//   probs_head_sum  out (n)    = Σ_r softmax_j(s_r·)         (Recycled §13, pool: sum)
//   probs_head_max  out (n)    = max(0, max_r softmax_j(s_r·)) (Recycled §13, pool: max)
//   soft_vote       out (n)   += Σ_r softmax_j(s_r·)  (TokenSelect §12 step 5, Landmark §14);
//                   items sharing an out offset add into one vote in item order, the segment
//                   zeroed before the first of them
//   head_max        out (n)    = max_r s_rj                  (RetrievalAttention §9; over
//                   gathered keys each dot product is summed in plain order c = 0 .. D−1)
//   probs_output_l1 out (R·n + 1): the probs, then Σ_r Σ_c |Σ_j p_rj·v_jc| over the item's
//                   keys' values (SpAtten §15's head importance; the sums in float64, the
//                   total rounded to fp32)
// The float sums and maxima run in the order written (head by head), so that the CPU gives
// the same bits as the scalar loops they replace.
enum class DecodeScoreEpilogue { raw, probs, probs_head_sum, probs_head_max, soft_vote, head_max, probs_output_l1 };

// One item: batch b, kv head kv_head, the query rows q_row .. q_row + q_rows − 1 of q (a
// decode step: one), and n keys of kv head kv_head: the contiguous rows [k0, k0 + n) of k, or —
// when the call has key_lists — the rows key_lists.indices[k0 .. k0 + n). Its result starts
// at float `out` of the output.
struct DecodeScoreItem {
  int32_t b = 0;
  int32_t kv_head = 0;
  int64_t q_row = 0;
  int64_t k0 = 0;
  int64_t n = 0;
  int64_t out = 0;
  int64_t q_rows = 1;
};

// Scores of kv groups' few query rows against a cache range or a gathered key set, every item
// of the call in one op:
//   q (B, Hq, Nq, D)   k (B, Hkv, Nk, D) — the cache or pooled keys (block means)
//   v (B, Hkv, Nk, Dv) — probs_output_l1 only
//   out (1, 1, 1, ≥ Σ item sizes) fp32; items (host memory, like SdpaArgs::head_map)
// key_lists: optional, made by Backend::upload_indices (only its `indices` are read).
struct DecodeScoresArgs {
  AttnShape shape;  // batch, q_heads, kv_heads, head_dim of q and k
  TensorRef q, k, v, out;
  float scale = 1.0f;  // applied as given (TokenSelect and Kinetics score raw dot products)
  DecodeQueryRows rows = DecodeQueryRows::group;
  DecodeScoreEpilogue epilogue = DecodeScoreEpilogue::raw;
  IndexLists key_lists;
  const DecodeScoreItem* items = nullptr;
  int64_t n_items = 0;

  int group() const { return shape.q_heads / shape.kv_heads; }
  int64_t query_rows(const DecodeScoreItem& it) const { return (rows == DecodeQueryRows::group ? group() : 1) * it.q_rows; }
  // Floats an item writes.
  int64_t item_size(const DecodeScoreItem& it) const {
    const bool pooled = epilogue == DecodeScoreEpilogue::probs_head_sum || epilogue == DecodeScoreEpilogue::probs_head_max ||
                        epilogue == DecodeScoreEpilogue::soft_vote || epilogue == DecodeScoreEpilogue::head_max;
    if (epilogue == DecodeScoreEpilogue::probs_output_l1) return query_rows(it) * it.n + 1;
    return pooled ? it.n : query_rows(it) * it.n;
  }
};

}  // namespace ab
