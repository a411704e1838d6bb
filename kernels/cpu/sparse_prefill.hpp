#pragma once
// CPU implementation of op 2 (core/ops_sparse.hpp): sparse prefill SDPA over key-block or
// key-index lists with a resumable online-softmax state.
#include <cstdint>
#include <string>

#include "core/ops_sparse.hpp"

namespace ab::cpu {

// Throws std::invalid_argument naming the first problem: shapes, list sizes, indices out of
// range or out of order, a query row in two groups, state tensors of the wrong shape.
void sparse_prefill_check(const SparsePrefillArgs& a);

// Tiled online-softmax attention in fp32 over the listed keys. Threads over (batch, head,
// query block or group, row tile) with OpenMP, heaviest items first. Consecutive key blocks
// (and runs of consecutive indices) are fused into one score tile; other indices are
// gathered into a contiguous tile. Host tensors only.
void sparse_prefill(const SparsePrefillArgs& a);

// (query, key) pairs the kernel computes scores for, over every batch and head: rows × keys
// of each score tile it does not skip (tiles entirely above the causal diagonal are skipped;
// masked elements inside a partial tile count). Executed FLOPs = 2·pairs·(D + Dv). Reads only
// the shape, the layout and the lists (no tensor needs to be set).
double sparse_prefill_executed_pairs(const SparsePrefillArgs& a);

}  // namespace ab::cpu
