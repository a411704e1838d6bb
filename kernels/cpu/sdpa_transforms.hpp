#pragma once
// CPU implementations of op 1 with score transforms other than softmax (sigmoid, ReLU,
// soft-capped softmax), of the output gate, and of the ops built on op 1's probabilities
// (column mass, materialised P, P·V). The softmax path is sdpa_flash (cpu/sdpa.hpp).
#include <cstdint>
#include <vector>

#include "core/ops.hpp"

namespace ab::cpu {

// Op 1 for a.transform in {sigmoid, relu, softcap} on host fp32 tensors (shapes as in
// SdpaArgs). Tiles of query rows × keys; tiles the mask leaves empty are skipped; OpenMP
// over (batch, head, query tile). lse receives log Σ w (core/ops.hpp).
void sdpa_transformed(const SdpaArgs& a);

// The fraction of (query, key) pairs inside the non-empty tiles sdpa_transformed computes.
double sdpa_transformed_executed_fraction(const AttnShape& s, const Mask& m);

// o <- o ⊙ σ(gate), headwise or elementwise by the gate's last dimension.
void output_gate(const OutputGateArgs& a);

// The ops of AttnProbsArgs (core/ops.hpp). Softmax only.
void attention_probs(const AttnProbsArgs& a);

}  // namespace ab::cpu
