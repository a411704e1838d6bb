// The masked softmax variants (streaming, diag, blockrank, mixformer) against the masked
// formula written here from each paper, in float64, on fresh random inputs of odd shapes
// (N = 1013, d in {64, 128}, several head layouts), causal and not where it applies; their
// parameters refused with the field and the rule; executed FLOPs counting non-empty tiles.
#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "variant_test_util.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "runner/capabilities.hpp"

using namespace ab;

namespace {

struct Layout {
  int heads, kv_heads, d;
};
constexpr Layout kLayouts[] = {{4, 4, 64}, {8, 2, 128}, {6, 1, 64}};

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Unnormalised weights w(scale·q·k) over the keys allow() admits (ReLU DiagAttention).
template <class T, class Allow, class Weight>
void weighted_row(const vt::Run& r, int b, int h, int64_t i, Allow allow, Weight weight, T* out) {
  const AttnShape& s = r.shape;
  const int kh = h / (s.q_heads / s.kv_heads);
  const int64_t qpos = i + s.q_offset();
  const T scale = T(1) / std::sqrt(T(s.head_dim));
  for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!allow(qpos, j)) continue;
    T dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += T(r.host->q.row(b, h, i)[c]) * T(r.host->k.row(b, kh, j)[c]);
    const T w = weight(dot * scale);
    for (int c = 0; c < s.v_dim; ++c) out[c] += w * T(r.host->v.row(b, kh, j)[c]);
  }
}

}  // namespace

TEST_CASE("streaming: sinks + recent window, prefill and decode, against the cache rule") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> win(1, 300), snk(0, 8);
  for (const Layout& l : kLayouts) {
    const int64_t window = win(rng), sinks = snk(rng);
    INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " window " << window << " sinks " << sinks);
    // StreamingLLM keeps the first `sinks` tokens and the `window` most recent positions.
    auto rule = [&](int64_t p, int64_t j) { return j <= p && (j < sinks || p - j < window); };
    for (Mode mode : {Mode::prefill, Mode::decode}) {
      const int64_t nq = mode == Mode::prefill ? 1013 : 1;
      const vt::Run r = vt::run("streaming", {{"window", window}, {"sinks", sinks}},
                                vt::problem(1, l.heads, l.kv_heads, l.d, nq, 1013, true, mode), rng());
      vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
        vt::masked_softmax_row<decltype(zero)>(r, b, h, i, rule, out);
      }, rng);
    }
  }
}

TEST_CASE("streaming: the structured mask every backend runs, and its FLOPs") {
  auto v = vt::make("streaming", {{"window", int64_t{1024}}, {"sinks", int64_t{4}}});
  // Every backend of this build runs it (the CUDA one included: a structured mask).
  std::vector<std::string> all;
  for (const NamedBackend& b : capability_backends()) all.push_back(b.name);
  CHECK(supported_backends(*v, capability_backends()) == all);
  const AttnShape s = v->shape(vt::problem(1, 8, 8, 128, 32768, 32768, true));
  const Mask m = dynamic_cast<DenseSdpaVariant&>(*v).mask(s);
  CHECK(m.causal);
  CHECK(m.window == 1024);
  CHECK(m.sinks == 4);
  CHECK(!m.extra);  // the CUDA backend refuses predicates; this mask needs none
  CHECK(m.name() == "causal_window1024_sink4");
  const Cost c = v->cost(s, nullptr);
  // Dense-equivalent stays dense causal; executed counts the non-empty tiles only.
  CHECK(c.dense_equivalent == doctest::Approx(2.0 * 8 * (32768.0 * 32769 / 2) * 256));
  CHECK(c.executed < 0.1 * c.dense_equivalent);
  CHECK(c.executed >= 2.0 * 8 * 256 * (1024.0 * 32768 - 1024.0 * 1023 / 2));
  // Planned on a backend: the tiles its kernel visits, at least the allowed pairs.
  {
    auto cpu = make_cpu_backend();
    Inputs probe;
    probe.shape = s;
    const Plan pl = v->plan(probe, *cpu);
    CHECK(pl.run_pairs > 0);
    const Cost cp = v->cost(s, &pl);
    CHECK(cp.executed >= c.executed);
    CHECK(cp.executed < 0.1 * cp.dense_equivalent);
  }
  // Density: the kept pairs (Σ_i min(i+1, W) plus the sinks outside the window) over causal.
  double kept = 0;
  for (int64_t i = 0; i < 32768; ++i) kept += std::min<int64_t>(i + 1, 1024) + std::min<int64_t>(4, std::max<int64_t>(0, i + 1 - 1024));
  CHECK(c.density == doctest::Approx(kept / (32768.0 * 32769 / 2)));
  // Decode reads the sinks and the window of the cache, not the evicted middle.
  const AttnShape d = v->shape(vt::problem(1, 8, 8, 128, 1, 32768, true, Mode::decode));
  const Cost cd = v->cost(d, nullptr);
  CHECK(cd.bytes_min == doctest::Approx(4.0 * (8 * 128 * 2 + 8 * 1028.0 * 256) + 8 * 4.0));
}

TEST_CASE("diag: block-diagonal softmax and ReLU attention, causal and not") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> blk(1, 200);
  for (const Layout& l : kLayouts)
    for (bool causal : {true, false})
      for (const char* weights : {"softmax", "relu"}) {
        const int64_t w = blk(rng);
        INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " block " << w << " causal " << causal
                  << " " << weights);
        auto rule = [&](int64_t p, int64_t j) {
          return floor_div(p, w) == floor_div(j, w) && (!causal || j <= p);
        };
        const vt::Run r = vt::run("diag", {{"block", w}, {"weights", std::string(weights)}},
                                  vt::problem(1, l.heads, l.kv_heads, l.d, 1013, 1013, causal), rng());
        if (std::string(weights) == "softmax") {
          vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
            vt::masked_softmax_row<decltype(zero)>(r, b, h, i, rule, out);
          }, rng, 24);
        } else {
          vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
            using T = decltype(zero);
            weighted_row<T>(r, b, h, i, rule, [](T x) { return std::max(x, T(0)); }, out);
          }, rng, 24);
          CHECK(r.plan.selection == nullptr);
          CHECK(!r.plan.selection_na_reason.empty());
        }
      }
}

TEST_CASE("blockrank: instruction / documents / query blocks") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> docs(1, 40);
  for (const Layout& l : kLayouts) {
    const int64_t m = docs(rng) + 2, n = 1013, len = n / m;
    INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " blocks " << m << " of " << len);
    // BlockRank §3: instruction causal; documents see the instruction and themselves
    // (causally); the query block sees everything before it and itself causally.
    auto rule = [&](int64_t p, int64_t j) {
      const int64_t bi = std::min(p / len, m - 1), bj = std::min(j / len, m - 1);
      if (j > p) return false;
      return bi == bj || bj == 0 || bi == m - 1;
    };
    const vt::Run r = vt::run("blockrank", {{"documents", m - 2}},
                              vt::problem(1, l.heads, l.kv_heads, l.d, n, n, true), rng());
    vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
      vt::masked_softmax_row<decltype(zero)>(r, b, h, i, rule, out);
    }, rng);
  }
  // Cost is linear in the documents: far below dense causal at 30 documents of 160.
  auto v = vt::make("blockrank");
  const AttnShape s = v->shape(vt::problem(1, 8, 8, 128, 32 * 160, 32 * 160, true));
  const Cost c = v->cost(s, nullptr);
  CHECK(c.density < 0.2);
  CHECK(c.executed < c.dense_equivalent);
}

TEST_CASE("mixformer: template queries see templates, search queries see all (non-causal)") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> tpl(1, 700);
  for (const Layout& l : kLayouts) {
    const int64_t t = tpl(rng);
    INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " templates " << t);
    auto rule = [&](int64_t p, int64_t j) { return p < t ? j < t : true; };
    const vt::Run r = vt::run("mixformer", {{"templates", t}},
                              vt::problem(2, l.heads, l.kv_heads, l.d, 1013, 1013, false), rng());
    vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
      vt::masked_softmax_row<decltype(zero)>(r, b, h, i, rule, out);
    }, rng);
  }
  // MixViT: 128 template + 324 search tokens.
  auto v = vt::make("mixformer", {{"search", int64_t{324}}});
  const AttnShape s = v->shape(vt::problem(1, 1, 1, 64, 452, 452, false));
  CHECK(v->cost(s, nullptr).density == doctest::Approx((128.0 * 128 + 324.0 * 452) / (452.0 * 452)));
  // Two unmasked calls: 2·(Nt² + Ns·N)·(d + dv) FLOPs per head, the paper's 4·(...)·d.
  CHECK(v->cost(s, nullptr).executed == doctest::Approx(4.0 * (128.0 * 128 + 324.0 * 452) * 64));
}

TEST_CASE("masked variants refuse impossible parameters, naming the field and the rule") {
  const Problem causal = vt::problem(1, 4, 4, 64, 1013, 1013, true);
  const Problem full = vt::problem(1, 4, 4, 64, 1013, 1013, false);
  auto refuses = [](const char* name, std::map<std::string, ParamValue> p, const Problem& pr,
                    const char* says) {
    auto v = vt::make(name, p);
    CHECK_THROWS_WITH_AS(v->shape(pr), doctest::Contains(says), InputError);
  };
  refuses("streaming", {{"window", int64_t{0}}}, causal, "streaming.window = 0: must be >= 1");
  refuses("streaming", {{"sinks", int64_t{-1}}}, causal, "streaming.sinks = -1: must be >= 0");
  refuses("streaming", {}, full, "problem.causal = false");
  refuses("diag", {{"block", int64_t{0}}}, causal, "diag.block = 0: must be >= 1");
  refuses("blockrank", {{"documents", int64_t{0}}}, causal, "blockrank.documents = 0: must be >= 1");
  refuses("blockrank", {{"documents", int64_t{1012}}}, causal, "must be at most N - 2 = 1011");
  refuses("blockrank", {}, full, "problem.causal = false");
  refuses("mixformer", {{"templates", int64_t{1013}}}, full, "mixformer.templates = 1013: must be below N");
  refuses("mixformer", {{"templates", int64_t{10}}, {"search", int64_t{5}}}, full,
          "templates + search = 15 must equal N = 1013");
  refuses("mixformer", {}, causal, "non-causal");
}
