// Scale out (docs/cluster.md): --shard parsing and the Slurm array variables, the cost
// partition (deterministic, complete, balanced), the worker slots, and lazy expansion giving
// the same cases as the eager one.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <string>

#include "core/errors.hpp"
#include "runner/pool.hpp"
#include "runner/runner.hpp"
#include "runner/shard.hpp"
#include "spec/spec.hpp"

using ab::InputError;

namespace {

// An environment for parse_shard.
struct Env {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() const {
    return [this](const char* k) -> const char* {
      auto it = vars.find(k);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

std::string shard_error(const std::string& text, const Env& env = {}) {
  try {
    ab::parse_shard(text, env.fn());
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* kSweep = R"(name: shard-test
problem:
  heads: 2
  head_dim: 16
  seq_len: [64, 128, 256, 512]
  mode: [prefill, decode]
  causal: true
variants:
  - mha
  - {name: streaming, window: [16, 32], sinks: 2}
  - {name: diag, weights: [softmax, relu]}
  - {name: gqa, kv_heads: 1}
metrics: [flops]
)";

}  // namespace

TEST_CASE("--shard I/N parses and refuses what is not a shard") {
  const auto s = ab::parse_shard("2/5", Env{}.fn());
  CHECK(s.index == 2);
  CHECK(s.count == 5);
  CHECK(s.source == "cli");
  CHECK(contains(shard_error("5/5"), "below the count"));
  CHECK(contains(shard_error("1/0"), "expected I/N"));
  CHECK(contains(shard_error("-1/4"), "expected I/N"));
  CHECK(contains(shard_error("a/4"), "expected I/N"));
  CHECK(contains(shard_error("3"), "expected I/N"));
  CHECK(contains(shard_error("1/4/2"), "expected I/N"));
}

TEST_CASE("--shard auto reads the Slurm array variables") {
  Env env;
  CHECK(contains(shard_error("auto", env), "SLURM_ARRAY_TASK_ID is unset"));
  env.vars = {{"SLURM_ARRAY_TASK_ID", "3"}, {"SLURM_ARRAY_TASK_COUNT", "4"}, {"SLURM_ARRAY_TASK_MIN", "0"},
              {"SLURM_ARRAY_TASK_MAX", "3"}};
  auto s = ab::parse_shard("auto", env.fn());
  CHECK(s.index == 3);
  CHECK(s.count == 4);
  CHECK(s.source == "slurm");
  // An array that does not start at 0 (--array=5-8).
  env.vars = {{"SLURM_ARRAY_TASK_ID", "6"}, {"SLURM_ARRAY_TASK_COUNT", "4"}, {"SLURM_ARRAY_TASK_MIN", "5"},
              {"SLURM_ARRAY_TASK_MAX", "8"}};
  s = ab::parse_shard("auto", env.fn());
  CHECK(s.index == 1);
  CHECK(s.count == 4);
  // With a step (--array=0-12:4): tasks 0, 4, 8, 12.
  env.vars = {{"SLURM_ARRAY_TASK_ID", "8"}, {"SLURM_ARRAY_TASK_COUNT", "4"}, {"SLURM_ARRAY_TASK_MIN", "0"},
              {"SLURM_ARRAY_TASK_MAX", "12"}, {"SLURM_ARRAY_TASK_STEP", "4"}};
  s = ab::parse_shard("auto", env.fn());
  CHECK(s.index == 2);
  CHECK(s.count == 4);
  // No count: from min and max.
  env.vars = {{"SLURM_ARRAY_TASK_ID", "2"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_MAX", "3"}};
  s = ab::parse_shard("auto", env.fn());
  CHECK(s.index == 1);
  CHECK(s.count == 3);
  // A sparse array (--array=1,5,9) cannot be mapped onto shards.
  env.vars = {{"SLURM_ARRAY_TASK_ID", "5"}, {"SLURM_ARRAY_TASK_COUNT", "3"}, {"SLURM_ARRAY_TASK_MIN", "1"},
              {"SLURM_ARRAY_TASK_MAX", "9"}};
  CHECK(contains(shard_error("auto", env), "not a contiguous range"));
  env.vars = {{"SLURM_ARRAY_TASK_ID", "x"}, {"SLURM_ARRAY_TASK_COUNT", "3"}};
  CHECK(contains(shard_error("auto", env), "malformed"));
}

TEST_CASE("the partition covers every case once, is deterministic and balances cost") {
  std::vector<int64_t> costs;
  for (int i = 0; i < 1000; ++i) costs.push_back(1000 + (i * 7919) % 100000);
  std::vector<int64_t> load;
  const auto a = ab::assign_shards(costs, 7, &load);
  const auto b = ab::assign_shards(costs, 7);
  CHECK(a == b);
  REQUIRE(a.size() == costs.size());
  std::vector<int64_t> sum(7, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i] >= 0);
    REQUIRE(a[i] < 7);
    sum[static_cast<size_t>(a[i])] += costs[i];
  }
  CHECK(sum == load);
  const int64_t total = std::accumulate(costs.begin(), costs.end(), int64_t{0});
  CHECK(std::accumulate(load.begin(), load.end(), int64_t{0}) == total);
  // LPT: no shard exceeds the mean by more than the largest case.
  const int64_t biggest = *std::max_element(costs.begin(), costs.end());
  for (int64_t l : load) CHECK(l <= total / 7 + biggest);
  // More shards than cases: the extra shards are empty.
  const auto few = ab::assign_shards({5, 3}, 4, &load);
  CHECK(few == std::vector<int>{0, 1});
  CHECK(load == std::vector<int64_t>{5, 3, 0, 0});
  CHECK_THROWS_AS(ab::assign_shards(costs, 0), InputError);
}

TEST_CASE("case cost follows the work and is machine-independent") {
  const ab::Experiment ex = ab::parse_experiment(kSweep, "s.yaml", {});
  std::map<std::string, int64_t> cost;
  for (const auto& c : ex.cases) cost[c.id] = ab::case_cost(ex, c);
  // Longer sequences cost more; a skipped case costs the fixed part only.
  const int64_t small = cost.at("mha/prefill_b1_h2_kv2_d16_q64_k64_causal_f32");
  const int64_t large = cost.at("mha/prefill_b1_h2_kv2_d16_q512_k512_causal_f32");
  CHECK(large > small);
  for (const auto& c : ex.cases) {
    CHECK(cost[c.id] >= 1000);
    if (!c.skip_reason.empty()) CHECK(cost[c.id] == 1000);
  }
}

TEST_CASE("a lazily loaded spec makes the same cases as an eager one") {
  const ab::Experiment eager = ab::parse_experiment(kSweep, "s.yaml", {});
  const ab::Experiment lazy = ab::parse_experiment(kSweep, "s.yaml", {}, /*lazy=*/true);
  CHECK(lazy.cases.empty());
  REQUIRE(lazy.case_count() == eager.cases.size());
  CHECK(eager.case_count() == eager.cases.size());
  size_t skipped = 0;
  for (size_t i = 0; i < eager.cases.size(); ++i) {
    const ab::Case& e = eager.cases[i];
    const ab::Case l = lazy.case_at(i);
    CHECK(l.index == e.index);
    CHECK(l.id == e.id);
    CHECK(lazy.case_id(i) == e.id);
    CHECK(l.skip_reason == e.skip_reason);
    CHECK(l.problem.key() == e.problem.key());
    CHECK(l.variant.label == e.variant.label);
    skipped += !e.skip_reason.empty();
  }
  CHECK(lazy.skipped_cases == skipped);
  CHECK(eager.skipped_cases == skipped);
  // Selection by filter is the same either way.
  const auto a = ab::select_case_indices(eager, "streaming.*q128");
  const auto b = ab::select_case_indices(lazy, "streaming.*q128");
  CHECK(a == b);
  CHECK(!a.empty());
}

TEST_CASE("CPU worker slots split this process's cores") {
  const auto one = ab::cpu_worker_slots(1, 0);
  REQUIRE(one.size() == 1);
  const size_t cores = one[0].cpus.size();
  CHECK(one[0].threads == static_cast<int>(cores));
  if (cores >= 2) {
    const auto two = ab::cpu_worker_slots(2, 0);
    REQUIRE(two.size() == 2);
    CHECK(two[0].cpus.size() + two[1].cpus.size() == cores);
    CHECK(two[0].cpus.back() < two[1].cpus.front());  // disjoint, contiguous groups
  }
  CHECK_THROWS_AS(ab::cpu_worker_slots(static_cast<int>(cores) + 1, 0), InputError);
}
