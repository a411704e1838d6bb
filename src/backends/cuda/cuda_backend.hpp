#pragma once
// The CUDA backend (built when ATTN_HAVE_CUDA). Host code only; kernels live in kernels/cuda.
#include <memory>
#include <string>

#include "core/backend.hpp"

namespace ab {

// True when the CUDA runtime finds a device; otherwise `why` gets the runtime's message
// (e.g. "CUDA driver version is insufficient" where no NVIDIA driver exists).
bool cuda_probe(std::string* why);
// The number of CUDA devices visible to this process, 0 (with the reason) when cuda_probe fails.
int cuda_device_count_impl(std::string* why);
std::unique_ptr<Backend> make_cuda_backend();
// A CUDA backend that only answers supports_* (its dispatch reads the arguments alone), made
// without touching a device: `attn-bench list` asks it on machines without a GPU. Any other
// call throws.
std::unique_ptr<Backend> make_cuda_capability_backend();

}  // namespace ab
