#pragma once
// The op vocabulary (DESIGN.md §4): plain argument structs that cross from variants into
// backends. Kernels see only pointers, shapes and scalars (STYLE.md §5), never spec types.
#include <cstdint>
#include <string>
#include <vector>

#include "core/mask.hpp"
#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// "Can you run this?" answered by the dispatch that would run it (STYLE.md §2).
struct Support {
  bool ok = true;
  std::string reason;
  static Support yes() { return {}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
};

enum class ScoreTransform { softmax };

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
  const int* head_map = nullptr;  // optional, Hq entries, host memory

  int kv_head_of(int h) const { return head_map ? head_map[h] : h / (shape.q_heads / shape.kv_heads); }
  float effective_scale() const;
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
