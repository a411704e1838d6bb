#pragma once
// Float64 references of the ops (docs/architecture.md, "Layers"): each written straight from
// the op's definition in core/ops*.hpp, in the most direct form, sharing no code with any
// backend's kernels, so that the accuracy metric and the tests compare a kernel with an
// independent computation. Variants call these from reference_row().
#include <cstdint>
#include <vector>

#include "core/mask.hpp"
#include "core/ops.hpp"
#include "core/ops_linear.hpp"
#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace ab {

// Float64 reference for one query row (b, h, i), straight from the definition:
// p_j = exp(scale·q·k_j - lse) over keys the mask allows; o = Σ p_j v_j.
// If probs is given it receives p_j for every key (0 where masked), length kv_len.
void sdpa_reference_row(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                        const AttnShape& s, const Mask& m, double scale, int kv_head,
                        int b, int h, int64_t i, double* o, double* lse,
                        std::vector<double>* probs = nullptr);

// Float64 reference for one row (b, h, i) of op 1 with any transform, straight from the
// definitions in core/ops.hpp: o (Dv entries) and lse (log Σ w; softmax: log Σ exp s).
void sdpa_transformed_reference_row(const SdpaArgs& a, const HostTensor& q, const HostTensor& k,
                                    const HostTensor& v, int b, int h, int64_t i, double* o,
                                    double* lse);

// Float64 reference for query row (b, h, i), straight from the definition: softmax of
// scale·q·k_j over exactly the keys in `keys` (kv head `kv_head`), o = Σ p_j v_j.
// Empty `keys`: o = 0, lse = -inf.
void gather_reference_row(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                          const AttnShape& s, double scale, int kv_head, int b, int h,
                          int64_t i, const std::vector<int64_t>& keys, double* o, double* lse);

// Float64 reference for query row (b, h, i), straight from the definition in
// core/ops_linear.hpp: an O(Nkv·d) sum over the keys the row sees, no blocks, no state.
void linear_attention_reference_row(const LinearAttnArgs& a, const HostTensor& q,
                                    const HostTensor& k, const HostTensor& v, int b, int h,
                                    int64_t i, double* o);

}  // namespace ab
