// Tiled online-softmax attention in fp32 on the CPU (FlashAttention-2's algorithm, Dao 2023):
// per (batch, head pack, query tile) the scores of one key tile at a time, S = Q·Kᵀ and
// acc += P·V as Eigen products, running max m and sum ℓ per row. Memory per thread is one
// query tile, one score tile and one accumulator: O(tile·(d + dv + kv_cols)), never N×N.

// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers when Eigen's
// packet math is inlined (a false positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <omp.h>

#include <Eigen/Core>

#include "cpu/cpu_common.hpp"
#include "cpu/sdpa.hpp"
#include "cpu/sdpa_flash_simd.hpp"

namespace ab::cpu {
namespace {

struct FlashTile {
  int q_rows;   // query rows per tile (of one head, or of a pack of heads in decode)
  int kv_cols;  // keys per score tile
};

// The one place where sdpa_flash's tile sizes are chosen: 256 query rows ×
// 256 keys for every head dim. Per thread that is a 256×d query tile, a 256×256 score tile
// and a 256×dv accumulator (448 KiB at d = dv = 128), inside the 2 MiB L2.
// Measured 2026-11 on the dev VM (2-core Xeon, AVX-512, shared with other builds, so figures
// are best-of-N and ±10%), fp32, GFLOP/s = 4·B·H·N²·d / time:
//   2 threads, wall clock, B=1 H=8 N=4096 d=128 non-causal (best of 5):
//     256×256 248 (chosen) | 256×512 248, 512×256 245, 512×128 241, 512×512 238,
//     128×256 233, 256×128 231, 128×128 180, 64×256 169   (Eigen GEMM 2048³, 2 threads: 185)
//   1 thread, per CPU-second (robust to the noise), B=1 H=4 N=2048:
//     d=128:          256×256 112 | 256×512 110, 256×128 105, 512×512 104, 512×256 101,
//                     128×256 98, 128×128 97, 64×256 72   (Eigen GEMM 2048³ 1 thread, wall: 85)
//     d=128 causal:   256×256 103 | 256×128 100, 128×256 97, 512×256 95  (N=4096, H=2)
//     d=64:           256×256 95  | 256×512 97, 512×256 102, 128×256 88
//     d=80, dv=64:    256×256 105 | 512×256 115, 128×256 92
// Rejected: 128-row tiles pack the K/V tile once per 128 rows, and Eigen's packing was 21% of
// the time at 128×256 (perf); 512-row tiles win 5-10% at d <= 80 but lose at d=128 causal
// (more diagonal waste) and halve the query tiles available to the threads.
// Re-measured 2026-12 on a 2-core AMD EPYC (Zen 4, AVX-512 + AVX512_BF16, no AMX; shared with
// other builds at load 8-20, so per CPU-second, 1 thread, mean of the last 2 of 3 calls), fp32
// GFLOP per CPU-second | bf16 path:
//   H=2 N=4096 d=128 causal: 256×256 55 | 135 (chosen), 256×512 53 | 135, 512×256 51 | 120,
//                            512×512 48 | 120, 512×128 52 | 117
//   H=4 N=2048 d=64 full:    256×256 58 | 121 (chosen), 512×256 61 | 125, 256×512 56 | 123,
//                            512×512 58 | 115, 512×128 58 | 114
//   H=4 N=2048 d=64 causal:  256×256 50 | 99 (chosen), 256×512 53 | 108, 512×256 46 | 91,
//                            512×512 42 | 92, 512×128 47 | 89
//   H=2 N=2048 d=128 full:   256×256 55 | 142, 128×256 55 | 137, 256×128 58 | 135, 512×256 63 | 146,
//                            256×512 59 | 144, 128×128 57 | 133, 64×256 50 | 142
// so Zen 4 keeps 256×256 for both paths: no tile is better on every shape by more than the
// noise, and 512-row tiles lose 7-12% causal. The bf16 path shares the tile (its K blocks of 16
// keys and V key pairs divide it).
constexpr FlashTile sdpa_flash_tile(int head_dim, int v_dim) {
  (void)head_dim;
  (void)v_dim;
  return {256, 256};
}


// Query rows per key (q_len × group) from which the packed AVX-512 paths are used. Below it the
// call is bound by reading K and V, and a packed path reads them twice (to pack, then packed):
// decode stays on the portable path.
constexpr int64_t kPackedMinRowsPerKey = 64;

// How sdpa_flash splits a problem into work items. Shared with sdpa_flash_executed_fraction
// so that the reported executed fraction is the walk the kernel really does.
struct FlashPlan {
  FlashTile tile{};
  int64_t q_tile_rows = 0;  // rows of one head per query tile
  int64_t n_q_tiles = 0;
  // Query heads that share a kv head are packed into one tile when q_len is short (decode,
  // GQA): the key tile is then read once for the whole pack.
  struct Pack {
    int kv_head;
    int first;  // index into heads
    int count;
  };
  std::vector<int> heads;  // query heads, grouped by kv head
  std::vector<Pack> packs;
  int max_pack = 1;
  // Keys are split into chunks (each a multiple of kv_cols) when there are too few query
  // tiles to keep every thread busy; partial (m, ℓ, acc) are then merged by LSE.
  int64_t kv_chunk = 0;
  int64_t n_chunks = 1;
  int64_t n_units = 0;  // batch × packs × query tiles

  int64_t tile_rows(int pack) const { return int64_t(packs[size_t(pack)].count) * q_tile_rows; }
};

FlashPlan make_plan(const AttnShape& s, const int* head_map, int threads) {
  FlashPlan p;
  p.tile = sdpa_flash_tile(s.head_dim, s.v_dim);
  const int64_t br = p.tile.q_rows, bc = p.tile.kv_cols;
  p.q_tile_rows = std::max<int64_t>(1, std::min(br, s.q_len));
  p.n_q_tiles = (s.q_len + p.q_tile_rows - 1) / p.q_tile_rows;

  if (!head_map && (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0))
    throw std::invalid_argument("sdpa_flash: q_heads must be a multiple of kv_heads");
  std::vector<std::vector<int>> by_kv(size_t(s.kv_heads));
  for (int h = 0; h < s.q_heads; ++h) {
    const int kh = head_map ? head_map[h] : h / (s.q_heads / s.kv_heads);
    if (kh < 0 || kh >= s.kv_heads)
      throw std::invalid_argument("sdpa_flash: query head " + std::to_string(h) +
                                  " maps to kv head " + std::to_string(kh) + " of " +
                                  std::to_string(s.kv_heads));
    by_kv[size_t(kh)].push_back(h);
  }
  const int pack = s.q_len < br ? int(std::max<int64_t>(1, br / std::max<int64_t>(1, s.q_len))) : 1;
  for (int kh = 0; kh < s.kv_heads; ++kh) {
    const auto& hs = by_kv[size_t(kh)];
    for (size_t f = 0; f < hs.size(); f += size_t(pack)) {
      const int cnt = int(std::min(hs.size() - f, size_t(pack)));
      p.packs.push_back({kh, int(p.heads.size() + f), cnt});
      p.max_pack = std::max(p.max_pack, cnt);
    }
    p.heads.insert(p.heads.end(), hs.begin(), hs.end());
  }
  p.n_units = int64_t(s.batch) * int64_t(p.packs.size()) * p.n_q_tiles;

  // Four items per thread keep dynamic scheduling balanced. A chunk of one key tile already
  // makes the merge (R·dv per chunk) ~1/(2·bc·d/dv) of the chunk's work; with 8-tile chunks
  // MQA decode at KV = 1024 ran on one thread, 0.62x MHA's time-ratio (configs/quick.yaml).
  const int64_t want = 4 * int64_t(threads);
  p.kv_chunk = std::max<int64_t>(s.kv_len, 1);
  if (p.n_units > 0 && p.n_units < want && s.kv_len > bc) {
    const int64_t by_len = s.kv_len / bc;
    const int64_t n = std::min((want + p.n_units - 1) / p.n_units, by_len);
    if (n > 1) p.kv_chunk = ((s.kv_len + n - 1) / n + bc - 1) / bc * bc;
  }
  p.n_chunks = std::max<int64_t>(1, (s.kv_len + p.kv_chunk - 1) / p.kv_chunk);
  return p;
}

struct UnitIndex {
  int b;
  int pack;
  int64_t q_tile;
};

// Heavy query tiles first (the last ones under a causal mask), so dynamic scheduling ends
// with small items.
UnitIndex unit_of(const AttnShape& s, const FlashPlan& p, int64_t u) {
  const int64_t per_tile = int64_t(s.batch) * int64_t(p.packs.size());
  UnitIndex x;
  x.q_tile = p.n_q_tiles - 1 - u / per_tile;
  const int64_t r = u % per_tile;
  x.b = int(r / int64_t(p.packs.size()));
  x.pack = int(r % int64_t(p.packs.size()));
  return x;
}

// Class of a (pack, query tile, key tile) block: the union over the pack's heads.
BlockClass classify_tile(const Mask& m, const FlashPlan& p, int b, int pack, int64_t q0,
                         int64_t q1, int64_t k0, int64_t k1) {
  const FlashPlan::Pack& pk = p.packs[size_t(pack)];
  if (!m.extra) return m.classify(b, p.heads[size_t(pk.first)], q0, q1, k0, k1);
  bool any = false, all = true;
  for (int t = 0; t < pk.count; ++t) {
    const BlockClass c = m.classify(b, p.heads[size_t(pk.first + t)], q0, q1, k0, k1);
    any |= c != BlockClass::empty;
    all &= c == BlockClass::full;
  }
  return !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
}

// Key columns [c0, c1) of a partial tile that some query row in [q0, q1) may see, for a mask
// without a predicate (sinks, window, causal limit): the tile is narrowed to them. A sink tile
// then costs its 4 sink columns, not 256: StreamingLLM at N = 4096 with window 2000 ran at
// 0.95x dense causal before (results/cpu/masks.md).
bool narrow_columns(const Mask& m, int64_t kv_len, int64_t q0, int64_t q1, int64_t& c0, int64_t& c1) {
  int64_t lo = c1, hi = c0;
  auto take = [&](int64_t a, int64_t b) {
    a = std::max(a, c0), b = std::min(b, c1);
    if (a < b) lo = std::min(lo, a), hi = std::max(hi, b);
  };
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t lim = m.causal ? q + 1 : kv_len;
    if (m.window > 0) {
      take(0, std::min(lim, m.sinks));
      take(q - m.window + 1, std::min(lim, q + m.window));
    } else {
      take(0, lim);
    }
  }
  if (lo < hi) c0 = lo, c1 = hi;
  return lo < hi;
}

bool bf16_path(FlashPath path) { return path == FlashPath::avx512_bf16 || path == FlashPath::amx_bf16; }

// Pairs per packed Q row and K block on a bf16 path: AMX pads the reduction to whole tile steps.
int64_t packed_pairs(FlashPath path, int64_t n) {
  return path == FlashPath::amx_bf16 ? simd::pad16(simd::pairs(n)) : simd::pairs(n);
}

// Per-thread scratch: one query tile, one score tile, the running state; for the bf16 paths
// also the query tile and the P tile as bf16 pairs. AMX reads and writes whole 32-row blocks:
// its buffers have rows padded to 32, zero-initialised (the padding rows' results are unused).
struct Workspace {
  Eigen::VectorXf q, s, acc, m, l;
  std::vector<uint32_t> qp, pp;
  Workspace(int64_t rows, int d, int dv, int bc, FlashPath path)
      : q(bf16_path(path) ? 0 : rows * d), m(rows), l(rows) {
    const bool amx = path == FlashPath::amx_bf16;
    const int64_t prow = amx ? simd::pad32(rows) : rows;
    // Only AMX reads the padding rows; the other paths need no zeroing (a decode call lasts
    // tens of microseconds, a 256 KiB memset per thread would show).
    s.resize(prow * bc);
    acc.resize(prow * dv);
    if (amx) {
      s.setZero();
      acc.setZero();
    }
    if (!bf16_path(path)) return;
    qp.assign(size_t(prow * packed_pairs(path, d)), 0);
    pp.assign(size_t(prow * packed_pairs(path, bc)), 0);
  }
};

// K and V of every (batch, kv head) in a packed path's layouts (cpu/sdpa_flash_simd.hpp),
// packed once per call: B·Hkv·Nkv·(d + dv) element moves against B·Hq·Nq·Nkv·(d + dv)
// multiply-adds. bf16: pairs in uint32 words; f32: floats.
struct Packed {
  FlashPath path = FlashPath::portable;
  std::unique_ptr<uint32_t[]> k, v;  // bf16 pairs
  std::unique_ptr<float[]> kf, vf;   // f32
  int64_t k_head = 0, v_head = 0;    // elements per (batch, kv head)
  int64_t np = 0;                    // bf16: key pairs per V block (AMX: padded to 16)
};

// One work item: rows of query tile `x` (all heads of its pack) against keys [kb, ke).
// Leaves the unnormalised state (m, ℓ, acc) in w.
// The products run as `pk.path` says: Eigen, or the AVX-512 tiles on the packed K and V.
void run_item(const SdpaArgs& a, const FlashPlan& p, const UnitIndex& x, int64_t kb,
              int64_t ke, float scale, Workspace& w, const Packed& pkd) {
  const bool amx = pkd.path == FlashPath::amx_bf16, bf = pkd.path == FlashPath::avx512_bf16;
  const bool f32 = pkd.path == FlashPath::avx512_f32;
  const AttnShape& s = a.shape;
  const int d = s.head_dim, dv = s.v_dim, bc = p.tile.kv_cols;
  const FlashPlan::Pack& pk = p.packs[size_t(x.pack)];
  const int64_t i0 = x.q_tile * p.q_tile_rows;
  const int64_t i1 = std::min(s.q_len, i0 + p.q_tile_rows);
  const int64_t nr = i1 - i0, rows = nr * pk.count;
  const int64_t off = s.q_offset();
  const float* Q = a.q.host_f32();
  // K (B,Hkv,Nkv,D), V (B,Hkv,Nkv,Dv) of this pack's kv head.
  const float* K = a.k.host_f32() + (int64_t(x.b) * s.kv_heads + pk.kv_head) * s.kv_len * d;
  const float* V = a.v.host_f32() + (int64_t(x.b) * s.kv_heads + pk.kv_head) * s.kv_len * dv;

  // Q tile (rows, D), pre-scaled: row t·nr + r is head heads[first + t], query i0 + r.
  // The bf16 paths pack Q unscaled (scaling before rounding to bf16 would add an error) and
  // apply the scale to S in fp32.
  const int64_t dp = packed_pairs(pkd.path, d);
  for (int t = 0; t < pk.count; ++t) {
    const int h = p.heads[size_t(pk.first + t)];
    const float* src = Q + ((int64_t(x.b) * s.q_heads + h) * s.q_len + i0) * d;
    if (bf || amx) simd::pack_rows_bf16(src, d, nr, d, w.qp.data() + t * nr * dp, dp);
    else MapRM(w.q.data() + t * nr * d, nr, d) = scale * CMapRM(src, nr, d);
  }
  const CMapRM qt(w.q.data(), bf || amx ? 0 : rows, d);
  const int64_t bh = int64_t(x.b) * s.kv_heads + pk.kv_head;
  MapRM acc(w.acc.data(), rows, dv);
  std::fill_n(w.acc.data(), (amx ? simd::pad32(rows) : rows) * dv, 0.0f);  // AMX: the padding rows too
  float* m = w.m.data();
  float* l = w.l.data();
  std::fill(m, m + rows, kNegInf);
  std::fill(l, l + rows, 0.0f);

  // Rows [ra, rb) of a partial tile's scores st (row g is query i0 + g % nr of the pack's head
  // g / nr; st holds row ra first, row stride ld; keys k0 .. k0 + nc): masked entries -inf.
  auto mask_rows = [&](float* st, int64_t ld, int64_t k0, int64_t nc, int64_t ra, int64_t rb) {
    for (int64_t g = ra; g < rb; ++g) {
      const int h = p.heads[size_t(pk.first + g / nr)];
      const int64_t qpos = i0 + g % nr + off;
      float* srow = st + (g - ra) * ld;
      if (a.mask.extra) {
        for (int64_t c = 0; c < nc; ++c)
          if (!a.mask.allows(x.b, h, qpos, k0 + c)) srow[c] = kNegInf;
        continue;
      }
      // Mask::allows without a predicate, as two key intervals per row (a select loop the
      // compiler vectorises): [0, e1) the sinks, [s2, e2) the window, both cut at the causal
      // limit.
      const int64_t hi = a.mask.causal ? qpos + 1 : s.kv_len;
      int64_t e1 = 0, s2 = 0, e2 = hi;
      if (a.mask.window > 0) {
        e1 = std::min(hi, a.mask.sinks);
        s2 = qpos - a.mask.window + 1;
        e2 = std::min(hi, qpos + a.mask.window);
      }
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t j = k0 + c;
        srow[c] = (j < e1 || (j >= s2 && j < e2)) ? srow[c] : kNegInf;
      }
    }
  };

  // One key tile [k0, k1) of class cls: scores, mask, online softmax, P·V. The AMX path
  // computes whole 32-key steps: S has ld ≥ nc columns (those past nc unused, P = 0 there)
  // and is left unscaled (the softmax scales it).
  // Running the four stages per block of 32, 64 or 128 rows, so that a block's S and P stay in
  // L1 between them, was 2-5% slower than whole tiles on the 2-core Xeon (AMX, 2 MiB L2; B=1
  // H=8 N=2048 d=128, BM_sdpa_flash_path). So was a software pipeline that spread one row
  // block's tile products between the softmax rows of the previous block, hoping the core would
  // run AMX and AVX-512 side by side as it does in a synthetic loop: 877 against 964 GFLOP/s.
  // AMX, partial tiles of one head without a predicate (the causal diagonal, window edges):
  // each block of 32 rows runs on the keys its own rows see, in whole 32-key steps, rather
  // than on the tile's union (the diagonal tile's first rows see 1/8 of it).
  auto amx_partial = [&](int64_t k0, int64_t k1) {
    for (int64_t r0 = 0; r0 < rows; r0 += 32) {
      const int64_t nb = std::min<int64_t>(32, rows - r0);
      int64_t c0 = k0, c1 = k1;
      if (!narrow_columns(a.mask, s.kv_len, i0 + r0 + off, i0 + r0 + nb + off, c0, c1)) continue;  // P = 0
      c0 -= (c0 - k0) % 32;
      const int64_t nc = c1 - c0, ld = simd::pad32(nc);
      float* sb = w.s.data() + r0 * ld;
      uint32_t* pb = w.pp.data() + r0 * (ld / 2);
      simd::qk_tile_amx(w.qp.data() + r0 * dp, nb, dp, pkd.k.get() + bh * pkd.k_head + c0 * dp, nc, sb);
      mask_rows(sb, ld, c0, nc, r0, r0 + nb);
      simd::softmax_tile(sb, nb, nc, ld, scale, m + r0, l + r0, acc.data() + r0 * dv, dv, pb, ld / 2);
      simd::pv_tile_amx(pb, nb, ld, pkd.v.get() + bh * pkd.v_head + (c0 / 2) * 16, pkd.np, dv,
                        acc.data() + r0 * dv);
    }
  };

  auto tile = [&](int64_t k0, int64_t k1, BlockClass cls) {
    if (amx && cls == BlockClass::partial && pk.count == 1 && !a.mask.extra) return amx_partial(k0, k1);
    const int64_t nc = k1 - k0, ld = amx ? simd::pad32(nc) : nc;
    const int64_t ldp = amx ? ld / 2 : simd::pairs(nc);  // P's row stride in bf16 pairs
    float* st = w.s.data();
    // S (rows, nc) = (scale·Q) Kᵀ
    if (amx) {
      simd::qk_tile_amx(w.qp.data(), rows, dp, pkd.k.get() + bh * pkd.k_head + k0 * dp, nc, st);
    } else if (bf) {
      simd::qk_tile_bf16(w.qp.data(), rows, int(dp), pkd.k.get() + bh * pkd.k_head + k0 * dp, nc, scale, st);
    } else if (f32) {
      simd::qk_tile_f32(w.q.data(), rows, d, pkd.kf.get() + bh * pkd.k_head + k0 * d, nc, st);
    } else {
      MapRM(st, rows, nc).noalias() = qt * CMapRM(K + k0 * d, nc, d).transpose();
    }
    if (cls == BlockClass::partial) mask_rows(st, ld, k0, nc, 0, rows);
    // Softmax: the packed paths' fused AVX-512 update (P written as bf16 pairs for the bf16
    // paths), the portable path's Eigen one.
    if (amx || bf || f32)
      simd::softmax_tile(st, rows, nc, ld, amx ? scale : 1.0f, m, l, acc.data(), dv,
                         amx || bf ? w.pp.data() : nullptr, ldp);
    else
      online_softmax_tile(st, rows, nc, m, l, acc);
    // acc (rows, Dv) += P V
    if (amx)
      simd::pv_tile_amx(w.pp.data(), rows, ld, pkd.v.get() + bh * pkd.v_head + (k0 / 2) * 16, pkd.np, dv,
                        acc.data());
    else if (bf)
      simd::pv_tile_bf16(w.pp.data(), rows, nc, pkd.v.get() + bh * pkd.v_head + (k0 / 2) * 16, pkd.np, dv,
                         acc.data());
    else if (f32)
      simd::pv_tile_f32(st, rows, nc, pkd.vf.get() + bh * pkd.v_head + k0 * 16, s.kv_len, dv, acc.data());
    else
      acc.noalias() += CMapRM(st, rows, nc) * CMapRM(V + k0 * dv, nc, dv);
  };
  for (int64_t k0 = kb; k0 < ke; k0 += bc) {
    const int64_t k1 = std::min(ke, k0 + bc);
    const BlockClass cls = classify_tile(a.mask, p, x.b, x.pack, i0 + off, i1 + off, k0, k1);
    if (cls == BlockClass::empty) continue;
    if (cls == BlockClass::partial && !a.mask.extra) {
      int64_t c0 = k0, c1 = k1;
      narrow_columns(a.mask, s.kv_len, i0 + off, i1 + off, c0, c1);
      // The packed paths read K in blocks of 16 keys (and bf16 V in key pairs), AMX in steps
      // of 32 keys: start on one (k0 is one); the columns added are masked like any other in
      // a partial tile.
      if (amx) c0 -= (c0 - k0) % 32;
      else if (bf || f32) c0 -= (c0 - k0) % 16;
      tile(c0, c1, cls);
    } else {
      tile(k0, k1, cls);
    }
  }
}

// O row and LSE from a finished state; fully masked rows (ℓ = 0) give O = 0, LSE = -inf.
void write_rows(const SdpaArgs& a, const FlashPlan& p, const UnitIndex& x, const float* acc,
                const float* m, const float* l) {
  const AttnShape& s = a.shape;
  const int dv = s.v_dim;
  const FlashPlan::Pack& pk = p.packs[size_t(x.pack)];
  const int64_t i0 = x.q_tile * p.q_tile_rows;
  const int64_t nr = std::min(s.q_len, i0 + p.q_tile_rows) - i0;
  for (int t = 0; t < pk.count; ++t) {
    const int h = p.heads[size_t(pk.first + t)];
    const int64_t row0 = (int64_t(x.b) * s.q_heads + h) * s.q_len + i0;  // into O, LSE
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t k = t * nr + r;
      Eigen::Map<Eigen::VectorXf> o(a.o.host_f32() + (row0 + r) * dv, dv);
      if (l[k] > 0.0f) {
        o = Eigen::Map<const Eigen::VectorXf>(acc + k * dv, dv) / l[k];
      } else {
        o.setZero();
      }
      if (a.lse.data)
        a.lse.host_f32()[row0 + r] = l[k] > 0.0f ? m[k] + std::log(l[k]) : kNegInf;
    }
  }
}

void check_args(const SdpaArgs& a) {
  auto fail = [](const std::string& why) { throw std::invalid_argument("sdpa_flash: " + why); };
  if (a.transform != ScoreTransform::softmax) fail("softmax scores only");
  check_host_qkv(a.shape, a.q, a.k, a.v, false, fail);
  check_host_out(a.shape, a.o, a.lse, fail);
}

}  // namespace

double sdpa_flash_executed_fraction(const AttnShape& s, const Mask& m, FlashPath path) {
  if (s.q_len <= 0 || s.kv_len <= 0 || s.batch <= 0) return 0.0;
  // The thread count only changes how keys are chunked, always on key-tile boundaries, so
  // the set of executed tiles does not depend on it.
  const FlashPlan p = make_plan(s, nullptr, 1);
  const int64_t off = s.q_offset(), bc = p.tile.kv_cols;
  // Without an extra predicate the class does not depend on (b, h): one unit per query tile.
  const int batches = m.extra ? s.batch : 1;
  const size_t packs = m.extra ? p.packs.size() : 1;
  double executed = 0, total = 0;
  for (int b = 0; b < batches; ++b)
    for (size_t pk = 0; pk < packs; ++pk)
      for (int64_t qt = 0; qt < p.n_q_tiles; ++qt) {
        const int64_t i0 = qt * p.q_tile_rows, i1 = std::min(s.q_len, i0 + p.q_tile_rows);
        const double rows = double(i1 - i0) * (m.extra ? p.packs[pk].count : 1);
        for (int64_t k0 = 0; k0 < s.kv_len; k0 += bc) {
          const int64_t k1 = std::min(s.kv_len, k0 + bc);
          const BlockClass cls = classify_tile(m, p, b, int(pk), i0 + off, i1 + off, k0, k1);
          if (cls == BlockClass::empty) continue;
          int64_t c0 = k0, c1 = k1;  // the columns run_item computes
          if (cls == BlockClass::partial && !m.extra && path == FlashPath::amx_bf16 && p.max_pack == 1) {
            for (int64_t r0 = i0; r0 < i1; r0 += 32) {  // per 32-row block, as run_item's amx_partial
              int64_t b0 = k0, b1 = k1;
              if (narrow_columns(m, s.kv_len, r0 + off, std::min(i1, r0 + 32) + off, b0, b1))
                executed += double(std::min(i1, r0 + 32) - r0) * double(b1 - b0);
            }
            continue;
          }
          if (cls == BlockClass::partial && !m.extra) narrow_columns(m, s.kv_len, i0 + off, i1 + off, c0, c1);
          executed += rows * double(c1 - c0);
        }
        total += rows * double(s.kv_len);
      }
  return executed / total;
}

namespace {

// sdpa_flash's body, its products on the given path.
void flash(const SdpaArgs& a, FlashPath path) {
  check_args(a);
  const AttnShape& s = a.shape;
  if (s.batch == 0 || s.q_len == 0) return;
  const int threads = omp_get_max_threads();
  const FlashPlan p = make_plan(s, a.head_map, threads);
  const float scale = a.effective_scale();
  const int d = s.head_dim, dv = s.v_dim;
  const int64_t max_rows = int64_t(p.max_pack) * p.q_tile_rows;
  const int64_t n_items = p.n_units * p.n_chunks;

  // Split keys: partial states (m, ℓ, acc) per (unit, chunk), merged below.
  const bool split = p.n_chunks > 1;
  std::vector<float> part_acc, part_ml;
  if (split) {
    part_acc.resize(size_t(n_items * max_rows * dv));
    part_ml.resize(size_t(n_items * max_rows * 2));
  }

  // Packed paths: K and V packed per (batch, kv head) in chunks of 256 keys, shared by the
  // threads.
  static_assert(sdpa_flash_tile(128, 128).kv_cols % 16 == 0, "K blocks of 16 keys must tile key tiles");
  Packed pkd;
  pkd.path = path;
  constexpr int64_t kPackKeys = 256;
  const int64_t heads_kv = int64_t(s.batch) * s.kv_heads;
  const int64_t pack_chunks = (s.kv_len + kPackKeys - 1) / kPackKeys;
  const bool packed = path != FlashPath::portable;
  const int64_t dp = packed_pairs(path, d);
  // AMX reads keys in steps of 32: K and V are zero-padded to a multiple of 32 keys.
  const int64_t kv_keys = path == FlashPath::amx_bf16 ? simd::pad32(s.kv_len) : s.kv_len;
  if (bf16_path(path)) {
    pkd.np = simd::pairs(kv_keys);
    pkd.k_head = simd::blocks16(kv_keys) * 16 * dp;
    pkd.v_head = simd::blocks16(dv) * pkd.np * 16;
    pkd.k.reset(new uint32_t[size_t(heads_kv * pkd.k_head)]);
    pkd.v.reset(new uint32_t[size_t(heads_kv * pkd.v_head)]);
  } else if (path == FlashPath::avx512_f32) {
    pkd.k_head = simd::blocks16(s.kv_len) * 16 * d;
    pkd.v_head = simd::blocks16(dv) * 16 * s.kv_len;
    pkd.kf.reset(new float[size_t(heads_kv * pkd.k_head)]);
    pkd.vf.reset(new float[size_t(heads_kv * pkd.v_head)]);
  }
  const int pack_threads = packed ? int(std::min<int64_t>(threads, heads_kv * pack_chunks)) : 1;

#pragma omp parallel num_threads(int(std::max<int64_t>(pack_threads, std::min<int64_t>(threads, n_items))))
  {
    if (packed) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < heads_kv * pack_chunks; ++it) {
        const int64_t bh = it / pack_chunks, j0 = (it % pack_chunks) * kPackKeys;
        const int64_t nj = std::min(kPackKeys, s.kv_len - j0);
        const float* kh = a.k.host_f32() + bh * s.kv_len * d;
        const float* vh = a.v.host_f32() + bh * s.kv_len * dv;
        if (bf16_path(path)) {
          // The last chunk also writes the padding keys (zero) up to kv_keys.
          const bool last = j0 + nj == s.kv_len;
          uint32_t* kdst = pkd.k.get() + bh * pkd.k_head + j0 * dp;
          simd::pack_k_bf16(kh + j0 * d, nj, d, kdst, dp);
          if (last)
            std::fill(kdst + simd::blocks16(nj) * 16 * dp, kdst + (simd::blocks16(kv_keys - j0)) * 16 * dp, 0u);
          simd::pack_v_bf16(vh, s.kv_len, dv, j0 / 2, last ? pkd.np : (j0 + nj) / 2, pkd.v.get() + bh * pkd.v_head,
                            pkd.np);
        } else {
          simd::pack_k_f32(kh + j0 * d, nj, d, pkd.kf.get() + bh * pkd.k_head + j0 * d);
          simd::pack_v_f32(vh, s.kv_len, dv, j0, j0 + nj, pkd.vf.get() + bh * pkd.v_head);
        }
      }
    }
    Workspace w(max_rows, d, dv, p.tile.kv_cols, path);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const UnitIndex x = unit_of(s, p, it / p.n_chunks);
      const int64_t c = it % p.n_chunks;
      const int64_t kb = c * p.kv_chunk, ke = std::min(s.kv_len, kb + p.kv_chunk);
      run_item(a, p, x, kb, ke, scale, w, pkd);
      if (!split) {
        write_rows(a, p, x, w.acc.data(), w.m.data(), w.l.data());
      } else {
        const int64_t rows = p.tile_rows(x.pack);
        std::copy_n(w.acc.data(), rows * dv, part_acc.data() + it * max_rows * dv);
        std::copy_n(w.m.data(), rows, part_ml.data() + it * max_rows * 2);
        std::copy_n(w.l.data(), rows, part_ml.data() + it * max_rows * 2 + max_rows);
      }
    }
    if (split) {
      // Merge by LSE: M = max m_c, ℓ = Σ ℓ_c e^{m_c - M}, acc = Σ acc_c e^{m_c - M}.
#pragma omp for schedule(dynamic, 1)
      for (int64_t u = 0; u < p.n_units; ++u) {
        const UnitIndex x = unit_of(s, p, u);
        const int64_t rows = p.tile_rows(x.pack);
        MapRM acc(w.acc.data(), rows, dv);
        for (int64_t r = 0; r < rows; ++r) {
          float mx = kNegInf;
          for (int64_t c = 0; c < p.n_chunks; ++c)
            mx = std::max(mx, part_ml[size_t((u * p.n_chunks + c) * max_rows * 2 + r)]);
          float l = 0;
          acc.row(r).setZero();
          if (mx != kNegInf) {
            for (int64_t c = 0; c < p.n_chunks; ++c) {
              const int64_t it = u * p.n_chunks + c;
              const float mc = part_ml[size_t(it * max_rows * 2 + r)];
              if (mc == kNegInf) continue;
              const float wgt = std::exp(mc - mx);
              l += wgt * part_ml[size_t(it * max_rows * 2 + max_rows + r)];
              acc.row(r) += wgt * Eigen::Map<const Eigen::RowVectorXf>(
                                      part_acc.data() + (it * max_rows + r) * dv, dv);
            }
          }
          w.m[r] = mx;
          w.l[r] = l;
        }
        write_rows(a, p, x, w.acc.data(), w.m.data(), w.l.data());
      }
    }
  }
}

}  // namespace

bool sdpa_flash_available(FlashPath path) {
  switch (path) {
    case FlashPath::portable: return true;
    case FlashPath::avx512_f32: return simd::avx512_available();
    case FlashPath::avx512_bf16: return simd::bf16_dot_available();
    case FlashPath::amx_bf16: return simd::amx_bf16_available();
  }
  return false;
}

const char* flash_path_name(FlashPath path) {
  switch (path) {
    case FlashPath::portable: return "portable";
    case FlashPath::avx512_f32: return "avx512_f32";
    case FlashPath::avx512_bf16: return "avx512_bf16";
    case FlashPath::amx_bf16: return "amx_bf16";
  }
  return "?";
}

bool sdpa_flash_packing_pays(const AttnShape& s) {
  return int64_t(s.q_len) * (s.kv_heads > 0 ? s.q_heads / s.kv_heads : 1) >= kPackedMinRowsPerKey;
}

void sdpa_flash(const SdpaArgs& a, FlashPath path) {
  if (!sdpa_flash_available(path))
    throw std::invalid_argument(std::string("sdpa_flash: this CPU cannot run the ") + flash_path_name(path) +
                                " path");
  flash(a, path);
}

void sdpa_flash(const SdpaArgs& a) {
  static const bool allowed = [] {
    const char* e = std::getenv("ATTN_CPU_SIMD");
    return !(e && std::string(e) == "off");
  }();
  const bool simd = allowed && simd::avx512_available() && sdpa_flash_packing_pays(a.shape);
  flash(a, simd ? FlashPath::avx512_f32 : FlashPath::portable);
}

}  // namespace ab::cpu
