// Micro-benchmarks of the CPU flash kernel beside the ceilings it is judged against, measured
// in the same binary run: Eigen's fp32 GEMM (docs/gpu.md's CPU rows) and a streaming read.
//   attn_microbench --benchmark_filter='stream|gemm|sdpa' --benchmark_min_time=2
// Rates count a multiply-add as 2 FLOPs; attention FLOPs are 2·B·Hq·(allowed pairs)·(d + dv),
// i.e. 4·B·Hq·Nq·Nkv·d dense and about half of it causal; decode is reported as bytes of Q,
// K, V, O over time. The performance target (dense d=128 attention at >= 50% of GEMM's
// GFLOP/s on the same threads) is checked in BM_sdpa_flash_f32: a miss is reported as an error
// carrying both figures.

// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers when Eigen's
// packet math is inlined (a false positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <omp.h>

#include <Eigen/Core>

#include "cpu/sdpa.hpp"

namespace {

using namespace ab;

constexpr double kTargetFractionOfGemm = 0.5;

// Uniform in [-1, 1) from a per-element hash: cheap enough for the 1 GiB decode cache, and
// the kernel's speed does not depend on the distribution.
void fill_uniform(HostTensor& t, uint64_t seed) {
  float* p = t.ptr();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (uint64_t(i) + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 31;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 29;
    p[i] = float(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
  }
}

TensorRef ref_of(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

struct Problem {
  AttnShape shape;
  HostTensor q, k, v, o, lse;
  SdpaArgs args;

  Problem(int b, int hq, int hkv, int d, int64_t nq, int64_t nkv, bool causal)
      : q({b, hq, nq, d}), k({b, hkv, nkv, d}), v({b, hkv, nkv, d}), o({b, hq, nq, d}),
        lse({b, hq, nq, 1}) {
    shape.batch = b;
    shape.q_heads = hq;
    shape.kv_heads = hkv;
    shape.head_dim = shape.v_dim = d;
    shape.q_len = nq;
    shape.kv_len = nkv;
    shape.causal = causal;
    fill_uniform(q, 1);
    fill_uniform(k, 2);
    fill_uniform(v, 3);
    args.shape = shape;
    args.q = ref_of(q);
    args.k = ref_of(k);
    args.v = ref_of(v);
    args.o = ref_of(o);
    args.lse = ref_of(lse);
    args.mask.causal = causal;
  }
  double flops() const {
    const AttnShape& s = shape;
    return 2.0 * s.batch * s.q_heads * s.allowed_pairs() * (s.head_dim + s.v_dim);
  }
  double bytes() const {
    return 4.0 * double(q.numel() + k.numel() + v.numel() + o.numel());
  }
};

// Eigen GEMM n³ GFLOP/s on `threads` threads, median of 5 timed products after a warm-up;
// cached per (n, threads) so every attention benchmark compares against the same figure.
double gemm_gflops(int n, int threads) {
  static std::map<std::pair<int, int>, double> cache;
  const auto key = std::make_pair(n, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  Eigen::setNbThreads(threads);
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
  Eigen::MatrixXf c(n, n);
  c.noalias() = a * b;
  std::vector<double> rates;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * n * n * double(n) / s * 1e-9);
  }
  Eigen::setNbThreads(0);
  std::nth_element(rates.begin(), rates.begin() + 2, rates.end());
  return cache[key] = rates[2];
}

// Streaming read of a 512 MiB fp32 buffer: the ceiling of a memory-bound decode. Args: threads.
void BM_stream_read_f32(benchmark::State& state) {
  const int threads = int(state.range(0));
  const int64_t n = int64_t(128) << 20;
  std::vector<float> buf(size_t(n), 1.0f);
  for (auto _ : state) {
    float sum = 0;
#pragma omp parallel for simd reduction(+ : sum) num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) sum += buf[size_t(i)];
    benchmark::DoNotOptimize(sum);
  }
  state.counters["GB"] =
      benchmark::Counter(4.0 * double(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_stream_read_f32)->Arg(2)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// Args: n, threads.
void BM_eigen_gemm_f32(benchmark::State& state) {
  const int n = int(state.range(0)), threads = int(state.range(1));
  Eigen::setNbThreads(threads);
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
  Eigen::MatrixXf c(n, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  Eigen::setNbThreads(0);
  state.counters["GFLOP"] = benchmark::Counter(2.0 * n * n * double(n) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_eigen_gemm_f32)->Args({2048, 2})->Args({2048, 1})->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Args: B, H, N, d, causal, threads. Reports GFLOP/s (allowed-pair FLOPs, causal-aware) and,
// for dense d=128, the fraction of GEMM's rate on the same threads, with the target check.
void BM_sdpa_flash_f32(benchmark::State& state) {
  const int b = int(state.range(0)), h = int(state.range(1)), d = int(state.range(3));
  const int64_t n = state.range(2);
  const bool causal = state.range(4) != 0;
  const int threads = int(state.range(5));
  Problem p(b, h, h, d, n, n, causal);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  cpu::sdpa_flash(p.args);  // warm-up: first touch of O, thread pool start
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::sdpa_flash(p.args);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  state.counters["GFLOP"] =
      benchmark::Counter(p.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["executed"] = cpu::sdpa_flash_executed_fraction(p.shape, p.args.mask);
  if (!causal && d == 128) {
    const double gemm = gemm_gflops(2048, threads);
    const double attn = p.flops() * double(state.iterations()) / seconds * 1e-9;
    state.counters["gemm_GFLOP/s"] = gemm;
    state.counters["frac_of_gemm"] = attn / gemm;
    if (attn < kTargetFractionOfGemm * gemm)
      state.SkipWithError(("below target: attention " + std::to_string(attn) + " GFLOP/s < " +
                           std::to_string(kTargetFractionOfGemm) + " x GEMM " +
                           std::to_string(gemm) + " GFLOP/s")
                              .c_str());
  }
}
BENCHMARK(BM_sdpa_flash_f32)
    ->ArgNames({"B", "H", "N", "d", "causal", "threads"})
    ->Args({1, 8, 4096, 128, 0, 2})
    ->Args({1, 8, 4096, 128, 1, 2})
    ->Args({1, 8, 4096, 64, 0, 2})
    ->Args({1, 8, 4096, 128, 0, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Each product path of the flash kernel on one shape, to set them side by side in one run (the
// rows of a path this CPU lacks are skipped). Args: B, H, N, d, causal, threads, path
// (0 portable, 1 avx512_f32, 2 avx512_bf16, 3 amx_bf16). The bf16 paths round the inputs to
// bf16 while packing, exactly as for a dtype: bf16 case.
void BM_sdpa_flash_path(benchmark::State& state) {
  const int b = int(state.range(0)), h = int(state.range(1)), d = int(state.range(3));
  const int64_t n = state.range(2);
  const bool causal = state.range(4) != 0;
  const int threads = int(state.range(5));
  const auto path = static_cast<cpu::FlashPath>(state.range(6));
  state.SetLabel(cpu::flash_path_name(path));
  if (!cpu::sdpa_flash_available(path)) {
    state.SkipWithError("this CPU lacks the path");
    return;
  }
  Problem p(b, h, h, d, n, n, causal);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  cpu::sdpa_flash(p.args, path);  // warm-up
  for (auto _ : state) {
    cpu::sdpa_flash(p.args, path);
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  state.counters["GFLOP"] =
      benchmark::Counter(p.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_sdpa_flash_path)
    ->ArgNames({"B", "H", "N", "d", "causal", "threads", "path"})
    ->ArgsProduct({{1}, {8}, {2048}, {128}, {0, 1}, {2}, {0, 1, 2, 3}})
    ->ArgsProduct({{1}, {16}, {2048}, {64}, {0}, {2}, {0, 1, 2, 3}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Decode: one query token per head against a long KV cache. Args: B, Hq, Hkv, KV, threads.
// Memory-bound: reports GB/s of Q, K, V, O (K and V dominate), to hold against
// BM_stream_read_f32 in the same run.
void BM_sdpa_flash_decode_f32(benchmark::State& state) {
  const int b = int(state.range(0)), hq = int(state.range(1)), hkv = int(state.range(2));
  const int64_t kv = state.range(3);
  const int threads = int(state.range(4));
  Problem p(b, hq, hkv, 128, 1, kv, false);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  cpu::sdpa_flash(p.args);
  for (auto _ : state) {
    cpu::sdpa_flash(p.args);
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  state.counters["GB"] =
      benchmark::Counter(p.bytes() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP"] =
      benchmark::Counter(p.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_sdpa_flash_decode_f32)
    ->ArgNames({"B", "Hq", "Hkv", "KV", "threads"})
    ->Args({1, 32, 8, 131072, 2})
    ->Args({1, 1, 1, 1 << 20, 2})  // one head: only the KV split keeps both cores busy
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
