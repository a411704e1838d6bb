// Masks as data: every block classifier (the structured causal/window/sinks part, each
// generate_* mask, and/or compositions, and their intersection with the structured part)
// agrees exactly with the element-wise mask on random blocks and shapes; names carry the
// parameters; block maps and allowed-pair counts match brute force.
#include <doctest/doctest.h>

#include <random>

#include "core/mask_library.hpp"
#include "variant_test_util.hpp"

using namespace ab;

namespace {

BlockClass brute(const Mask& m, int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  bool any = false, all = true;
  for (int64_t i = q0; i < q1; ++i)
    for (int64_t j = k0; j < k1; ++j) {
      const bool a = m.allows(b, h, i, j);
      any |= a;
      all &= a;
    }
  return !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
}

const char* cls_name(BlockClass c) {
  return c == BlockClass::empty ? "empty" : c == BlockClass::full ? "full" : "partial";
}

// Random blocks over positions [0, span): classify must equal the brute-force class.
void check_exact(const Mask& m, std::mt19937& rng, int64_t span, int trials = 1500) {
  INFO("mask " << m.name());
  std::uniform_int_distribution<int64_t> pos(0, span), len(1, 48);
  int wrong = 0;
  for (int t = 0; t < trials; ++t) {
    const int64_t q0 = pos(rng), q1 = q0 + len(rng);
    const int64_t k0 = pos(rng), k1 = k0 + len(rng);
    const BlockClass got = m.classify(0, 0, q0, q1, k0, k1);
    const BlockClass want = brute(m, 0, 0, q0, q1, k0, k1);
    if (got != want && wrong++ < 5) {
      INFO("block q[" << q0 << "," << q1 << ") k[" << k0 << "," << k1 << "): got "
                      << cls_name(got) << ", want " << cls_name(want));
      CHECK(false);
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("structured masks (causal, window, sinks) classify exactly, sinks included") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  struct M {
    bool causal;
    int64_t window, sinks;
  };
  for (const M& mm : {M{true, 0, 0}, M{false, 37, 0}, M{true, 37, 0}, M{true, 64, 4},
                      M{false, 50, 9}, M{true, 1, 1}, M{true, 3, 70}, M{false, 0, 5}}) {
    Mask m;
    m.causal = mm.causal;
    m.window = mm.window;
    m.sinks = mm.sinks;
    check_exact(m, rng, 400);
  }
}

TEST_CASE("library masks and compositions classify exactly") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> small(1, 48);
  const int64_t w = small(rng), s = small(rng) / 4 + 1, blk = small(rng), docs = small(rng) / 8 + 1;
  INFO("window " << w << " sinks " << s << " block " << blk << " blockrank docs " << docs);
  const std::vector<MaskFn> fns = {
      generate_causal(),
      generate_sliding_window(w),
      generate_sinks(s),
      generate_streaming(w, s),
      generate_block_diagonal(blk),
      generate_blockrank(docs + 2, blk),
      generate_mixformer(w + 7),
      and_masks({generate_causal(), generate_streaming(w, s)}),
      and_masks({generate_causal(), generate_block_diagonal(blk)}),
      // Two partial parts: the composition falls back to a scan where needed.
      and_masks({generate_sliding_window(w), generate_block_diagonal(blk)}),
      or_masks({generate_block_diagonal(blk), generate_sinks(s)}),
      or_masks({generate_sliding_window(w), generate_mixformer(w + 3)}),
      and_masks({generate_causal(), or_masks({generate_sliding_window(w), generate_sinks(s)})}),
      // Without a classifier: classified by scanning.
      make_mask_fn("even_keys", [](int, int, int64_t, int64_t j) { return j % 2 == 0; }),
  };
  for (const MaskFn& f : fns) {
    check_exact(to_mask(f), rng, 240);
    // ANDed with the structured part (the form SdpaArgs carries).
    Mask m = to_mask(f, true);
    check_exact(m, rng, 240);
    m.window = w + 5;
    m.sinks = s;
    check_exact(m, rng, 240, 500);
  }
  // A library streaming mask is the same set as the structured fields.
  Mask structured;
  structured.causal = true;
  structured.window = w;
  structured.sinks = s;
  const Mask lib = to_mask(and_masks({generate_causal(), generate_streaming(w, s)}));
  for (int64_t i = 0; i < 300; ++i)
    for (int64_t j = 0; j < 300; ++j) REQUIRE(structured.allows(0, 0, i, j) == lib.allows(0, 0, i, j));
}

TEST_CASE("mask names carry their parameters") {
  CHECK(generate_streaming(1024, 4)->name == "window1024_sink4");
  CHECK(and_masks({generate_causal(), generate_streaming(1024, 4)})->name == "causal_window1024_sink4");
  CHECK(generate_block_diagonal(64)->name == "blockdiag64");
  CHECK(generate_blockrank(32, 160)->name == "blockrank_b32_len160");
  CHECK(generate_mixformer(128)->name == "mixformer_t128");
  CHECK(or_masks({generate_sinks(4), generate_sliding_window(8)})->name == "sink4_or_window8");
  CHECK(and_masks({generate_causal(), or_masks({generate_sinks(4), generate_sliding_window(8)})})->name ==
        "causal_(sink4_or_window8)");
  CHECK(rename_mask(generate_causal(), "lower")->name == "lower");
  Mask m;
  m.causal = true;
  m.window = 1024;
  m.sinks = 4;
  CHECK(m.name() == "causal_window1024_sink4");
  CHECK(to_mask(generate_block_diagonal(64), true).name() == "causal_blockdiag64");
  CHECK_THROWS(generate_sliding_window(0));
  CHECK_THROWS(generate_block_diagonal(-1));
  CHECK_THROWS(and_masks({}));
}

TEST_CASE("block maps and allowed pairs agree with the element-wise mask on random shapes") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> len(1, 700), bs(1, 130);
  for (int t = 0; t < 24; ++t) {
    AttnShape s;
    s.kv_len = len(rng);
    s.q_len = std::uniform_int_distribution<int64_t>(1, s.kv_len)(rng);
    const int64_t bq = bs(rng), bk = bs(rng);
    const int kind = t % 6;
    Mask m;
    if (kind == 0) {
      m.causal = true;
      m.window = bs(rng);
      m.sinks = bs(rng) / 16;
    } else if (kind == 1) {
      m = to_mask(generate_block_diagonal(bs(rng)), true);
    } else if (kind == 2) {
      m = to_mask(or_masks({generate_mixformer(bs(rng)), generate_sliding_window(bs(rng))}));
    } else if (kind == 3) {
      m = to_mask(generate_blockrank(5, std::max<int64_t>(1, s.kv_len / 5)), true);
    } else if (kind == 4) {  // structured without causality: a two-sided window and sinks
      m.window = bs(rng);
      m.sinks = bs(rng) / 8;
    } else {  // causal alone, or no mask
      m.causal = t % 12 == 5;
    }
    INFO("shape q" << s.q_len << " k" << s.kv_len << " blocks " << bq << "x" << bk << " mask " << m.name());
    const BlockMap map = classify_blocks(m, s, bq, bk);
    REQUIRE(map.q_blocks == (s.q_len + bq - 1) / bq);
    REQUIRE(map.k_blocks == (s.kv_len + bk - 1) / bk);
    const int64_t off = s.q_offset();
    double pairs = 0, nonempty = 0;
    int wrong = 0;
    for (int64_t r = 0; r < map.q_blocks; ++r)
      for (int64_t c = 0; c < map.k_blocks; ++c) {
        const int64_t i0 = r * bq, i1 = std::min(s.q_len, i0 + bq);
        const int64_t j0 = c * bk, j1 = std::min(s.kv_len, j0 + bk);
        const BlockClass want = brute(m, 0, 0, i0 + off, i1 + off, j0, j1);
        wrong += map.at(r, c) != want;
        if (want != BlockClass::empty) nonempty += double(i1 - i0) * double(j1 - j0);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) pairs += m.allows(0, 0, i + off, j);
      }
    CHECK(wrong == 0);
    CHECK(map.count(BlockClass::empty) + map.count(BlockClass::partial) + map.count(BlockClass::full) ==
          map.q_blocks * map.k_blocks);
    CHECK(map.nonempty_pairs(s) == nonempty);
    CHECK(allowed_pairs(m, s) == pairs);
  }
}
