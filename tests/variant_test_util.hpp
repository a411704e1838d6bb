#pragma once
// Helpers of the variant-catalogue tests (test_variants_*.cpp): run a registered variant on
// the CPU backend on fresh gaussian inputs, and check sampled output rows against a row
// reference the test writes from the paper's definition.
//
// Tolerances are derived, not guessed (FlashAttention's rule): the reference is
// evaluated twice from the same definition, in float64 (the truth) and in float32 (a naive
// same-precision implementation); the variant's error may be at most kRatio × the naive fp32
// error plus a rounding floor of a few fp32 ulps of the row's scale. The variant's own
// reference_row (what the accuracy metric uses) must agree with the test's float64 formula to
// 1e-6 relative (the variants scale by the fp32 1/sqrt(d), the tests by the exact one).
// Seeds come from std::random_device and are printed with INFO; ATTN_TEST_SEED=<n> replays.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "variants/registry.hpp"
#include "execution/execute.hpp"
#include "workloads/workloads.hpp"
#include "workloads/extra_inputs.hpp"

namespace vt {

using namespace ab;

inline uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

inline Problem problem(int batch, int heads, int kv_heads, int d, int64_t q_len, int64_t kv_len,
                       bool causal, Mode mode = Mode::prefill, int dv = 0) {
  Problem p;
  p.batch = batch;
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.head_dim = d;
  p.v_dim = dv ? dv : d;
  p.q_len = q_len;
  p.kv_len = kv_len;
  p.causal = causal;
  p.mode = mode;
  return p;
}

inline std::unique_ptr<Variant> make(const std::string& name,
                                     const std::map<std::string, ParamValue>& params = {}) {
  const RegistryEntry* e = find_variant(name);
  REQUIRE_MESSAGE(e, name);
  return e->make(resolve_params(e->info, params));
}

// One run of a variant, with what its reference needs.
struct Run {
  std::unique_ptr<Backend> backend;  // first: it outlives the plan, whose state it frees
  std::unique_ptr<Variant> variant;
  AttnShape shape;
  std::shared_ptr<HostInputs> host;
  Inputs inputs;  // shape and host copies (what reference_row reads)
  HostTensor o, lse;
  Plan plan;
};

// tweak, when given, edits the gaussian inputs before the run (e.g. plants attention sinks).
inline Run run(const std::string& name, const std::map<std::string, ParamValue>& params,
               const Problem& p, uint64_t seed,
               const std::function<void(HostInputs&)>& tweak = nullptr) {
  Run r;
  r.variant = make(name, params);
  r.shape = r.variant->shape(p);
  r.host = std::make_shared<HostInputs>(generate_gaussian(r.shape, {{"std", 1.0}}, seed));
  if (tweak) tweak(*r.host);
  load_extra_input_files(*r.variant, r.shape, *r.host);
  r.variant->prepare_inputs(r.shape, *r.host, seed ^ 0xe7);
  r.backend = make_cpu_backend();
  const Support sup = r.variant->supports(r.shape, *r.backend);
  REQUIRE_MESSAGE(sup.ok, sup.reason);
  HostRun hr = run_once(*r.variant, *r.backend, r.shape, r.host);
  r.o = std::move(hr.o);
  r.lse = std::move(hr.lse);
  r.plan = std::move(hr.plan);
  r.inputs.shape = r.shape;
  r.inputs.host = r.host;
  return r;
}

struct Row {
  int b, h;
  int64_t i;
};

// First and last row of every head, the rows around 64-row block edges, random others.
inline std::vector<Row> sample_rows(const Shape4& out, int count, std::mt19937& rng) {
  const int B = int(out[0]), H = int(out[1]);
  const int64_t N = out[2];
  std::vector<Row> rows;
  std::uniform_int_distribution<int> db(0, B - 1), dh(0, H - 1);
  std::uniform_int_distribution<int64_t> di(0, N - 1);
  for (int h = 0; h < H; ++h) {
    rows.push_back({db(rng), h, 0});
    rows.push_back({db(rng), h, N - 1});
  }
  for (int64_t e = 63; e + 1 < N && int(rows.size()) < count / 2; e += 64 * 5) {
    rows.push_back({db(rng), dh(rng), e});
    rows.push_back({db(rng), dh(rng), e + 1});
  }
  while (int(rows.size()) < count) rows.push_back({db(rng), dh(rng), di(rng)});
  return rows;
}

constexpr double kRatio = 2.0;
constexpr double kUlps = 8.0 * 5.96e-8;  // a few fp32 ulps (2^-24) of the row's scale

// ref(T{}, b, h, i, out): the test's formula in precision T (double and float), out = Dv.
// `floor` is the absolute allowance per unit of row scale (default: a few fp32 ulps).
template <class Ref>
void check_rows(const Run& r, Ref ref, std::mt19937& rng, int count = 40, double floor = kUlps) {
  const int dv = int(r.o.shape[3]);
  const std::vector<Row> rows = sample_rows(r.o.shape, count, rng);
  double err = 0, naive = 0, scale = 0, var_err = 0;
  bool finite = true;
  std::vector<double> want(static_cast<size_t>(dv)), mine(static_cast<size_t>(dv));
  std::vector<float> nv(static_cast<size_t>(dv));
  for (const Row& w : rows) {
    ref(0.0, w.b, w.h, w.i, want.data());
    ref(0.0f, w.b, w.h, w.i, nv.data());
    r.variant->reference_row(r.inputs, r.plan, w.b, w.h, w.i, mine.data(), nullptr);
    const float* got = r.o.row(w.b, w.h, w.i);
    for (int c = 0; c < dv; ++c) {
      finite &= std::isfinite(got[c]);
      err = std::max(err, std::abs(double(got[c]) - want[size_t(c)]));
      naive = std::max(naive, std::abs(double(nv[size_t(c)]) - want[size_t(c)]));
      scale = std::max(scale, std::abs(want[size_t(c)]));
      var_err = std::max(var_err, std::abs(mine[size_t(c)] - want[size_t(c)]));
    }
  }
  INFO("max |o - ref64| = " << err << ", naive fp32 " << naive << ", row scale " << scale
                             << ", variant reference_row vs test formula " << var_err);
  CHECK(finite);
  CHECK(err <= kRatio * naive + floor * std::max(1.0, scale));
  CHECK(var_err <= 1e-6 * std::max(1.0, scale));
}

// The softmax of masked logits in precision T: the common reference of the softmax variants.
// allow(qpos, j) is the mask written from the paper; weight(x) maps a scaled logit to its
// unnormalised weight when `softmax` is false (then `normalize` divides by Σ w + 1e-8).
template <class T, class Allow>
void masked_softmax_row(const Run& r, int b, int h, int64_t i, Allow allow, T* out) {
  const AttnShape& s = r.shape;
  const int kh = h / (s.q_heads / s.kv_heads);
  const int64_t qpos = i + s.q_offset();
  const T scale = T(1) / std::sqrt(T(s.head_dim));
  std::vector<T> logit(size_t(s.kv_len));
  std::vector<bool> ok(size_t(s.kv_len));
  T mx = -INFINITY;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    ok[size_t(j)] = allow(qpos, j);
    if (!ok[size_t(j)]) continue;
    T dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += T(r.host->q.row(b, h, i)[c]) * T(r.host->k.row(b, kh, j)[c]);
    logit[size_t(j)] = dot * scale;
    mx = std::max(mx, logit[size_t(j)]);
  }
  T sum = 0;
  for (int64_t j = 0; j < s.kv_len; ++j)
    if (ok[size_t(j)]) sum += std::exp(logit[size_t(j)] - mx);
  for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!ok[size_t(j)]) continue;
    const T p = std::exp(logit[size_t(j)] - mx) / sum;
    for (int c = 0; c < s.v_dim; ++c) out[c] += p * T(r.host->v.row(b, kh, j)[c]);
  }
}

}  // namespace vt
