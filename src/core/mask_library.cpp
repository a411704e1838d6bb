#include "core/mask_library.hpp"

#include <algorithm>
#include <stdexcept>

namespace ab {

namespace {

constexpr int64_t kFar = INT64_MAX / 4;

BlockClass of(bool any, bool all) {
  return !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
}

// Rows [q0, q1) x keys [k0, k1) where a pair is allowed iff lo <= qpos - j <= hi: every
// difference in [q0 - k1 + 1, q1 - 1 - k0] occurs, so this is exact.
void delta_class(int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t lo, int64_t hi,
                 bool& any, bool& all) {
  if (q0 >= q1 || k0 >= k1) return;
  const int64_t dmin = q0 - (k1 - 1), dmax = (q1 - 1) - k0;
  any |= std::max(dmin, lo) <= std::min(dmax, hi);
  all &= dmin >= lo && dmax <= hi;
}

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

void require_positive(const char* what, int64_t v) {
  if (v < 1)
    throw std::invalid_argument(std::string(what) + " = " + std::to_string(v) + ": must be >= 1");
}

}  // namespace

MaskFn make_mask_fn(std::string name, MaskAllows allows, MaskClassify classify) {
  auto m = std::make_shared<MaskPredicate>();
  m->name = std::move(name);
  m->allows = std::move(allows);
  m->classify = std::move(classify);
  return m;
}

namespace {
// A library primitive with its program (one instruction).
MaskFn with_program(MaskFn fn, MaskInstr::Op op, int64_t a = 0, int64_t b = 0) {
  auto m = std::make_shared<MaskPredicate>(*fn);
  m->program = {MaskInstr{op, a, b}};
  return m;
}
}  // namespace

MaskFn generate_causal() {
  return with_program(make_mask_fn(
      "causal", [](int, int, int64_t q, int64_t j) { return j <= q; },
      [](int, int, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
        bool any = false, all = true;
        delta_class(q0, q1, k0, k1, 0, kFar, any, all);
        return of(any, all);
      }), MaskInstr::Op::causal);
}

MaskFn generate_sliding_window(int64_t window) {
  require_positive("sliding window", window);
  return with_program(make_mask_fn(
      "window" + std::to_string(window),
      [window](int, int, int64_t q, int64_t j) { return q - j < window && j - q < window; },
      [window](int, int, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
        bool any = false, all = true;
        delta_class(q0, q1, k0, k1, -(window - 1), window - 1, any, all);
        return of(any, all);
      }), MaskInstr::Op::window, window);
}

MaskFn generate_sinks(int64_t sinks) {
  require_positive("sinks", sinks);
  return with_program(make_mask_fn(
      "sink" + std::to_string(sinks), [sinks](int, int, int64_t, int64_t j) { return j < sinks; },
      [sinks](int, int, int64_t, int64_t, int64_t k0, int64_t k1) {
        return of(k0 < sinks, k1 <= sinks);
      }), MaskInstr::Op::sinks, sinks);
}

MaskFn generate_streaming(int64_t window, int64_t sinks) {
  require_positive("streaming window", window);
  require_positive("streaming sinks", sinks);
  auto m = std::make_shared<MaskPredicate>(*make_mask_fn(
      "window" + std::to_string(window) + "_sink" + std::to_string(sinks),
      [window, sinks](int, int, int64_t q, int64_t j) {
        return j < sinks || (q - j < window && j - q < window);
      },
      [window, sinks](int, int, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
        const int64_t split = std::clamp(sinks, k0, k1);
        bool any = split > k0, all = true;  // sink keys: all visible
        delta_class(q0, q1, split, k1, -(window - 1), window - 1, any, all);
        return of(any, all);
      }));
  m->program = {MaskInstr{MaskInstr::Op::sinks, sinks}, MaskInstr{MaskInstr::Op::window, window},
                MaskInstr{MaskInstr::Op::any_of, 2}};
  return m;
}

MaskFn generate_block_diagonal(int64_t block) {
  require_positive("block-diagonal block", block);
  return with_program(make_mask_fn(
      "blockdiag" + std::to_string(block),
      [block](int, int, int64_t q, int64_t j) { return floor_div(q, block) == floor_div(j, block); },
      [block](int, int, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
        const int64_t qa = floor_div(q0, block), qb = floor_div(q1 - 1, block);
        const int64_t ka = floor_div(k0, block), kb = floor_div(k1 - 1, block);
        return of(std::max(qa, ka) <= std::min(qb, kb), qa == qb && ka == kb && qa == ka);
      }), MaskInstr::Op::block_diagonal, block);
}

MaskFn generate_blockrank(int64_t blocks, int64_t block_len) {
  require_positive("blockrank blocks", blocks);
  require_positive("blockrank block_len", block_len);
  const int64_t last = blocks - 1;
  // Block index of a position; positions past the last full block belong to the query block.
  auto block_of = [block_len, last](int64_t p) {
    return std::clamp<int64_t>(floor_div(p, block_len), 0, last);
  };
  auto allows = [block_of, last](int, int, int64_t q, int64_t j) {
    if (j > q) return false;  // causal everywhere (within a block; across blocks j < q)
    const int64_t bi = block_of(q), bj = block_of(j);
    return bi == bj || bj == 0 || bi == last;
  };
  auto classify = [block_of, block_len, last](int, int, int64_t q0, int64_t q1, int64_t k0,
                                              int64_t k1) {
    // Sub-rectangles of one (query block, key block) pair each follow one rule.
    bool any = false, all = true;
    for (int64_t bi = block_of(q0); bi <= block_of(q1 - 1); ++bi) {
      const int64_t r0 = std::max(q0, bi * block_len);
      const int64_t r1 = bi == last ? q1 : std::min(q1, (bi + 1) * block_len);
      for (int64_t bj = block_of(k0); bj <= block_of(k1 - 1); ++bj) {
        const int64_t c0 = std::max(k0, bj * block_len);
        const int64_t c1 = bj == last ? k1 : std::min(k1, (bj + 1) * block_len);
        if (r0 >= r1 || c0 >= c1) continue;
        if (bj > bi) {
          all = false;
        } else if (bi == bj) {
          delta_class(r0, r1, c0, c1, 0, kFar, any, all);
        } else if (bj == 0 || bi == last) {
          any = true;
        } else {
          all = false;
        }
        if (any && !all) return BlockClass::partial;
      }
    }
    return of(any, all);
  };
  return with_program(make_mask_fn("blockrank_b" + std::to_string(blocks) + "_len" + std::to_string(block_len),
                      allows, classify), MaskInstr::Op::blockrank, blocks, block_len);
}

MaskFn generate_mixformer(int64_t templates) {
  require_positive("mixformer templates", templates);
  return with_program(make_mask_fn(
      "mixformer_t" + std::to_string(templates),
      [templates](int, int, int64_t q, int64_t j) { return q >= templates || j < templates; },
      [templates](int, int, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
        const bool search_rows = q1 > templates, template_rows = q0 < templates;
        const bool any = search_rows || k0 < templates;
        const bool all = !template_rows || k1 <= templates;
        return of(any, all);
      }), MaskInstr::Op::mixformer, templates);
}

namespace {
std::string bracketed(const MaskFn& m) {
  return m->name.find("_or_") != std::string::npos ? "(" + m->name + ")" : m->name;
}

MaskFn combine(const std::vector<MaskFn>& parts, bool conj) {
  if (parts.empty()) throw std::invalid_argument(conj ? "and_masks: no masks" : "or_masks: no masks");
  if (parts.size() == 1) return parts[0];
  std::string name;
  for (const auto& p : parts) {
    if (!p) throw std::invalid_argument("and_masks/or_masks: null mask");
    name += (name.empty() ? "" : (conj ? "_" : "_or_")) + (conj ? bracketed(p) : p->name);
  }
  auto allows = [parts, conj](int b, int h, int64_t q, int64_t j) {
    for (const auto& p : parts)
      if (p->allows(b, h, q, j) != conj) return !conj;
    return conj;
  };
  auto classify = [parts, conj, allows](int b, int h, int64_t q0, int64_t q1, int64_t k0,
                                        int64_t k1) {
    // AND: an empty part empties the block; full parts drop out. OR: the dual. One remaining
    // partial part decides; two or more need a scan of the composition.
    const BlockClass absorbing = conj ? BlockClass::empty : BlockClass::full;
    const BlockClass neutral = conj ? BlockClass::full : BlockClass::empty;
    int partial = 0;
    for (const auto& p : parts) {
      const BlockClass c = p->classify ? p->classify(b, h, q0, q1, k0, k1)
                                       : classify_by_scan(p->allows, b, h, q0, q1, k0, k1);
      if (c == absorbing) return absorbing;
      if (c != neutral) ++partial;
    }
    if (partial == 0) return neutral;
    if (partial == 1) return BlockClass::partial;
    return classify_by_scan(allows, b, h, q0, q1, k0, k1);
  };
  auto m = std::make_shared<MaskPredicate>(*make_mask_fn(name, allows, classify));
  // The program: the parts' programs, then one AND/OR over them (none if a part has none).
  for (const auto& p : parts)
    if (p->program.empty()) return m;
  for (const auto& p : parts) m->program.insert(m->program.end(), p->program.begin(), p->program.end());
  m->program.push_back(MaskInstr{conj ? MaskInstr::Op::all_of : MaskInstr::Op::any_of, int64_t(parts.size())});
  if (m->program.size() > size_t(kMaxMaskProgram)) m->program.clear();
  return m;
}
}  // namespace

MaskFn and_masks(const std::vector<MaskFn>& parts) { return combine(parts, true); }
MaskFn or_masks(const std::vector<MaskFn>& parts) { return combine(parts, false); }

MaskFn rename_mask(const MaskFn& m, std::string name) {
  auto r = std::make_shared<MaskPredicate>(*m);
  r->name = std::move(name);
  return r;
}

Mask to_mask(const MaskFn& fn, bool causal) {
  Mask m;
  m.causal = causal;
  m.extra = fn;
  return m;
}

int64_t BlockMap::count(BlockClass c) const {
  return std::count(cls.begin(), cls.end(), c);
}

double BlockMap::nonempty_pairs(const AttnShape& s) const {
  double pairs = 0;
  for (int64_t r = 0; r < q_blocks; ++r) {
    const int64_t rows = std::min(s.q_len, (r + 1) * q_block) - r * q_block;
    for (int64_t c = 0; c < k_blocks; ++c)
      if (at(r, c) != BlockClass::empty)
        pairs += double(rows) * double(std::min(s.kv_len, (c + 1) * k_block) - c * k_block);
  }
  return pairs;
}

BlockMap classify_blocks(const Mask& m, const AttnShape& s, int64_t q_block, int64_t k_block,
                         int b, int h) {
  require_positive("classify_blocks q_block", q_block);
  require_positive("classify_blocks k_block", k_block);
  BlockMap map;
  map.q_block = q_block;
  map.k_block = k_block;
  map.q_blocks = (s.q_len + q_block - 1) / q_block;
  map.k_blocks = (s.kv_len + k_block - 1) / k_block;
  map.cls.resize(size_t(map.q_blocks * map.k_blocks));
  const int64_t off = s.q_offset();
  for (int64_t r = 0; r < map.q_blocks; ++r) {
    const int64_t i0 = r * q_block, i1 = std::min(s.q_len, i0 + q_block);
    for (int64_t c = 0; c < map.k_blocks; ++c) {
      const int64_t j0 = c * k_block, j1 = std::min(s.kv_len, j0 + k_block);
      map.cls[size_t(r * map.k_blocks + c)] = m.classify(b, h, i0 + off, i1 + off, j0, j1);
    }
  }
  return map;
}

namespace {
// |[a0, a1) ∩ [b0, b1)| for half-open integer intervals.
int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
  return std::max<int64_t>(0, std::min(a1, b1) - std::max(a0, b0));
}
}  // namespace

double allowed_pairs(const Mask& m, const AttnShape& s, int b, int h) {
  if (!m.extra) {
    // The structured part alone, row by row in O(1) (Mask::allows): keys j < kv_len, j <= qpos
    // when causal, and with a window either a sink (j < sinks) or |qpos − j| < window. Integer
    // counts, so the sum is exact whatever the order (validate estimates every case of a sweep).
    const int64_t off = s.q_offset();
    double pairs = 0;
    for (int64_t i = 0; i < s.q_len; ++i) {
      const int64_t qpos = i + off;
      const int64_t hi = m.causal ? std::clamp<int64_t>(qpos + 1, 0, s.kv_len) : s.kv_len;
      int64_t n = hi;
      if (m.window > 0) {
        const int64_t w0 = qpos - m.window + 1, w1 = qpos + m.window;  // [w0, w1)
        const int64_t sinks = std::max<int64_t>(0, m.sinks);
        n = overlap(0, hi, 0, sinks) + overlap(0, hi, w0, w1) - overlap(0, std::min(hi, sinks), w0, w1);
      }
      pairs += double(n);
    }
    return pairs;
  }
  // Blocks of 64 x 64: full ones count whole, partial ones element by element.
  const int64_t B = 64;
  const BlockMap map = classify_blocks(m, s, B, B, b, h);
  const int64_t off = s.q_offset();
  double pairs = 0;
  for (int64_t r = 0; r < map.q_blocks; ++r) {
    const int64_t i0 = r * B, i1 = std::min(s.q_len, i0 + B);
    for (int64_t c = 0; c < map.k_blocks; ++c) {
      const int64_t j0 = c * B, j1 = std::min(s.kv_len, j0 + B);
      const BlockClass cl = map.at(r, c);
      if (cl == BlockClass::full) {
        pairs += double(i1 - i0) * double(j1 - j0);
      } else if (cl == BlockClass::partial) {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) pairs += m.allows(b, h, i + off, j) ? 1 : 0;
      }
    }
  }
  return pairs;
}

}  // namespace ab
