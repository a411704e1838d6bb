#pragma once
// The structured mask (causal, sliding window, sinks) as the CUDA kernels see it: plain
// scalars, usable on the host and the device. The logic mirrors ab::Mask::allows and
// ab::Mask::classify (src/core/mask.*); tests/test_cuda_mask.cpp checks that they agree.
// Positions: query row i has absolute position i + q_offset, q_offset = kv_len - q_len.
#include <cstdint>

#if defined(__CUDACC__)
#define AB_HD __host__ __device__ __forceinline__
#else
#define AB_HD inline
#endif

namespace ab::cuda {

struct MaskDesc {
  int causal = 0;
  int64_t window = 0;  // > 0: non-sink key j visible only when |qpos - j| < window
  int64_t sinks = 0;   // keys [0, sinks) ignore the window (never the causal rule)
  int64_t kv_len = 0;
};

enum TileClass : int { kTileEmpty = 0, kTilePartial = 1, kTileFull = 2 };

AB_HD int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
AB_HD int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

AB_HD bool mask_allows(const MaskDesc& m, int64_t qpos, int64_t j) {
  if (j >= m.kv_len) return false;
  if (m.causal && j > qpos) return false;
  if (m.window > 0 && j >= m.sinks && (qpos - j >= m.window || j - qpos >= m.window)) return false;
  return true;
}

// Block of absolute query positions [q0, q1] (inclusive) x keys [k0, k1) (k0 < kv_len).
// Same answer as Mask::classify's structured part; a block cut by kv_len is partial.
AB_HD int classify_tile(const MaskDesc& m, int64_t q0, int64_t qlast, int64_t k0, int64_t k1) {
  bool any = true, all = true;
  if (k1 > m.kv_len) {
    all = false;
    k1 = m.kv_len;
  }
  const int64_t klast = k1 - 1;
  if (m.causal) {
    if (k0 > qlast) any = false;
    if (klast > q0) all = false;
  }
  if (m.window > 0 && klast >= m.sinks) {
    const int64_t min_dist = imax(imax(0, k0 - qlast), q0 - klast);
    const int64_t max_dist = imax(qlast - k0, klast - q0);
    const bool touches_sinks = k0 < m.sinks;
    if (min_dist >= m.window && !touches_sinks) any = false;
    if (max_dist >= m.window) all = false;
  }
  if (!any) return kTileEmpty;
  return all ? kTileFull : kTilePartial;
}

// The key tiles (of `bn` keys) that rows with absolute positions [q0, qlast] can see, as at
// most two runs: the sink tiles [0, n_sink) and the window/causal run [first, last). Tiles
// outside both are never loaded (FlashAttention's block skipping). `count()` is the total;
// `tile(i)` maps a position in the walk to a tile index.
struct KvTileWalk {
  int64_t n_sink = 0;
  int64_t first = 0, last = 0;
  AB_HD int64_t count() const { return n_sink + (last > first ? last - first : 0); }
  AB_HD int64_t tile(int64_t i) const { return i < n_sink ? i : first + (i - n_sink); }
};

AB_HD KvTileWalk kv_tile_walk(const MaskDesc& m, int64_t q0, int64_t qlast, int bn) {
  KvTileWalk w;
  int64_t hi = m.kv_len;                        // exclusive key bound of the run
  if (m.causal) hi = imin(hi, qlast + 1);
  int64_t lo = 0;
  int64_t sink_hi = 0;
  if (m.window > 0) {
    lo = imax(0, q0 - m.window + 1);
    hi = imin(hi, qlast + m.window);
    sink_hi = imin(m.sinks, m.kv_len);
    if (m.causal) sink_hi = imin(sink_hi, qlast + 1);
  }
  if (hi <= lo) {  // the window run is empty; only sinks (if any) remain
    w.first = w.last = 0;
    w.n_sink = sink_hi > 0 ? (sink_hi + bn - 1) / bn : 0;
    return w;
  }
  int64_t first = lo / bn, last = (hi + bn - 1) / bn;
  const int64_t ns = sink_hi > 0 ? (sink_hi + bn - 1) / bn : 0;
  if (ns >= first) {  // sinks touch or overlap the run: one run from tile 0
    w.n_sink = 0;
    w.first = 0;
    w.last = last > ns ? last : ns;
  } else {
    w.n_sink = ns;
    w.first = first;
    w.last = last;
  }
  return w;
}

}  // namespace ab::cuda
