#pragma once
// CPU implementations of the selection and estimation ops (core/ops_select.hpp), composed of
// the kernels/cpu primitives (cpu/selection.hpp, cpu/lse_merge.hpp). Host tensors only. Each
// *_refusal returns "" when the arguments are runnable, else why not; each op throws
// std::invalid_argument with that reason when called with such arguments.
#include <string>

#include "core/ops_select.hpp"

namespace ab::cpu_select {

std::string pool_refusal(const PoolArgs& a);
void pool(const PoolArgs& a);

std::string project_refusal(const ProjectArgs& a);
void project(const ProjectArgs& a);

std::string scores_refusal(const ScoresArgs& a);
void scores(const ScoresArgs& a);

std::string select_refusal(const SelectArgs& a);
void select(const SelectArgs& a);

std::string lse_merge_refusal(const LseMergeArgs& a);
void lse_merge(const LseMergeArgs& a);

// int4 estimation. The CPU's Int4Tensor (CpuBackend::alloc_int4) keeps in values.data the B·H
// packed row sets (cpu::Int4Rows, in (b, h) order) that the integer dot kernels read, owned by
// the backend; values.shape = (B, H, 1, 1) marks that layout.
std::string quantize_int4_refusal(const QuantizeInt4Args& a);
void quantize_int4(const QuantizeInt4Args& a);

std::string int4_block_scan_refusal(const Int4BlockScanArgs& a);
void int4_block_scan(const Int4BlockScanArgs& a);

}  // namespace ab::cpu_select
