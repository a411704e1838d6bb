#pragma once
// CPU implementation of op 4, chunked linear attention (core/ops_linear.hpp), and its
// float64 reference written from the definition.
#include <cstdint>
#include <vector>

#include "core/ops_linear.hpp"

namespace ab::cpu {

// Op 4 on host fp32 tensors. OpenMP over (batch, query head); within one head the blocks run
// in order (the state is carried). Throws std::invalid_argument on a bad shape or an
// unsupported combination (decay without causal, MALA with decay, a state with the
// quadratic algorithm).
void linear_attention(const LinearAttnArgs& a);

// Why a combination is refused ("" when accepted): shared by the backend's supports().
std::string linear_attention_refusal(const LinearAttnArgs& a);

// ALiBi slopes and φ live in core (core/ops_linear.hpp).
using ab::alibi_slopes;
using ab::feature_map_value;

}  // namespace ab::cpu
