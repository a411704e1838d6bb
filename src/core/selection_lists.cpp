#include "core/selection_lists.hpp"

#include <algorithm>

namespace ab {

KeyBlockLists HostBlockLists::view() const {
  KeyBlockLists v;
  v.q_block = q_block;
  v.k_block = k_block;
  v.list_heads = list_heads;
  v.offsets = offsets.data();
  v.blocks = blocks.data();
  return v;
}

KeyIndexLists HostIndexLists::view() const {
  KeyIndexLists v;
  v.q_group = q_group;
  v.n_groups = n_groups;
  v.list_heads = list_heads;
  v.offsets = offsets.data();
  v.indices = indices.data();
  if (!q_offsets.empty()) {
    v.q_offsets = q_offsets.data();
    v.q_rows = q_rows.data();
  }
  return v;
}

void HostIndexLists::push_list(const std::vector<int32_t>& keys) {
  indices.insert(indices.end(), keys.begin(), keys.end());
  offsets.push_back(int32_t(indices.size()));
}

void HostIndexLists::push_group_rows(const std::vector<int32_t>& rows) {
  if (q_offsets.empty()) q_offsets.push_back(0);
  q_rows.insert(q_rows.end(), rows.begin(), rows.end());
  q_offsets.push_back(int32_t(q_rows.size()));
}

BlockSelection::BlockSelection(AttnShape shape, std::shared_ptr<const HostBlockLists> lists)
    : shape_(shape), lists_(std::move(lists)) {}

void BlockSelection::keys(int b, int h, int64_t i, std::vector<int64_t>& out) const {
  out.clear();
  const HostBlockLists& L = *lists_;
  const int64_t n_qb = (shape_.q_len + L.q_block - 1) / L.q_block;
  const int lh = L.list_heads == 1 ? 0 : h;
  const int64_t r = (int64_t(b) * L.list_heads + lh) * n_qb + i / L.q_block;
  const int64_t limit = shape_.causal ? std::min(shape_.kv_len, i + shape_.q_offset() + 1) : shape_.kv_len;
  for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p) {
    const int64_t k0 = int64_t(L.blocks[size_t(p)]) * L.k_block;
    const int64_t k1 = std::min(limit, k0 + L.k_block);
    for (int64_t j = k0; j < k1; ++j) out.push_back(j);
  }
  // Lists are strictly ascending, so `out` is sorted and free of repeats.
}

TokenSelection::TokenSelection(AttnShape shape, std::shared_ptr<const HostIndexLists> lists)
    : shape_(shape), lists_(std::move(lists)) {
  const HostIndexLists& L = *lists_;
  if (L.q_offsets.empty()) return;
  row_group_.assign(size_t(int64_t(shape_.batch) * L.list_heads * shape_.q_len), -1);
  for (int64_t bl = 0; bl < int64_t(shape_.batch) * L.list_heads; ++bl)
    for (int64_t g = 0; g < L.n_groups; ++g) {
      const int64_t r = bl * L.n_groups + g;
      for (int32_t p = L.q_offsets[size_t(r)]; p < L.q_offsets[size_t(r) + 1]; ++p)
        row_group_[size_t(bl * shape_.q_len + L.q_rows[size_t(p)])] = int32_t(g);
    }
}

int64_t TokenSelection::group_of(int b, int h, int64_t i) const {
  const HostIndexLists& L = *lists_;
  const int lh = L.list_heads == 1 ? 0 : h;
  if (row_group_.empty()) return i / L.q_group;
  return row_group_[size_t((int64_t(b) * L.list_heads + lh) * shape_.q_len + i)];
}

void TokenSelection::keys(int b, int h, int64_t i, std::vector<int64_t>& out) const {
  out.clear();
  const HostIndexLists& L = *lists_;
  const int64_t g = group_of(b, h, i);
  if (g < 0) return;
  const int lh = L.list_heads == 1 ? 0 : h;
  const int64_t r = (int64_t(b) * L.list_heads + lh) * L.n_groups + g;
  const int64_t limit = shape_.causal ? std::min(shape_.kv_len, i + shape_.q_offset() + 1) : shape_.kv_len;
  for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p) {
    const int64_t j = L.indices[size_t(p)];
    if (j >= limit) break;  // ascending
    if (out.empty() || out.back() != j) out.push_back(j);
  }
}

void UnionSelection::keys(int b, int h, int64_t i, std::vector<int64_t>& out) const {
  out.clear();
  std::vector<int64_t> part;
  for (const auto& p : parts_) {
    p->keys(b, h, i, part);
    out.insert(out.end(), part.begin(), part.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

double selected_pairs(const Selection& sel, const AttnShape& s) {
  double total = 0;
  std::vector<int64_t> keys;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h)
      for (int64_t i = 0; i < s.q_len; ++i) {
        sel.keys(b, h, i, keys);
        total += double(keys.size());
      }
  return total;
}

namespace {
// Pairs (row, key j) with pos(row) >= j for rows whose absolute positions are [p0, p1) and
// keys [k0, k1): Σ_rows clamp(pos - k0 + 1, 0, k1 - k0).
double causal_pairs(int64_t p0, int64_t p1, int64_t k0, int64_t k1) {
  double total = 0;
  // Rows at pos >= k1 - 1 see the whole range; rows below k0 see none; in between a ramp.
  const int64_t full_from = std::max(p0, k1 - 1);
  if (p1 > full_from) total += double(p1 - full_from) * double(k1 - k0);
  const int64_t r0 = std::max(p0, k0), r1 = std::min(p1, k1 - 1);
  if (r1 > r0) {  // pos in [r0, r1): pos - k0 + 1 keys, an arithmetic series
    const double first = double(r0 - k0 + 1), last = double(r1 - 1 - k0 + 1);
    total += (first + last) * double(r1 - r0) / 2.0;
  }
  return total;
}
}  // namespace

double selected_pairs(const HostBlockLists& L, const AttnShape& s) {
  const int64_t n_qb = (s.q_len + L.q_block - 1) / L.q_block;
  const int64_t off = s.q_offset();
  const double head_mult = L.list_heads == 1 ? double(s.q_heads) : 1.0;
  double total = 0;
  for (int64_t bl = 0; bl < int64_t(s.batch) * L.list_heads; ++bl)
    for (int64_t qb = 0; qb < n_qb; ++qb) {
      const int64_t r = bl * n_qb + qb;
      const int64_t r0 = qb * L.q_block, r1 = std::min(s.q_len, r0 + L.q_block);
      for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p) {
        const int64_t k0 = int64_t(L.blocks[size_t(p)]) * L.k_block;
        const int64_t k1 = std::min(s.kv_len, k0 + L.k_block);
        total += s.causal ? causal_pairs(r0 + off, r1 + off, k0, k1) : double(r1 - r0) * double(k1 - k0);
      }
    }
  return total * head_mult;
}

double selected_pairs(const HostIndexLists& L, const AttnShape& s) {
  const int64_t off = s.q_offset();
  const double head_mult = L.list_heads == 1 ? double(s.q_heads) : 1.0;
  const bool explicit_rows = !L.q_offsets.empty();
  double total = 0;
  std::vector<int64_t> pos;
  for (int64_t bl = 0; bl < int64_t(s.batch) * L.list_heads; ++bl)
    for (int64_t g = 0; g < L.n_groups; ++g) {
      const int64_t r = bl * L.n_groups + g;
      pos.clear();
      if (explicit_rows) {
        for (int32_t p = L.q_offsets[size_t(r)]; p < L.q_offsets[size_t(r) + 1]; ++p)
          pos.push_back(L.q_rows[size_t(p)] + off);
        std::sort(pos.begin(), pos.end());
      } else {
        const int64_t r0 = std::min(s.q_len, g * L.q_group), r1 = std::min(s.q_len, r0 + L.q_group);
        for (int64_t i = r0; i < r1; ++i) pos.push_back(i + off);
      }
      if (pos.empty()) continue;
      int64_t prev = -1;
      for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p) {
        const int64_t j = L.indices[size_t(p)];
        if (j == prev) continue;  // a repeated key is one selected pair
        prev = j;
        if (!s.causal) {
          total += double(pos.size());
        } else {  // rows at positions >= j
          total += double(pos.end() - std::lower_bound(pos.begin(), pos.end(), j));
        }
      }
    }
  return total * head_mult;
}

}  // namespace ab
