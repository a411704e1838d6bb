#pragma once
// Selections made of the lists that op 2 consumes (core/ops_sparse.hpp): the host-side lists
// a variant builds in its plan are both the op's input (view()) and what the recall and NIAH
// metrics read through Selection::keys, so the metric sees exactly the keys the kernel used.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/ops_sparse.hpp"
#include "core/selection.hpp"

namespace ab {

// Per-(batch, list head, query block) key-block lists in host memory (KeyBlockLists' layout).
struct HostBlockLists {
  int64_t q_block = 0;
  int64_t k_block = 0;
  int list_heads = 0;
  std::vector<int32_t> offsets = {0};
  std::vector<int32_t> blocks;

  KeyBlockLists view() const;
};

// Per-(batch, list head, query group) key-index lists in host memory (KeyIndexLists' layout);
// q_offsets/q_rows empty: implicit groups of q_group consecutive rows.
struct HostIndexLists {
  int64_t q_group = 0;
  int64_t n_groups = 0;
  int list_heads = 0;
  std::vector<int32_t> offsets = {0};
  std::vector<int32_t> indices;
  std::vector<int32_t> q_offsets;
  std::vector<int32_t> q_rows;

  KeyIndexLists view() const;
  // Appends one list (ascending keys) and, for explicit groups, its query rows.
  void push_list(const std::vector<int32_t>& keys);
  void push_group_rows(const std::vector<int32_t>& rows);
};

// Keys of the listed blocks, cut by the causal mask when shape.causal.
class BlockSelection final : public Selection {
 public:
  BlockSelection(AttnShape shape, std::shared_ptr<const HostBlockLists> lists);
  std::string kind() const override { return "blocks"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override;
  const HostBlockLists& lists() const { return *lists_; }

 private:
  AttnShape shape_;
  std::shared_ptr<const HostBlockLists> lists_;
};

// Keys of the row's group's index list, de-duplicated, cut by the causal mask.
class TokenSelection final : public Selection {
 public:
  TokenSelection(AttnShape shape, std::shared_ptr<const HostIndexLists> lists);
  std::string kind() const override { return "tokens"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override;
  const HostIndexLists& lists() const { return *lists_; }
  // The group of row i for (b, h), or -1 when the row is in no group.
  int64_t group_of(int b, int h, int64_t i) const;

 private:
  AttnShape shape_;
  std::shared_ptr<const HostIndexLists> lists_;
  std::vector<int32_t> row_group_;  // explicit groups: (B·list_heads, Nq) -> group, -1 none
};

// The union of several selections (a variant whose keys come from several passes).
class UnionSelection final : public Selection {
 public:
  explicit UnionSelection(std::vector<std::shared_ptr<const Selection>> parts)
      : parts_(std::move(parts)) {}
  std::string kind() const override { return "union"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override;
  const std::vector<std::shared_ptr<const Selection>>& parts() const { return parts_; }

 private:
  std::vector<std::shared_ptr<const Selection>> parts_;
};

// Number of (query, key) pairs a selection holds over every batch, head and row (after its
// causal cut): the numerator of the density (selected / allowed pairs). Row by row through
// keys(): O(pairs), for tests and small shapes.
double selected_pairs(const Selection& sel, const AttnShape& s);
// The same straight from the lists, without expanding them (plan-time density):
// O(list entries) for blocks and implicit groups, O(entries·log rows) for explicit groups.
// Lists shared by every head (list_heads = 1) count once per query head.
double selected_pairs(const HostBlockLists& lists, const AttnShape& s);
double selected_pairs(const HostIndexLists& lists, const AttnShape& s);

}  // namespace ab
