// Micro-benchmarks of op 4 (kernels/cpu/linear_attention.cpp): the chunked Lightning-2 form
// over N (time per token should be flat), the quadratic Lightning-1 form, the normalised
// forms, and a decode step, on the threads OpenMP gives (or --threads via OMP_NUM_THREADS).
//   attn_microbench --benchmark_filter=linear --benchmark_min_time=1
// Counters: tokens/s and GFLOP/s of the executed FLOPs (LinearAttentionVariant::linear_flops).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cpu/linear_attention.hpp"
#include "variants/linear_attention_base.hpp"

namespace {

using namespace ab;

struct Problem4 {
  AttnShape s;
  HostTensor q, k, v, o;
  LinearState st_in, st_out;
  HostTensor kv[2], ks[2], vs[2];
};

TensorRef ref(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

void fill(HostTensor& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : t.data) x = u(rng);
}

Problem4 make(int heads, int d, int64_t nq, int64_t nkv) {
  Problem4 p;
  p.s.batch = 1;
  p.s.q_heads = p.s.kv_heads = heads;
  p.s.head_dim = p.s.v_dim = d;
  p.s.q_len = nq;
  p.s.kv_len = nkv;
  p.s.causal = true;
  p.q = HostTensor({1, heads, nq, d});
  p.k = HostTensor({1, heads, nkv, d});
  p.v = HostTensor({1, heads, nkv, d});
  p.o = HostTensor({1, heads, nq, d});
  fill(p.q, 1);
  fill(p.k, 2);
  fill(p.v, 3);
  for (int i = 0; i < 2; ++i) {
    p.kv[i] = HostTensor({1, heads, d, d});
    p.ks[i] = HostTensor({1, heads, 1, d});
    p.vs[i] = HostTensor({1, heads, 1, d});
  }
  p.st_in = {ref(p.kv[0]), ref(p.ks[0]), ref(p.vs[0])};
  p.st_out = {ref(p.kv[1]), ref(p.ks[1]), ref(p.vs[1])};
  return p;
}

LinearAttnArgs args(Problem4& p, LinearAlgorithm alg, LinearNormalizer norm, const float* slopes) {
  LinearAttnArgs a;
  a.shape = p.s;
  a.q = ref(p.q);
  a.k = ref(p.k);
  a.v = ref(p.v);
  a.o = ref(p.o);
  a.algorithm = alg;
  a.normalizer = norm;
  a.feature_map = norm == LinearNormalizer::none ? FeatureMap::identity : FeatureMap::elu_plus_one;
  a.slopes = slopes;
  return a;
}

void report(benchmark::State& state, const LinearAttnArgs& a, bool state_in) {
  const double flops = LinearAttentionVariant::linear_flops(a, state_in);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] =
      benchmark::Counter(double(a.shape.q_len), benchmark::Counter::kIsIterationInvariantRate);
}

// Prefill over N tokens: lightning (decay, no denominator) or linear (elu+1, denominator).
void BM_linear_prefill(benchmark::State& state, LinearAlgorithm alg, LinearNormalizer norm) {
  const int64_t n = state.range(0);
  const int heads = 4, d = int(state.range(1));
  Problem4 p = make(heads, d, n, n);
  const std::vector<float> slopes = cpu::alibi_slopes(heads);
  const LinearAttnArgs a = args(p, alg, norm, norm == LinearNormalizer::none ? slopes.data() : nullptr);
  for (auto _ : state) {
    cpu::linear_attention(a);
    benchmark::DoNotOptimize(p.o.data.data());
  }
  report(state, a, false);
}

// One decode step: state in -> state out and the output row, against a cache of N tokens.
void BM_linear_decode(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int heads = 32, d = 128;
  Problem4 p = make(heads, d, 1, n);
  const std::vector<float> slopes = cpu::alibi_slopes(heads);
  LinearAttnArgs a = args(p, LinearAlgorithm::chunked, LinearNormalizer::none, slopes.data());
  a.state_in = p.st_in;
  a.state_out = p.st_out;
  for (auto _ : state) {
    cpu::linear_attention(a);
    benchmark::DoNotOptimize(p.o.data.data());
  }
  report(state, a, true);
}

BENCHMARK_CAPTURE(BM_linear_prefill, lightning_chunked, LinearAlgorithm::chunked, LinearNormalizer::none)
    ->ArgsProduct({{4096, 16384, 65536}, {64, 128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_prefill, lightning_quadratic, LinearAlgorithm::quadratic, LinearNormalizer::none)
    ->ArgsProduct({{4096, 16384}, {128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_prefill, linear_chunked, LinearAlgorithm::chunked, LinearNormalizer::denominator)
    ->ArgsProduct({{4096, 65536}, {128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_linear_decode)->Arg(4096)->Arg(65536)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
