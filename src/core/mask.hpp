#pragma once
// Attention masks as data. A mask has a structured part that every backend understands
// (causal, sliding window, sinks) and an optional general predicate of (b, h, i, j), ANDed with
// it, that the CPU backend evaluates and that later backends may recognise by name.
// Positions: query row i has absolute position i + (kv_len - q_len) (bottom-right aligned).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ab {

enum class BlockClass { empty, partial, full };

// A mask's form for kernels that cannot call a std::function (the GPU): a postfix program over
// the mask library's primitives, evaluated on a stack of booleans for a pair (qpos, j) and, with
// each primitive's exact block classifier, on a stack of block classes for a block (AND: empty
// if any part is, full if all are; OR: the dual; otherwise partial, which the kernel resolves
// element by element). Operands a, b per instruction:
//   causal          j <= qpos
//   window a        |qpos - j| < a
//   sinks a         j < a
//   block_diagonal  qpos / a == j / a
//   blockrank a, b  BlockRank with a blocks of b positions (core/mask_library.hpp)
//   mixformer a     qpos >= a || j < a
//   all_of a        the top a values ANDed;  any_of a: ORed
struct MaskInstr {
  enum class Op : int32_t { causal, window, sinks, block_diagonal, blockrank, mixformer, all_of, any_of };
  Op op = Op::causal;
  int64_t a = 0, b = 0;
};
// The longest program a kernel takes (compositions of a few library masks fit easily).
constexpr int kMaxMaskProgram = 16;

struct MaskPredicate {
  std::string name;  // carries the parameters, e.g. "blockdiag64"
  // True when query row i (absolute position qpos) may attend to key j.
  std::function<bool(int b, int h, int64_t qpos, int64_t j)> allows;
  // Optional exact classification of the block of absolute query positions [q0, q1) x keys
  // [k0, k1); when absent, classification scans the block's elements.
  std::function<BlockClass(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1)> classify;
  // The same predicate as a program (MaskInstr), when it is head- and batch-independent and
  // built from the library's primitives; empty otherwise (custom predicates).
  std::vector<MaskInstr> program;
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
