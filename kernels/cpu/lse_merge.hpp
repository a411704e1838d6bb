#pragma once
// LSE merge of partial attention results (docs/variants.md §0), shared by the prefill variants
// (HyperAttention's sampled columns, §10) and the decode variants (RetrievalAttention's static
// set + retrieved keys, §9, and every other multi-source decode): include "cpu/lse_merge.hpp".
//
// Two partial softmax results over disjoint key sets, (o₁, ℓ₁) and (o₂, ℓ₂) with ℓ the
// log-sum-exp of the part's logits, combine exactly into the result over the union:
//   ℓ = log(e^{ℓ₁} + e^{ℓ₂}),   o = (o₁·e^{ℓ₁} + o₂·e^{ℓ₂}) / e^{ℓ}.
// A part with ℓ = −inf (it saw no key) contributes nothing, whatever its o holds (even NaN).
// `offset2` is added to ℓ₂ first: it weighs every key of part 2 by e^{offset2}, e.g.
// HyperAttention's ln(n/m) for m keys sampled out of n (insuhan/hyper-attn
// models/attention/utils.py::add_self_attentions is the reference).
#include <cstdint>

#include "core/ops.hpp"

namespace ab::cpu {

// Row by row, rows × dv contiguous: (o, lse) ← merge((o1, lse1), (o2, lse2 + offset2)).
// o/lse may alias o1/lse1 (in-place accumulation). Threads with OpenMP when rows is large.
void lse_merge(float* o, float* lse, const float* o1, const float* lse1, const float* o2,
               const float* lse2, int64_t rows, int dv, float offset2 = 0.0f);

// o <- β·m·o_s + (1 − β·m)·o_n with m = 1 / (1 + exp(ℓn − ℓs)), rows where both LSEs are
// finite (core/ops.hpp, LseBlendArgs); OpenMP over rows.
void lse_blend(const LseBlendArgs& a);

// In place: (o, lse) ← merge((o, lse), (o2, lse2 + offset2)).
inline void lse_merge_into(float* o, float* lse, const float* o2, const float* lse2,
                           int64_t rows, int dv, float offset2 = 0.0f) {
  lse_merge(o, lse, o, lse, o2, lse2, rows, dv, offset2);
}

// Float64 form for references, one row.
void lse_merge_row_f64(double* o, double* lse, const double* o2, double lse2, int dv);

}  // namespace ab::cpu
