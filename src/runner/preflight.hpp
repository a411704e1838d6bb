#pragma once
// Pre-flight estimates (docs/reliability.md): for each case, before anything is allocated, the
// bytes it needs (host and device: inputs, outputs, metric buffers), its FLOPs, and a time
// estimated from rates measured on this machine. `validate` and `run --dry-run` print them;
// `run` marks cases that cannot fit in the memory available `skipped` with the numbers, and
// asks for --yes when the whole sweep's estimate exceeds the time budget.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.hpp"
#include "spec/spec.hpp"

namespace ab {

struct Rates {
  double flops_per_s = 0;  // attention FLOP/s of the backend (measured with mha at a small size)
  double bytes_per_s = 0;  // host memory bandwidth (measured with a copy)
  std::string backend;
};

struct CaseEstimate {
  double input_bytes = 0;   // Q, K, V (and variant extras are not counted) in the case's dtype
  double output_bytes = 0;  // O and LSE
  double metric_bytes = 0;  // extra input copies for cold-cache latency, accuracy reference rows
  double host_bytes = 0;    // host: fp32 inputs (+ the prompt queries), O downloaded
  double device_bytes = 0;  // the backend's copies (0 extra on the CPU, which computes in place)
  double flops = 0;         // executed FLOPs per call (dense estimate for selection variants)
  double calls = 0;         // attention calls the metrics make
  double seconds = 0;       // estimated wall time of the case
  std::string skip;         // non-empty: the case cannot run (spec reason or memory)
};

// Measures the rates on `backend` (a few milliseconds).
Rates measure_rates(Backend& backend);

// Memory available now: host from /proc/meminfo (MemAvailable), device from the backend's
// device_info (memory_bytes) or the host figure on the CPU.
double host_memory_available();
double device_memory_available(const Backend& backend);

// The estimate of one case (no allocation). Memory limits of 0 mean "do not check".
CaseEstimate estimate_case(const Experiment& ex, const Case& c, const Rates& rates, bool backend_is_host,
                           double host_avail, double device_avail);

// "1.2 TB", "512 MiB"-style figures and "3m20s" durations for the pre-flight lines.
std::string human_bytes(double b);
std::string human_seconds(double s);
std::string human_flops(double f);

// Prints one line per case (up to `show`) and the totals; returns the total estimated seconds
// of the cases that will run.
double print_preflight(const Experiment& ex, const std::vector<const Case*>& cases, Backend& backend,
                       size_t show, std::FILE* out);
// The same over n cases made one at a time (a lazily loaded spec: bounded memory).
double print_preflight(const Experiment& ex, size_t n, const std::function<Case(size_t)>& case_of, Backend& backend,
                       size_t show, std::FILE* out);

}  // namespace ab
