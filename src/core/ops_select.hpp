#pragma once
// Scoring and selection ops (docs/architecture.md): scores with epilogues, pooling, selection into index lists, LSE merge.
#include <cstdint>

#include "core/ops.hpp"
#include "core/tensor.hpp"

namespace ab {

}  // namespace ab
