// Micro-benchmarks of the CPU token-gather decode (op 3) beside dense decode (sdpa_flash,
// q_len = 1) on the same cache: the gathered keys' K and V bytes over time, and the time of
// a dense decode step over the whole cache for the speedup a selection can buy.
//   attn_microbench --benchmark_filter='gather|dense_decode' --benchmark_min_time=1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC PR 105593 in AVX-512 headers
#endif
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/gather_decode.hpp"
#include "cpu/sdpa.hpp"
#include "cpu/selection_decode.hpp"

namespace {

using namespace ab;

TensorRef host_ref(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

struct Cache {
  AttnShape s;
  HostTensor q, k, v, o, lse;
  Cache(int hq, int hkv, int d, int64_t n) {
    s.batch = 1;
    s.q_heads = hq;
    s.kv_heads = hkv;
    s.head_dim = s.v_dim = d;
    s.q_len = 1;
    s.kv_len = n;
    s.mode = Mode::decode;
    q = HostTensor({1, hq, 1, d});
    k = HostTensor({1, hkv, n, d});
    v = HostTensor({1, hkv, n, d});
    o = HostTensor({1, hq, 1, d});
    lse = HostTensor({1, hq, 1, 1});
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    for (auto* t : {&q, &k, &v})
      for (float& e : t->data) e = nd(rng);
  }
};

// Args: kv length, keys per list, pattern (0 random sorted, 1 pages of 16, 2 one contiguous run).
void BM_gather_decode(benchmark::State& st) {
  const int64_t n = st.range(0), keys = st.range(1), pattern = st.range(2);
  Cache c(32, 8, 128, n);
  std::vector<int32_t> offsets{0}, idx;
  std::mt19937 rng(11);
  for (int r = 0; r < 8; ++r) {
    std::vector<int32_t> l;
    if (pattern == 2) {
      for (int64_t j = 0; j < keys; ++j) l.push_back(int32_t(n - keys + j));
    } else {
      const int64_t unit = pattern == 1 ? 16 : 1;
      std::vector<int32_t> all(size_t(n / unit));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(size_t(keys / unit));
      std::sort(all.begin(), all.end());
      for (int32_t u : all)
        for (int64_t j = 0; j < unit; ++j) l.push_back(int32_t(u * unit + j));
    }
    idx.insert(idx.end(), l.begin(), l.end());
    offsets.push_back(int32_t(idx.size()));
  }
  GatherDecodeArgs a;
  a.shape = c.s;
  a.q = host_ref(c.q);
  a.k = host_ref(c.k);
  a.v = host_ref(c.v);
  a.o = host_ref(c.o);
  a.lse = host_ref(c.lse);
  a.lists.offsets = offsets.data();
  a.lists.indices = idx.data();
  a.lists.lists = 8;
  a.lists.total = int64_t(idx.size());
  for (auto _ : st) cpu::gather_decode(a);
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(idx.size()) * 2 * 128 * 4);
}
BENCHMARK(BM_gather_decode)
    ->Args({32768, 2048, 0})->Args({32768, 2048, 1})->Args({32768, 2048, 2})
    ->Args({131072, 4096, 0})->Args({32768, 32768, 2})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_dense_decode(benchmark::State& st) {
  Cache c(32, 8, 128, st.range(0));
  SdpaArgs a;
  a.shape = c.s;
  a.q = host_ref(c.q);
  a.k = host_ref(c.k);
  a.v = host_ref(c.v);
  a.o = host_ref(c.o);
  a.lse = host_ref(c.lse);
  for (auto _ : st) cpu::sdpa_flash(a);
  st.SetBytesProcessed(int64_t(st.iterations()) * st.range(0) * 8 * 2 * 128 * 4);
}
BENCHMARK(BM_dense_decode)->Arg(32768)->Arg(131072)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Decode-time scoring: a kv group's G query rows against the whole cache of one kv head
// (TokenSelect's and RetrievalAttention's estimation). Args: keys, rows.
void BM_group_scores(benchmark::State& st) {
  const int64_t n = st.range(0), rows = st.range(1);
  const int d = 128;
  std::vector<float> q(size_t(rows * d)), k(size_t(n * d)), out(size_t(rows * n));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (float& e : q) e = nd(rng);
  for (float& e : k) e = nd(rng);
  for (auto _ : st) cpu::group_scores(q.data(), rows, k.data(), n, d, 1.0f, out.data());
  st.SetBytesProcessed(int64_t(st.iterations()) * n * d * 4);
}
BENCHMARK(BM_group_scores)->Args({32768, 4})->Args({32768, 1})->Args({32768, 32})->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
