#pragma once
// Op 4 (linear attention, core/ops_linear.hpp) on the CUDA backend: the routing behind
// CudaBackend's supports_linear_attention / linear_attention (kernels in
// kernels/cuda/linear_attention). Host code only.
#include <cstddef>
#include <functional>

#include <cuda_runtime_api.h>

#include "core/backend.hpp"

namespace ab {

// Whether the CUDA kernel runs these arguments, or why not. Tensors still null (a variant
// asking before it allocates) are not checked; linear_attention() refuses missing ones.
Support cuda_linear_support(const LinearAttnArgs& a);

// Launches op 4 on `stream`. `workspace(bytes)` returns device scratch of at least that size
// (the fp32 output rows an output norm reads); no allocation or synchronisation otherwise.
void cuda_linear_attention(const LinearAttnArgs& a, cudaStream_t stream,
                           const std::function<void*(size_t)>& workspace);

}  // namespace ab
