#pragma once
// Backend selection for `--device cpu|cuda|auto`.
#include <memory>
#include <string>

#include "core/backend.hpp"

namespace ab {

// Whether a usable CUDA device is present; `why` receives the reason when not (no CUDA in
// this build, no driver, no device).
bool cuda_available(std::string* why);
// How many usable CUDA devices this process sees (0, with the reason, when none). Initializes
// CUDA in the calling process: call it where a later CUDA_VISIBLE_DEVICES need not matter.
int cuda_device_count(std::string* why);

// device: "cpu", "cuda" or "auto". cuda without a device -> InputError with the reason.
// auto picks cuda when available, else the cpu, and sets `note` to say why.
std::unique_ptr<Backend> make_backend(const std::string& device, std::string* note);

}  // namespace ab
