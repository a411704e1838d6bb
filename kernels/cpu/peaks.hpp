#pragma once
// Measured peaks of the CPU for the roofline (docs/figures.md, "Roofline"): a large fp32
// matrix product (the compute roof an attention kernel's GEMMs can reach) and a STREAM triad
// (McCalpin, "Memory Bandwidth and Machine Balance", 1995) over arrays far larger than the
// caches a core can use. Both run on `threads` OpenMP threads and report the best of a few
// repetitions, as STREAM does: the peak is what the machine can do, not its typical rate.
#include <cstdint>
#include <string>

namespace ab::cpu {

struct PeakRate {
  double value = 0;     // TFLOP/s or GB/s (1e9 bytes)
  std::string method;   // what was run, with its size and repetitions
};

PeakRate measure_gemm_tflops(int threads, int n = 2048, int repetitions = 5);
// Bytes counted as STREAM does: 3 arrays x 4 bytes per element (two reads, one write).
PeakRate measure_triad_gbps(int threads, int64_t bytes_per_array = int64_t{512} << 20, int repetitions = 5);

}  // namespace ab::cpu
