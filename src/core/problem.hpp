#pragma once
// The problem a case measures (what the spec's `problem` block describes) and the attention
// shape a variant actually runs for it (a variant may use fewer query or kv heads).
#include <cstdint>
#include <string>

#include "core/dtype.hpp"

namespace ab {

enum class Mode { prefill, decode };
std::string_view mode_name(Mode m);

// The model-level problem: `heads` is the baseline head count H of the model (the MHA
// baseline); `kv_heads` its KV heads (defaults to H). Decode: q_len query tokens (default 1)
// against a KV cache of kv_len tokens. Multi-step decode (docs/decode.md): `steps` S > 1
// consecutive one-token steps against a growing cache that holds kv_len tokens at the last
// step, so step t (0-based) sees the kv_len - S + t + 1 keys before and at its position.
struct Problem {
  int batch = 1;
  int heads = 8;
  int kv_heads = 8;
  int head_dim = 64;
  int v_dim = 64;
  int64_t q_len = 1024;
  int64_t kv_len = 1024;
  bool causal = false;
  Mode mode = Mode::prefill;
  DType dtype = DType::f32;
  int64_t steps = 1;  // decode steps (> 1 only in decode mode, with q_len 1 and causal)

  // Printable, stable key, e.g. "prefill_b1_h16_kv16_d64_q1024_k1024_causal_f32"; a
  // multi-step decode ends in "_s<steps>" (single-step keys are unchanged).
  std::string key() const;
};

// What a kernel runs: tensors are Q (B,Hq,Nq,D), K (B,Hkv,Nkv,D), V (B,Hkv,Nkv,Dv),
// O (B,Hq,Nq,Dv), LSE (B,Hq,Nq). Causal masks are bottom-right aligned: query i sits at
// absolute position i + (kv_len - q_len), as in FlashAttention 2.1+.
struct AttnShape {
  int batch = 1;
  int q_heads = 8;
  int kv_heads = 8;
  int head_dim = 64;
  int v_dim = 64;
  int64_t q_len = 1024;
  int64_t kv_len = 1024;
  bool causal = false;
  Mode mode = Mode::prefill;
  DType dtype = DType::f32;
  // Multi-step decode: q_len = steps query rows, row t is step t at absolute position
  // kv_len - steps + t, causal (bottom-right), so it sees exactly the keys up to its own.
  // A stateful decode variant runs the rows in order, one step at a time (docs/decode.md).
  int64_t steps = 1;

  int group() const { return q_heads / kv_heads; }
  int64_t q_offset() const { return kv_len - q_len; }
  // Keys a causal query row may see (all keys when not causal).
  int64_t visible_keys(int64_t i) const { return causal ? i + q_offset() + 1 : kv_len; }
  // Number of (query, key) pairs the mask allows for one head (causal-aware).
  double allowed_pairs() const;
};

AttnShape shape_from_problem(const Problem& p);

}  // namespace ab
