// The registry's contents and the FLOP / byte formulas against hand-computed values.
#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "variants/dense_sdpa_base.hpp"

using namespace ab;

TEST_CASE("the dense head-sharing family is registered with papers and parameters") {
  for (const char* n : {"mha", "gqa", "mqa", "sqa", "ssqa", "xsqa", "xsmqa"}) {
    const RegistryEntry* e = find_variant(n);
    REQUIRE_MESSAGE(e, n);
    CHECK(e->info.family == "dense-head-sharing");
    CHECK(!e->info.paper.empty());
    CHECK(e->info.modes.size() == 2);
  }
  CHECK(find_variant("nope") == nullptr);
  // Names are unique.
  auto names = variant_names();
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
}

TEST_CASE("named SQA configurations resolve to the paper's head counts (H = 16)") {
  Problem p;
  p.heads = 16;
  p.kv_heads = 16;
  struct Want { const char* name; int q, kv; };
  for (Want w : {Want{"mha", 16, 16}, Want{"gqa", 16, 4}, Want{"mqa", 16, 1}, Want{"sqa", 8, 4},
                 Want{"ssqa", 8, 8}, Want{"xsqa", 4, 4}, Want{"xsmqa", 4, 1}}) {
    const RegistryEntry* e = find_variant(w.name);
    auto v = e->make(resolve_params(e->info, {}));
    const AttnShape s = v->shape(p);
    INFO(w.name);
    CHECK(s.q_heads == w.q);
    CHECK(s.kv_heads == w.kv);
  }
  // gqa takes problem.kv_heads when the problem gives fewer kv heads than heads.
  p.kv_heads = 2;
  auto g = find_variant("gqa")->make(resolve_params(find_variant("gqa")->info, {}));
  CHECK(g->shape(p).kv_heads == 2);
}

TEST_CASE("parameter values are type-checked against the schema") {
  const auto& info = find_variant("sqa")->info;
  CHECK_THROWS_AS(resolve_params(info, {{"query_heads", std::string("x")}}), InputError);
  CHECK_THROWS_WITH_AS(resolve_params(info, {{"quer_heads", int64_t{2}}}),
                       doctest::Contains("did you mean 'query_heads'"), InputError);
}

TEST_CASE("FLOPs and bytes of dense attention, hand-computed") {
  const RegistryEntry* e = find_variant("mha");
  auto v = e->make(resolve_params(e->info, {}));
  Problem p;
  p.batch = 2;
  p.heads = 4;
  p.kv_heads = 4;
  p.head_dim = 64;
  p.v_dim = 64;
  p.q_len = p.kv_len = 1000;
  p.causal = false;
  p.dtype = DType::bf16;
  AttnShape s = v->shape(p);
  Cost c = v->cost(s, nullptr);
  // 4·B·H·N²·d = 4·2·4·10^6·64
  CHECK(c.dense_equivalent == doctest::Approx(4.0 * 2 * 4 * 1e6 * 64));
  CHECK(c.executed == doctest::Approx(c.dense_equivalent));
  // bytes: (Q + K + V + O) · 2 bytes + LSE · 4 bytes = 4·(2·4·1000·64)·2 + 2·4·1000·4
  CHECK(c.bytes_min == doctest::Approx(4.0 * 2 * 4 * 1000 * 64 * 2 + 2 * 4 * 1000 * 4));

  // Causal square: N(N+1)/2 pairs per head.
  p.causal = true;
  s = v->shape(p);
  c = v->cost(s, nullptr);
  CHECK(c.dense_equivalent == doctest::Approx(2.0 * 2 * 4 * (1000.0 * 1001 / 2) * 128));

  // Decode: one query over 5000 keys, GQA 16/4: 4·B·Hq·T·d FLOPs; K/V of 4 heads read once.
  Problem d;
  d.batch = 1;
  d.heads = 16;
  d.kv_heads = 16;
  d.head_dim = d.v_dim = 128;
  d.q_len = 1;
  d.kv_len = 5000;
  d.mode = Mode::decode;
  d.dtype = DType::f32;
  auto g = find_variant("gqa")->make(resolve_params(find_variant("gqa")->info, {{"kv_heads", int64_t{4}}}));
  const AttnShape gs = g->shape(d);
  const Cost gc = g->cost(gs, nullptr);
  CHECK(gc.dense_equivalent == doctest::Approx(4.0 * 16 * 5000 * 128));
  CHECK(gc.bytes_min == doctest::Approx((16 * 128 + 2 * 4 * 5000 * 128 + 16 * 128) * 4.0 + 16 * 4.0));

  // Four decode steps against a growing cache: each step reads the keys it sees afresh,
  // 4997 + 4998 + 4999 + 5000 rows per kv head; so does StreamingLLM, over its sinks + window.
  d.steps = 4;
  d.q_len = 4;
  const AttnShape gs4 = g->shape(d);
  CHECK(g->cost(gs4, nullptr).bytes_min ==
        doctest::Approx((4 * 16 * 128 + 2 * 4 * 19994.0 * 128 + 4 * 16 * 128) * 4.0 + 4 * 16 * 4.0));
  auto st = find_variant("streaming")->make(
      resolve_params(find_variant("streaming")->info, {{"window", int64_t{100}}, {"sinks", int64_t{4}}}));
  CHECK(st->cost(st->shape(d), nullptr).bytes_min ==
        doctest::Approx((4 * 16 * 128 + 4 * 16 * 104.0 * 2 * 128 + 4 * 16 * 128) * 4.0 + 4 * 16 * 4.0));

  // SQA halves the query heads and so the FLOPs.
  auto q = find_variant("sqa")->make(resolve_params(find_variant("sqa")->info, {}));
  p.causal = false;
  CHECK(q->cost(q->shape(p), nullptr).dense_equivalent == doctest::Approx(4.0 * 2 * 2 * 1e6 * 64));
}
