#include "cpu/peaks.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include <omp.h>

#include <Eigen/Core>
#include <fmt/format.h>

namespace ab::cpu {

namespace {
double seconds_of(const auto& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

PeakRate measure_gemm_tflops(int threads, int n, int repetitions) {
  // One product per thread on its own matrices: Eigen's GEMM is cache-blocked and vectorised
  // for the ISA it was compiled for (AVX-512 FMA here), so this is the rate the CPU's fp32
  // units reach on a well-shaped product, not a synthetic FMA loop.
  threads = std::max(1, threads);
  std::vector<Eigen::MatrixXf> a(threads), b(threads), c(threads);
  for (int t = 0; t < threads; ++t) {
    a[t] = Eigen::MatrixXf::Random(n, n);
    b[t] = Eigen::MatrixXf::Random(n, n);
    c[t] = Eigen::MatrixXf::Zero(n, n);
  }
  Eigen::setNbThreads(1);
  double best = 1e300;
  for (int r = 0; r < repetitions + 1; ++r) {  // the first is a warm-up
    const double s = seconds_of([&] {
#pragma omp parallel for num_threads(threads) schedule(static, 1)
      for (int t = 0; t < threads; ++t) c[t].noalias() = a[t] * b[t];
    });
    if (r > 0) best = std::min(best, s);
  }
  const double flops = 2.0 * n * static_cast<double>(n) * n * threads;
  return {flops / best / 1e12,
          fmt::format("fp32 matrix product {}x{}x{} per thread (Eigen), {} threads, best of {}", n, n, n,
                      threads, repetitions)};
}

PeakRate measure_triad_gbps(int threads, int64_t bytes_per_array, int repetitions) {
  threads = std::max(1, threads);
  const int64_t n = bytes_per_array / static_cast<int64_t>(sizeof(float));
  // Left uninitialised (not std::vector, which would zero every page from this thread), so the
  // first touch below is by the thread that later streams each page (NUMA placement).
  std::unique_ptr<float[]> a(new float[static_cast<size_t>(n)]), b(new float[static_cast<size_t>(n)]),
      c(new float[static_cast<size_t>(n)]);
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    pa[i] = 0;
    pb[i] = 1;
    pc[i] = 2;
  }
  const float scalar = 3;
  double best = 1e300;
  for (int r = 0; r < repetitions + 1; ++r) {
    const double s = seconds_of([&] {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + scalar * pc[i];
    });
    if (r > 0) best = std::min(best, s);
  }
  const double bytes = 3.0 * static_cast<double>(n) * sizeof(float);
  return {bytes / best / 1e9,
          fmt::format("STREAM triad a = b + s*c, 3 arrays of {} MiB fp32, {} threads, best of {}",
                      bytes_per_array >> 20, threads, repetitions)};
}

}  // namespace ab::cpu
