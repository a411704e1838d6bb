// GPU ops against the float64 CPU reference (docs/gpu.md): fresh random inputs
// of odd shapes, outputs poisoned before each run, O and LSE both checked with FlashAttention's
// rule: the kernel's max error may be at most 2x that of a naive same-precision reference
// (scores in fp32, P rounded to the input type before P·V, O rounded to the type) plus a
// rounding floor. Skips, with the reason, where no usable CUDA device exists.
#include <doctest/doctest.h>

#ifndef ATTN_HAVE_CUDA

TEST_CASE("cuda ops: skipped (built without CUDA)") {
  MESSAGE("SKIPPED: this build has no CUDA backend (ATTN_HAVE_CUDA undefined)");
}

#else

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "core/mask_library.hpp"
#include "cpu/sdpa.hpp"
#include "reference/attention_reference.hpp"

namespace {

using ab::AttnShape;
using ab::DType;
using ab::HostTensor;

// One backend for the whole file (creating a CUDA context per test costs ~0.3 s).
ab::Backend* gpu(const char* test) {
  static std::string why;
  static int state = -1;
  static std::unique_ptr<ab::Backend> be;
  if (state < 0) {
    state = ab::cuda_probe(&why) ? 1 : 0;
    if (state) be = ab::make_cuda_backend();
  }
  if (!state) {
    MESSAGE("SKIPPED " << std::string(test) << ": no usable CUDA device: " << why);
    return nullptr;
  }
  return be.get();
}

std::mt19937_64& rng() {
  static std::mt19937_64 r = [] {
    const uint64_t seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    std::printf("test_cuda_ops: seed %llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return r;
}

HostTensor random_tensor(ab::Shape4 s, DType dt) {
  HostTensor t(s);
  std::normal_distribution<float> n(0.f, 1.f);
  for (float& x : t.data) x = ab::round_to(dt, n(rng()));
  return t;
}

double unit_roundoff(DType dt) { return dt == DType::bf16 ? 1.0 / 256 : 1.0 / 2048; }

// Naive attention at the kernel's precision for one row over the keys `allowed` admits.
void naive_row(const HostTensor& q, const HostTensor& k, const HostTensor& v, const AttnShape& s,
               DType dt, float scale, int kvh, int b, int h, int64_t i,
               const std::function<bool(int64_t)>& allowed, std::vector<double>& o, double& lse) {
  const int d = s.head_dim;
  const float* qr = q.row(b, h, i);
  std::vector<float> sc(size_t(s.kv_len), -std::numeric_limits<float>::infinity());
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!allowed(j)) continue;
    const float* kr = k.row(b, kvh, j);
    float dot = 0.f;
    for (int c = 0; c < d; ++c) dot += qr[c] * kr[c];
    sc[size_t(j)] = dot * scale;
    m = std::max(m, sc[size_t(j)]);
  }
  o.assign(size_t(d), 0.0);
  if (m == -std::numeric_limits<float>::infinity()) {
    lse = -std::numeric_limits<double>::infinity();
    return;
  }
  float l = 0.f;
  std::vector<float> acc(size_t(d), 0.f);
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (sc[size_t(j)] == -std::numeric_limits<float>::infinity()) continue;
    const float p = std::exp(sc[size_t(j)] - m);
    l += p;
    const float pr = ab::round_to(dt, p);
    const float* vr = v.row(b, kvh, j);
    for (int c = 0; c < d; ++c) acc[size_t(c)] += pr * vr[c];
  }
  for (int c = 0; c < d; ++c) o[size_t(c)] = ab::round_to(dt, acc[size_t(c)] / l);
  lse = double(m) + std::log(double(l));
}

struct Errors {
  double kernel_o = 0, naive_o = 0, kernel_lse = 0, naive_lse = 0, max_ref = 0;
  double diff2 = 0, ref2 = 0;
  int rows = 0, bad = 0;
};

// One sampled row (kernel o and lse, fp64 reference, naive reference) into e. A row that sees
// no key must come out O = 0, LSE = -inf.
void add_row(Errors& e, const float* orow, double lk, const std::vector<double>& ref, double lse_ref,
             const std::vector<double>& nv, double lse_nv, int d) {
  ++e.rows;
  if (std::isinf(lse_ref)) {
    if (!(std::isinf(lk) && lk < 0)) ++e.bad;
    for (int c = 0; c < d; ++c)
      if (orow[c] != 0.f) ++e.bad;
    return;
  }
  if (!std::isfinite(lk)) ++e.bad;
  for (int c = 0; c < d; ++c) {
    const double r = ref[size_t(c)];
    e.kernel_o = std::max(e.kernel_o, std::abs(double(orow[c]) - r));
    e.naive_o = std::max(e.naive_o, std::abs(nv[size_t(c)] - r));
    e.max_ref = std::max(e.max_ref, std::abs(r));
    e.diff2 += (double(orow[c]) - r) * (double(orow[c]) - r);
    e.ref2 += r * r;
  }
  e.kernel_lse = std::max(e.kernel_lse, std::abs(lk - lse_ref));
  e.naive_lse = std::max(e.naive_lse, std::abs(lse_nv - lse_ref));
}

// Compares sampled rows of (o, lse) against the fp64 reference and the naive one.
// `allows(b, h, i, j)` is the attention pattern; every element of o must be finite.
Errors compare(const HostTensor& q, const HostTensor& k, const HostTensor& v, const AttnShape& s,
               DType dt, float scale, const HostTensor& o, const HostTensor& lse,
               const std::function<bool(int, int, int64_t, int64_t)>& allows) {
  Errors e;
  for (float x : o.data)
    if (!std::isfinite(x)) ++e.bad;
  std::vector<int64_t> rows;
  if (s.q_len <= 48) {
    for (int64_t i = 0; i < s.q_len; ++i) rows.push_back(i);
  } else {
    std::set<int64_t> r{0, 1, s.q_len - 1, s.q_len - 2, s.q_len / 2};
    std::uniform_int_distribution<int64_t> u(0, s.q_len - 1);
    while (r.size() < 24) r.insert(u(rng()));
    rows.assign(r.begin(), r.end());
  }
  const int d = s.head_dim;
  std::vector<double> ref(static_cast<size_t>(d)), nv;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h) {
      const int kvh = h / s.group();
      for (int64_t i : rows) {
        ab::Mask m;
        auto pred = std::make_shared<ab::MaskPredicate>();
        pred->name = "test";
        pred->allows = [&](int bb, int hh, int64_t qpos, int64_t j) {
          return allows(bb, hh, qpos - s.q_offset(), j);
        };
        m.extra = pred;
        double lse_ref = 0, lse_nv = 0;
        ab::sdpa_reference_row(q, k, v, s, m, double(scale), kvh, b, h, i, ref.data(), &lse_ref);
        naive_row(q, k, v, s, dt, scale, kvh, b, h, i, [&](int64_t j) { return allows(b, h, i, j); },
                  nv, lse_nv);
        add_row(e, o.row(b, h, i), lse.row(b, h, i)[0], ref, lse_ref, nv, lse_nv, d);
      }
    }
  return e;
}

void check_errors(const Errors& e, DType dt, const std::string& name) {
  const double floor_o = 1e-6 + 0.5 * unit_roundoff(dt) * e.max_ref;
  const double tol_o = 2 * e.naive_o + floor_o;
  const double tol_lse = 2 * e.naive_lse + 1e-4;
  const double rel = e.ref2 > 0 ? std::sqrt(e.diff2 / e.ref2) : 0;
  const ab::Tolerance table = ab::tolerance_for(dt, true);
  MESSAGE(name << ": rows " << e.rows << "  max|o-o*| " << e.kernel_o << " (naive " << e.naive_o
               << ", bound " << tol_o << ")  rel " << rel << "  max|lse-lse*| " << e.kernel_lse
               << " (naive " << e.naive_lse << ")");
  CHECK_MESSAGE(e.bad == 0, name << ": " << e.bad << " non-finite/unwritten or wrong masked values");
  CHECK_MESSAGE(e.kernel_o <= tol_o, name << ": O error " << e.kernel_o << " > " << tol_o);
  CHECK_MESSAGE(e.kernel_lse <= tol_lse, name << ": LSE error " << e.kernel_lse << " > " << tol_lse);
  CHECK_MESSAGE(rel <= table.rel, name << ": relative error " << rel << " > " << table.rel);
  CHECK_MESSAGE(e.rows > 0, name << ": no rows compared");
}

struct SdpaCase {
  const char* name;
  DType dt;
  int batch, q_heads, kv_heads, d;
  int64_t q_len, kv_len;
  bool causal;
  int64_t window = 0, sinks = 0;
};

// Allocates a's tensors on the backend, uploads q, k, v, poisons o and lse, runs op 1 (a's
// shape, mask and transform) and returns (o, lse) on the host.
std::pair<HostTensor, HostTensor> run_sdpa_on(ab::Backend& be, ab::SdpaArgs& a, const HostTensor& q,
                                              const HostTensor& k, const HostTensor& v, const std::string& name) {
  const AttnShape& s = a.shape;
  a.q = be.alloc(q.shape, s.dtype);
  a.k = be.alloc(k.shape, s.dtype);
  a.v = be.alloc(v.shape, s.dtype);
  a.o = be.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, s.dtype);
  a.lse = be.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
  be.upload(q, a.q);
  be.upload(k, a.k);
  be.upload(v, a.v);
  be.poison(a.o);
  be.poison(a.lse);
  const ab::Support sup = be.supports_sdpa(a);
  REQUIRE_MESSAGE(sup.ok, name << ": " << sup.reason);
  be.sdpa(a);
  be.synchronize();
  return {be.download(a.o), be.download(a.lse)};
}

void run_sdpa_case(ab::Backend& be, const SdpaCase& c) {
  AttnShape s;
  s.batch = c.batch;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = s.v_dim = c.d;
  s.q_len = c.q_len;
  s.kv_len = c.kv_len;
  s.causal = c.causal;
  s.mode = c.q_len <= 16 ? ab::Mode::decode : ab::Mode::prefill;
  s.dtype = c.dt;
  const HostTensor q = random_tensor({c.batch, c.q_heads, c.q_len, c.d}, c.dt);
  const HostTensor k = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
  const HostTensor v = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
  ab::SdpaArgs a;
  a.shape = s;
  a.mask.causal = c.causal;
  a.mask.window = c.window;
  a.mask.sinks = c.sinks;
  const auto [o, lse] = run_sdpa_on(be, a, q, k, v, c.name);
  const ab::Mask mask = a.mask;
  const int64_t off = s.q_offset();
  const Errors e = compare(q, k, v, s, c.dt, a.effective_scale(), o, lse,
                           [&](int, int, int64_t i, int64_t j) { return mask.allows(0, 0, i + off, j); });
  check_errors(e, c.dt, c.name);
  be.release_all();
}

}  // namespace

TEST_CASE("cuda sdpa prefill matches the float64 reference") {
  ab::Backend* be = gpu("cuda sdpa prefill");
  if (!be) return;
  const SdpaCase cases[] = {
      {"bf16 d128 mha N=1013 full", DType::bf16, 1, 4, 4, 128, 1013, 1013, false},
      {"bf16 d128 gqa4 N=1013 causal", DType::bf16, 2, 8, 2, 128, 1013, 1013, true},
      {"f16 d128 mha N=4097 causal", DType::f16, 1, 2, 2, 128, 4097, 4097, true},
      {"bf16 d64 gqa8 N=4097 causal", DType::bf16, 1, 8, 1, 64, 4097, 4097, true},
      {"f16 d64 mha N=1013 full", DType::f16, 1, 3, 3, 64, 1013, 1013, false},
      {"bf16 d128 gqa4 N=4097 causal window256 sink4", DType::bf16, 1, 4, 1, 128, 4097, 4097, true, 256, 4},
      {"f16 d64 mha N=1013 full window100 sink3", DType::f16, 1, 2, 2, 64, 1013, 1013, false, 100, 3},
      {"bf16 d128 q1013 kv4097 causal (bottom-right)", DType::bf16, 1, 2, 2, 128, 1013, 4097, true},
      {"bf16 d64 q300 kv200 causal (rows with no key)", DType::bf16, 1, 2, 1, 64, 300, 200, true},
      {"f16 d128 sqa q8/kv8 of 32 N=1013 full", DType::f16, 1, 8, 8, 128, 1013, 1013, false},
  };
  for (const SdpaCase& c : cases) run_sdpa_case(*be, c);
}

namespace {

// Op 1 with the other score transforms (prefill kernel): the float64 reference of
// sdpa_transformed_reference_row and a naive reference at the kernel's precision (scores and
// weights in fp32, the weights rounded to the input type before P·V, O rounded).
struct TransformCase {
  const char* name;
  DType dt;
  int q_heads, kv_heads, d;
  int64_t q_len, kv_len;
  bool causal;
  ab::ScoreTransform transform;
  float bias = 0, cap = 0;
  bool normalize = false;
  int64_t window = 0, sinks = 0;
};

void naive_transformed_row(const HostTensor& q, const HostTensor& k, const HostTensor& v, const ab::SdpaArgs& a,
                           int kvh, int h, int64_t i, std::vector<double>& o, double& lse) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim;
  const float scale = a.effective_scale(), ninf = -std::numeric_limits<float>::infinity();
  const bool softcap = a.transform == ab::ScoreTransform::softcap;
  std::vector<float> w(size_t(s.kv_len), ninf);
  float m = ninf;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!a.mask.allows(0, h, i + s.q_offset(), j)) continue;
    float dot = 0.f;
    for (int c = 0; c < d; ++c) dot += q.row(0, h, i)[c] * k.row(0, kvh, j)[c];
    const float x = dot * scale;
    w[size_t(j)] = softcap ? a.softcap * std::tanh(x / a.softcap) : x;
    m = std::max(m, w[size_t(j)]);
  }
  float l = 0.f;
  std::vector<float> acc(size_t(d), 0.f);
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (w[size_t(j)] == ninf) continue;
    const float x = w[size_t(j)];
    const float p = softcap ? std::exp(x - m)
                    : a.transform == ab::ScoreTransform::sigmoid ? 1.f / (1.f + std::exp(-(x + a.transform_bias)))
                                                                 : std::max(x, 0.f);
    l += p;
    const float pr = ab::round_to(a.shape.dtype, p);
    for (int c = 0; c < d; ++c) acc[size_t(c)] += pr * v.row(0, kvh, j)[c];
  }
  o.assign(size_t(d), 0.0);
  const float div = softcap ? l : (a.transform_normalize ? l + 1e-8f : 1.f);
  if (l > 0)
    for (int c = 0; c < d; ++c) o[size_t(c)] = ab::round_to(a.shape.dtype, acc[size_t(c)] / div);
  lse = !(l > 0) ? -std::numeric_limits<double>::infinity() : softcap ? double(m) + std::log(double(l)) : std::log(double(l));
}

void run_transform_case(ab::Backend& be, const TransformCase& c) {
  AttnShape s;
  s.batch = 1;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = s.v_dim = c.d;
  s.q_len = c.q_len;
  s.kv_len = c.kv_len;
  s.causal = c.causal;
  s.mode = c.q_len <= 16 ? ab::Mode::decode : ab::Mode::prefill;
  s.dtype = c.dt;
  const HostTensor q = random_tensor({1, c.q_heads, c.q_len, c.d}, c.dt);
  const HostTensor k = random_tensor({1, c.kv_heads, c.kv_len, c.d}, c.dt);
  const HostTensor v = random_tensor({1, c.kv_heads, c.kv_len, c.d}, c.dt);
  ab::SdpaArgs a;
  a.shape = s;
  a.mask.causal = c.causal;
  a.mask.window = c.window;
  a.mask.sinks = c.sinks;
  a.transform = c.transform;
  a.transform_bias = c.bias;
  a.transform_normalize = c.normalize;
  a.softcap = c.cap;
  const auto [o, lse] = run_sdpa_on(be, a, q, k, v, c.name);
  Errors e;
  for (float x : o.data)
    if (!std::isfinite(x)) ++e.bad;
  std::set<int64_t> rows;
  if (c.q_len <= 24) {
    for (int64_t i = 0; i < c.q_len; ++i) rows.insert(i);
  } else {
    rows = {0, 1, c.q_len / 2, c.q_len - 2, c.q_len - 1};
    std::uniform_int_distribution<int64_t> u(0, c.q_len - 1);
    while (rows.size() < 24) rows.insert(u(rng()));
  }
  std::vector<double> ref(size_t(c.d)), nv;
  for (int h = 0; h < c.q_heads; ++h)
    for (int64_t i : rows) {
      const int kvh = h / s.group();
      double lse_ref = 0, lse_nv = 0;
      ab::sdpa_transformed_reference_row(a, q, k, v, 0, h, i, ref.data(), &lse_ref);
      naive_transformed_row(q, k, v, a, kvh, h, i, nv, lse_nv);
      add_row(e, o.row(0, h, i), lse.row(0, h, i)[0], ref, lse_ref, nv, lse_nv, c.d);
    }
  check_errors(e, c.dt, c.name);
  be.release_all();
}

}  // namespace

TEST_CASE("cuda sdpa prefill with sigmoid, relu and softcap matches the float64 reference") {
  ab::Backend* be = gpu("cuda sdpa prefill transforms");
  if (!be) return;
  using T = ab::ScoreTransform;
  const TransformCase cases[] = {
      {"sigmoid bias -1 normalised, bf16 d128 gqa4 N=1013 causal", DType::bf16, 8, 2, 128, 1013, 1013, true,
       T::sigmoid, -1.f, 0.f, true},
      {"sigmoid bias -6.9 (FlashSigmoid's -log n), f16 d64 N=517 full", DType::f16, 2, 2, 64, 517, 517, false,
       T::sigmoid, -6.9f},
      {"relu, bf16 d64 mha N=300 full", DType::bf16, 3, 3, 64, 300, 300, false, T::relu},
      {"relu normalised, f16 d128 q300 kv700 causal", DType::f16, 2, 1, 128, 300, 700, true, T::relu, 0.f, 0.f,
       true},
      {"softcap 30, bf16 d128 N=1013 causal", DType::bf16, 4, 4, 128, 1013, 1013, true, T::softcap, 0.f, 30.f},
      {"softcap 2, f16 d64 N=4097 causal window256 sink4", DType::f16, 2, 1, 64, 4097, 4097, true, T::softcap,
       0.f, 2.f, false, 256, 4},
  };
  for (const TransformCase& c : cases) run_transform_case(*be, c);
}

TEST_CASE("cuda split-KV decode with sigmoid, relu and softcap matches the float64 reference") {
  ab::Backend* be = gpu("cuda decode transforms");
  if (!be) return;
  using T = ab::ScoreTransform;
  const TransformCase cases[] = {
      {"decode sigmoid bias -8.3, bf16 d128 gqa4 q1 kv20011", DType::bf16, 8, 2, 128, 1, 20011, true, T::sigmoid,
       -8.3f},
      {"decode sigmoid normalised, f16 d64 mha q3 kv4097 causal", DType::f16, 4, 4, 64, 3, 4097, true, T::sigmoid,
       0.f, 0.f, true},
      {"decode relu, bf16 d64 mqa q1 kv1013", DType::bf16, 8, 1, 64, 1, 1013, true, T::relu},
      {"decode softcap 30, bf16 d128 gqa8 q16 kv4097 causal window512 sink4", DType::bf16, 8, 1, 128, 16, 4097,
       true, T::softcap, 0.f, 30.f, false, 512, 4},
  };
  for (const TransformCase& c : cases) run_transform_case(*be, c);
}

TEST_CASE("cuda split-KV decode matches the float64 reference") {
  ab::Backend* be = gpu("cuda decode");
  if (!be) return;
  const SdpaCase cases[] = {
      {"bf16 d128 decode mha kv1013", DType::bf16, 2, 4, 4, 128, 1, 1013, false},
      {"bf16 d128 decode gqa4 kv1013", DType::bf16, 2, 8, 2, 128, 1, 1013, true},
      {"f16 d64 decode gqa8 kv100003", DType::f16, 1, 16, 2, 64, 1, 100003, true},
      {"bf16 d128 decode mqa32 kv100003", DType::bf16, 1, 32, 1, 128, 1, 100003, false},
      {"bf16 d128 decode q4 causal gqa4 kv1013", DType::bf16, 1, 8, 2, 128, 4, 1013, true},
      {"f16 d128 decode streaming window512 sink4 kv100003", DType::f16, 1, 8, 2, 128, 1, 100003, true, 512, 4},
      {"bf16 d64 decode q16 mha kv4097", DType::bf16, 1, 2, 2, 64, 16, 4097, false},
  };
  for (const SdpaCase& c : cases) run_sdpa_case(*be, c);
}

TEST_CASE("cuda token-gather decode matches the float64 reference") {
  ab::Backend* be = gpu("cuda gather decode");
  if (!be) return;
  struct GCase {
    const char* name;
    DType dt;
    int batch, q_heads, kv_heads, d;
    int64_t q_len, kv_len;
    double fraction;
  };
  const GCase cases[] = {
      {"bf16 d128 gather 10% gqa4 kv100003", DType::bf16, 2, 8, 2, 128, 1, 100003, 0.10},
      {"f16 d64 gather 3% mha kv1013 q2", DType::f16, 1, 4, 4, 64, 2, 1013, 0.03},
      {"bf16 d128 gather 50% mqa16 kv4097", DType::bf16, 1, 16, 1, 128, 1, 4097, 0.5},
  };
  for (const GCase& c : cases) {
    AttnShape s;
    s.batch = c.batch;
    s.q_heads = c.q_heads;
    s.kv_heads = c.kv_heads;
    s.head_dim = s.v_dim = c.d;
    s.q_len = c.q_len;
    s.kv_len = c.kv_len;
    s.mode = ab::Mode::decode;
    s.dtype = c.dt;
    const HostTensor q = random_tensor({c.batch, c.q_heads, c.q_len, c.d}, c.dt);
    const HostTensor k = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
    const HostTensor v = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
    // Lists: a random subset in random order; list 1 (when present) is empty, the last one
    // holds a count that is not a multiple of the tile.
    std::vector<int32_t> offsets{0}, indices;
    std::vector<std::vector<char>> member;
    const int lists = c.batch * c.kv_heads;
    for (int r = 0; r < lists; ++r) {
      std::vector<int32_t> all(size_t(c.kv_len));
      for (int64_t j = 0; j < c.kv_len; ++j) all[size_t(j)] = int32_t(j);
      std::shuffle(all.begin(), all.end(), rng());
      int64_t n = int64_t(c.fraction * double(c.kv_len));
      if (r == 1) n = 0;
      if (r == lists - 1) n = n / 64 * 64 + 37;
      n = std::min<int64_t>(n, c.kv_len);
      member.emplace_back(size_t(c.kv_len), 0);
      for (int64_t x = 0; x < n; ++x) {
        indices.push_back(all[size_t(x)]);
        member.back()[size_t(all[size_t(x)])] = 1;
      }
      offsets.push_back(int32_t(indices.size()));
    }
    ab::GatherDecodeArgs a;
    a.shape = s;
    a.q = be->alloc(q.shape, c.dt);
    a.k = be->alloc(k.shape, c.dt);
    a.v = be->alloc(v.shape, c.dt);
    a.o = be->alloc({c.batch, c.q_heads, c.q_len, c.d}, c.dt);
    a.lse = be->alloc({c.batch, c.q_heads, c.q_len, 1}, DType::f32);
    be->upload(q, a.q);
    be->upload(k, a.k);
    be->upload(v, a.v);
    a.lists = be->upload_indices(offsets, indices);
    be->poison(a.o);
    be->poison(a.lse);
    const ab::Support sup = be->supports_gather_decode(a);
    REQUIRE_MESSAGE(sup.ok, c.name << ": " << sup.reason);
    be->gather_decode(a);
    be->synchronize();
    const HostTensor o = be->download(a.o), lse = be->download(a.lse);
    const Errors e = compare(q, k, v, s, c.dt, a.effective_scale(), o, lse,
                             [&](int b, int h, int64_t, int64_t j) {
                               return member[size_t(b * c.kv_heads + h / s.group())][size_t(j)] != 0;
                             });
    check_errors(e, c.dt, c.name);
    be->release_all();
  }
}

namespace {

// ---- op 2: sparse prefill over key-block and key-index lists ---------------------------------

struct SparseCase {
  const char* name;
  DType dt;
  int batch, q_heads, kv_heads, d;
  int64_t q_len, kv_len;
  bool causal;
  ab::SparseLayout layout;
  int64_t q_block, k_block;  // key blocks; q_block is q_group for index lists
  int list_heads;            // 1 or q_heads
  bool listed_rows = false;  // index lists over explicit, shuffled rows (some rows in no group)
  bool resume = false;       // start from a random state, written back in place
  double density = 0.5;
};

// The keys (a multiset, in list order) query row i of (b, h) attends to, per the lists.
struct SparseLists {
  std::vector<int32_t> off, ent, qoff, qrows;
  std::vector<int64_t> group_of_row;  // per (b, list head, row): list index or -1
  int64_t groups = 0;
};

SparseLists make_sparse_lists(const SparseCase& c) {
  SparseLists L;
  const bool blocks = c.layout == ab::SparseLayout::key_blocks;
  const int64_t nkb = (c.kv_len + c.k_block - 1) / c.k_block;
  L.groups = blocks || !c.listed_rows ? (c.q_len + c.q_block - 1) / c.q_block : 5;
  const int64_t lists = int64_t(c.batch) * c.list_heads * L.groups;
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int32_t> key(0, int32_t(c.kv_len - 1));
  L.off.push_back(0);
  for (int64_t r = 0; r < lists; ++r) {
    if (r % 7 == 3) {  // some empty lists
      L.off.push_back(int32_t(L.ent.size()));
      continue;
    }
    if (blocks) {
      for (int64_t kb = 0; kb < nkb; ++kb)
        if (u(rng()) < c.density) L.ent.push_back(int32_t(kb));
    } else {
      std::vector<int32_t> keys(size_t(c.density * double(c.kv_len) * u(rng())));
      for (int32_t& j : keys) j = key(rng());
      std::sort(keys.begin(), keys.end());  // ascending; repeats allowed (each one a term)
      L.ent.insert(L.ent.end(), keys.begin(), keys.end());
    }
    L.off.push_back(int32_t(L.ent.size()));
  }
  L.group_of_row.assign(size_t(c.batch) * c.list_heads * c.q_len, -1);
  for (int b = 0; b < c.batch; ++b)
    for (int lh = 0; lh < c.list_heads; ++lh) {
      const int64_t base = (int64_t(b) * c.list_heads + lh) * c.q_len;
      if (!c.listed_rows) {
        for (int64_t i = 0; i < c.q_len; ++i)
          L.group_of_row[size_t(base + i)] = (int64_t(b) * c.list_heads + lh) * L.groups + i / c.q_block;
        continue;
      }
      std::vector<int32_t> perm(size_t(c.q_len));
      for (int64_t i = 0; i < c.q_len; ++i) perm[size_t(i)] = int32_t(i);
      std::shuffle(perm.begin(), perm.end(), rng());
      perm.resize(size_t(c.q_len * 9 / 10));  // a tenth of the rows in no group
      for (int64_t g = 0; g < L.groups; ++g) {
        if (L.qoff.empty()) L.qoff.push_back(0);
        const size_t lo = size_t(g) * perm.size() / size_t(L.groups), hi = size_t(g + 1) * perm.size() / size_t(L.groups);
        for (size_t t = lo; t < hi; ++t) {
          L.qrows.push_back(perm[t]);
          L.group_of_row[size_t(base + perm[t])] = (int64_t(b) * c.list_heads + lh) * L.groups + g;
        }
        L.qoff.push_back(int32_t(L.qrows.size()));
      }
    }
  return L;
}

void run_sparse_case(ab::Backend& be, const SparseCase& c) {
  AttnShape s;
  s.batch = c.batch;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = s.v_dim = c.d;
  s.q_len = c.q_len;
  s.kv_len = c.kv_len;
  s.causal = c.causal;
  s.dtype = c.dt;
  const bool blocks = c.layout == ab::SparseLayout::key_blocks;
  const HostTensor q = random_tensor({c.batch, c.q_heads, c.q_len, c.d}, c.dt);
  const HostTensor k = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
  const HostTensor v = random_tensor({c.batch, c.kv_heads, c.kv_len, c.d}, c.dt);
  const SparseLists L = make_sparse_lists(c);
  // A random incoming state for most rows (others empty): m ~ 2·N(0,1), ℓ in [0.5, 4], acc = ℓ·N(0,1).
  HostTensor m_in({c.batch, c.q_heads, c.q_len, 1}), l_in(m_in.shape), acc_in({c.batch, c.q_heads, c.q_len, c.d});
  {
    std::normal_distribution<float> n(0.f, 1.f);
    std::uniform_real_distribution<float> u(0.5f, 4.f);
    for (size_t r = 0; r < m_in.data.size(); ++r) {
      const bool empty = r % 5 == 1;
      m_in.data[r] = empty ? -std::numeric_limits<float>::infinity() : 2.f * n(rng());
      l_in.data[r] = empty ? 0.f : u(rng());
      for (int x = 0; x < c.d; ++x) acc_in.data[r * size_t(c.d) + size_t(x)] = empty ? 0.f : l_in.data[r] * n(rng());
    }
  }

  ab::SparsePrefillArgs a;
  a.shape = s;
  a.q = be.alloc(q.shape, c.dt);
  a.k = be.alloc(k.shape, c.dt);
  a.v = be.alloc(v.shape, c.dt);
  a.o = be.alloc({c.batch, c.q_heads, c.q_len, c.d}, c.dt);
  a.lse = be.alloc({c.batch, c.q_heads, c.q_len, 1}, DType::f32);
  be.upload(q, a.q);
  be.upload(k, a.k);
  be.upload(v, a.v);
  be.poison(a.o);
  be.poison(a.lse);
  const ab::IndexLists lists = be.upload_indices(L.off, L.ent);
  ab::IndexLists rows;
  if (blocks) {
    a.layout = ab::SparseLayout::key_blocks;
    a.blocks.q_block = c.q_block;
    a.blocks.k_block = c.k_block;
    a.blocks.list_heads = c.list_heads;
    a.blocks.offsets = lists.offsets;
    a.blocks.blocks = lists.indices;
    a.blocks.on_device = lists.on_device;
  } else {
    a.layout = ab::SparseLayout::key_indices;
    a.indices.q_group = c.q_block;
    a.indices.n_groups = L.groups;
    a.indices.list_heads = c.list_heads;
    a.indices.offsets = lists.offsets;
    a.indices.indices = lists.indices;
    a.indices.on_device = lists.on_device;
    if (c.listed_rows) {
      rows = be.upload_indices(L.qoff, L.qrows);
      a.indices.q_offsets = rows.offsets;
      a.indices.q_rows = rows.indices;
    }
  }
  if (c.resume) {
    a.state_in.m = be.alloc(m_in.shape, DType::f32);
    a.state_in.l = be.alloc(l_in.shape, DType::f32);
    a.state_in.acc = be.alloc(acc_in.shape, DType::f32);
    be.upload(m_in, a.state_in.m);
    be.upload(l_in, a.state_in.l);
    be.upload(acc_in, a.state_in.acc);
    a.state_out = a.state_in;  // in place, as AnchorAttention and SALE continue their passes
  }
  const ab::Support sup = be.supports_sparse_prefill(a);
  REQUIRE_MESSAGE(sup.ok, c.name << ": " << sup.reason);
  be.sparse_prefill(a);
  be.synchronize();
  const HostTensor o = be.download(a.o), lse = be.download(a.lse);
  HostTensor m_out, l_out, acc_out;
  if (c.resume) {
    m_out = be.download(a.state_out.m);
    l_out = be.download(a.state_out.l);
    acc_out = be.download(a.state_out.acc);
  }

  // The executed pairs of the kernel's walk cover the selected pairs, in whole 64 × 64 tiles.
  ab::SparsePrefillArgs host = a;
  if (blocks) {
    host.blocks.offsets = L.off.data();
    host.blocks.blocks = L.ent.data();
    host.blocks.on_device = false;
  } else {
    host.indices.offsets = L.off.data();
    host.indices.indices = L.ent.data();
    host.indices.q_offsets = c.listed_rows ? L.qoff.data() : nullptr;
    host.indices.q_rows = c.listed_rows ? L.qrows.data() : nullptr;
    host.indices.on_device = false;
  }
  const std::optional<double> pairs = be.sparse_prefill_executed_pairs(host);
  REQUIRE(pairs.has_value());
  CHECK(std::fmod(*pairs, 64.0 * 64.0) == 0.0);

  const int64_t off = s.q_offset();
  const double scale = 1.0 / std::sqrt(double(c.d));
  const float fscale = float(scale);
  Errors e;
  double selected = 0;
  for (float x : o.data)
    if (!std::isfinite(x)) ++e.bad;
  std::vector<int64_t> sample;
  {
    std::set<int64_t> r{0, 1, c.q_len - 1, c.q_len / 2};
    std::uniform_int_distribution<int64_t> u(0, c.q_len - 1);
    while (int64_t(r.size()) < std::min<int64_t>(c.q_len, 20)) r.insert(u(rng()));
    sample.assign(r.begin(), r.end());
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.q_heads; ++h) {
      const int kvh = h / (c.q_heads / c.kv_heads), lh = c.list_heads == 1 ? 0 : h;
      for (int64_t i = 0; i < c.q_len; ++i) {
        const int64_t g = L.group_of_row[size_t((int64_t(b) * c.list_heads + lh) * c.q_len + i)];
        std::vector<int64_t> keys;
        if (g >= 0)
          for (int32_t t = L.off[size_t(g)]; t < L.off[size_t(g) + 1]; ++t) {
            const int64_t first = blocks ? int64_t(L.ent[size_t(t)]) * c.k_block : L.ent[size_t(t)];
            const int64_t last = blocks ? std::min(c.kv_len, first + c.k_block) : first + 1;
            for (int64_t j = first; j < last; ++j)
              if (!c.causal || j <= i + off) keys.push_back(j);
          }
        selected += double(keys.size());
        if (!std::binary_search(sample.begin(), sample.end(), i)) continue;
        // fp64 over the state and the keys, and the naive same-precision computation.
        const size_t ri = size_t((int64_t(b) * c.q_heads + h) * c.q_len + i);
        const double ms = c.resume ? double(m_in.data[ri]) : -inf, ls = c.resume ? double(l_in.data[ri]) : 0;
        const float* qr = q.row(b, h, i);
        std::vector<double> x(keys.size());
        std::vector<float> xf(keys.size());
        double mx = ms;
        float mxf = float(ms);
        for (size_t t = 0; t < keys.size(); ++t) {
          const float* kr = k.row(b, kvh, keys[t]);
          double dot = 0;
          float dotf = 0;
          for (int cc = 0; cc < c.d; ++cc) {
            dot += double(qr[cc]) * kr[cc];
            dotf += qr[cc] * kr[cc];
          }
          x[t] = dot * scale;
          xf[t] = dotf * fscale;
          mx = std::max(mx, x[t]);
          mxf = std::max(mxf, xf[t]);
        }
        std::vector<double> ref(size_t(c.d), 0.0), nv(size_t(c.d), 0.0);
        double lse_ref = -inf, lse_nv = -inf;
        if (mx > -inf) {
          double l = ms > -inf ? ls * std::exp(ms - mx) : 0;
          float lf = ms > -inf ? float(ls) * std::exp(float(ms) - mxf) : 0.f;
          std::vector<double> acc(size_t(c.d), 0.0);
          std::vector<float> accf(size_t(c.d), 0.f);
          if (ms > -inf)
            for (int cc = 0; cc < c.d; ++cc) {
              acc[size_t(cc)] = double(acc_in.data[ri * size_t(c.d) + size_t(cc)]) * std::exp(ms - mx);
              accf[size_t(cc)] = acc_in.data[ri * size_t(c.d) + size_t(cc)] * std::exp(float(ms) - mxf);
            }
          for (size_t t = 0; t < keys.size(); ++t) {
            const double p = std::exp(x[t] - mx);
            const float pf = std::exp(xf[t] - mxf), pr = ab::round_to(c.dt, pf);
            l += p;
            lf += pf;
            const float* vr = v.row(b, kvh, keys[t]);
            for (int cc = 0; cc < c.d; ++cc) {
              acc[size_t(cc)] += p * vr[cc];
              accf[size_t(cc)] += pr * vr[cc];
            }
          }
          if (l > 0) {
            for (int cc = 0; cc < c.d; ++cc) {
              ref[size_t(cc)] = acc[size_t(cc)] / l;
              nv[size_t(cc)] = ab::round_to(c.dt, accf[size_t(cc)] / lf);
            }
            lse_ref = mx + std::log(l);
            lse_nv = double(mxf) + std::log(double(lf));
          }
        }
        add_row(e, o.row(b, h, i), lse.row(b, h, i)[0], ref, lse_ref, nv, lse_nv, c.d);
        if (c.resume && std::isfinite(lse_ref)) {
          // The state left behind finalises to the same O and LSE.
          const double lo = l_out.data[ri], mo = m_out.data[ri];
          CHECK_MESSAGE(std::abs(mo + std::log(lo) - lse_ref) <= 1e-3 + 2 * std::abs(lse_nv - lse_ref),
                        c.name << ": state (m, l) of row " << i << " finalises to " << mo + std::log(lo)
                               << ", reference LSE " << lse_ref);
          for (int cc = 0; cc < c.d; ++cc)
            if (std::abs(acc_out.data[ri * size_t(c.d) + size_t(cc)] / lo - ref[size_t(cc)]) >
                0.02 + 0.02 * std::abs(ref[size_t(cc)]))
              ++e.bad;
        }
      }
    }
  MESSAGE(std::string(c.name) << ": selected pairs " << selected << ", executed (64x64 tiles) " << *pairs);
  CHECK(*pairs >= selected);
  check_errors(e, c.dt, c.name);
  be.release_all();
}

}  // namespace

TEST_CASE("cuda sparse prefill over key-block and key-index lists matches the float64 reference") {
  ab::Backend* be = gpu("cuda sparse prefill");
  if (!be) return;
  using L = ab::SparseLayout;
  const SparseCase cases[] = {
      {"blocks 64x64, bf16 d128 gqa4 N=1013 causal", DType::bf16, 1, 8, 2, 128, 1013, 1013, true, L::key_blocks, 64,
       64, 8},
      {"blocks 128x128 shared by heads, f16 d64 N=2100 causal resumed", DType::f16, 2, 4, 4, 64, 2100, 2100, true,
       L::key_blocks, 128, 128, 1, false, true},
      {"blocks 100x48 (not powers of two), bf16 d64 q300 kv517 full", DType::bf16, 1, 3, 1, 64, 300, 517, false,
       L::key_blocks, 100, 48, 3},
      {"blocks 16x32 (many blocks per tile), f16 d128 q129 kv4097 causal", DType::f16, 1, 2, 2, 128, 129, 4097, true,
       L::key_blocks, 16, 32, 2, false, false, 0.3},
      {"indices, groups of 37 rows, bf16 d128 mqa N=777 causal", DType::bf16, 1, 4, 1, 128, 777, 777, true,
       L::key_indices, 37, 1, 4, false, false, 0.2},
      {"indices, listed shuffled rows, resumed, f16 d64 gqa2 N=650 causal", DType::f16, 2, 4, 2, 64, 650, 650, true,
       L::key_indices, 1, 1, 1, true, true, 0.1},
      {"indices, listed rows, bf16 d128 q200 kv3001 full", DType::bf16, 1, 2, 1, 128, 200, 3001, false,
       L::key_indices, 1, 1, 2, true, false, 0.05},
  };
  for (const SparseCase& c : cases) run_sparse_case(*be, c);
}

namespace {

// Op 1 with a predicate of the mask library: the GPU builds the predicate's block lists and runs
// the sparse kernel over them (partial blocks test the predicate per element).
void run_predicate_case(ab::Backend& be, const char* name, DType dt, int hq, int hkv, int d, int64_t nq,
                        int64_t nkv, const ab::Mask& mask) {
  AttnShape s;
  s.batch = 2;
  s.q_heads = hq;
  s.kv_heads = hkv;
  s.head_dim = s.v_dim = d;
  s.q_len = nq;
  s.kv_len = nkv;
  s.causal = mask.causal;
  s.mode = nq <= 16 ? ab::Mode::decode : ab::Mode::prefill;
  s.dtype = dt;
  const HostTensor q = random_tensor({2, hq, nq, d}, dt), k = random_tensor({2, hkv, nkv, d}, dt),
                   v = random_tensor({2, hkv, nkv, d}, dt);
  ab::SdpaArgs a;
  a.shape = s;
  a.mask = mask;
  const auto [o, lse] = run_sdpa_on(be, a, q, k, v, name);
  const int64_t off = s.q_offset();
  const Errors e = compare(q, k, v, s, dt, a.effective_scale(), o, lse,
                           [&](int, int, int64_t i, int64_t j) { return mask.allows(0, 0, i + off, j); });
  check_errors(e, dt, name);
  be.release_all();
}

}  // namespace

TEST_CASE("cuda sdpa with mask-library predicates matches the float64 reference") {
  ab::Backend* be = gpu("cuda sdpa predicates");
  if (!be) return;
  using namespace ab;
  Mask window = to_mask(generate_block_diagonal(100), true);
  window.window = 70;
  window.sinks = 3;
  run_predicate_case(*be, "blockdiag 64 causal (diag), bf16 d128 gqa4 N=1013", DType::bf16, 8, 2, 128, 1013, 1013,
                     to_mask(generate_block_diagonal(64), true));
  run_predicate_case(*be, "blockdiag 50, f16 d64 q300 kv517 full", DType::f16, 3, 3, 64, 300, 517,
                     to_mask(generate_block_diagonal(50)));
  run_predicate_case(*be, "blockrank 6 blocks, bf16 d64 mqa N=2000", DType::bf16, 4, 1, 64, 2000, 2000,
                     to_mask(generate_blockrank(6, 2000 / 6), true));
  run_predicate_case(*be, "mixformer 300, f16 d128 N=1111 full", DType::f16, 2, 2, 128, 1111, 1111,
                     to_mask(generate_mixformer(300)));
  run_predicate_case(*be, "blockdiag 32 or sinks 5, causal, bf16 d128 decode q3 kv4097", DType::bf16, 4, 4, 128, 3,
                     4097, to_mask(or_masks({generate_block_diagonal(32), generate_sinks(5)}), true));
  run_predicate_case(*be, "blockdiag 100 with causal window 70 + 3 sinks, f16 d64 N=777", DType::f16, 2, 1, 64, 777,
                     777, window);
}

TEST_CASE("cuda backend: refusals carry reasons, timing and device facts work") {
  ab::Backend* be = gpu("cuda backend");
  if (!be) return;
  ab::SdpaArgs a;
  a.shape.batch = 1;
  a.shape.q_heads = a.shape.kv_heads = 2;
  a.shape.head_dim = a.shape.v_dim = 80;
  a.shape.q_len = a.shape.kv_len = 256;
  a.shape.dtype = DType::bf16;
  a.q = be->alloc({1, 2, 256, 80}, DType::bf16);
  a.k = be->alloc({1, 2, 256, 80}, DType::bf16);
  a.v = be->alloc({1, 2, 256, 80}, DType::bf16);
  a.o = be->alloc({1, 2, 256, 80}, DType::bf16);
  ab::Support s = be->supports_sdpa(a);
  CHECK(!s.ok);
  CHECK(s.reason.find("head_dim 80") != std::string::npos);
  a.shape.dtype = DType::f32;
  s = be->supports_sdpa(a);
  CHECK(!s.ok);
  CHECK(s.reason.find("f32") != std::string::npos);
  a.shape.dtype = DType::bf16;
  a.shape.head_dim = a.shape.v_dim = 64;
  auto pred = std::make_shared<ab::MaskPredicate>();
  pred->name = "blockdiag64";
  pred->allows = [](int, int, int64_t, int64_t) { return true; };
  a.mask.extra = pred;
  s = be->supports_sdpa(a);
  CHECK(!s.ok);
  CHECK(s.reason.find("blockdiag64") != std::string::npos);

  const double t_hot = be->time([] {}, ab::CacheMode::hot);
  const double t_cold = be->time([] {}, ab::CacheMode::cold);
  CHECK(t_hot >= 0);
  CHECK(t_cold >= 0);
  CHECK(be->rotation_copies(int64_t(1) << 20, ab::CacheMode::hot) > 100);
  CHECK(be->rotation_copies(int64_t(1) << 20, ab::CacheMode::cold) == 1);
  const auto info = be->device_info();
  MESSAGE("device: " << info.dump());
  CHECK(info.contains("name"));
  CHECK(info["sms"].get<int>() > 0);
  if (auto c = be->read_clocks()) MESSAGE("clock " << c->sm_mhz << " MHz, " << c->temperature_c << " C");
  be->release_all();
}

#endif  // ATTN_HAVE_CUDA
