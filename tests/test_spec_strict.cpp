// Strict spec semantics and the malformed inputs a fuzzing probe found (docs/reliability.md):
// every one is refused with InputError naming the place, never a crash, a hang, a silently
// wrong value or another exception type.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "core/errors.hpp"
#include "spec/spec.hpp"

using ab::Experiment;
using ab::InputError;
using ab::parse_experiment;

namespace {
std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    parse_experiment(yaml, "spec.yaml", sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
const std::string kOk = "problem: {heads: 8, seq_len: 64}\nvariants: [mha, gqa]\n";
}  // namespace

TEST_CASE("a duplicated key is an error naming both places") {
  const std::string e = error_of("problem:\n  heads: 8\n  seq_len: 128\n  seq_len: 256\nvariants: [mha]\n");
  CHECK(contains(e, "spec.yaml:4:3: problem.seq_len: duplicate key 'seq_len' (first at spec.yaml:3:3)"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nvariants: [gqa]\n"), "duplicate key 'variants'"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nmetrics: [flops, flops]\n"), "listed twice"));
}

TEST_CASE("a map or a list used as a key is an input error, not a crash of the conversion") {
  CHECK(contains(error_of("? [1, 2]\n: 3\nproblem: {heads: 8, seq_len: 64}\nvariants: [mha]\n"), "a key must be a plain name, not a list"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64, {a: 1}: 2}\nvariants: [mha]\n"), "not a map"));
  CHECK(contains(error_of(kOk + "metrics:\n  latency:\n    ? [x]\n    : 1\n"), "a key must be a plain name"));
}

TEST_CASE("recursive and exponentially expanding aliases are refused quickly") {
  CHECK(contains(error_of(kOk + "metrics: {niah: {lengths: &a [1, *a]}}\n"), "nested deeper than"));
  CHECK(contains(error_of(kOk, {"metrics.niah.lengths=&a [1, *a]"}), "nested deeper than"));
  std::string bomb = kOk + "x0: &x0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (int i = 1; i < 12; ++i)
    bomb += "x" + std::to_string(i) + ": &x" + std::to_string(i) + " [*x" + std::to_string(i - 1) + ", *x" +
            std::to_string(i - 1) + ", *x" + std::to_string(i - 1) + ", *x" + std::to_string(i - 1) + "]\n";
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(contains(error_of(bomb), "expands to more than"));
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5.0);
  std::string deep = kOk + "metrics: {niah: {lengths: ";
  for (int i = 0; i < 200; ++i) deep += "[";
  for (int i = 0; i < 200; ++i) deep += "]";
  deep += "}}\n";
  CHECK(!error_of(deep).empty());  // yaml-cpp's own limit or ours: refused either way
}

TEST_CASE("an empty list sweeps nothing and is refused") {
  CHECK(contains(error_of(kOk, {"problem.seq_len=[]"}), "an empty list sweeps nothing"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_heads: []}]\n"), "variants[0].kv_heads"));
  CHECK(contains(error_of("dtype: []\n" + kOk), "dtype: an empty list"));
}

TEST_CASE("integers out of range are refused with the text as written, never wrapped") {
  const std::string e = error_of("problem: {heads: 8, seq_len: 9007199254740993k}\nvariants: [mha]\n");
  CHECK(contains(e, "'9007199254740993k' is out of range"));
  CHECK(contains(error_of("problem: {heads: 99999999999999999999, seq_len: 64}\nvariants: [mha]\n"), "out of range"));
  CHECK(contains(error_of("problem: {heads: 4294967300, seq_len: 64}\nvariants: [mha]\n"), "4294967300 is out of range"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_heads: 4294967300}]\n"),
                 "4294967300 is out of range"));
}

TEST_CASE("latency and accuracy options have checked ranges") {
  auto with = [](const std::string& m) { return "problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nmetrics: " + m + "\n"; };
  CHECK(contains(error_of(with("{latency: {warmup: -5}}")), "metrics.latency.warmup: -5 is out of range"));
  CHECK(contains(error_of(with("{latency: {min_samples: -1}}")), "metrics.latency.min_samples"));
  CHECK(contains(error_of(with("{latency: {max_samples: 0}}")), "metrics.latency.max_samples"));
  CHECK(contains(error_of(with("{latency: {target_rse: -0.1}}")), "metrics.latency.target_rse"));
  CHECK(contains(error_of(with("{latency: {max_time: -1}}")), "metrics.latency.max_time"));
  CHECK(contains(error_of(with("{latency: {max_time: 0}}")), "must be > 0"));
  CHECK(contains(error_of(with("{latency: {min_samples: 50, max_samples: 10}}")), "exceeds max_samples"));
  CHECK(contains(error_of(with("{latency: {cache: bogus}}")), "unknown cache mode 'bogus'"));
  CHECK(contains(error_of(with("{latency: {target_rse: .nan}}")), "expected a value like"));
  CHECK(contains(error_of(with("{accuracy: {rows: -3}}")), "metrics.accuracy.rows"));
  CHECK(error_of(with("{latency: {warmup: 0, min_samples: 1, max_samples: 1, cache: cold}}")).empty());
  CHECK(contains(error_of("input: {kind: gaussian, std: 1e308}\n" + kOk), "input.std"));
  CHECK(contains(error_of("input: {kind: gaussian, nonfinite: maybe}\n" + kOk), "input.nonfinite"));
}

TEST_CASE("a file with several YAML documents is refused, not read in part") {
  CHECK(contains(error_of(kOk + "---\nproblem: {heads: 4}\n"), "holds 2 YAML documents"));
}

TEST_CASE("a stray ',' at the top level is a syntax error with its place, not a hang") {
  // yaml-cpp 0.7's LoadAll loops for ever on these (spec.cpp, load_all_documents).
  CHECK(contains(error_of(","), "spec.yaml:1:1: YAML syntax error: unexpected ','"));
  CHECK(contains(error_of(kOk + ","), "spec.yaml:3:1: YAML syntax error"));  // inside the block map: yaml-cpp's own error
  CHECK(contains(error_of("[a]\n,"), "spec.yaml:2:1"));
  CHECK(contains(error_of(kOk + "---\n,"), "unexpected ','"));
  CHECK(contains(error_of(kOk, {"problem.seq_len=,"}), "--set problem.seq_len: value is not valid YAML: unexpected ','"));
  CHECK(contains(error_of(kOk, {"problem.seq_len=[64]\n,"}), "unexpected ','"));
  CHECK(error_of(kOk, {"problem.seq_len=[64, 128]"}).empty());
}

TEST_CASE("a variant that does not fit some points of a sweep gets skipped cases there") {
  const Experiment ex = parse_experiment(
      "problem: {heads: 4, head_dim: 32, seq_len: 256, causal: [true, false]}\n"
      "variants: [mha, {name: mixformer, templates: 64}]\n", "s.yaml", {});
  REQUIRE(ex.cases.size() == 4);
  int skipped = 0;
  for (const auto& c : ex.cases)
    if (!c.skip_reason.empty()) {
      ++skipped;
      CHECK(c.variant.name == "mixformer");
      CHECK(c.problem.causal);
      CHECK(contains(c.skip_reason, "non-causal"));
    }
  CHECK(skipped == 1);
  // A mode the variant lacks: skipped at those points only.
  const Experiment ex2 = parse_experiment(
      "problem: {heads: 4, head_dim: 32, seq_len: 1024, mode: [prefill, decode]}\nvariants: [mha, proxyattn]\n", "s.yaml", {});
  int skipped2 = 0;
  for (const auto& c : ex2.cases) skipped2 += !c.skip_reason.empty();
  CHECK(skipped2 == 1);
  // Refused only when it fits no point at all.
  CHECK(contains(error_of("problem: {heads: 4, head_dim: 32, seq_len: 256, causal: true}\n"
                          "variants: [mha, {name: mixformer, templates: 64}]\n"), "fits no point of the sweep"));
}

TEST_CASE("--set addresses list entries: variants[1].kv_heads") {
  const Experiment ex = parse_experiment("problem: {heads: 8, seq_len: 64}\nvariants: [mha, {name: gqa, kv_heads: 4}]\n",
                                         "s.yaml", {"variants[1].kv_heads=1"});
  REQUIRE(ex.cases.size() == 2);
  CHECK(ex.cases[1].variant.params.integer("kv_heads") == 1);
  // An entry given by name alone becomes a map with that name.
  const Experiment ex2 = parse_experiment(kOk, "s.yaml", {"variants[1].kv_heads=2"});
  CHECK(ex2.cases[1].variant.params.integer("kv_heads") == 2);
  CHECK(contains(error_of(kOk, {"variants[5].kv_heads=1"}), "has 2 entries; [5] is past its end"));
  CHECK(contains(error_of(kOk, {"problem[0].heads=1"}), "is not a list"));
  CHECK(contains(error_of(kOk, {"variants[x].kv_heads=1"}), "not a non-negative integer"));
  CHECK(contains(error_of(kOk, {"variants[1].kv_heads=3"}), "gqa.kv_heads = 3: must divide the query heads (8)"));
  CHECK(contains(error_of(kOk, {"variants[1].kv_heads=x"}), "--set variants[1].kv_heads"));
}

TEST_CASE("a sweep too large to list is refused before it is expanded") {
  std::string axis = "[";
  for (int i = 1; i <= 200; ++i) axis += std::to_string(i) + (i < 200 ? "," : "]");
  CHECK(contains(error_of("problem: {heads: 8, seq_len: " + axis + ", head_dim: " + axis + ", batch: " + axis + "}\nvariants: [mha]\n"),
                 "more than 1000000 points"));
}

TEST_CASE("a spec that is not UTF-8 is refused with the place (the report must be valid JSON)") {
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nname: \"a\xff\"\n"), "spec.yaml:3:9: the spec is not valid UTF-8"));
  CHECK(contains(error_of("problem: {heads: 8, seq_len: 64}\nvariants: [mha]\nmetrics: {niah: {depths: [0.5, x]}}\n"), "metrics.niah"));
}
