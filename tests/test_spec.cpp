// Spec parsing, expansion and every bad-input rule of docs/architecture.md.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "core/errors.hpp"
#include "spec/spec.hpp"

using ab::Experiment;
using ab::InputError;
using ab::parse_experiment;

namespace {
// The message parse_experiment throws, or "" when it parses.
std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    parse_experiment(yaml, "spec.yaml", sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* kBase = R"(name: t
problem:
  heads: 16
  head_dim: 64
  seq_len: [128, 256]
  causal: [false, true]
variants:
  - mha
  - {name: gqa, kv_heads: [2, 4]}
  - sqa
metrics: [flops, latency]
baseline: mha
)";
}  // namespace

TEST_CASE("a valid spec expands to the cartesian product of axes and swept parameters") {
  const Experiment ex = parse_experiment(kBase, "spec.yaml", {});
  // 2 lengths x 2 causal x (mha + gqa x2 + sqa) = 16 cases.
  CHECK(ex.cases.size() == 16);
  CHECK(ex.cases[0].id == "mha/prefill_b1_h16_kv16_d64_q128_k128_full_f32");
  CHECK(ex.cases[1].variant.label == "gqa(kv_heads=2)");
  CHECK(ex.cases[2].variant.label == "gqa(kv_heads=4)");
  CHECK(ex.cases[1].variant.params.integer("kv_heads") == 2);
  CHECK(ex.baseline == "mha");
  CHECK(ex.metrics.contains("flops"));
  CHECK(ex.metrics["latency"]["min_samples"] == 5);  // defaults filled in
  CHECK(ex.sha256.size() == 64);
  // Ids are unique.
  std::set<std::string> ids;
  for (const auto& c : ex.cases) ids.insert(c.id);
  CHECK(ids.size() == ex.cases.size());
}

TEST_CASE("decode mode: one query against a KV cache of seq_len") {
  const Experiment ex = parse_experiment(
      "problem: {heads: 8, head_dim: 64, seq_len: 1000, mode: decode}\nvariants: [mqa]\n", "s.yaml", {});
  REQUIRE(ex.cases.size() == 1);
  CHECK(ex.cases[0].problem.q_len == 1);
  CHECK(ex.cases[0].problem.kv_len == 1000);
}

TEST_CASE("--set overrides any key, lists included") {
  const Experiment ex = parse_experiment(kBase, "spec.yaml", {"problem.seq_len=[64,128,4k]", "problem.causal=true"});
  CHECK(ex.cases.size() == 3 * 4);
  CHECK(ex.cases.back().problem.kv_len == 4096);
  CHECK(contains(error_of(kBase, {"problem.heads=0"}), "--set problem.heads"));
  CHECK(contains(error_of(kBase, {"nonsense"}), "KEY=VALUE"));
}

TEST_CASE("malformed YAML names file:line:col") {
  const std::string e = error_of("problem:\n  heads: [1, 2\nvariants: [mha]\n");
  CHECK(contains(e, "spec.yaml:"));
  CHECK(contains(e, "YAML syntax error"));
  const std::string e2 = error_of("problem:\n  heads: 8\n   head_dim: 4\n");
  CHECK(contains(e2, "spec.yaml:3:"));
}

TEST_CASE("unknown keys list the allowed keys and the closest one") {
  const std::string e = error_of("problme: {heads: 8}\nvariants: [mha]\n");
  CHECK(contains(e, "spec.yaml:1:1"));
  CHECK(contains(e, "did you mean 'problem'"));
  const std::string e2 = error_of("problem: {heads: 8, seq_len: 64, head_dimm: 64}\nvariants: [mha]\n");
  CHECK(contains(e2, "problem.head_dimm"));
  CHECK(contains(e2, "did you mean 'head_dim'"));
  const std::string e3 = error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nmetrics: {latency: {warmpu: 3}}\n");
  CHECK(contains(e3, "metrics.latency.warmpu"));
  CHECK(contains(e3, "did you mean 'warmup'"));
  const std::string e4 = error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nmetrics: [latncy]\n");
  CHECK(contains(e4, "did you mean 'latency'"));
}

TEST_CASE("unknown variants and parameters name the closest valid ones") {
  const std::string e = error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha, gqaa]\n");
  CHECK(contains(e, "spec.yaml:2:17"));
  CHECK(contains(e, "unknown variant 'gqaa'"));
  CHECK(contains(e, "did you mean 'gqa'"));
  const std::string e2 = error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_head: 2}]\n");
  CHECK(contains(e2, "did you mean 'kv_heads'"));
  const std::string e3 = error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nbaseline: mah\n");
  CHECK(contains(e3, "did you mean 'mha'"));
}

TEST_CASE("impossible parameters name the field and the rule") {
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_heads: 3}]\n"),
                 "gqa.kv_heads = 3: must divide the query heads (8)"));
  CHECK(contains(error_of("problem: {heads: 8, kv_heads: 3, seq_len: 64}\nvariants: [mha]\n"),
                 "kv_heads (3) must divide heads (8)"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: sqa, query_heads: 8}]\n"),
                 "SQA needs fewer query heads than problem.heads = 8"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: sqa, query_heads: 12}]\n"),
                 "query_heads = 12"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: -5}\nvariants: [mha]\n"),
                 "problem.seq_len: must be a positive integer, got -5"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: [64, 0]}\nvariants: [mha]\n"), "problem.seq_len[1]"));
  CHECK(contains(error_of("dtype: fp8\nproblem: {heads: 8, seq_len: 64}\nvariants: [mha]\n"),
                 "unknown dtype 'fp8'"));
  CHECK(contains(error_of("problem: {heads: 2, seq_len: 64}\nvariants: [xsqa]\n"), "too small"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64, q_len: 128}\nvariants: [mha]\n"),
                 "must not exceed the key length"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_heads: two}]\n"),
                 "expected an integer, got 'two'"));
  CHECK(contains(error_of("device: gpu\nproblem: {heads: 8, seq_len: 64}\nvariants: [mha]\n"),
                 "did you mean 'cpu'"));
}

TEST_CASE("missing sections are named") {
  CHECK(contains(error_of(""), "empty"));
  CHECK(contains(error_of("variants: [mha]\n"), "needs a problem block"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\n"), "list the variants"));
  CHECK(contains(error_of("problem: {heads: 8}\nvariants: [mha]\n"), "needs seq_len"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha, mha]\n"), "duplicate variant label"));
}
