#pragma once
// Multi-step decode (docs/decode.md): a decode case with `steps` S has q_len = S query rows,
// row t being step t at absolute position N + t (N = kv_len - S), causal, so step t sees
// exactly the N + t + 1 keys up to its own. Real decoding runs one step after another, each
// reading the cache afresh, so variants run the rows one at a time: these helpers give a
// step its query row as a (B, Hq, 1, D) tensor, a mask at its position, and put its output
// back into row t.
#include <cstdint>

#include "core/backend.hpp"
#include "core/mask.hpp"
#include "core/variant.hpp"

namespace ab {

// Absolute position of step t (its own key): kv_len - steps + t.
inline int64_t step_position(const AttnShape& s, int64_t t) { return s.kv_len - s.q_len + t; }

// The shape of one step's call: one query row against the whole cache (the step's key limit
// comes from its index list or its mask), no causal flag.
AttnShape step_shape(const AttnShape& s);

// `base` (a mask of the multi-step shape) evaluated at step t's position, for a call of
// step_shape(s): query row 0 of that call stands for absolute position step_position(s, t).
Mask step_mask(const Mask& base, const AttnShape& s, int64_t t);

// Scratch for one step: q (B,Hq,1,D), o (B,Hq,1,Dv), lse (B,Hq,1,1) on the backend. The rows
// move by the backend's copy_rows op (core/ops_decode.hpp). A backend without that op (the
// CUDA backend until it has one) goes through host memory instead: Q downloaded once, the
// step's outputs downloaded and gathered, uploaded by finish().
class StepRows {
 public:
  StepRows(Backend& b, const Inputs& in, Outputs& out);
  ~StepRows();
  StepRows(const StepRows&) = delete;
  StepRows& operator=(const StepRows&) = delete;

  // Query row t of every (batch, head) into q().
  void load_query(int64_t t);
  // The step's outputs o(), lse() into row t of the case's outputs.
  void store(int64_t t);
  // After the last step (backends without copy_rows: uploads the rows gathered by store()).
  void finish();

  const TensorRef& q() const { return q_; }
  const TensorRef& o() const { return o_; }
  const TensorRef& lse() const { return lse_; }

 private:
  Backend& b_;
  const Inputs& in_;
  Outputs& out_;
  AttnShape s_;
  TensorRef q_, o_, lse_;
  bool op_ = true;
  HostTensor q_all_, o_rows_, lse_rows_;  // without copy_rows: Q, and the outputs row by row
};

}  // namespace ab
