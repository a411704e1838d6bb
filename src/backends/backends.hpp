#pragma once
// Backend selection for `--device cpu|cuda|fake|auto`.
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"

namespace ab {

// Whether a usable CUDA device is present; `why` receives the reason when not (no CUDA in
// this build, no driver, no device).
bool cuda_available(std::string* why);
// How many usable CUDA devices this process sees (0, with the reason, when none). Initializes
// CUDA in the calling process: call it where a later CUDA_VISIBLE_DEVICES need not matter.
int cuda_device_count(std::string* why);

// The names make_backend accepts, for the command line's checks: "cpu", "cuda", "fake" (the
// fake device: host memory behind a PROT_NONE range, ops run by the CPU backend on host copies;
// backends/fake/fake_device_backend.hpp) and "auto".
const std::vector<std::string>& device_names();

// device: one of device_names(). cuda without a device -> InputError with the reason.
// auto picks cuda when available, else the cpu, and sets `note` to say why (never the fake).
std::unique_ptr<Backend> make_backend(const std::string& device, std::string* note);

}  // namespace ab
