#pragma once
// Helpers shared by tests/test_sparse_substrates.cpp and tests/test_sparse_prefill_variants.cpp:
// random inputs, a float64 attention row over an explicit key set (the most direct form), a
// naive fp32 row for tolerance derivation, and sampled-row comparisons.
// Seeds come from std::random_device unless ATTN_TEST_SEED=<n> replays one; tests print them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/problem.hpp"
#include "core/tensor.hpp"

namespace sparse_test {

using namespace ab;

inline uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

inline AttnShape make_shape(int batch, int hq, int hkv, int d, int dv, int64_t nq, int64_t nkv,
                            bool causal) {
  AttnShape s;
  s.batch = batch;
  s.q_heads = hq;
  s.kv_heads = hkv;
  s.head_dim = d;
  s.v_dim = dv;
  s.q_len = nq;
  s.kv_len = nkv;
  s.causal = causal;
  return s;
}

struct Tensors {
  AttnShape shape;
  HostTensor q, k, v, o, lse;
};

// Queries twice as wide as keys: logits of std ≈ 2, rows from flat to peaked.
inline Tensors make_tensors(const AttnShape& s, std::mt19937& rng, float q_std = 2.0f) {
  Tensors x;
  x.shape = s;
  x.q = HostTensor({s.batch, s.q_heads, s.q_len, s.head_dim});
  x.k = HostTensor({s.batch, s.kv_heads, s.kv_len, s.head_dim});
  x.v = HostTensor({s.batch, s.kv_heads, s.kv_len, s.v_dim});
  x.o = HostTensor({s.batch, s.q_heads, s.q_len, s.v_dim});
  x.lse = HostTensor({s.batch, s.q_heads, s.q_len, 1});
  std::normal_distribution<float> nq(0.0f, q_std), n01(0.0f, 1.0f), nv(0.5f, 1.0f);
  for (float& e : x.q.data) e = nq(rng);
  for (float& e : x.k.data) e = n01(rng);
  for (float& e : x.v.data) e = nv(rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::fill(x.o.data.begin(), x.o.data.end(), nan);
  std::fill(x.lse.data.begin(), x.lse.data.end(), nan);
  return x;
}

inline TensorRef ref_of(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

// Float64 attention of row i over `keys` (with multiplicities `weight`, default 1 each):
// p_j = w_j·exp(scale·q·k_j) / Σ, o = Σ p_j v_j, lse = log Σ w_j exp(scale·q·k_j).
inline void f64_row(const Tensors& x, int b, int h, int64_t i, const std::vector<int64_t>& keys,
                    double scale, double* o, double* lse,
                    const std::vector<double>* weight = nullptr) {
  const AttnShape& s = x.shape;
  const int kh = h / (s.q_heads / s.kv_heads);
  const float* q = x.q.row(b, h, i);
  std::vector<double> logit(keys.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < keys.size(); ++t) {
    const float* k = x.k.row(b, kh, keys[t]);
    double dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += double(q[c]) * k[c];
    logit[t] = dot * scale + (weight ? std::log((*weight)[t]) : 0.0);
    mx = std::max(mx, logit[t]);
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  if (keys.empty()) {
    *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  double sum = 0;
  for (double l : logit) sum += std::exp(l - mx);
  *lse = mx + std::log(sum);
  for (size_t t = 0; t < keys.size(); ++t) {
    const double p = std::exp(logit[t] - *lse);
    const float* v = x.v.row(b, kh, keys[t]);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * v[c];
  }
}

// The same in plain fp32 loops (a naive same-precision reference).
inline void f32_row(const Tensors& x, int b, int h, int64_t i, const std::vector<int64_t>& keys,
                    float scale, float* o, float* lse) {
  const AttnShape& s = x.shape;
  const int kh = h / (s.q_heads / s.kv_heads);
  const float* q = x.q.row(b, h, i);
  std::vector<float> logit(keys.size());
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t t = 0; t < keys.size(); ++t) {
    const float* k = x.k.row(b, kh, keys[t]);
    float dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += q[c] * k[c];
    logit[t] = dot * scale;
    mx = std::max(mx, logit[t]);
  }
  std::fill(o, o + s.v_dim, 0.0f);
  if (keys.empty()) {
    *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  float l = 0;
  for (size_t t = 0; t < keys.size(); ++t) {
    const float p = std::exp(logit[t] - mx);
    l += p;
    const float* v = x.v.row(b, kh, keys[t]);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * v[c];
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] /= l;
  *lse = mx + std::log(l);
}

// Sampled rows: first and last of every head, plus random ones.
struct RowPick {
  int b, h;
  int64_t i;
};
inline std::vector<RowPick> pick_rows(const AttnShape& s, int count, std::mt19937& rng) {
  std::vector<RowPick> r;
  std::uniform_int_distribution<int> db(0, s.batch - 1), dh(0, s.q_heads - 1);
  std::uniform_int_distribution<int64_t> di(0, s.q_len - 1);
  for (int h = 0; h < s.q_heads; ++h) {
    r.push_back({db(rng), h, 0});
    r.push_back({db(rng), h, s.q_len - 1});
  }
  while (int(r.size()) < count) r.push_back({db(rng), dh(rng), di(rng)});
  return r;
}

// Kernel output vs float64 over each row's keys; the kernel's error may be at most 2× the
// naive fp32 row's error plus a rounding floor (a few fp32 ulps of |O| ≲ 4, |LSE| ≲ 12).
// keys_of(b, h, i, out) gives the row's keys. Rows with no key must give O = 0, LSE = -inf.
template <class KeysOf>
void check_rows(const Tensors& x, const std::vector<RowPick>& rows, KeysOf&& keys_of,
                double scale = 0.0) {
  const AttnShape& s = x.shape;
  if (scale == 0.0) scale = 1.0 / std::sqrt(double(s.head_dim));
  double k_max = 0, n_max = 0, k_lse = 0, n_lse = 0;
  int64_t empty_bad = 0;
  std::vector<int64_t> keys;
  std::vector<double> ref(size_t(s.v_dim));
  std::vector<float> nv(size_t(s.v_dim));
  for (const RowPick& p : rows) {
    keys_of(p.b, p.h, p.i, keys);
    double rl;
    float nl;
    f64_row(x, p.b, p.h, p.i, keys, scale, ref.data(), &rl);
    f32_row(x, p.b, p.h, p.i, keys, float(scale), nv.data(), &nl);
    const float* got = x.o.row(p.b, p.h, p.i);
    const float gl = x.lse.row(p.b, p.h, p.i)[0];
    if (keys.empty()) {
      bool ok = gl == -std::numeric_limits<float>::infinity();
      for (int c = 0; c < s.v_dim; ++c) ok &= got[c] == 0.0f;
      empty_bad += !ok;
      continue;
    }
    for (int c = 0; c < s.v_dim; ++c) {
      const double e = std::fabs(double(got[c]) - ref[size_t(c)]);
      k_max = std::isnan(e) ? INFINITY : std::max(k_max, e);
      n_max = std::max(n_max, std::fabs(double(nv[size_t(c)]) - ref[size_t(c)]));
    }
    const double el = std::fabs(double(gl) - rl);
    k_lse = std::isnan(el) ? INFINITY : std::max(k_lse, el);
    n_lse = std::max(n_lse, std::fabs(double(nl) - rl));
  }
  INFO("kernel max|dO| = " << k_max << ", naive fp32 max|dO| = " << n_max);
  INFO("kernel max|dLSE| = " << k_lse << ", naive fp32 max|dLSE| = " << n_lse);
  CHECK(empty_bad == 0);
  CHECK(k_max <= 2.0 * n_max + 2e-6);
  CHECK(k_lse <= 2.0 * n_lse + 1e-5);
}

}  // namespace sparse_test
