#pragma once
// Scoring and selection ops (docs/architecture.md): the estimation phase of the selection-based
// variants as backend ops on backend tensors. Four ops, composed by the variants:
//   pool    mean/max of rows over head groups or row blocks/segments      (PoolArgs)
//   project rows against a shared projection: random features, LSH codes  (ProjectArgs)
//   scores  scale·Q·Kᵀ over row sets and key ranges with an epilogue        (ScoresArgs)
//   select  top-k / cumulative mass per list into CSR lists in backend memory (SelectArgs)
//   merge   LSE merge of two partial attention results                      (LseMergeArgs)
// Index lists live in IndexBuffers (backend memory, int32), so op 2 (core/ops_sparse.hpp) and
// op 3 read what select wrote without a host round trip. Kernels see only these plain structs
//. Shapes are written (dim0, dim1, dim2, dim3) in the order of TensorRef::shape.
#include <algorithm>  // Backend's default index buffers (core/backend.hpp)
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ops.hpp"
#include "core/tensor.hpp"

namespace ab {

// int32 values in backend memory (host memory on the CPU). Made by Backend::alloc_indices;
// valid until release_all().
struct IndexBuffer {
  int32_t* data = nullptr;
  int64_t size = 0;  // entries
  bool on_device = false;
  TensorRef storage;  // the backend tensor holding it (4-byte elements)
  bool present() const { return data != nullptr; }
};

// sum and normalized_sum: the rows axis of pool only.
enum class Reduce { mean, max, sum, normalized_sum };

// ---- pool -------------------------------------------------------------------------------------
// axis = heads: out (B, Hout, R, D) from in (B, Hin, N, D). Output head g pools the `group`
// logical heads l = g·group + t (t < group) of Hout·group logical heads, logical head l reading
// input head l / (Hout·group / Hin) (so the query heads of a group may read their kv heads).
// Rows: r < R = ceil(N / row_stride) reads input row min(N − 1, r·row_stride + row_stride − 1)
// (row_stride = 1: every row; > 1: the last row of each window, ProxyAttn §6's strided queries).
//   mean: out = (in_0 + in_1 + … + in_{group−1}) · (1 / group)   (fp32, in that order)
//   max:  out = elementwise max
// axis = rows: out (B, H, S, D) from in (B, H, N, D), segment s = rows [lo_s, hi_s):
// with `bounds` (S + 1 ascending entries, bounds[0] >= 0, bounds[S] <= N) the listed segments
// (DHSA §18's chunks), otherwise blocks of `block` rows [s·block, min(rows_end, (s+1)·block)),
// S = ceil(rows_end / block), rows_end = N when 0 (a short last block pools its own rows).
//   mean: Σ rows (fp32, in order) · (1 / len), or with f64_sum Σ in double then float(Σ/len)
//   max:  elementwise max
//   sum:  Σ rows (fp32, in order)
//   normalized_sum: with the segment's column limit L_s = col_limits[s] (<= D), each row r
//         with t_r = Σ_{c < L_s} x_rc > 0 (fp32, in order) adds x_rc / t_r to out_sc for c < L_s
//         (rows in order); out_sc = 0 for c >= L_s. The grouped, row-normalised estimate of
//         SEA §11's compressed attention rows.
// and with sqrt_len the pooled row is multiplied by sqrt(float(len)) (DHSA's length-normalised
// "avgpool_norm" representations).
// axis = window_contrast: out (B, H, N, 1) from in (B, H, N, D), the dissimilarity of the
// `block` rows ending at t and the `block` rows after it, for block − 1 <= t < N − block:
//   out[t] = 1 − a·b / max(1e-30, |a|·|b|),  a = Σ in[t−block+1 .. t],  b = Σ in[t+1 .. t+block]
// (sums and products in double, from prefix sums), and −inf for the other t. A change-point
// score: DHSA §18's training-free boundary candidates on its head-averaged keys.
enum class PoolAxis { heads, rows, window_contrast };
struct PoolArgs {
  PoolAxis axis = PoolAxis::heads;
  Reduce how = Reduce::mean;
  TensorRef in, out;
  int group = 1;           // heads: logical heads per output head
  int64_t row_stride = 1;  // heads: row sampling
  int64_t block = 1;       // rows: block size when bounds is absent
  int64_t rows_end = 0;    // rows: pool rows [0, rows_end) only (0 = N)
  IndexBuffer bounds;      // rows: optional segment bounds
  IndexBuffer col_limits;  // rows, normalized_sum: S entries
  bool f64_sum = false;    // rows, mean: accumulate in double
  bool sqrt_len = false;   // rows: multiply by sqrt(len)
};

// ---- project ----------------------------------------------------------------------------------
// Rows of x (B, H, N, D) against a projection P shared by every (b, h):
//  favor      P (1, 1, F, D), rows ω_f: out (B, H, N, F) with
//               out_nf = exp(u_nf − ½·xs²·|x_n|² − stab) / sqrt(float(F)),  u_nf = (xs·x_n)·ω_f
//             (|x_n|² summed in fp32), stab = max_f u_nf (row_stab) or the max of u over the
//             whole (b, h) slice: FAVOR+ positive random features (Performer), whose dot
//             products estimate exp(q·k/√d) up to the stabilisers; SEA §11's estimator
//             (xs = d^{-1/4}).
//  sign_code  P (1, 1, D, F) (columns are the projections): codes[(b·H + h)·N + n] =
//             code[Σ_f [x_n·P_f > 0]·2^f], code with 2^F entries: angular LSH buckets in
//             Gray-code order (HyperAttention §10).
enum class ProjectEpilogue { favor, sign_code };
struct ProjectArgs {
  ProjectEpilogue epilogue = ProjectEpilogue::favor;
  TensorRef x, proj, out;
  float xs = 1.0f;
  bool row_stab = true;
  IndexBuffer code, codes;
};

// ---- scores -------------------------------------------------------------------------------------
// Logits x_rj = scale·q_r·k_j for query rows r of q (B, Hq, Nr, D) and keys j < n_keys of
// k (B, Hk, Nk, D), query head h reading key head h / (Hq / Hk). Query row r stands for sequence
// position pos(r) = min(positions − 1, r·row_stride + row_stride − 1); under `causal` it sees
// keys j < visible(r) = clamp(pos(r) + 1 + q_offset, 0, n_keys), otherwise every key j < n_keys.
// Only rows [row_begin, row_end) (row_end 0 = Nr) are scored. Epilogues:
//  probs_head_mean   out (B, Hq / head_group, Nr', n_keys): for each group of head_group
//                    consecutive query heads, Σ_h p_rj / head_group accumulated in head order,
//                    p_rj = softmax over visible keys (0 for invisible ones); the group soft
//                    vote of VTC-CLS §22. Nr' = row_end − row_begin, row r at r − row_begin.
//  probs_block_pool  out (B, Hq, n_row_groups, ceil(n_keys / key_block)): per row, p_rj pooled
//                    over key blocks (max: max_j p; mean: Σ_j p / block length, masked keys 0),
//                    then reduced over the rows of each row group — rows whose positions share
//                    pos / row_block — by max (from 0) or by mean (Σ_r pooled / rows in the
//                    group); out row = group − group_base (every scored row's must fall in
//                    out). ProxyAttn §6's A_g (max, max) and budget rows (mean, mean).
//  raw               out (B, Hq, Nr', n_keys) = (scale·q_r)·k_j for every key j < n_keys (no
//                    mask), row r at r − row_begin.
//  keys_reaching     CSR key lists (see below) instead of a dense out: rows form groups of
//                    row_group consecutive rows; list (b, h, g) holds the keys j in
//                    [key_begin, min(n_keys, g·keys_per_group)) for which some row r of the
//                    group has (scale·q_r)·k_j >= thr_r − thr_offset, thr (B, Hq, Nr, 1); a
//                    group with fewer than row_group rows (the last) keeps every candidate
//                    when partial_keeps_all. AnchorAttention §7's stripes (thr = pooled anchor,
//                    thr_offset = θ). Lists ascending, n_groups = ceil(Nr / row_group).
//  raw_normalized_sum  (added for SEA §11) out (B, Hq, ceil(Nr' / row_group), n_keys): the raw
//                    scores x_rc of each group of row_group consecutive scored rows, each row
//                    normalised over the group's column limit L_g = col_limits[g] (<= n_keys)
//                    and summed — pool's rows normalized_sum applied to `raw` without storing
//                    the scores: rows with t_r = Σ_{c < L_g} x_rc > 0 (fp32, in order) add
//                    x_rc / t_r to out_gc for c < L_g (rows in order); out_gc = 0 for c >= L_g.
//                    SEA's grouped estimate of its compressed attention rows.
// The probability epilogues form logits as scale·(Q·Kᵀ); keys_reaching and raw_normalized_sum
// as (scale·Q)·Kᵀ.
enum class ScoresEpilogue { raw, probs_head_mean, probs_block_pool, keys_reaching, raw_normalized_sum };
struct CsrOut {
  IndexBuffer offsets;  // lists + 1 entries
  IndexBuffer entries;  // capacity; the op writes offsets[lists] of them
};
struct ScoresArgs {
  ScoresEpilogue epilogue = ScoresEpilogue::probs_head_mean;
  TensorRef q, k, out;
  float scale = 0.0f;  // must be set (no default 1/sqrt(D): q may be pooled)
  int64_t n_keys = 0;  // 0 = Nk
  int64_t row_begin = 0, row_end = 0;
  bool causal = false;
  int64_t positions = 0;  // sequence length the row positions are cut at (0 = Nr)
  int64_t row_stride = 1;
  int64_t q_offset = 0;   // kv_len − q_len of the problem (bottom-right causal alignment)
  // probs_head_mean
  int head_group = 1;
  // probs_block_pool
  int64_t key_block = 1;
  Reduce key_pool = Reduce::max;
  int64_t row_block = 1;
  Reduce row_reduce = Reduce::max;
  int64_t group_base = 0;
  // keys_reaching
  int64_t row_group = 1;
  int64_t key_begin = 0;
  int64_t keys_per_group = 0;
  TensorRef thr;
  float thr_offset = 0.0f;
  bool partial_keeps_all = true;
  CsrOut lists;
  // ---- raw_normalized_sum (row groups: row_group above) ----
  IndexBuffer col_limits;  // one column limit per row group
};

// ---- select -------------------------------------------------------------------------------------
// Per list, a set of candidate entries ranked by score, written as ascending CSR lists.
// Lists: B·list_heads·n_per; list l = (b·list_heads + lh)·n_per + i reads the score row
// (b, lh / (list_heads / Hs), R == 1 ? 0 : i) of scores (B, Hs, R, C) (a list with no
// candidates reads none, so R may be short of them). Candidate j < n_cand scores
// scores[row][col_map ? col_map[b·col_map_stride + j] : j] (col_map: a column per candidate,
// e.g. a key's chunk in DHSA §18; stride 0: one map for every batch). Per list, from `rules`
// (lists × 8 int32, or the defaults n_cand = C or the map's length, k = `k`, no ranges):
//   {n_cand, k, excl_lo, excl_hi, f0_lo, f0_hi, f1_lo, f1_hi}
// candidates in [excl_lo, excl_hi) score −inf (still rankable: −inf ranks last), and with
// mask_forced so do the forced ranges [f0_lo, f0_hi) ∪ [f1_lo, f1_hi). The list is
//   top_k:            the k best candidates (ties: lower index; NaN as −inf)
//   cumulative_mass:  the c best, c the fewest whose scores (>= 0) sum to gamma·Σ (k ignored)
// ∪ the forced ranges (clipped to >= 0), ascending and de-duplicated. With expand_width > 0
// each selected entry c becomes the entries [c·expand_n / expand_width,
// (c+1)·expand_n / expand_width) (SEA §11's compressed columns to keys).
enum class SelectRule { top_k, cumulative_mass };
struct SelectArgs {
  SelectRule rule = SelectRule::top_k;
  TensorRef scores;
  int batch = 1, list_heads = 1;
  int64_t n_per = 1;
  IndexBuffer col_map;
  int64_t col_map_stride = 0;  // entries per batch in col_map (0: shared, col_map.size)
  IndexBuffer rules;
  int64_t k = 0;
  double gamma = 1.0;
  bool mask_forced = false;
  int64_t expand_width = 0, expand_n = 0;
  CsrOut lists;
  int64_t n_lists() const { return int64_t(batch) * list_heads * n_per; }
};
inline constexpr int kSelectRuleInts = 8;

// ---- merge ------------------------------------------------------------------------------------
// Two partial softmax results over disjoint key sets, (o1, ℓ1) = (o, lse) in place and
// (o2, ℓ2): o (B, H, N, Dv), lse (B, H, N, 1) fp32. Part 2's LSE is first offset,
//   ℓ2' = ℓ2 + row_offset[n] (row_offset (1, 1, N, 1), optional) + offset,
// weighing its keys by e^{offset}, e.g. HyperAttention's ln(n_k/m) for m sampled keys of n_k
// (docs/variants.md §10); then
//   ℓ = log(e^{ℓ1} + e^{ℓ2'}),   o = (o1·e^{ℓ1} + o2·e^{ℓ2'}) / e^{ℓ}
// and a part with ℓ = −inf contributes nothing (a row where both are −inf gets o = 0).
struct LseMergeArgs {
  TensorRef o, lse;    // in/out
  TensorRef o2, lse2;  // read
  TensorRef row_offset;
  float offset = 0.0f;
};

// ---- int4 estimation (SALE §8) ------------------------------------------------------------------
// An int4-quantised copy of x (B, H, N, D): values in [−7, 7] and one fp32 scale per block of
// `block` consecutive rows of each (b, h), scales (B, H, ceil(N / block), 1). `values` is in
// the backend's layout (made by Backend::alloc_int4: the CPU keeps there the packed forms its
// integer dot kernels read), so it is read only by the int4 ops.
struct Int4Tensor {
  Shape4 shape{0, 0, 0, 0};  // of x
  int64_t block = 0;
  TensorRef values, scales;
  bool present() const { return values.data != nullptr; }
};

// quantize_int4: out = int4(x − center), center (B, H, 1, D) optional (subtracted in fp32; SALE's
// smoothed keys k − k̄); per block of rows of each (b, h), on x' = x − center,
//   scale = max |x'| / 7,   q = clamp(nearbyint(x' · (1 / scale)), −7, 7)   (fp32; scale 0: q = 0)
// out.shape must be x's shape.
struct QuantizeInt4Args {
  TensorRef x, center;
  Int4Tensor out;
};

// int4_block_scan: SALE §8's block selection, as CSR key-block lists, one per (b, h, query
// block) of block_q rows: list (b·Hq + h)·ceil(Nq / block_q) + qb. Query head h reads key head
// h / (Hq / Hk). Key block kb is keys [kb·block_k, min(Nk, (kb+1)·block_k)); k4.block must be
// block_k. For query block qb, rows [r0, r0 + nr), with the causal, bottom-right aligned limit
// (row r sees keys j <= r + q_offset):
//   lb1 = (r0 + nr − 1 + q_offset) / block_k,   lb0 = max(0, r0 + q_offset − local_window) / block_k
//   list = {0} ∪ kept ∪ [max(1, lb0), lb1]   (ascending)
// where kept ⊂ [1, lb0) is empty unless lb0 > 1, and then:
//   1. exact row statistics (m_r, ℓ_r) of the logits x_rj = scale·(q_r·k_j) over the sink keys
//      [0, min(Nk, block_k)) and then the local keys [lb0·block_k, min(Nk, r0 + nr + q_offset)),
//      each key only where the row sees it; per chunk of keys (fp32, keys in order):
//        m' = max(m, max_j x_rj),  ℓ' = ℓ·e^{m − m'} + Σ_j e^{x_rj − m'}   (m' = −inf: unchanged)
//   2. thresholds t_r = (m_r + ln(τ·ℓ_r)) / scale − q_r·k_center (Σ_c in fp32, in order; no term
//      without k_center), where m + ln(τ·ℓ) is −inf for τ <= 0 and +inf for ℓ = 0 (τ > 0)
//   3. key block kb in [1, lb0) is kept when some row r and key j of the block reach the int4
//      estimate s_q(r)·s_k(j)·Σ_c q̃_rc·k̃_jc >= t_r (q̃, k̃, s_q, s_k of q4 and k4: the estimate
//      of scale·(q·k) is scale·(estimate + q·k_center), so the test is x̃ >= m + ln(τ·ℓ)).
//   The blocks are scanned in segments of `segment` blocks from block 1; with refresh, after a
//   segment that kept blocks, the statistics of step 1 are continued over each kept block's
//   keys (ascending) and the thresholds recomputed before the next segment.
// entries must hold the lists' total (at most Σ_qb (lb1 + 1) per (b, h)).
struct Int4BlockScanArgs {
  TensorRef q, k;       // fp32 (B, Hq, Nq, D), (B, Hk, Nk, D): the exact statistics
  Int4Tensor q4, k4;    // int4 copies of q and of k − k_center
  TensorRef k_center;   // (B, Hk, 1, D), optional
  float scale = 0.0f;   // must be set
  float tau = 0.0f;
  int64_t block_q = 1, block_k = 1;
  int64_t local_window = 0;
  int64_t segment = 1;  // key blocks per scan segment
  bool refresh = false;
  int64_t q_offset = 0;  // Nk − Nq of the problem
  CsrOut lists;
};

}  // namespace ab
