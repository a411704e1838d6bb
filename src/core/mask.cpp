#include "core/mask.hpp"

#include <algorithm>

namespace ab {

std::string Mask::name() const {
  std::string n;
  auto add = [&](const std::string& s) { n += (n.empty() ? "" : "_") + s; };
  if (causal) add("causal");
  if (window > 0) add("window" + std::to_string(window));
  if (window > 0 && sinks > 0) add("sink" + std::to_string(sinks));
  if (extra) add(extra->name);
  return n.empty() ? "none" : n;
}

namespace {
// Structured part only: causal + window + sinks.
BlockClass classify_structured(const Mask& m, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  // Rows are [q0, q1), keys [k0, k1); both non-empty.
  const int64_t qlast = q1 - 1, klast = k1 - 1;
  bool any = true, all = true;
  if (m.causal) {
    if (k0 > qlast) any = false;     // every key is after every query
    if (klast > q0) all = false;     // some key after the first query
  }
  if (m.window > 0 && klast >= m.sinks) {
    // Non-sink pairs are visible iff |qpos - j| < window.
    const int64_t min_dist = std::max<int64_t>({0, k0 - qlast, q0 - klast});
    const int64_t max_dist = std::max(qlast - k0, klast - q0);
    const bool touches_sinks = k0 < m.sinks;
    if (min_dist >= m.window && !touches_sinks) any = false;
    if (max_dist >= m.window) all = false;
  }
  if (!any) return BlockClass::empty;
  return all ? BlockClass::full : BlockClass::partial;
}
}  // namespace

BlockClass Mask::classify(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const {
  BlockClass c = classify_structured(*this, q0, q1, k0, k1);
  if (c == BlockClass::empty || !extra) return c;
  BlockClass e;
  if (extra->classify) {
    e = extra->classify(b, h, q0, q1, k0, k1);
  } else {
    bool any = false, all = true;
    for (int64_t i = q0; i < q1 && (all || !any); ++i)
      for (int64_t j = k0; j < k1; ++j) {
        const bool a = extra->allows(b, h, i, j);
        any |= a;
        all &= a;
      }
    e = !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
  }
  if (e == BlockClass::empty) return e;
  if (c == BlockClass::full && e == BlockClass::full) return BlockClass::full;
  return BlockClass::partial;  // conservative: the kernel applies the element mask
}

}  // namespace ab
