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

}  // namespace ab::cuda_ops
