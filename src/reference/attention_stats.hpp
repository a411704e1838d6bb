#pragma once
// Statistics of the dense attention an input produces (docs/metrics.md), in float64 on sampled
// query rows, memory O(threads × N): shared by `attn-bench inspect`, the sink metric, the
// recall metric and the structured generator's tests, so that all of them measure the same way.
#include <cstdint>
#include <vector>

#include "core/mask.hpp"
#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// `count` query rows spread evenly over [first, q_len) with the first and last included; every
// row of the range when count covers it. Sorted, distinct.
std::vector<int64_t> sample_rows(int64_t q_len, int64_t count, int64_t first = 0);

// Float64 dense attention of query row i (query head h, batch b, kv head kv_head) under mask m:
//   p_j = exp(scale·q_i·k_j − lse) for keys the mask allows, 0 elsewhere (p has kv_len entries),
//   o   = Σ_j p_j v_j (v_dim entries) when o and v are given.
// Returns lse (−inf for a fully masked row, then p = 0 and o = 0). The same formula as
// ab::sdpa_reference_row (and tested against it), with vectorised float64 reductions: the
// recall metric evaluates it on 256 rows × 32 heads × 32k keys and must finish in seconds.
double dense_attention_row(const HostTensor& q, const HostTensor& k, const HostTensor* v,
                           const AttnShape& s, const Mask& m, double scale, int kv_head, int b,
                           int h, int64_t i, double* p, double* o);

// The same for `count` query rows of one head at once: row r's probabilities at p + r·kv_len,
// its output at o + r·v_dim, its lse in lse[r]. Each key and value row is read once for the
// whole block: one row at a time streams all of K and V from memory per row (16 MB each at
// 32k keys × d 128), which made the recall metric memory-bound; a block of 16 rows does
// the same arithmetic with 1/16 of the traffic. Memory: count × kv_len doubles.
// Rows per block for dense_attention_rows at a key length: 64 (a 32k-key pass over K and V
// then serves 64 rows; 16 left the recall metric waiting on memory), fewer for long contexts
// so that a block's probabilities stay within 32 MB per thread.
inline int64_t dense_row_block(int64_t kv_len) {
  const int64_t fit = (int64_t{4} << 20) / (kv_len > 0 ? kv_len : 1);
  return fit < 4 ? 4 : fit > 64 ? 64 : fit;
}

void dense_attention_rows(const HostTensor& q, const HostTensor& k, const HostTensor* v,
                          const AttnShape& s, const Mask& m, double scale, int kv_head, int b,
                          int h, const int64_t* rows, int count, double* p, double* o, double* lse);

// Statistics of one row of probabilities p (kv_len entries, 0 where masked) for a query at
// absolute position qpos.
struct RowStats {
  double entropy = 0;     // −Σ p ln p, nats
  double first_mass = 0;  // p of key `sink_token` (the first token by default)
  double local_mass = 0;  // mass on keys within distance < window of qpos (the last `window`
                          // keys of a causal row)
  double top1_mass = 0;   // mass of the ceil(1% · kv_len) largest probabilities (at most the
                          // visible keys)
  double top10_mass = 0;  // ... ceil(10% · kv_len)
  double slash_mass = 0;  // mass on keys whose lag qpos − j is a multiple of `period` (> 0)
  int64_t visible = 0;    // keys the mask allows
};
// `scratch` is reused between calls (grows to kv_len).
RowStats row_stats(const double* p, const AttnShape& s, const Mask& m, int b, int h, int64_t qpos,
                   int64_t window, int64_t sink_token, std::vector<double>& scratch, int64_t period = 0);

struct StatsOptions {
  int64_t rows = 256;        // sampled query rows per head (0 or >= the range: all)
  double row_start = 0.0;    // sample from row floor(row_start · q_len) on
  int64_t window = 128;      // local window, keys
  int64_t sink_token = 0;    // the token whose mass and sink score α are measured
  int64_t period = 0;        // > 0: also the mass on lags that are multiples of it (slash lines)
};

// Per (batch, query head): the means of RowStats over the sampled rows, and the sink score
// α_k of "When Attention Sink Emerges" (arXiv 2410.10781): the mean attention on key k over
// the sampled rows that can see it (the paper averages over all T − k queries t ≥ k).
struct HeadStats {
  int b = 0, h = 0;
  int64_t rows = 0;
  double entropy = 0, first_mass = 0, local_mass = 0, top1_mass = 0, top10_mass = 0;
  double slash_mass = 0;
  double alpha = 0;
  int64_t alpha_rows = 0;  // rows that can see the sink token
};

// Dense attention of the inputs under the problem's causal mask (s.causal), query head h
// reading kv head h / (Hq / Hkv). q (B,Hq,Nq,D), k (B,Hkv,Nkv,D). scale 0 = 1/sqrt(D).
std::vector<HeadStats> attention_stats(const HostTensor& q, const HostTensor& k,
                                       const AttnShape& s, double scale,
                                       const StatsOptions& opts);

// Sink_k^ε: percentage of heads with α_k > ε (the paper's ε = 0.3).
double sink_ratio(const std::vector<HeadStats>& heads, double epsilon);

}  // namespace ab
