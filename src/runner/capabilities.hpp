#pragma once
// Which backends run a variant, as their own dispatch answers it: Variant::supports() on probe
// problems, never a list a variant keeps by hand (docs/architecture.md, "Backends").
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/variant.hpp"

namespace ab {

// Every backend this build has, able to answer supports(): the CPU, and CUDA when built (made
// capability-only where no GPU is present, so the answer does not depend on the machine).
struct NamedBackend {
  std::string name;
  std::unique_ptr<Backend> backend;
};
std::vector<NamedBackend> capability_backends();

// The probe problems for a mode: typical model shapes (GQA, head_dim 128, causal and not,
// bf16 and f32) at N = 4096 (decode: one query row against 8192 keys).
std::vector<Problem> probe_problems(Mode mode);

// The backends (names) on which `v` supports at least one probe problem of one of its modes.
std::vector<std::string> supported_backends(const Variant& v, const std::vector<NamedBackend>& backends);

}  // namespace ab
