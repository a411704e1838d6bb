// The quality metrics on cases with known answers: the float64 dense rows against
// ab::sdpa_reference_row; recall of a selection of exactly the top-k keys (top-k recall 1), of
// half the mass (mass recall 0.5), of no selection (n/a with the output error); NIAH scoring
// 100% for dense attention on the default grid and failing the middle depths for a sink +
// local-window selection; the sink score against its definition; option checks at spec load.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>

#include "reference/attention_stats.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "spec/spec.hpp"
#include "cpu/sdpa.hpp"
#include "metrics/metrics.hpp"
#include "execution/execute.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "workloads/workloads.hpp"
#include "reference/attention_reference.hpp"

using namespace ab;

namespace {

uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

HostTensor randn(Shape4 shape, std::mt19937& rng) {
  HostTensor t(shape);
  std::normal_distribution<float> d;
  for (auto& x : t.data) x = d(rng);
  return t;
}

// Dense SDPA under a structured mask: causal + window + sinks is exactly StreamingLLM's
// selection (docs/variants.md §16b). Test-only, so that the NIAH discrimination test does not
// depend on another file.
class WindowSinkVariant final : public DenseSdpaVariant {
 public:
  WindowSinkVariant(int64_t window, int64_t sinks) : DenseSdpaVariant(ParamSet{}), window_(window), sinks_(sinks) {
    info_.name = "test_window_sink";
    info_.family = "test";
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }
  Mask mask(const AttnShape& s) const override {
    (void)s;
    Mask m;
    m.causal = true;
    m.window = window_;
    m.sinks = sinks_;
    return m;
  }

 private:
  int64_t window_, sinks_;
  VariantInfo info_;
};

// A selection given as explicit key lists per (b, h, row).
class ListSelection final : public Selection {
 public:
  explicit ListSelection(std::function<void(int, int, int64_t, std::vector<int64_t>&)> f) : f_(std::move(f)) {}
  std::string kind() const override { return "tokens"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override { f_(b, h, i, out); }

 private:
  std::function<void(int, int, int64_t, std::vector<int64_t>&)> f_;
};

// Dense attention that exposes a chosen selection (or none) through its plan.
class SelectingVariant final : public DenseSdpaVariant {
 public:
  explicit SelectingVariant(std::shared_ptr<const Selection> sel) : DenseSdpaVariant(ParamSet{}), sel_(std::move(sel)) {
    info_.name = "test_selecting";
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }
  Plan plan(const Inputs& in, Backend& b) override {
    Plan p = DenseSdpaVariant::plan(in, b);
    p.selection = sel_;
    if (!sel_) p.selection_na_reason = "test: no selection";
    return p;
  }

 private:
  std::shared_ptr<const Selection> sel_;
  VariantInfo info_;
};

// Runs one metric on a variant over given host inputs, the way the runner does.
json run_metric(const std::string& metric, const json& given, Variant& v, const Experiment& ex,
                std::shared_ptr<const HostInputs> host) {
  auto be = make_cpu_backend();
  const Case& c = ex.cases.front();
  const AttnShape s = v.shape(c.problem);
  Execution e = prepare_execution(v, *be, s, std::move(host), 1);
  plan_and_run(v, *be, e);
  json opts = find_metric(metric)->defaults;
  for (auto it = given.begin(); it != given.end(); ++it) opts[it.key()] = it.value();
  MetricContext ctx{ex, c, v, *be, e.rotation[0], e.plans[0], e.out, opts, nullptr, &e.rotation, &e.plans, &e.out};
  json r = find_metric(metric)->measure(ctx);
  be->release_all();
  return r;
}

Experiment spec(const std::string& problem, const std::string& input = "gaussian") {
  return parse_experiment("problem: " + problem + "\nvariants: [mha]\ninput: " + input + "\n", "t.yaml", {});
}

}  // namespace

TEST_CASE("float64 dense rows (blocked, GEMM order) agree with ab::sdpa_reference_row") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int d : {64, 128}) {
    for (bool causal : {true, false}) {
      for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{6, 2}}) {
        AttnShape s;
        s.q_heads = hq, s.kv_heads = hkv, s.head_dim = s.v_dim = d, s.q_len = 301, s.kv_len = 1013, s.causal = causal;
        const HostTensor q = randn({1, hq, 301, d}, rng), k = randn({1, hkv, 1013, d}, rng), v = randn({1, hkv, 1013, d}, rng);
        Mask m;
        m.causal = causal;
        if (d == 128) m.window = 200, m.sinks = 3;  // the structured mask path too
        const std::vector<int64_t> rows = {0, 1, 150, 299, 300};
        std::vector<double> p(rows.size() * 1013), o(rows.size() * d), lse(rows.size()), ref(d), probs;
        const int h = hq - 1;
        dense_attention_rows(q, k, &v, s, m, 1.0 / std::sqrt(double(d)), h / s.group(), 0, h, rows.data(),
                             static_cast<int>(rows.size()), p.data(), o.data(), lse.data());
        for (size_t r = 0; r < rows.size(); ++r) {
          double ref_lse = 0;
          ab::sdpa_reference_row(q, k, v, s, m, 1.0 / std::sqrt(double(d)), h / s.group(), 0, h, rows[r], ref.data(),
                                  &ref_lse, &probs);
          INFO("d " << d << " causal " << causal << " row " << rows[r]);
          CHECK(lse[r] == doctest::Approx(ref_lse).epsilon(1e-12));
          double pe = 0, oe = 0;
          for (int64_t j = 0; j < 1013; ++j) pe = std::max(pe, std::abs(p[r * 1013 + j] - probs[j]));
          for (int c = 0; c < d; ++c) oe = std::max(oe, std::abs(o[r * d + c] - ref[c]));
          CHECK(pe < 1e-13);
          CHECK(oe < 1e-12);
        }
      }
    }
  }
}

TEST_CASE("recall: exactly the top-k keys give top-k recall 1; half the mass gives 0.5") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  // 4 query heads sharing 2 kv heads, causal, N = 777.
  const Experiment ex = spec("{heads: 4, kv_heads: 2, head_dim: 64, seq_len: 777, causal: true}");
  const AttnShape s = shape_from_problem(ex.cases[0].problem);
  REQUIRE(s.kv_heads == 2);
  auto base = std::make_shared<HostInputs>(
      generate_structured(s, workload_options(*find_workload("structured"), json::object(), "input"), seed));

  // The 32 keys of largest float64 dense probability of each row, found independently.
  auto top32 = std::make_shared<ListSelection>([&](int b, int h, int64_t i, std::vector<int64_t>& out) {
    Mask m;
    m.causal = true;
    std::vector<double> o(64), probs;
    double lse;
    ab::sdpa_reference_row(base->q, base->k, base->v, s, m, 1.0 / 8.0, h / 2, b, h, i, o.data(), &lse, &probs);
    std::vector<int64_t> idx(static_cast<size_t>(i + 1));
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) { return probs[a] > probs[c]; });
    out.assign(idx.begin(), idx.begin() + std::min<int64_t>(32, i + 1));
    std::sort(out.begin(), out.end());
  });
  SelectingVariant topv(top32);
  json r = run_metric("recall", {{"topk", {8, 32}}, {"queries", "all"}}, topv, ex, base);
  INFO(r.dump());
  CHECK(r["topk_recall"]["k=32"]["min"] == doctest::Approx(1.0));
  CHECK(r["topk_recall"]["k=8"]["min"] == doctest::Approx(1.0));  // top 8 ⊂ top 32
  CHECK(r["mass_recall"]["mean"].get<double>() < 1.0);
  CHECK(r["mass_recall"]["mean"].get<double>() > 0.5);  // structured attention is concentrated
  CHECK(r["rows"]["total"] == 4 * 777);
  CHECK(r["selection"] == "tokens");
  CHECK(r["output_rel_error"]["max"].get<double>() < 1e-5);  // the output is dense

  // Uniform attention (q = 0) over 64 keys, not causal: any 32 keys hold exactly half the mass.
  const Experiment uni = spec("{heads: 2, head_dim: 64, seq_len: 64, causal: false}");
  auto flat = std::make_shared<HostInputs>(generate_gaussian(shape_from_problem(uni.cases[0].problem), json::object(), seed));
  std::fill(flat->q.data.begin(), flat->q.data.end(), 0.0f);
  auto odd = std::make_shared<ListSelection>([](int, int, int64_t, std::vector<int64_t>& out) {
    out.clear();
    for (int64_t j = 1; j < 64; j += 2) out.push_back(j);
  });
  SelectingVariant half(odd);
  r = run_metric("recall", {{"topk", json::array()}}, half, uni, flat);
  INFO(r.dump());
  CHECK(r["mass_recall"]["mean"] == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(r["mass_recall"]["min"] == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(r["density"] == doctest::Approx(0.5));

  // No selection: recall n/a with the reason, the output error still reported.
  SelectingVariant none(nullptr);
  r = run_metric("recall", json::object(), none, uni, flat);
  CHECK(r["status"] == "n/a");
  CHECK(r["reason"] == "test: no selection");
  CHECK(r["output_rel_error"]["mean"].get<double>() < 1e-5);
  CHECK(!r.contains("mass_recall"));

  // The full selection of a dense variant: mass recall exactly 1, density 1.
  auto mha = find_variant("mha")->make(ParamSet{});
  r = run_metric("recall", {{"per_head", true}}, *mha, uni, flat);
  CHECK(r["mass_recall"]["min"].get<double>() == 1.0);
  CHECK(r["density"].get<double>() == 1.0);
  CHECK(r["per_head"].size() == 2);
}

TEST_CASE("recall counts a window variant's dropped keys as lost mass against dense causal attention") {
  const Experiment ex = spec("{heads: 2, head_dim: 64, seq_len: 512, causal: true}", "structured");
  const AttnShape s = find_variant("mha")->make(ParamSet{})->shape(ex.cases[0].problem);
  auto host = std::make_shared<HostInputs>(
      generate_structured(s, workload_options(*find_workload("structured"), json::object(), "input"), 3));
  WindowSinkVariant w(64, 4);
  const json r = run_metric("recall", {{"queries", "all"}}, w, ex, host);
  INFO(r.dump());
  const double m = r["mass_recall"]["mean"].get<double>();
  CHECK(m < 0.99);
  CHECK(m > 0.2);
  CHECK(r["mass_recall"]["min"].get<double>() < m);
  // Density: every row keeps at most 64 + 4 of its visible keys.
  double expect_sel = 0, expect_all = 0;
  for (int64_t i = 0; i < 512; ++i) expect_sel += std::min<int64_t>(i + 1, 64 + std::min<int64_t>(4, std::max<int64_t>(0, i + 1 - 64))), expect_all += i + 1;
  CHECK(r["density"] == doctest::Approx(expect_sel / expect_all));
  CHECK(r["output_rel_error"]["mean"].get<double>() > 1e-3);  // it is not dense attention
}

TEST_CASE("niah: dense attention retrieves every needle on the default grid; sink + window misses the middle") {
  // The default grid (lengths 1k/2k/4k x 5 depths); fewer trials than the default, for time.
  const Experiment ex = spec("{heads: 2, head_dim: 64, seq_len: 1024, causal: true}", "structured");
  const auto mha = find_variant("mha")->make(ParamSet{});
  auto be = make_cpu_backend();
  const AttnShape s = mha->shape(ex.cases[0].problem);
  auto run = [&](Variant& v, const json& given) {
    json opts = find_metric("niah")->defaults;
    opts["heatmap"] = false;
    for (auto it = given.begin(); it != given.end(); ++it) opts[it.key()] = it.value();
    Inputs in;
    in.shape = s;
    Plan plan;
    Outputs out;
    MetricContext ctx{ex, ex.cases[0], v, *be, in, plan, out, opts, nullptr};
    return measure_niah(ctx);
  };
  const json dense = run(*mha, {{"trials", 2}});
  INFO(dense.dump());
  CHECK(dense["success_rate"] == 1.0);
  CHECK(dense["mass_source"] == "selection");
  CHECK(dense["lengths"] == json({1024, 2048, 4096}));
  for (const auto& row : dense["needle_mass"])
    for (const auto& m : row) CHECK(m.get<double>() == doctest::Approx(1.0 / (1.0 + std::exp(-2.0))).epsilon(1e-4));

  WindowSinkVariant ws(256, 4);
  const json sw = run(ws, {{"trials", 1}});
  INFO(sw.dump());
  const auto& succ = sw["success"];
  for (size_t l = 0; l < 3; ++l) {
    CHECK(succ[0][l] == 1.0);  // depth 0: the needle is a sink token
    CHECK(succ[4][l] == 1.0);  // depth 1: inside the window
    CHECK(succ[2][l] == 0.0);  // depth 0.5: dropped
    CHECK(sw["needle_mass"][2][l] == 0.0);
  }
  CHECK(succ[1][2] == 0.0);
  CHECK(sw["success_rate"].get<double>() < 0.6);

  // Decode: the single query is the probe.
  Experiment dex = spec("{heads: 2, head_dim: 64, seq_len: 1024, causal: true, mode: decode}", "gaussian");
  Inputs din;
  Plan dplan;
  Outputs dout;
  json opts = find_metric("niah")->defaults;
  opts["heatmap"] = false;
  opts["lengths"] = {512, 2048};
  opts["trials"] = 1;
  MetricContext dctx{dex, dex.cases[0], ws, *be, din, dplan, dout, opts, nullptr};
  const json dr = measure_niah(dctx);
  CHECK(dr["mode"] == "decode");
  CHECK(dr["q_len"] == json({1, 1}));
  CHECK(dr["success"][0][0] == 1.0);
  CHECK(dr["success"][2][1] == 0.0);
  CHECK(dr["success"][4][1] == 1.0);
}

TEST_CASE("niah: a prefill method that needs every row runs the full prefill; a refused grid is n/a") {
  const Experiment ex = spec("{heads: 2, head_dim: 64, seq_len: 1024, causal: true}", "structured");
  auto be = make_cpu_backend();
  auto run = [&](Variant& v, const Experiment& e, const json& given) {
    json opts = find_metric("niah")->defaults;
    opts["heatmap"] = false;
    opts["trials"] = 1;
    for (auto it = given.begin(); it != given.end(); ++it) opts[it.key()] = it.value();
    Inputs in;  // the metric derives its own shapes, one per length
    Plan plan;
    Outputs out;
    MetricContext ctx{e, e.cases[0], v, *be, in, plan, out, opts, nullptr};
    return measure_niah(ctx);
  };
  // AnchorAttention refuses q_len != kv_len (its anchor and local regions assume self-attention).
  const auto anchor = find_variant("anchor")->make(resolve_params(find_variant("anchor")->info, {}));
  const json a = run(*anchor, ex, {{"lengths", {1024, 2048}}});
  INFO(a.dump());
  CHECK(a["q_len"] == json({1024, 2048}));
  REQUIRE(a["full_prefill_fallback"].size() == 2);
  CHECK(a["full_prefill_fallback"][0]["reason"].get<std::string>().find("self-attention") != std::string::npos);
  CHECK(a["retrievals"].get<int64_t>() == 2 * 5 * 2 * 16);  // lengths x depths x heads x probe rows
  CHECK(!a.contains("skipped"));
  for (const auto& row : a["success"])
    for (const auto& x : row) CHECK(x.is_number());
  // A decode-only variant on a prefill grid: every length refused, so n/a with the reason.
  const auto ts = find_variant("tokenselect")->make(resolve_params(find_variant("tokenselect")->info, {}));
  const json t = run(*ts, ex, {{"lengths", {1024}}});
  INFO(t.dump());
  CHECK(t["status"] == "n/a");
  CHECK(t["reason"].get<std::string>().find("every length refused") == 0);
}

TEST_CASE("sink: alpha_k is the mean attention on token k over the rows that see it") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  AttnShape s;
  s.q_heads = s.kv_heads = 4, s.head_dim = s.v_dim = 64, s.q_len = s.kv_len = 200, s.causal = true;
  json o = workload_options(*find_workload("structured"), {{"sink_strength", 10.0}, {"head_diversity", 0.0}}, "input");
  const HostInputs in = generate_structured(s, o, seed);
  StatsOptions so;
  so.rows = 0;  // every row, as the paper
  so.sink_token = 1;
  const auto heads = attention_stats(in.q, in.k, s, 0.0, so);
  Mask m;
  m.causal = true;
  std::vector<double> out(64), probs;
  double lse;
  for (int h = 0; h < 4; ++h) {
    double a = 0;
    for (int64_t t = 1; t < 200; ++t) {
      ab::sdpa_reference_row(in.q, in.k, in.v, s, m, 1.0 / 8.0, h, 0, h, t, out.data(), &lse, &probs);
      a += probs[1];
    }
    CHECK(heads[h].alpha == doctest::Approx(a / 199).epsilon(1e-9));  // (1/(T−k)) Σ_{t≥k} A[t,k]
    CHECK(heads[h].alpha_rows == 199);
  }
  // Sink_0^0.3 of a strong first-token sink: every head; of none: no head.
  const Experiment ex = spec("{heads: 4, head_dim: 64, seq_len: 256, causal: true}", "structured");
  const auto mha = find_variant("mha")->make(ParamSet{});
  const AttnShape ms = mha->shape(ex.cases[0].problem);
  for (auto [strength, want] : {std::pair{12.0, 100.0}, std::pair{0.0, 0.0}}) {
    auto host = std::make_shared<HostInputs>(generate_structured(
        ms, workload_options(*find_workload("structured"), {{"sink_strength", strength}, {"head_diversity", 0.0}}, "input"),
        seed));
    const json r = run_metric("sink", json::object(), *mha, ex, host);
    INFO(r.dump());
    CHECK(r["sink_ratio"] == want);
    CHECK(r["epsilon"] == 0.3);
    CHECK(r["alpha_per_head"].size() == 4);
  }
}

TEST_CASE("metric options are checked when the spec is loaded") {
  const std::string head = "problem: {heads: 4, head_dim: 64, seq_len: 128}\nvariants: [mha]\nmetrics:\n";
  auto refused = [&](const std::string& m, const std::string& what) {
    CHECK_THROWS_WITH_AS(parse_experiment(head + m, "t.yaml", {}), doctest::Contains(what.c_str()), InputError);
  };
  refused("  recall: {queries: lots}\n", "metrics.recall.queries = \"lots\"");
  refused("  recall: {queries: 0}\n", "must be a positive number of query rows or \"all\"");
  refused("  recall: {topk: [0]}\n", "every k must be an integer >= 1");
  refused("  recall: {querys: 5}\n", "did you mean 'queries'");
  refused("  niah: {depths: [0.5, 1.5]}\n", "metrics.niah.depths");
  refused("  niah: {lengths: []}\n", "give at least one context length");
  refused("  niah: {lengths: [1k, big]}\n", "every length must be an integer");
  refused("  niah: {tau: 2}\n", "metrics.niah.tau");
  refused("  niah: {input: needle}\n", "metrics.niah.input");
  refused("  sink: {epsilon: 1.5}\n", "metrics.sink.epsilon");
  // The position of the bad block is given.
  CHECK_THROWS_WITH_AS(parse_experiment(head + "  recall: {queries: lots}\n", "t.yaml", {}),
                       doctest::Contains("t.yaml:4:"), InputError);
  const Experiment ok = parse_experiment(head + "  recall: {queries: all, topk: [4]}\n  niah: {lengths: [1k, 2048]}\n  sink: {}\n",
                                         "t.yaml", {});
  CHECK(ok.metrics["recall"]["queries"] == "all");
  CHECK(ok.metrics["niah"]["lengths"] == json({"1k", 2048}));
}
