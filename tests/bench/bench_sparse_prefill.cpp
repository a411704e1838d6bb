// Micro-benchmarks of op 2 (sparse prefill SDPA) beside the dense flash kernel on the same
// shape, so that the per-pair rate of the sparse kernel can be read against the dense one:
//   attn_microbench --benchmark_filter='sparse_prefill|dense_causal' --benchmark_min_time=2
// Counter `GFLOPs` = 2·(pairs computed)·(d + dv) / time, pairs from
// sparse_prefill_executed_pairs (the kernel's own walk); `density` = listed / allowed pairs.
// Shape: B=1, H=4 query heads sharing 1 kv head, d=64, N=8192, causal (suites/sparse-prefill).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // Eigen + AVX-512, GCC PR 105593
#endif
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/selection_lists.hpp"
#include "cpu/sdpa.hpp"
#include "cpu/sparse_prefill.hpp"

namespace {

using namespace ab;

struct Inputs {
  AttnShape s;
  HostTensor q, k, v, o, lse;
  explicit Inputs(int64_t n) {
    s.batch = 1;
    s.q_heads = 4;
    s.kv_heads = 1;
    s.head_dim = s.v_dim = 64;
    s.q_len = s.kv_len = n;
    s.causal = true;
    q = HostTensor({1, 4, n, 64});
    k = HostTensor({1, 1, n, 64});
    v = HostTensor({1, 1, n, 64});
    o = HostTensor({1, 4, n, 64});
    lse = HostTensor({1, 4, n, 1});
    std::mt19937 rng(7);
    std::normal_distribution<float> n01;
    for (auto* t : {&q, &k, &v})
      for (float& e : t->data) e = n01(rng);
  }
  static TensorRef ref(HostTensor& t) {
    TensorRef r;
    r.data = t.ptr();
    r.shape = t.shape;
    return r;
  }
  SparsePrefillArgs args() {
    SparsePrefillArgs a;
    a.shape = s;
    a.q = ref(q);
    a.k = ref(k);
    a.v = ref(v);
    a.o = ref(o);
    a.lse = ref(lse);
    return a;
  }
};

constexpr int64_t kN = 8192;

void BM_dense_causal(benchmark::State& st) {
  Inputs x(kN);
  SdpaArgs a;
  a.shape = x.s;
  a.q = Inputs::ref(x.q);
  a.k = Inputs::ref(x.k);
  a.v = Inputs::ref(x.v);
  a.o = Inputs::ref(x.o);
  a.lse = Inputs::ref(x.lse);
  a.mask.causal = true;
  for (auto _ : st) cpu::sdpa_flash(a);
  const double flops = 2.0 * x.s.q_heads * x.s.allowed_pairs() * 128.0;
  st.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_dense_causal)->Unit(benchmark::kMillisecond)->UseRealTime();

// Key-block lists of 128×128 blocks: the diagonal block plus a random `percent`% of the
// earlier blocks of every query block, per head.
void BM_sparse_prefill_blocks(benchmark::State& st) {
  const double keep = double(st.range(0)) / 100.0;
  Inputs x(kN);
  HostBlockLists L;
  L.q_block = L.k_block = 128;
  L.list_heads = 4;
  std::mt19937 rng(3);
  std::bernoulli_distribution pick(keep);
  for (int h = 0; h < 4; ++h)
    for (int64_t qb = 0; qb < kN / 128; ++qb) {
      for (int64_t kb = 0; kb < qb; ++kb)
        if (pick(rng)) L.blocks.push_back(int32_t(kb));
      L.blocks.push_back(int32_t(qb));
      L.offsets.push_back(int32_t(L.blocks.size()));
    }
  SparsePrefillArgs a = x.args();
  a.blocks = L.view();
  for (auto _ : st) cpu::sparse_prefill(a);
  const double pairs = cpu::sparse_prefill_executed_pairs(a);
  st.counters["GFLOPs"] = benchmark::Counter(2.0 * pairs * 128.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["density"] = selected_pairs(L, x.s) / (x.s.allowed_pairs() * 4);
}
BENCHMARK(BM_sparse_prefill_blocks)->Arg(10)->Arg(25)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();

// Key-index lists per 128-row group: the group's own rows plus `percent`% of the earlier keys
// drawn one by one (scattered: every score tile is gathered).
void BM_sparse_prefill_scattered(benchmark::State& st) {
  const double keep = double(st.range(0)) / 100.0;
  Inputs x(kN);
  HostIndexLists L;
  L.q_group = 128;
  L.n_groups = kN / 128;
  L.list_heads = 4;
  std::mt19937 rng(5);
  std::bernoulli_distribution pick(keep);
  std::vector<int32_t> keys;
  for (int h = 0; h < 4; ++h)
    for (int64_t g = 0; g < kN / 128; ++g) {
      keys.clear();
      for (int64_t j = 0; j < g * 128; ++j)
        if (pick(rng)) keys.push_back(int32_t(j));
      for (int64_t j = g * 128; j < (g + 1) * 128; ++j) keys.push_back(int32_t(j));
      L.push_list(keys);
    }
  SparsePrefillArgs a = x.args();
  a.layout = SparseLayout::key_indices;
  a.indices = L.view();
  for (auto _ : st) cpu::sparse_prefill(a);
  const double pairs = cpu::sparse_prefill_executed_pairs(a);
  st.counters["GFLOPs"] = benchmark::Counter(2.0 * pairs * 128.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["density"] = selected_pairs(L, x.s) / (x.s.allowed_pairs() * 4);
}
BENCHMARK(BM_sparse_prefill_scattered)->Arg(10)->Arg(25)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
