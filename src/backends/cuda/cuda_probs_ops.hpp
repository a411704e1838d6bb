#pragma once
// The CUDA backend's routing of op 1's companions (core/ops.hpp): the output gate, per-head
// scaling, the LSE blend and the probability ops (column mass, materialised P, P·V). Each
// route_* answers supports_*() from the arguments alone (no device needed: `attn-bench list`
// asks a capability-only backend); each run function checks the same answer, then launches on
// `stream` without synchronising or copying from the host.
#include <optional>

#include <cuda_runtime_api.h>

#include "core/ops.hpp"

namespace ab::cuda_ops {

Support route_output_gate(const OutputGateArgs& a);
void output_gate(const OutputGateArgs& a, cudaStream_t stream);

Support route_scale_heads(const ScaleHeadsArgs& a);
void scale_heads(const ScaleHeadsArgs& a, cudaStream_t stream);

Support route_lse_blend(const LseBlendArgs& a);
void lse_blend(const LseBlendArgs& a, cudaStream_t stream);

Support route_attention_probs(const AttnProbsArgs& a);
void attention_probs(const AttnProbsArgs& a, cudaStream_t stream);
// Pairs per (batch, query head) of the kernels' tile walk (column_mass; materialize counts its
// two passes); nullopt for apply (no scores) and for arguments no kernel takes.
std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a);

}  // namespace ab::cuda_ops
