// Multi-step decode (docs/decode.md): the `steps` problem axis, its refusals, and a dense
// variant running the steps one call at a time where step t sees exactly N + t + 1 keys.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>

#include "backends/cpu/cpu_backend.hpp"
#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "spec/spec.hpp"
#include "cpu/gather_decode.hpp"
#include "execution/execute.hpp"
#include "variants/decode_steps.hpp"
#include "workloads/workloads.hpp"
#include "reference/attention_reference.hpp"

using namespace ab;

namespace {
uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}
}  // namespace

TEST_CASE("problem.steps: decode only, one token per step, causal, keys unchanged for one step") {
  const std::string base = "problem: {heads: 4, head_dim: 32, seq_len: 1000, mode: decode, steps: [1, 7]}\n"
                           "variants: [mha]\nmetrics: [flops]\n";
  const Experiment ex = parse_experiment(base, "s.yaml", {});
  REQUIRE(ex.cases.size() == 2);
  CHECK(ex.cases[0].problem.key() == "decode_b1_h4_kv4_d32_q1_k1000_full_f32");  // as before
  CHECK(ex.cases[1].problem.key() == "decode_b1_h4_kv4_d32_q1_k1000_causal_f32_s7");
  const AttnShape s = shape_from_problem(ex.cases[1].problem);
  CHECK(s.q_len == 7);
  CHECK(s.steps == 7);
  CHECK(s.causal);
  CHECK(step_position(s, 0) == 993);  // N = 1000 - 7
  CHECK(s.visible_keys(0) == 994);
  CHECK(s.visible_keys(6) == 1000);

  CHECK_THROWS_WITH_AS(parse_experiment(base, "s.yaml", {"problem.mode=prefill"}),
                       doctest::Contains("steps > 1 needs mode: decode"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(base, "s.yaml", {"problem.q_len=2"}),
                       doctest::Contains("one query token per step"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(base, "s.yaml", {"problem.causal=false"}),
                       doctest::Contains("problem.causal"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(base, "s.yaml", {"problem.steps=1001"}),
                       doctest::Contains("must not exceed the cache length kv_len (1000)"), InputError);
}

TEST_CASE("a dense variant runs the steps one at a time; step t sees exactly N + t + 1 keys") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  for (int d : {64, 128}) {
    Problem p;
    p.mode = Mode::decode;
    p.heads = 8;
    p.kv_heads = 2;
    p.head_dim = p.v_dim = d;
    p.q_len = 1;
    p.kv_len = 1013;
    p.steps = 9;
    const RegistryEntry* e = find_variant("gqa");
    auto v = e->make(resolve_params(e->info, {}));
    const AttnShape s = v->shape(p);
    REQUIRE(s.kv_heads == 2);
    auto host = std::make_shared<HostInputs>(generate_gaussian(s, {{"std", 1.0}}, seed + uint32_t(d)));
    auto be = make_cpu_backend();
    HostRun r = run_once(*v, *be, s, host);
    const double scale = 1.0 / std::sqrt(double(d));
    std::vector<double> ref(static_cast<size_t>(d));
    std::vector<int64_t> keys, sel;
    for (int64_t t = 0; t < s.steps; ++t) {
      keys.clear();
      for (int64_t j = 0; j <= step_position(s, t); ++j) keys.push_back(j);
      CHECK(int64_t(keys.size()) == 1013 - 9 + t + 1);
      for (int h = 0; h < s.q_heads; ++h) {
        r.plan.selection->keys(0, h, t, sel);
        CHECK(sel == keys);
        double lse = 0;
        ab::gather_reference_row(host->q, host->k, host->v, s, scale, h / 4, 0, h, t, keys, ref.data(), &lse);
        double err = 0;
        for (int c = 0; c < d; ++c) err = std::max(err, std::abs(r.o.row(0, h, t)[c] - ref[size_t(c)]));
        CHECK(err < 2e-5);
        CHECK(std::abs(r.lse.row(0, h, t)[0] - lse) < 2e-5);
      }
    }
    // Executed FLOPs count one call per step over the key tiles below its position.
    const Cost c = v->cost(s, &r.plan);
    CHECK(c.dense_equivalent == doctest::Approx(2.0 * 8 * (1005.0 + 1013.0) * 9 / 2 * 2 * d));
    CHECK(c.executed >= c.dense_equivalent);
  }
}
