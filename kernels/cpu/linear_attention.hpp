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

// ALiBi slopes for `heads` heads (Press et al., ICLR 2022; lightning-attention's
// _build_slope_tensor): for a power of two n, start = 2^(-8/n) and s_h = start^(h+1); other
// counts take the closest lower power of two and every other slope of twice that.
std::vector<float> alibi_slopes(int heads);

// φ of one value.
double feature_map_value(FeatureMap f, double x);

// Float64 reference for query row (b, h, i), straight from the definition in
// core/ops_linear.hpp: an O(Nkv·d) sum over the keys the row sees, no blocks, no state.
void linear_attention_reference_row(const LinearAttnArgs& a, const HostTensor& q,
                                    const HostTensor& k, const HostTensor& v, int b, int h,
                                    int64_t i, double* o);

}  // namespace ab::cpu
