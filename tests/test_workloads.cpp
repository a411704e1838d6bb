// Input generators: determinism (same seed, same bytes, whatever the thread count), the
// structured generator's knobs moving the statistics docs/inputs.md says they move (measured
// with analysis/attention_stats, the code `attn-bench inspect` uses), and the needle overlay
// planting exactly the dense needle mass it promises (checked with ab::sdpa_reference_row).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "reference/attention_stats.hpp"
#include "core/errors.hpp"
#include "spec/spec.hpp"
#include "cpu/sdpa.hpp"
#include "workloads/workloads.hpp"
#include "reference/attention_reference.hpp"

using namespace ab;
using json = nlohmann::ordered_json;

namespace {

AttnShape small_shape(int64_t n = 512, int heads = 4, int kv_heads = 4, int d = 64) {
  AttnShape s;
  s.batch = 1;
  s.q_heads = heads;
  s.kv_heads = kv_heads;
  s.head_dim = s.v_dim = d;
  s.q_len = s.kv_len = n;
  s.causal = true;
  return s;
}

json opts(const std::string& kind, const json& given) {
  return workload_options(*find_workload(kind), given, "input");
}

bool same_bytes(const HostInputs& a, const HostInputs& b) {
  return a.q.data == b.q.data && a.k.data == b.k.data && a.v.data == b.v.data;
}

// Mean statistics over the heads, on the second half of the rows.
HeadStats mean_stats(const HostInputs& in, const AttnShape& s, int64_t window = 32) {
  StatsOptions so;
  so.rows = 64;
  so.row_start = 0.5;
  so.window = window;
  const auto heads = attention_stats(in.q, in.k, s, 0.0, so);
  HeadStats m;
  for (const auto& h : heads) {
    m.entropy += h.entropy / heads.size();
    m.first_mass += h.first_mass / heads.size();
    m.local_mass += h.local_mass / heads.size();
    m.top1_mass += h.top1_mass / heads.size();
    m.top10_mass += h.top10_mass / heads.size();
  }
  return m;
}

// Every structure off except what `given` turns on, all heads alike.
json only(const json& given) {
  json base = {{"sinks", 0}, {"sink_strength", 0.0}, {"locality", 0.0}, {"heavy_hitters", 0},
               {"heavy_strength", 0.0}, {"slash_period", 0}, {"head_diversity", 0.0}};
  for (auto it = given.begin(); it != given.end(); ++it) base[it.key()] = it.value();
  return opts("structured", base);
}

}  // namespace

TEST_CASE("inputs are deterministic: same seed same bytes, any thread count; another seed differs") {
  const AttnShape s = small_shape(300, 4, 2, 64);
  for (const char* kind : {"gaussian", "structured", "needle"}) {
    const std::string label = kind;
    INFO(label);
    const WorkloadDef* w = find_workload(kind);
    REQUIRE(w);
    const json o = opts(kind, json::object());
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const HostInputs one = w->generate(s, o, 42);
    omp_set_num_threads(std::max(2, threads));
    const HostInputs many = w->generate(s, o, 42);
    omp_set_num_threads(threads);
    CHECK(same_bytes(one, many));
    CHECK(!same_bytes(one, w->generate(s, o, 43)));
    CHECK(one.q.shape == Shape4{1, 4, 300, 64});
    CHECK(one.k.shape == Shape4{1, 2, 300, 64});
  }
  // Rounded to the case's dtype.
  AttnShape b = s;
  b.dtype = DType::bf16;
  const HostInputs in = generate_structured(b, opts("structured", json::object()), 1);
  for (float x : in.k.data) REQUIRE(round_to(DType::bf16, x) == x);
}

TEST_CASE("structured: sink strength raises the first token's mass") {
  const AttnShape s = small_shape();
  double prev = -1;
  for (double strength : {0.0, 4.0, 8.0, 12.0}) {
    const HeadStats m = mean_stats(generate_structured(s, only({{"sinks", 1}, {"sink_strength", strength}, {"locality", 4.0}}), 3), s);
    INFO("sink_strength " << strength << ": first-token mass " << m.first_mass);
    CHECK(m.first_mass > prev);
    prev = m.first_mass;
  }
  CHECK(prev > 0.5);  // 12 nats over a 512-key haystack: the sink dominates
  // More sink tokens share the boost.
  const HeadStats four = mean_stats(generate_structured(s, only({{"sinks", 4}, {"sink_strength", 8.0}}), 3), s);
  CHECK(four.first_mass < 0.5);
}

TEST_CASE("structured: locality raises the local-window mass; a longer length scale spreads it") {
  const AttnShape s = small_shape();
  double prev = -1;
  for (double loc : {0.0, 3.0, 6.0, 9.0}) {
    const HeadStats m = mean_stats(generate_structured(s, only({{"locality", loc}}), 5), s);
    INFO("locality " << loc << ": local-32 mass " << m.local_mass << ", entropy " << m.entropy);
    CHECK(m.local_mass > prev);
    prev = m.local_mass;
  }
  CHECK(prev > 0.5);
  const HeadStats near = mean_stats(generate_structured(s, only({{"locality", 6.0}, {"length_scale", 4.0}}), 5), s, 8);
  const HeadStats far = mean_stats(generate_structured(s, only({{"locality", 6.0}, {"length_scale", 256.0}}), 5), s, 8);
  CHECK(near.local_mass > far.local_mass);
}

TEST_CASE("structured: heavy hitters raise the top-1% mass; slash lines put mass on multiples of the period") {
  const AttnShape s = small_shape();
  const HeadStats none = mean_stats(generate_structured(s, only({{"locality", 2.0}}), 9), s);
  const HeadStats heavy =
      mean_stats(generate_structured(s, only({{"locality", 2.0}, {"heavy_hitters", 4}, {"heavy_strength", 8.0}}), 9), s);
  CHECK(heavy.top1_mass > none.top1_mass + 0.3);

  // Mass on keys at a lag that is a multiple of 16 (1/16 of the keys when there is no comb).
  auto comb_mass = [&](const HostInputs& in) {
    Mask m;
    m.causal = true;
    std::vector<double> p(static_cast<size_t>(s.kv_len));
    double total = 0;
    int rows = 0;
    for (int h = 0; h < s.q_heads; ++h)
      for (int64_t i = 256; i < 512; i += 16, ++rows) {
        dense_attention_row(in.q, in.k, nullptr, s, m, 1.0 / 8.0, h, 0, h, i, p.data(), nullptr);
        for (int64_t j = 0; j <= i; ++j)
          if ((i - j) % 16 == 0) total += p[j];
      }
    return total / rows;
  };
  const double flat = comb_mass(generate_structured(s, only({{"noise", 1.0}}), 2));
  const double comb = comb_mass(generate_structured(s, only({{"slash_period", 16}, {"slash_strength", 6.0}}), 2));
  INFO("comb mass " << comb << " vs " << flat);
  CHECK(flat < 0.15);
  CHECK(comb > 0.5);
}

TEST_CASE("structured: head diversity spreads the heads apart") {
  const AttnShape s = small_shape(512, 8, 8, 64);
  auto spread = [&](double div) {
    json o = opts("structured", {{"head_diversity", div}});
    StatsOptions so;
    so.rows = 32;
    so.row_start = 0.5;
    const HostInputs in = generate_structured(s, o, 4);
    const auto heads = attention_stats(in.q, in.k, s, 0.0, so);
    double lo = 1, hi = 0;
    for (const auto& h : heads) lo = std::min(lo, h.first_mass), hi = std::max(hi, h.first_mass);
    return hi - lo;
  };
  // First-token mass: heads differ by chance alone at 0 (0.15 at seed 4), by their dominant
  // structure at 0.8 (sink-dominated heads near 0.9, the others near 0).
  const double alike = spread(0.0), diverse = spread(0.8);
  INFO("spread " << alike << " -> " << diverse);
  CHECK(diverse > 0.5);
  CHECK(diverse > 3 * alike);
}

TEST_CASE("structured: query_rho makes consecutive queries similar; 0 leaves the bytes as they were") {
  const AttnShape s = small_shape(256, 4, 2, 64);
  const HostInputs iid = generate_structured(s, opts("structured", json::object()), 6);
  const HostInputs zero = generate_structured(s, opts("structured", {{"query_rho", 0.0}}), 6);
  CHECK(same_bytes(iid, zero));
  const HostInputs near = generate_structured(s, opts("structured", {{"query_rho", 0.98}}), 6);
  CHECK(near.k.data == iid.k.data);  // keys and values do not depend on it
  CHECK(near.v.data == iid.v.data);
  // Mean cosine of consecutive query rows, over heads.
  auto mean_cos = [&](const HostInputs& in) {
    double sum = 0;
    int64_t n = 0;
    for (int h = 0; h < s.q_heads; ++h)
      for (int64_t i = 1; i < s.q_len; ++i, ++n) {
        const float *a = in.q.row(0, h, i), *b = in.q.row(0, h, i - 1);
        double ab = 0, aa = 0, bb = 0;
        for (int c = 0; c < s.head_dim; ++c) ab += double(a[c]) * b[c], aa += double(a[c]) * a[c], bb += double(b[c]) * b[c];
        sum += ab / std::sqrt(aa * bb);
      }
    return sum / double(n);
  };
  const double c0 = mean_cos(iid), c98 = mean_cos(near);
  INFO("cos iid " << c0 << ", rho 0.98 " << c98);
  CHECK(c98 > c0 + 0.2);
  CHECK(c98 > 0.9);
  CHECK_THROWS_WITH_AS(validate_structured(s, opts("structured", {{"query_rho", 1.0}})),
                       doctest::Contains("input.query_rho = 1.0: must lie in [0, 1)"), InputError);
}

TEST_CASE("structured: impossible knobs are refused naming the option and the rule") {
  const AttnShape s = small_shape();
  CHECK_THROWS_WITH_AS(validate_structured(small_shape(64, 2, 2, 4), opts("structured", json::object())),
                       doctest::Contains("head_dim >= 8"), InputError);
  CHECK_THROWS_WITH_AS(validate_structured(s, opts("structured", {{"slash_period", 1}})),
                       doctest::Contains("input.slash_period = 1: must be 0"), InputError);
  CHECK_THROWS_WITH_AS(validate_structured(s, opts("structured", {{"head_diversity", 2.0}})),
                       doctest::Contains("input.head_diversity = 2.0: must lie in [0, 1]"), InputError);
  CHECK_THROWS_WITH_AS(validate_structured(s, opts("structured", {{"sinks", 600}})),
                       doctest::Contains("must not exceed the key length 512"), InputError);
  CHECK_THROWS_WITH_AS(validate_structured(s, opts("structured", {{"length_scale", 0.0}})),
                       doctest::Contains("input.length_scale"), InputError);
  // The spec parser refuses unknown options with the closest name and checks values up front.
  const std::string spec = "problem: {heads: 4, head_dim: 64, seq_len: 128}\nvariants: [mha]\n";
  CHECK_THROWS_WITH_AS(parse_experiment(spec + "input: {kind: structured, sinkz: 2}\n", "s.yaml", {}),
                       doctest::Contains("did you mean 'sinks'"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(spec + "input: {kind: structured, noise: -1}\n", "s.yaml", {}),
                       doctest::Contains("input.noise = -1.0"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(spec + "input: {kind: needle, base: needle}\n", "s.yaml", {}),
                       doctest::Contains("input.base = 'needle'"), InputError);
  CHECK_THROWS_WITH_AS(parse_experiment(spec + "input: {kind: needle, base: structured, base_options: {sinkz: 1}}\n",
                                        "s.yaml", {}),
                       doctest::Contains("input.base_options.sinkz"), InputError);
  CHECK(parse_experiment(spec + "input: {kind: structured, sinks: 2, slash_period: 16}\n", "s.yaml", {}).input["sinks"] == 2);
}

TEST_CASE("needle: the planted key holds sigmoid(margin) of each probe's dense mass") {
  std::random_device rd;
  const uint64_t seed = rd();
  INFO("seed " << seed);
  for (const char* base : {"gaussian", "structured"}) {
    for (bool causal : {true, false}) {
      AttnShape s = small_shape(301, 4, 2, 64);
      s.causal = causal;
      HostInputs in = find_workload(base)->generate(s, opts(base, json::object()), seed);
      const HostInputs before = in;
      NeedleSpec ns;
      ns.depth = 0.4;
      ns.margin = 1.5;
      ns.probe_rows = 3;
      const PlantedNeedle nd = plant_needle(in, s, ns, 0.0, seed + 1);
      const std::string label = std::string(base) + (causal ? " causal" : "");
      INFO(label);
      const int64_t p0 = causal ? 298 : 300;
      CHECK(nd.position == std::llround(0.4 * p0));
      REQUIRE(nd.probes == std::vector<int64_t>{298, 299, 300});
      Mask m;
      m.causal = causal;
      std::vector<double> o(64), probs;
      double lse;
      for (int h = 0; h < 4; ++h)
        for (size_t r = 0; r < 3; ++r) {
          ab::sdpa_reference_row(in.q, in.k, in.v, s, m, 1.0 / 8.0, h / 2, 0, h, nd.probes[r], o.data(), &lse, &probs);
          const double want = 1.0 / (1.0 + std::exp(-1.5));
          CHECK(probs[nd.position] == doctest::Approx(want).epsilon(1e-5));
          CHECK(nd.dense_mass[h * 3 + r] == doctest::Approx(probs[nd.position]).epsilon(1e-6));
        }
      // v* is the needle key's value; rows that are not probes keep their queries.
      for (int c = 0; c < 64; ++c) CHECK(in.v.row(0, 1, nd.position)[c] == nd.value.row(0, 1, 0)[c]);
      CHECK(std::equal(in.q.row(0, 0, 0), in.q.row(0, 0, 298), before.q.row(0, 0, 0)));
    }
  }
  // Depth 0 is the first token, depth 1 the first probe's own position; bf16 inputs stay
  // representable and the mass stays close.
  AttnShape s = small_shape(256, 2, 2, 64);
  s.dtype = DType::bf16;
  for (double depth : {0.0, 1.0}) {
    HostInputs in = generate_gaussian(s, opts("gaussian", json::object()), 7);
    NeedleSpec ns;
    ns.depth = depth;
    const PlantedNeedle nd = plant_needle(in, s, ns, 0.0, 8);
    CHECK(nd.position == (depth == 0.0 ? 0 : 255));
    for (float x : in.q.data) REQUIRE(round_to(DType::bf16, x) == x);
    CHECK(nd.dense_mass[0] == doctest::Approx(1.0 / (1.0 + std::exp(-2.0))).epsilon(0.05));
  }
}
