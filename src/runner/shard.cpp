#include "runner/shard.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <queue>

#include "core/errors.hpp"
#include "variants/registry.hpp"

namespace ab {

namespace {

// A non-negative integer, whole string; -1 when it is not one.
long long parse_count(const std::string& s) {
  if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(s);
}

ShardSpec from_slurm(const std::function<const char*(const char*)>& env) {
  auto get = [&](const char* name) -> std::string {
    const char* v = env(name);
    return v ? std::string(v) : std::string();
  };
  const std::string id_s = get("SLURM_ARRAY_TASK_ID");
  if (id_s.empty())
    throw InputError("--shard auto: not inside a Slurm array job (SLURM_ARRAY_TASK_ID is unset); "
                     "submit with sbatch --array=0-N-1, or give --shard I/N");
  const long long id = parse_count(id_s);
  const std::string min_s = get("SLURM_ARRAY_TASK_MIN"), max_s = get("SLURM_ARRAY_TASK_MAX");
  const std::string count_s = get("SLURM_ARRAY_TASK_COUNT"), step_s = get("SLURM_ARRAY_TASK_STEP");
  const long long lo = min_s.empty() ? 0 : parse_count(min_s);
  const long long hi = max_s.empty() ? -1 : parse_count(max_s);
  const long long step = step_s.empty() ? 1 : parse_count(step_s);
  long long count = count_s.empty() ? -1 : parse_count(count_s);
  if (id < 0 || lo < 0 || step <= 0 || (!max_s.empty() && hi < 0) || (!count_s.empty() && count < 0))
    throw InputError("--shard auto: malformed Slurm array variables (SLURM_ARRAY_TASK_ID=" + id_s +
                     ", _MIN=" + min_s + ", _MAX=" + max_s + ", _COUNT=" + count_s + ", _STEP=" + step_s + ")");
  if (count < 0) {
    if (hi < 0)
      throw InputError("--shard auto: SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MAX are unset; give --shard I/N");
    count = (hi - lo) / step + 1;
  }
  if (id < lo || (id - lo) % step != 0)
    throw InputError("--shard auto: task " + id_s + " is not on the array's grid (min " + std::to_string(lo) +
                     ", step " + std::to_string(step) + ")");
  const long long index = (id - lo) / step;
  // A sparse array (--array=1,5,9) numbers its tasks with gaps: its count does not tell the
  // shard of each task, so the partition would leave cases out.
  if (hi >= 0 && (hi - lo) / step + 1 != count)
    throw InputError("--shard auto: the array's task ids are not a contiguous range (min " + std::to_string(lo) +
                     ", max " + std::to_string(hi) + ", " + std::to_string(count) +
                     " tasks); submit --array=A-B (optionally :STEP), or give --shard I/N");
  if (index >= count || count > 1000000)
    throw InputError("--shard auto: task " + id_s + " gives shard " + std::to_string(index) + " of " +
                     std::to_string(count) + ": out of range");
  return ShardSpec{static_cast<int>(index), static_cast<int>(count), "slurm"};
}

}  // namespace

ShardSpec parse_shard(const std::string& text, const std::function<const char*(const char*)>& getenv_fn) {
  if (text == "auto") return from_slurm(getenv_fn);
  const auto slash = text.find('/');
  const long long i = slash == std::string::npos ? -1 : parse_count(text.substr(0, slash));
  const long long n = slash == std::string::npos ? -1 : parse_count(text.substr(slash + 1));
  if (i < 0 || n < 1)
    throw InputError("--shard '" + text + "': expected I/N with 0 <= I < N (e.g. 0/4), or auto (a Slurm array task)");
  if (i >= n) throw InputError("--shard '" + text + "': the shard index must be below the count (shards are 0.." +
                               std::to_string(n - 1) + ")");
  if (n > 1000000) throw InputError("--shard '" + text + "': at most 1000000 shards");
  return ShardSpec{static_cast<int>(i), static_cast<int>(n), "cli"};
}

int64_t case_cost(const Experiment& ex, const Case& c) {
  constexpr double kFixedUs = 1000;
  if (!c.skip_reason.empty()) return static_cast<int64_t>(kFixedUs);
  double flops = 0, bytes = 0;
  try {
    const RegistryEntry* entry = find_variant(c.variant.name);
    auto v = entry->make(c.variant.params);
    const AttnShape s = v->shape(c.problem);
    const Cost cost = v->cost(s, nullptr);
    flops = cost.executed;
    bytes = cost.bytes_min;
  } catch (const std::exception&) {
    return static_cast<int64_t>(kFixedUs);  // it will be skipped when it runs
  }
  // Attention calls the metrics make at least: one correctness run, then warmup + the
  // minimum samples of latency. (What latency adds beyond depends on the machine.)
  double calls = 1;
  if (ex.metrics.contains("latency")) {
    const auto& l = ex.metrics["latency"];
    calls += l.value("warmup", 2.0) + l.value("min_samples", 5.0);
  }
  const double us = calls * (flops / 1e12 + bytes / 1e11) * 1e6 + kFixedUs;
  if (!std::isfinite(us) || us > 9e15) return static_cast<int64_t>(9e15);
  return static_cast<int64_t>(std::llround(us));
}

std::vector<int> assign_shards(const std::vector<int64_t>& costs, int count, std::vector<int64_t>* load) {
  if (count < 1) throw InputError("shards: the count must be at least 1");
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  // Min-heap of (load, shard): the least loaded shard, the lower index on ties.
  using Slot = std::pair<int64_t, int>;
  std::priority_queue<Slot, std::vector<Slot>, std::greater<Slot>> heap;
  for (int s = 0; s < count; ++s) heap.push({0, s});
  std::vector<int> shard(costs.size(), 0);
  std::vector<int64_t> totals(static_cast<size_t>(count), 0);
  for (size_t i : order) {
    auto [l, s] = heap.top();
    heap.pop();
    shard[i] = s;
    totals[static_cast<size_t>(s)] = l + costs[i];
    heap.push({l + costs[i], s});
  }
  if (load) *load = std::move(totals);
  return shard;
}

}  // namespace ab
