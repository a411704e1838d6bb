#pragma once
// Attention masks as data. A mask has a structured part that every backend understands
// (causal, sliding window, sinks) and an optional general predicate of (b, h, i, j), ANDed with
// it, that the CPU backend evaluates and that later backends may recognise by name.
// Positions: query row i has absolute position i + (kv_len - q_len) (bottom-right aligned).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ab {

enum class BlockClass { empty, partial, full };

struct MaskPredicate {
  std::string name;  // carries the parameters, e.g. "blockdiag64"
  // True when query row i (absolute position qpos) may attend to key j.
  std::function<bool(int b, int h, int64_t qpos, int64_t j)> allows;
  // Optional exact classification of the block of absolute query positions [q0, q1) x keys
  // [k0, k1); when absent, classification scans the block's elements.
  std::function<BlockClass(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1)> classify;
};

struct Mask {
  bool causal = false;
  int64_t window = 0;  // > 0: key j visible only when qpos - j < window (needs causal or not)
  int64_t sinks = 0;   // the first `sinks` keys stay visible whatever the window says
  std::shared_ptr<const MaskPredicate> extra;  // ANDed with the structured part

  bool is_dense() const { return !causal && window <= 0 && !extra; }
  // Printable name carrying the parameters: "none", "causal", "causal_window1024_sink4", ...
  std::string name() const;

  bool allows(int b, int h, int64_t qpos, int64_t j) const {
    if (causal && j > qpos) return false;
    if (window > 0 && j >= sinks && (qpos - j >= window || j - qpos >= window)) return false;
    return !extra || extra->allows(b, h, qpos, j);
  }

  // Classify the block [q0, q1) x [k0, k1) of absolute query positions and keys. Exact: the
  // structured part by interval arithmetic, the predicate by its own classifier or an element
  // scan, and their intersection by a scan when both are partial.
  BlockClass classify(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const;
};

// Exact class of the block [q0, q1) x [k0, k1) by evaluating `allows` on its elements; stops
// as soon as one allowed and one masked element are found.
BlockClass classify_by_scan(const std::function<bool(int, int, int64_t, int64_t)>& allows, int b,
                            int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1);

}  // namespace ab
