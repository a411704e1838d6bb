#pragma once
// The project's one random-number stream for variants and ops that draw at plan time (random
// projections, LSH hyperplanes, sampled columns, k-means seeds). splitmix64 is fully specified,
// so the same seed gives the same numbers with every compiler and standard library
// (std::normal_distribution does not: its algorithm is left to the implementation).
#include <cstdint>

namespace ab {

class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();                  // [0, 1)
  int64_t uniform_int(int64_t n);    // [0, n), unbiased
  double normal();                   // N(0, 1), Box-Muller

 private:
  uint64_t state_;
};

// A seed for a sub-stream, mixed from a base seed and up to three identifiers.
uint64_t mix_seed(uint64_t base, uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace ab
