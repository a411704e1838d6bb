#pragma once
// Sharding a sweep (docs/cluster.md): `run --shard I/N` runs one of N parts of a spec's cases,
// balanced by a cost estimate rather than by case count, and the same partition on every
// machine and every re-run, so that N independent processes (a Slurm job array) cover the
// spec exactly once and `attn-bench merge` can put the parts back together.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/experiment.hpp"

namespace ab {

struct ShardSpec {
  int index = 0;  // 0-based
  int count = 1;
  std::string source;  // "cli" or "slurm" (how it was given)
};

// "I/N" (0 <= I < N), or "auto": the Slurm array task of this process. InputError otherwise,
// naming what is wrong. `getenv` is a parameter so that tests can give an environment.
ShardSpec parse_shard(const std::string& text,
                      const std::function<const char*(const char*)>& getenv_fn);

// The cost of a case in nominal microseconds: its executed FLOPs at 1 TFLOP/s plus the bytes
// it must move (inputs read, outputs written) at 100 GB/s, times the attention calls its
// metrics make at least, plus a fixed 1 ms per case (set-up, inputs). Machine-independent (no
// measured rates) and integral, so that every machine computes the same partition. A case
// the spec marks skipped costs the fixed part only.
int64_t case_cost(const Experiment& ex, const Case& c);

// Longest-processing-time partition: cases in decreasing cost (ties: lower index first),
// each to the shard with the least cost so far (ties: the lower shard). Returns the shard of
// each case; `load` (optional) receives each shard's total cost. Deterministic.
std::vector<int> assign_shards(const std::vector<int64_t>& costs, int count, std::vector<int64_t>* load = nullptr);

}  // namespace ab
