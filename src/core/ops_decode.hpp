#pragma once
// Decode-time selection ops: the per-step scoring and selection primitives of the sparse decode variants (docs/decode.md).
#include <cstdint>

#include "core/ops.hpp"
#include "core/tensor.hpp"

namespace ab {

}  // namespace ab
