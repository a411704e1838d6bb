#pragma once
// Op 2 (sparse prefill, core/ops_sparse.hpp) on the CUDA backend: the checks that answer
// supports_sparse_prefill(), the launch, and the executed pairs of the kernel's tile walk.
#include <optional>

#include <cuda_runtime_api.h>

#include "core/ops.hpp"
#include "core/ops_sparse.hpp"

namespace ab::cuda_ops {

Support sparse_prefill_support(const SparsePrefillArgs& a);
// Throws std::runtime_error with the reason when unsupported or when the launch fails.
void sparse_prefill(const SparsePrefillArgs& a, cudaStream_t stream);
// Query rows × keys the kernel computes (64 × 64 per visited tile, padding included), from
// host copies of the lists; nullopt when the lists are in device memory.
std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a);

// Op 1 with a mask predicate of the mask library (Mask::extra with a program, core/mask.hpp):
// the predicate's block lists are built on the device and the sparse kernel walks them,
// testing the predicate per element on partial blocks only. Softmax, the h -> h / group head
// map. `workspace` holds predicate_sdpa_workspace_ints(a) int32 values (lists and counts).
Support predicate_sdpa_support(const SdpaArgs& a);
size_t predicate_sdpa_workspace_ints(const SdpaArgs& a);
void predicate_sdpa(const SdpaArgs& a, int32_t* workspace, cudaStream_t stream);

}  // namespace ab::cuda_ops
