#pragma once
#include <memory>

#include "core/backend.hpp"

namespace ab {
std::unique_ptr<Backend> make_cpu_backend();
}  // namespace ab
