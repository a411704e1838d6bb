#include "core/mask.hpp"

#include <algorithm>
#include <cstdint>

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

// Allowed differences delta = qpos - j for one kind of key, as a closed interval [lo, hi].
struct DeltaRange {
  int64_t lo, hi;
};
constexpr int64_t kNoLimit = INT64_MAX / 4;

// Keys [a, b) against rows [q0, q1): every integer delta in [q0 - (b-1), (q1-1) - a] occurs,
// so "any pair allowed" and "all pairs allowed" are interval tests (exact).
void classify_range(int64_t q0, int64_t q1, int64_t a, int64_t b, DeltaRange ok, bool& any,
                    bool& all) {
  if (a >= b) return;
  const int64_t dmin = q0 - (b - 1), dmax = (q1 - 1) - a;
  any |= std::max(dmin, ok.lo) <= std::min(dmax, ok.hi);
  all &= dmin >= ok.lo && dmax <= ok.hi;
}

// Structured part only (causal + window + sinks), exact. Sink keys (j < sinks, when a window
// is set) obey only the causal rule; the other keys obey causal and |qpos - j| < window.
BlockClass classify_structured(const Mask& m, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  const int64_t lo_causal = m.causal ? 0 : -kNoLimit;
  bool any = false, all = true;
  if (m.window > 0) {
    const int64_t split = std::clamp(m.sinks, k0, k1);
    classify_range(q0, q1, k0, split, {lo_causal, kNoLimit}, any, all);
    classify_range(q0, q1, split, k1,
                   {std::max(lo_causal, -(m.window - 1)), m.window - 1}, any, all);
  } else {
    classify_range(q0, q1, k0, k1, {lo_causal, kNoLimit}, any, all);
  }
  if (!any) return BlockClass::empty;
  return all ? BlockClass::full : BlockClass::partial;
}
}  // namespace

BlockClass classify_by_scan(const std::function<bool(int, int, int64_t, int64_t)>& allows, int b,
                            int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  bool any = false, all = true;
  for (int64_t i = q0; i < q1; ++i)
    for (int64_t j = k0; j < k1; ++j) {
      if (allows(b, h, i, j)) any = true;
      else all = false;
      if (any && !all) return BlockClass::partial;
    }
  return !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
}

BlockClass Mask::classify(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const {
  if (q0 >= q1 || k0 >= k1) return BlockClass::empty;
  const BlockClass c = classify_structured(*this, q0, q1, k0, k1);
  if (c == BlockClass::empty || !extra) return c;
  const BlockClass e = extra->classify ? extra->classify(b, h, q0, q1, k0, k1)
                                       : classify_by_scan(extra->allows, b, h, q0, q1, k0, k1);
  if (e == BlockClass::empty || c == BlockClass::full) return e;
  if (e == BlockClass::full) return c;
  // Both partial: the intersection may still be empty (e.g. a causal diagonal tile against a
  // block-diagonal predicate), which only a scan can tell; it stops at the first allowed pair.
  for (int64_t i = q0; i < q1; ++i)
    for (int64_t j = k0; j < k1; ++j)
      if (allows(b, h, i, j)) return BlockClass::partial;
  return BlockClass::empty;
}

}  // namespace ab
