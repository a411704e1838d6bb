#pragma once
// CPU implementations of op 1 (dense SDPA) and its float64 reference.
#include <cstdint>
#include <vector>

#include "core/ops.hpp"

namespace ab::cpu {

// Tiled online-softmax attention in fp32 (flash-style): memory O(N·d), never N×N.
// Threads over (batch, head, query tile) with OpenMP; empty mask blocks are skipped.
// a.q/k/v/o/lse are host fp32 tensors; lse may be null.
void sdpa_flash(const SdpaArgs& a);

// The same walk with bf16 products: S = Q·Kᵀ and P·V with bf16 operands (inputs, and P,
// rounded to nearest-even bf16) and fp32 accumulation, softmax in fp32, as GPU flash kernels
// do. AVX512_BF16 only: throws unless sdpa_flash_bf16_available(). Meant for bf16 inputs,
// which it reads exactly; fp32 inputs are rounded.
void sdpa_flash_bf16(const SdpaArgs& a);
bool sdpa_flash_bf16_available();
// Whether the bf16 path is faster than sdpa_flash for this shape (enough query rows per key
// to pay for packing K and V to bf16 once per call).
bool sdpa_flash_bf16_pays(const AttnShape& s);

// Executed score blocks of sdpa_flash for a mask, at its tile size: the fraction of
// (query, key) pairs inside non-empty tiles (used for executed FLOPs).
double sdpa_flash_executed_fraction(const AttnShape& s, const Mask& m);

// Float64 reference for one query row (b, h, i), straight from the definition:
// p_j = exp(scale·q·k_j - lse) over keys the mask allows; o = Σ p_j v_j.
// If probs is given it receives p_j for every key (0 where masked), length kv_len.
void sdpa_reference_row(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                        const AttnShape& s, const Mask& m, double scale, int kv_head,
                        int b, int h, int64_t i, double* o, double* lse,
                        std::vector<double>* probs = nullptr);

}  // namespace ab::cpu
