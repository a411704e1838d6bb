#pragma once
// The selection a variant exposes through its plan: which keys each query row attends to.
// The recall and NIAH metrics read it without knowing the variant (docs/metrics.md).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mask.hpp"
#include "core/problem.hpp"

namespace ab {

class Selection {
 public:
  virtual ~Selection() = default;
  // "full", "blocks", "tokens", ...
  virtual std::string kind() const = 0;
  // Sorted, de-duplicated keys that query row i (0-based within q_len) of query head h in
  // batch b attends to, restricted to keys the mask allows.
  virtual void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const = 0;
};

// Every key the mask allows: the dense variants' trivial selection (mass recall exactly 1).
class FullSelection final : public Selection {
 public:
  FullSelection(AttnShape shape, Mask mask) : shape_(shape), mask_(std::move(mask)) {}
  std::string kind() const override { return "full"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override {
    out.clear();
    const int64_t qpos = i + shape_.q_offset();
    for (int64_t j = 0; j < shape_.kv_len; ++j)
      if (mask_.allows(b, h, qpos, j)) out.push_back(j);
  }

 private:
  AttnShape shape_;
  Mask mask_;
};

}  // namespace ab
