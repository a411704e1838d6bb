#pragma once
// Op 4 of the vocabulary: chunked linear attention (docs/variants.md §26 S4), serving linear
// attention (Katharopoulos et al.), TransNormer's NormAttention, Lightning Attention-1/-2 and
// MALA. Plain arguments only.
//
// For query row i at absolute position p_i = i + (Nkv - Nq) (bottom-right aligned; or
// i + q_position when set), with
// q̂ = φ(q), k̂ = φ(k), the keys it sees J_i = {j <= p_i} (causal) or all keys, and the decay
// weight w_ij = λ_h^(p_i - j) (1 without decay):
//   num_i = Σ_{j∈J_i} w_ij (q̂_i·k̂_j) v_j      den_i = Σ_{j∈J_i} w_ij (q̂_i·k̂_j)
//   n_i = |J_i|                                 vsum_i = Σ_{j∈J_i} v_j
// and the normaliser gives
//   none         o_i = num_i                                  (TransNormer, Lightning)
//   denominator  o_i = num_i / (den_i + eps)                  (linear attention)
//   mala         z_i = (s / n_i)·den_i,                       (MALA, arXiv 2507.00698 §4)
//                o_i = (1 + 1/z_i)(s / n_i)·num_i - (z_i / n_i)·vsum_i
// then the optional output norm (no affine) over the Dv channels of each row (scope `head`),
// or over the Hq·Dv channels of all query heads at one (batch, position) together (scope
// `heads`: TransNormer's NormAttention normalises the heads' outputs concatenated, the
// reference code's norm over embed_dim after "b h n d -> b n (h d)"):
//   rms    o / sqrt(mean(o²) + eps)     layer  (o - mean(o)) / sqrt(var(o) + eps)
#include <cstdint>
#include <vector>

#include "core/ops.hpp"

namespace ab {

enum class FeatureMap { identity, elu, elu_plus_one, relu, silu };
enum class LinearNormalizer { none, denominator, mala };
enum class OutputNorm { none, rms, layer };
enum class NormScope { head, heads };
// chunked: Lightning-2's block algorithm, O(N·(B·(d+dv) + d·dv)): intra-block masked left
//   product plus a d×dv state carried between blocks (right product).
// quadratic: Lightning-1's tiled masked left product over every key block, O(N²·(d+dv)),
//   never materialising N×N.
enum class LinearAlgorithm { chunked, quadratic };

// The running state of one query head after a prefix of keys (what a decoder carries):
//   kv (B, Hq, D, Dv) = Σ_j λ^(last - j) k̂_jᵀ v_j     ksum (B, Hq, 1, D) = Σ_j λ^(last - j) k̂_j
//   vsum (B, Hq, 1, Dv) = Σ_j v_j                      (count = the prefix length)
// ksum is kept only for the normalisers that use it (zeros with `none`).
struct LinearState {
  TensorRef kv, ksum, vsum;
};

struct LinearAttnArgs {
  // q (B,Hq,Nq,D)  k (B,Hkv,Nkv,D)  v (B,Hkv,Nkv,Dv)  o (B,Hq,Nq,Dv)
  AttnShape shape;  // shape.causal selects causal (prefix sums) or non-causal
  TensorRef q, k, v, o;
  FeatureMap feature_map = FeatureMap::identity;
  LinearNormalizer normalizer = LinearNormalizer::none;
  OutputNorm norm = OutputNorm::none;
  NormScope norm_scope = NormScope::head;
  LinearAlgorithm algorithm = LinearAlgorithm::chunked;
  const float* slopes = nullptr;  // Hq entries, host memory: λ_h = exp(-slope_h); null = no decay
  int block = 64;                 // rows/keys per block (Lightning's BLOCK)
  float mala_scale = 0.0f;        // MALA's s (0 = 1/sqrt(D))
  float eps = 1e-6f;              // denominator and output-norm epsilon

  // Decode (docs/variants.md §3: kv = λ·kv + kᵀv, o = q·kv). With P = first_position(): phase
  // `build_state` writes state_out = the state over the prefix keys [0, P) and computes no
  // output. Phase `attend`: when state_in is set it stands for the prefix keys [0, P) (they
  // are not read from k, v); without it the prefix is read from k, v. When state_out is set
  // it receives the state over the keys [0, P + Nq) (causal) or all keys (not). The
  // quadratic algorithm takes no state.
  enum class Phase { attend, build_state };
  Phase phase = Phase::attend;
  LinearState state_in, state_out;
  // Absolute position of query row 0 (-1: kv_len - q_len, bottom-right). A step of a
  // multi-step decode sets it to its own position with q_len = 1, so that the state stands
  // for the keys before it and the keys after it (later steps' tokens) are not read.
  int64_t q_position = -1;

  int kv_head_of(int h) const { return h / (shape.q_heads / shape.kv_heads); }
  int64_t first_position() const { return q_position >= 0 ? q_position : shape.kv_len - shape.q_len; }
};

// ALiBi slopes for `heads` heads (Press et al., ICLR 2022; lightning-attention's
// _build_slope_tensor): for a power of two n, start = 2^(-8/n) and s_h = start^(h+1); other
// counts take the closest lower power of two and every other slope of twice that. Lightning
// Attention's decay rates λ_h = exp(-s_h) (docs/variants.md §3).
std::vector<float> alibi_slopes(int heads);

// φ of one value (feature_map above).
double feature_map_value(FeatureMap f, double x);

}  // namespace ab
