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
