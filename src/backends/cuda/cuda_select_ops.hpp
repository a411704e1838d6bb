#pragma once
// Routing of the selection and estimation ops (core/ops_select.hpp) and the decode-time
// selection ops (core/ops_decode.hpp) to the kernels of kernels/cuda/selection. supports_*
// reads the arguments alone (the capability-only backend asks it without a device): operands
// that are there must be cuda backend memory of a type the kernels take. The ops check shapes
// and throw std::invalid_argument, as the CPU's do, then launch on `stream` without host
// copies, allocations or synchronisation (`scratch` hands out backend scratch memory).
#include <cstddef>
#include <functional>

#include <cuda_runtime_api.h>

#include "core/backend.hpp"

namespace ab::cuda_select {

using ScratchFn = std::function<void*(size_t bytes)>;

Support supports_pool(const PoolArgs& a);
void pool(const PoolArgs& a, cudaStream_t s);
Support supports_project(const ProjectArgs& a);
void project(const ProjectArgs& a, cudaStream_t s, const ScratchFn& scratch);
Support supports_scores(const ScoresArgs& a);
void scores(const ScoresArgs& a, cudaStream_t s);
Support supports_select(const SelectArgs& a);
void select(const SelectArgs& a, cudaStream_t s, const ScratchFn& scratch);
Support supports_lse_merge(const LseMergeArgs& a);
void lse_merge(const LseMergeArgs& a, cudaStream_t s);
Support supports_quantize_int4(const QuantizeInt4Args& a);
void quantize_int4(const QuantizeInt4Args& a, cudaStream_t s);
Support supports_int4_block_scan(const Int4BlockScanArgs& a);
void int4_block_scan(const Int4BlockScanArgs& a, cudaStream_t s);

Support supports_copy_rows(const CopyRowsArgs& a);
void copy_rows(const CopyRowsArgs& a, cudaStream_t s);
Support supports_block_mean_keys(const BlockMeanKeysArgs& a);
void block_mean_keys(const BlockMeanKeysArgs& a, cudaStream_t s);
Support supports_fake_quantize(const FakeQuantizeArgs& a);
void fake_quantize(const FakeQuantizeArgs& a, cudaStream_t s);
Support supports_decode_scores(const DecodeScoresArgs& a);
void decode_scores(const DecodeScoresArgs& a, cudaStream_t s);

}  // namespace ab::cuda_select
