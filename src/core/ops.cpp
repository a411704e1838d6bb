#include "core/ops.hpp"
#include "core/variant.hpp"

#include <cmath>

namespace ab {
float SdpaArgs::effective_scale() const {
  return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
}
float GatherDecodeArgs::effective_scale() const {
  return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
}
float Inputs::effective_scale() const {
  return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
}
}  // namespace ab
