#pragma once
// Op 2 of the vocabulary (docs/architecture.md; docs/variants.md §26 S2): sparse prefill SDPA over
// per-(batch, head, query block) key-block lists or per-(batch, head, query group) key-index
// lists, with a resumable online-softmax state, so that an exact sink/local pass can be
// continued over the keys a selection rule picked afterwards (AnchorAttention §7, SALE §8).
// Kernels see only these plain structs.
#include <cmath>
#include <cstdint>

#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// The online-softmax state of every query row, unnormalised (FlashAttention's m, ℓ, acc):
//   m   (B, Hq, Nq, 1)   running max of the scaled logits x = scale·q·k (natural-log units)
//   l   (B, Hq, Nq, 1)   Σ exp(x − m) over the keys seen so far
//   acc (B, Hq, Nq, Dv)  Σ exp(x − m)·v
// A row that has seen no key has m = −inf, l = 0, acc = 0. Finalising gives
// O = acc / l and LSE = m + ln l.
struct SoftmaxState {
  TensorRef m, l, acc;
  bool present() const { return m.data != nullptr; }
};

// Key-block lists, CSR. List r = (b·list_heads + lh)·n_q_blocks + qb holds the key blocks
// blocks[offsets[r] .. offsets[r+1]) of query block qb, strictly ascending. lh = h when
// list_heads = Hq (one list per query head), lh = 0 when list_heads = 1 (one list shared by
// every head). Query block qb is rows [qb·q_block, min(Nq, (qb+1)·q_block)); key block kb is
// keys [kb·k_block, min(Nkv, (kb+1)·k_block)).
struct KeyBlockLists {
  int64_t q_block = 0;
  int64_t k_block = 0;
  int list_heads = 0;
  const int32_t* offsets = nullptr;  // B·list_heads·ceil(Nq/q_block) + 1
  const int32_t* blocks = nullptr;
  bool on_device = false;
};

// Key-index lists, CSR. List r = (b·list_heads + lh)·n_groups + g holds the keys
// indices[offsets[r] .. offsets[r+1]) of query group g, ascending; a key may repeat, and each
// occurrence is a term of the softmax (a sampling estimator may draw a key twice).
// Query group g is rows [g·q_group, min(Nq, (g+1)·q_group)) when q_rows is null (then
// n_groups = ceil(Nq / q_group)); otherwise it is the rows q_rows[q_offsets[r] ..
// q_offsets[r+1]) — any rows, each in at most one group of its (b, head); rows in no group
// see no keys (their state passes through unchanged).
struct KeyIndexLists {
  int64_t q_group = 0;
  int64_t n_groups = 0;  // per (b, list head)
  int list_heads = 0;
  const int32_t* offsets = nullptr;  // B·list_heads·n_groups + 1
  const int32_t* indices = nullptr;
  const int32_t* q_offsets = nullptr;  // optional, B·list_heads·n_groups + 1
  const int32_t* q_rows = nullptr;
  bool on_device = false;
};

enum class SparseLayout { key_blocks, key_indices };

// Op 2: every query row attends to the keys its list names; under shape.causal, key j is
// also masked for a row at absolute position qpos when j > qpos (bottom-right aligned, as op 1).
//   q (B, Hq, Nq, D)   k (B, Hkv, Nkv, D)   v (B, Hkv, Nkv, Dv)
//   o (B, Hq, Nq, Dv)  lse (B, Hq, Nq, 1) fp32, natural log; may be null
// The state: with state_in the rows start from it, otherwise from the empty state; with
// state_out the unnormalised state is written there (it may alias state_in); with finalize,
// O and LSE are written (rows that saw no key: O = 0, LSE = −inf). Query head h reads kv head
// h / (Hq / Hkv).
struct SparsePrefillArgs {
  AttnShape shape;
  TensorRef q, k, v;
  float scale = 0.0f;  // 0 = 1/sqrt(D)
  SparseLayout layout = SparseLayout::key_blocks;
  KeyBlockLists blocks;
  KeyIndexLists indices;
  SoftmaxState state_in;
  SoftmaxState state_out;
  bool finalize = true;
  TensorRef o, lse;

  int kv_head_of(int h) const { return h / (shape.q_heads / shape.kv_heads); }
  float effective_scale() const {
    return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  }
};

}  // namespace ab
