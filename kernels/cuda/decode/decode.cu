// Dense split-KV decode: instantiations, the split plan and the dispatch.
//
// Tile policy (decode_tile_policy in decode.hpp): 64 keys per tile (4 warps × 16 keys), a
// 3-stage cp.async ring at d=128 (96 KB smem, 2 CTAs/SM) and 4 stages at d=64 (64 KB).
//   MEASUREMENTS_DECODE
#include <algorithm>
#include <cmath>

#include "cuda/decode/decode_kernel.cuh"

namespace ab::cuda {

void decode_plan(DecodeParams& p, bool gather, int num_sms) {
  const int bn = decode_tile_policy(p.head_dim).block_n;
  int64_t tiles;
  if (gather) {
    tiles = (p.max_list_len + bn - 1) / bn;
  } else {
    const int64_t q_off = p.kv_len - p.q_len;
    tiles = kv_tile_walk(p.mask, q_off, q_off + p.q_len - 1, bn).count();
  }
  const int64_t rows = int64_t(p.q_heads / p.kv_heads) * p.q_len;
  const int64_t base = int64_t(p.batch) * p.kv_heads * ((rows + 15) / 16);
  if (tiles <= 0) {
    p.splits = 1;
    p.tiles_per_split = 1;
    return;
  }
  // Enough CTAs for every SM's two slots, then the split count (up to 4x that minimum) whose
  // last wave is fullest; each split keeps at least 4 tiles so the merge stays cheap.
  const int64_t slots = 2 * int64_t(std::max(num_sms, 1));
  const int64_t s_min = std::max<int64_t>(1, (slots + base - 1) / base);
  const int64_t s_cap = std::max<int64_t>(1, tiles / 4);
  int64_t best = std::min(s_min, s_cap);
  double best_eff = 0;
  for (int64_t s = std::min(s_min, s_cap); s <= std::min(4 * s_min, s_cap); ++s) {
    const int64_t tps = (tiles + s - 1) / s;
    const int64_t s_real = (tiles + tps - 1) / tps;
    const double waves = double(base * s_real) / double(slots);
    const double eff = waves / std::ceil(waves);
    if (eff > best_eff + 1e-9) {
      best_eff = eff;
      best = s_real;
    }
  }
  p.tiles_per_split = (tiles + best - 1) / best;
  p.splits = int((tiles + p.tiles_per_split - 1) / p.tiles_per_split);
}

size_t decode_workspace_bytes(const DecodeParams& p) {
  const int64_t rows_total = int64_t(p.batch) * p.q_heads * p.q_len;
  return size_t(rows_total) * size_t(p.splits) * (size_t(p.head_dim) + 1) * sizeof(float);
}

DecodeLaunchFn decode_select(ElemType elem, int head_dim, int v_dim, bool gather,
                             PrefillTransform transform, std::string* why) {
  const char* op = gather ? "cuda gather decode" : "cuda decode";
  if (v_dim != head_dim) {
    if (why) *why = std::string(op) + ": v_dim must equal head_dim";
    return nullptr;
  }
  if (head_dim != 64 && head_dim != 128) {
    if (why) *why = std::string(op) + ": head_dim " + std::to_string(head_dim) + " has no kernel (64, 128)";
    return nullptr;
  }
  const bool general = transform != PrefillTransform::softmax;
  if (gather && general) {
    if (why) *why = std::string(op) + ": softmax only";
    return nullptr;
  }
  if (gather) return gather_decode_select(elem, head_dim);
  using namespace decode_detail;
  const bool bf = elem == ElemType::bf16;
  if (general) {
    if (head_dim == 64) return bf ? launch_decode<__nv_bfloat16, 64, false, true> : launch_decode<__half, 64, false, true>;
    return bf ? launch_decode<__nv_bfloat16, 128, false, true> : launch_decode<__half, 128, false, true>;
  }
  if (head_dim == 64) return bf ? launch_decode<__nv_bfloat16, 64, false> : launch_decode<__half, 64, false>;
  return bf ? launch_decode<__nv_bfloat16, 128, false> : launch_decode<__half, 128, false>;
}

}  // namespace ab::cuda
