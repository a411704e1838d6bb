// The peak microbenchmarks behind `attn-bench peaks` and `run --measure-peaks` (kernels/cpu/
// peaks.hpp): they run, count their work as documented and say what they ran. Their speed is
// not checked here (a unit test is no place for timing); docs/figures.md has measured values.
#include <doctest/doctest.h>

#include <cmath>

#include "backends/backends.hpp"
#include "core/errors.hpp"
#include "cpu/peaks.hpp"
#include "runner/runner.hpp"

TEST_SUITE("peaks") {

TEST_CASE("CPU matrix-product and triad peaks are positive and describe their run") {
  const auto gemm = ab::cpu::measure_gemm_tflops(1, 96, 1);
  CHECK(std::isfinite(gemm.value));
  CHECK(gemm.value > 0);
  CHECK(gemm.method.find("96x96x96") != std::string::npos);
  const auto triad = ab::cpu::measure_triad_gbps(2, int64_t{1} << 20, 1);
  CHECK(std::isfinite(triad.value));
  CHECK(triad.value > 0);
  CHECK(triad.method.find("3 arrays of 1 MiB") != std::string::npos);
  CHECK(triad.method.find("2 threads") != std::string::npos);
}

TEST_CASE("a backend without a peak microbenchmark is an input error, not a roof of zero") {
  std::string note;
  auto fake = ab::make_backend("fake", &note);
  CHECK_FALSE(fake->measure_peaks().has_value());
  CHECK_THROWS_AS(ab::measure_peaks_json(*fake, 1), ab::InputError);
}

}
