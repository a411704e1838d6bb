#pragma once
// Scoring and selection primitives on the CPU (docs/variants.md §26 S5), written once and composed
// by the selection-based variants (src/variants/sparse_prefill/, the decode variants).
// Matrices are row-major fp32 (rows, cols) unless said otherwise. Every function has a unit
// test against a direct computation in tests/test_sparse_substrates.cpp.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/random.hpp"

namespace ab::cpu {

// ---- pooling and averaging -----------------------------------------------------------------

enum class Pool { mean, max };

// Pools consecutive rows of x (n, d) into blocks of `block` rows: out (ceil(n/block), d).
// A short last block is pooled over the rows it has (its mean divides by its own length).
void pool_rows(const float* x, int64_t n, int d, int64_t block, Pool how, float* out);

// out = (1/count)·Σ_c x[c], elementwise over `elems` floats: the head-averaged proxy of
// ProxyAttn §6 (mean Q and K of a head group), DHSA §18 and VTC-CLS §22.
void average_heads(const float* const* x, int count, int64_t elems, float* out);

// Strided query sampling (ProxyAttn §6 scores one query in each window of `stride`): the last
// row of every window, min(n-1, w·stride + stride - 1) for w = 0 .. ceil(n/stride)-1. The last
// row of a window sees every key the window's other rows see under a causal mask.
std::vector<int64_t> strided_rows(int64_t n, int64_t stride);

// Row-softmax probabilities of query rows against keys 0 .. visible[r]-1 (the rest 0):
//   out (rows, n_keys), out[r][j] = exp(scale·q_r·k_j - lse_r) for j < visible[r].
// q (rows, d), k (n_keys, d). visible == nullptr: every key. A row with visible = 0 is all 0.
void softmax_probs(const float* q, int64_t rows, const int64_t* visible, const float* k,
                   int64_t n_keys, int d, float scale, float* out);

// Row-softmax probabilities pooled over key blocks, without storing them: for each query row r
// and key block n (keys [n·block, min(n_keys, (n+1)·block))),
//   max:  out[r][n] = max_{j in block, j < visible[r]} p_rj
//   mean: out[r][n] = Σ_{j in block, j < visible[r]} p_rj / |block|   (masked keys count as 0)
// with p_rj = exp(scale·q_r·k_j − lse_r) over keys j < visible[r] (nullptr: every key).
// out (rows, ceil(n_keys/block)); blocks no key of which is visible give 0. ProxyAttn §6 max-
// pools its proxy heads' probabilities and average-pools the budget rows'.
void pooled_softmax(const float* q, int64_t rows, const int64_t* visible, const float* k,
                    int64_t n_keys, int d, float scale, int64_t block, Pool how, float* out);

// ---- selectors ------------------------------------------------------------------------------

// Indices of the k largest scores (k clipped to n), in descending score order; ties go to the
// lower index, so the result is deterministic. -inf scores rank last but can be chosen.
void top_k(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out);

// The smallest number c of entries whose c largest values sum to at least gamma·Σ w
// (w >= 0): the cumulative-mass budget of ProxyAttn §6 (γ = 0.95) and of top-p selection.
// gamma <= 0 gives 0; gamma >= 1 gives the count of non-zero entries.
int64_t cumulative_mass_count(const float* w, int64_t n, double gamma);
// The entries themselves (top_k of cumulative_mass_count), descending.
void cumulative_mass_set(const float* w, int64_t n, double gamma, std::vector<int32_t>& out);

// Thresholds relative to a row's running online-softmax statistics (scaled-logit units):
//   AnchorAttention §7: keep x >= m - θ (within θ nats of the running max m)
//   SALE §8: keep x when its relative score exp(x - m)/ℓ >= τ, i.e. x >= m + ln(τ·ℓ)
inline float threshold_below_max(float m, float theta) { return m - theta; }
float threshold_relative_to_sum(float m, float l, float tau);

// ---- int4 fake-quantised QKᵀ (SALE §8) ------------------------------------------------------

// Symmetric int4 quantisation with one scale per block of `block` consecutive rows:
// scale_b = max |x| over the block / 7, q = round(x / scale_b) clamped to [-7, 7]
// (an all-zero block has scale 0 and q = 0). Values are kept one per int8, plus two packed
// copies for the integer dot kernel (AVX-512 VNNI's VPDPBUSD multiplies unsigned by signed
// bytes, four per int32 lane): `left` holds q + 8 in [1, 15] as unsigned bytes, d padded to a
// multiple of 4; `right` holds groups of 16 rows with dims 4t..4t+3 of the 16 rows in one
// 64-byte vector. Built once per tensor, so the scan pays no repacking.
struct Int4Rows {
  int64_t rows = 0;
  int d = 0;
  int64_t block = 0;
  int dq = 0;                 // ceil(d / 4)
  std::vector<int8_t> q;      // (rows, d)
  std::vector<float> scale;   // (ceil(rows / block))
  std::vector<int32_t> qsum;  // Σ_c q[r][c], per row (corrects the +8 shift of `left`)
  std::vector<uint8_t> left;  // (rows, 4·dq)
  int dq_pad = 0;              // quads per 16-row group of `right`: ceil(d / 64)·16
  std::vector<int8_t> right;  // (ceil(rows / 16), dq_pad, 16, 4); quads past dq are 0
  int d_pad = 0;              // ceil(d / 64)·64
  std::vector<int8_t> amx_left;  // (rows + 16, d_pad): q, zero-padded (AMX's left operand)
  std::vector<int32_t> corr;  // (ceil(rows / 16)·16): 8·qsum, 0 past the last row
  std::vector<float> lane_scale;  // (ceil(rows / 16)·16): scale_of(row), 0 past the last row
  float scale_of(int64_t row) const { return scale[std::size_t(row / block)]; }
};
Int4Rows quantize_int4(const float* x, int64_t rows, int d, int64_t block);

// Dequantised scores of rows [q0, q0+nq) of `a` against rows [k0, k0+nk) of `b`:
//   out (nq, nk), out[i][j] = scale_a(i)·scale_b(j)·Σ_c a.q[i][c]·b.q[j][c]
// The integer dot product is exact (int32).
void int4_scores(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t k0,
                 int64_t nk, float* out);
// The integer part only, reduced by row: out[i] = max_{j in [k0, k0+nk)} Σ_c a.q[i][c]·b.q[j][c].
// For a key block that shares one scale (scale_b >= 0), the block's largest estimated score
// of row i is scale_a(i)·scale_b·out[i]: SALE's per-block test needs nothing else.
void int4_row_max(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t k0,
                  int64_t nk, int32_t* out);

// Whether int4_blocks_reaching runs on AMX-INT8 tiles (the CPU has them and the kernel
// granted the tile state): 16×64 by 64×16 int8 products, about 8× VNNI's rate per core.
bool int4_uses_amx();

// SALE's block test in one pass: for rows [q0, q0+nq) of `a` and key blocks kb in [kb0, kb1)
// of `block` rows of `b` (cut at b.rows), keep[kb − kb0] = 1 when some row i and key j of the
// block reach scale_a(i)·scale_b(j)·Σ_c a.q[i][c]·b.q[j][c] >= thr[i], else 0. Vectorised
// compares and no per-element output: the scan of every causal block stays cheap.
void int4_blocks_reaching(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b,
                          int64_t kb0, int64_t kb1, int64_t block, const float* thr, uint8_t* keep);

// ---- chunk boundaries (DHSA §18, training-free stand-in for its trained predictor) --------

// Chunk starts of keys kf (n, d), ascending, with 0 and n. A boundary after position t scores
// 1 − cos(Σ kf[t−w+1 .. t], Σ kf[t+1 .. t+w]) for w−1 <= t < n−w (both windows inside); the
// best candidates are accepted greedily in score order (ties: lower t), skipping any within
// `nms` of an accepted one (DHSA's _select_boundary_candidates), until n_chunks are accepted.
// force > 0 accepts a boundary at `force` first (it counts) and ignores candidates after it.
std::vector<int32_t> cosine_boundaries(const float* kf, int64_t n, int d, int64_t n_chunks, int64_t w,
                                       int64_t nms, int64_t force);
// Its candidate scores alone: score[t] = 1 − cos(Σ kf[t−w+1 .. t], Σ kf[t+1 .. t+w]) for
// w−1 <= t < n−w (double prefix sums), −inf elsewhere; score has n entries.
void window_contrast(const float* kf, int64_t n, int d, int64_t w, float* score);

// ---- angular LSH with Gray-code bucket order (HyperAttention §10) ---------------------------

// The reflected Gray code sequence of `bits` bits, built as insuhan/hyper-attn's
// AngularLSH._unit_hamming_distance_array: a_1 = [0, 1], a_n = [a_{n-1}, reverse(a_{n-1}) +
// 2^{n-1}]; neighbouring entries differ in one bit.
std::vector<int32_t> gray_code_sequence(int bits);

struct AngularLsh {
  int d = 0;
  int bits = 0;
  std::vector<float> proj;   // (d, bits), i.i.d. N(0, 1)
  std::vector<int32_t> gray;  // gray_code_sequence(bits)
};
// Projections drawn from a seed (SeededRandom below).
AngularLsh make_angular_lsh(int d, int bits, uint64_t seed);
// hash(x) = gray[Σ_r [x·proj_r > 0]·2^r] for each row of x (n, d).
void lsh_hash(const AngularLsh& lsh, const float* x, int64_t n, int32_t* out);
// The stable ascending order of keys: rows with equal keys keep their original order.
std::vector<int32_t> stable_order(const int32_t* keys, int64_t n);

// The seeded stream lives in core (core/random.hpp); the kernels use the same one.
using ab::SeededRandom;
using ab::mix_seed;

}  // namespace ab::cpu
