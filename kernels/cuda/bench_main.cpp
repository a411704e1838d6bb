// attn_cuda_bench: a small standalone driver for the CUDA kernels, through the Backend
// interface (the same timing path as `attn-bench run`): median of CUDA-event samples after
// warm-up, cold (L2 flushed) or hot. Used to tune the tile policies and to give
// compute-sanitizer a short run over every kernel instantiation.
//
//   attn_cuda_bench perf [cold|hot]   the target shapes of results/h200 and a few more
//   attn_cuda_bench sanitize          one small launch of every kernel (for compute-sanitizer)
//   attn_cuda_bench prefill B H KVH D N causal(0|1) dtype window sinks
//   attn_cuda_bench decode  B H KVH D KV dtype [q_len]
//   attn_cuda_bench gather  B H KVH D KV dtype fraction
//   attn_cuda_bench probs   B H KVH D N causal(0|1) dtype window sinks   (column mass, P, P·V)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_backend.hpp"

namespace {

using namespace ab;

struct Timing {
  double median = 0, min = 0;
  int n = 0;
};

Timing measure(Backend& be, const std::function<void()>& fn, CacheMode mode, double budget_s = 0.6) {
  for (int i = 0; i < 2; ++i) be.time(fn, mode);
  std::vector<double> t;
  double total = 0;
  while ((t.size() < 5 || total < budget_s) && t.size() < 200) {
    t.push_back(be.time(fn, mode));
    total += t.back();
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), int(t.size())};
}

HostTensor random_host(Shape4 s, DType dt, std::mt19937_64& rng) {
  HostTensor h(s);
  std::normal_distribution<float> n(0.f, 1.f);
  for (float& x : h.data) x = round_to(dt, n(rng));
  return h;
}

// Device tensors filled on the host once (random normal, rounded), reused across runs.
struct Io {
  TensorRef q, k, v, o, lse;
};

Io make_io(Backend& be, int B, int H, int KVH, int D, int64_t nq, int64_t nkv, DType dt,
           std::mt19937_64& rng) {
  Io io;
  io.q = be.alloc({B, H, nq, D}, dt);
  io.k = be.alloc({B, KVH, nkv, D}, dt);
  io.v = be.alloc({B, KVH, nkv, D}, dt);
  io.o = be.alloc({B, H, nq, D}, dt);
  io.lse = be.alloc({B, H, nq, 1}, DType::f32);
  // Random data for a slice (4M elements), tiled over the tensor by device copies: generating
  // and converting GBs of normals on the host would take minutes.
  auto fill = [&](const TensorRef& t) {
    const int64_t n = t.numel();
    const int64_t chunk = std::min<int64_t>(n, int64_t(1) << 22);
    TensorRef head = t;
    head.shape = {1, 1, 1, chunk};
    be.upload(random_host(head.shape, dt, rng), head);
    const size_t eb = size_t(dtype_bytes(t.dtype));
    char* base = static_cast<char*>(t.data);
    for (int64_t done = chunk; done < n;) {
      const int64_t len = std::min(done, n - done);
      if (cudaMemcpy(base + size_t(done) * eb, base, size_t(len) * eb, cudaMemcpyDeviceToDevice) != cudaSuccess)
        throw std::runtime_error("bench fill: cudaMemcpy failed");
      done += len;
    }
  };
  fill(io.q);
  fill(io.k);
  fill(io.v);
  return io;
}

DType parse_dt(const std::string& s) { return s == "f16" ? DType::f16 : DType::bf16; }

void bench_prefill(Backend& be, int B, int H, int KVH, int D, int64_t N, bool causal, DType dt,
                   int64_t window, int64_t sinks, CacheMode mode, std::mt19937_64& rng) {
  Io io = make_io(be, B, H, KVH, D, N, N, dt, rng);
  SdpaArgs a;
  a.shape = AttnShape{B, H, KVH, D, D, N, N, causal, Mode::prefill, dt};
  a.q = io.q; a.k = io.k; a.v = io.v; a.o = io.o; a.lse = io.lse;
  a.mask.causal = causal;
  a.mask.window = window;
  a.mask.sinks = sinks;
  const Support s = be.supports_sdpa(a);
  if (!s.ok) { std::printf("skip: %s\n", s.reason.c_str()); be.release_all(); return; }
  const Timing t = measure(be, [&] { be.sdpa(a); }, mode);
  double pairs = 0;
  for (int64_t i = 0; i < N; ++i) {  // allowed pairs of one head under the mask
    int64_t lo = 0, hi = causal ? i + 1 : N;
    if (window > 0) {
      lo = std::max<int64_t>(0, i - window + 1);
      hi = std::min<int64_t>(hi, i + window);
      pairs += double(std::min(sinks, lo));
    }
    pairs += double(std::max<int64_t>(0, hi - lo));
  }
  const double flops = 4.0 * B * H * pairs * D;
  std::printf("prefill %-4s B=%d H=%d KVH=%d d=%d N=%lld %-6s w=%lld s=%lld  %8.3f ms  %7.1f TFLOP/s  (min %.3f ms, n=%d)\n",
              dt == DType::bf16 ? "bf16" : "f16", B, H, KVH, D, (long long)N, causal ? "causal" : "full",
              (long long)window, (long long)sinks, t.median * 1e3, flops / t.median * 1e-12, t.min * 1e3, t.n);
  be.release_all();
}

void bench_decode(Backend& be, int B, int H, int KVH, int D, int64_t KV, DType dt, int64_t nq,
                  CacheMode mode, std::mt19937_64& rng) {
  Io io = make_io(be, B, H, KVH, D, nq, KV, dt, rng);
  SdpaArgs a;
  a.shape = AttnShape{B, H, KVH, D, D, nq, KV, nq > 1, Mode::decode, dt};
  a.q = io.q; a.k = io.k; a.v = io.v; a.o = io.o; a.lse = io.lse;
  a.mask.causal = nq > 1;
  const Support s = be.supports_sdpa(a);
  if (!s.ok) { std::printf("skip: %s\n", s.reason.c_str()); be.release_all(); return; }
  const Timing t = measure(be, [&] { be.sdpa(a); }, mode);
  const double bytes = double(io.k.bytes() + io.v.bytes() + io.q.bytes() + io.o.bytes());
  std::printf("decode  %-4s B=%d H=%d KVH=%d d=%d KV=%lld q=%lld  %8.3f ms  %6.3f TB/s  (min %.3f ms, n=%d)\n",
              dt == DType::bf16 ? "bf16" : "f16", B, H, KVH, D, (long long)KV, (long long)nq,
              t.median * 1e3, bytes / t.median * 1e-12, t.min * 1e3, t.n);
  be.release_all();
}

void bench_gather(Backend& be, int B, int H, int KVH, int D, int64_t KV, DType dt, double frac,
                  CacheMode mode, std::mt19937_64& rng) {
  Io io = make_io(be, B, H, KVH, D, 1, KV, dt, rng);
  std::vector<int32_t> offsets{0}, indices;
  const int64_t n = std::max<int64_t>(1, int64_t(frac * double(KV)));
  std::vector<int32_t> all(static_cast<size_t>(KV));
  for (int r = 0; r < B * KVH; ++r) {
    std::iota(all.begin(), all.end(), 0);
    for (int64_t x = 0; x < n; ++x) std::swap(all[size_t(x)], all[size_t(x + int64_t(rng() % uint64_t(KV - x)))]);
    std::sort(all.begin(), all.begin() + n);
    indices.insert(indices.end(), all.begin(), all.begin() + n);
    offsets.push_back(int32_t(indices.size()));
  }
  GatherDecodeArgs a;
  a.shape = AttnShape{B, H, KVH, D, D, 1, KV, false, Mode::decode, dt};
  a.q = io.q; a.k = io.k; a.v = io.v; a.o = io.o; a.lse = io.lse;
  a.lists = be.upload_indices(offsets, indices);
  const Support s = be.supports_gather_decode(a);
  if (!s.ok) { std::printf("skip: %s\n", s.reason.c_str()); be.release_all(); return; }
  const Timing t = measure(be, [&] { be.gather_decode(a); }, mode);
  const double bytes = double(B) * KVH * double(n) * D * 2 * 2 + double(io.q.bytes() + io.o.bytes()) +
                       double(indices.size()) * 4;
  std::printf("gather  %-4s B=%d H=%d KVH=%d d=%d KV=%lld sel=%lld (%.0f%%)  %8.3f ms  %6.3f TB/s touched  (min %.3f ms, n=%d)\n",
              dt == DType::bf16 ? "bf16" : "f16", B, H, KVH, D, (long long)KV, (long long)n, frac * 100,
              t.median * 1e3, bytes / t.median * 1e-12, t.min * 1e3, t.n);
  be.release_all();
}

// Op 1's probability ops on one shape: sdpa for the LSE, then column mass, materialise P and
// P·V (the ACT and positional paths), each timed; GB/s of the bytes each must move at least.
void bench_probs(Backend& be, int B, int H, int KVH, int D, int64_t N, bool causal, DType dt,
                 int64_t window, int64_t sinks, CacheMode mode, std::mt19937_64& rng) {
  Io io = make_io(be, B, H, KVH, D, N, N, dt, rng);
  AttnProbsArgs a;
  a.sdpa.shape = AttnShape{B, H, KVH, D, D, N, N, causal, Mode::prefill, dt};
  a.sdpa.q = io.q; a.sdpa.k = io.k; a.sdpa.v = io.v; a.sdpa.o = io.o; a.sdpa.lse = io.lse;
  a.sdpa.mask.causal = causal;
  a.sdpa.mask.window = window;
  a.sdpa.mask.sinks = sinks;
  a.column = be.alloc({B, H, 1, N}, DType::f32);
  a.probs = be.alloc({B, H, N, N}, DType::f32);
  const char* tn = dt == DType::bf16 ? "bf16" : "f16";
  for (ProbsOp op : {ProbsOp::column_mass, ProbsOp::materialize, ProbsOp::apply}) {
    a.op = op;
    const Support s = be.supports_attention_probs(a);
    if (!s.ok) { std::printf("skip: %s\n", s.reason.c_str()); continue; }
    if (op == ProbsOp::column_mass) be.sdpa(a.sdpa);
    const Timing t = measure(be, [&] { be.attention_probs(a); }, mode);
    const double p_bytes = 4.0 * B * H * double(N) * double(N);
    const double qkv = double(io.q.bytes() + io.k.bytes());
    const double bytes = op == ProbsOp::apply ? p_bytes + double(io.v.bytes() + io.o.bytes())
                         : op == ProbsOp::materialize ? p_bytes + qkv : qkv;
    std::printf("probs %-11s %-4s B=%d H=%d KVH=%d d=%d N=%lld causal=%d  %8.3f ms  %7.1f GB/s (min %.3f ms, n=%d)\n",
                op == ProbsOp::column_mass ? "column_mass" : op == ProbsOp::materialize ? "materialize" : "apply", tn, B,
                H, KVH, D, (long long)N, int(causal), t.median * 1e3, bytes / t.median * 1e-9, t.min * 1e3, t.n);
  }
  be.release_all();
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!cuda_probe(&why)) {
    std::fprintf(stderr, "no usable CUDA device: %s\n", why.c_str());
    return 77;
  }
  auto be = make_cuda_backend();
  std::printf("%s\n", be->device_info().dump().c_str());
  std::mt19937_64 rng(42);
  const std::string cmd = argc > 1 ? argv[1] : "perf";
  try {
    if (cmd == "perf") {
      const CacheMode m = (argc > 2 && std::string(argv[2]) == "hot") ? CacheMode::hot : CacheMode::cold;
      bench_prefill(*be, 1, 32, 32, 128, 16384, false, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 128, 16384, true, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 64, 16384, false, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 64, 16384, true, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 128, 16384, false, DType::f16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 8, 128, 32768, true, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 128, 4096, false, DType::bf16, 0, 0, m, rng);
      bench_prefill(*be, 1, 32, 32, 128, 16384, true, DType::bf16, 1024, 4, m, rng);
      bench_decode(*be, 8, 32, 32, 128, 131072, DType::bf16, 1, m, rng);
      bench_decode(*be, 1, 32, 8, 128, 131072, DType::bf16, 1, m, rng);
      bench_decode(*be, 8, 32, 8, 128, 131072, DType::bf16, 1, m, rng);
      bench_decode(*be, 1, 32, 1, 128, 1048576, DType::bf16, 1, m, rng);
      bench_decode(*be, 8, 32, 32, 64, 131072, DType::f16, 1, m, rng);
      bench_gather(*be, 8, 32, 32, 128, 131072, DType::bf16, 0.10, m, rng);
      bench_gather(*be, 1, 32, 8, 128, 131072, DType::bf16, 0.10, m, rng);
    } else if (cmd == "sanitize") {
      for (DType dt : {DType::bf16, DType::f16})
        for (int d : {64, 128}) {
          bench_prefill(*be, 1, 2, 1, d, 300, false, dt, 0, 0, CacheMode::hot, rng);
          bench_prefill(*be, 1, 2, 1, d, 300, true, dt, 64, 3, CacheMode::hot, rng);
          bench_decode(*be, 1, 4, 2, d, 1013, dt, 1, CacheMode::hot, rng);
          bench_gather(*be, 1, 4, 2, d, 1013, dt, 0.2, CacheMode::hot, rng);
          bench_probs(*be, 2, 4, 2, d, 301, true, dt, 64, 3, CacheMode::hot, rng);
          bench_probs(*be, 1, 3, 3, d, 77, false, dt, 0, 0, CacheMode::hot, rng);
        }
    } else if (cmd == "prefill" && argc >= 11) {
      bench_prefill(*be, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                    std::atoll(argv[6]), std::atoi(argv[7]) != 0, parse_dt(argv[8]), std::atoll(argv[9]),
                    std::atoll(argv[10]), CacheMode::cold, rng);
    } else if (cmd == "probs" && argc >= 11) {
      bench_probs(*be, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                  std::atoll(argv[6]), std::atoi(argv[7]) != 0, parse_dt(argv[8]), std::atoll(argv[9]),
                  std::atoll(argv[10]), CacheMode::cold, rng);
    } else if (cmd == "decode" && argc >= 8) {
      bench_decode(*be, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                   std::atoll(argv[6]), parse_dt(argv[7]), argc > 8 ? std::atoll(argv[8]) : 1, CacheMode::cold, rng);
    } else if (cmd == "gather" && argc >= 9) {
      bench_gather(*be, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                   std::atoll(argv[6]), parse_dt(argv[7]), std::atof(argv[8]), CacheMode::cold, rng);
    } else {
      std::fprintf(stderr, "usage: see the comment at the top of kernels/cuda/bench_main.cpp\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  return 0;
}
