// Op 3 (token-gather decode) on the CPU: against dense attention restricted to the listed keys
// (the float64 masked formula, and sdpa_flash with the same mask), chunked lists merged by
// LSE, the LSE merge of two halves, empty lists, bad indices. Fresh random inputs of odd
// shapes; seeds from std::random_device (ATTN_TEST_SEED=<n> replays).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "cpu/gather_decode.hpp"
#include "cpu/lse_merge.hpp"
#include "cpu/sdpa.hpp"
#include "reference/attention_reference.hpp"

namespace {

using namespace ab;

uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

TensorRef ref_of(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

struct Data {
  AttnShape s;
  HostTensor q, k, v;
};

Data make_data(int B, int Hq, int Hkv, int d, int dv, int64_t nq, int64_t nkv, std::mt19937& rng) {
  Data x;
  x.s.batch = B;
  x.s.q_heads = Hq;
  x.s.kv_heads = Hkv;
  x.s.head_dim = d;
  x.s.v_dim = dv;
  x.s.q_len = nq;
  x.s.kv_len = nkv;
  x.s.mode = Mode::decode;
  x.q = HostTensor({B, Hq, nq, d});
  x.k = HostTensor({B, Hkv, nkv, d});
  x.v = HostTensor({B, Hkv, nkv, dv});
  // Queries 2x wider than keys: logits of std ≈ 2, rows from flat to peaked.
  std::normal_distribution<float> n01(0.0f, 1.0f), nq2(0.0f, 2.0f), nv(0.5f, 1.0f);
  for (float& e : x.q.data) e = nq2(rng);
  for (float& e : x.k.data) e = n01(rng);
  for (float& e : x.v.data) e = nv(rng);
  return x;
}

// CSR lists, one per (b, kv head): random subsets of [0, nkv) mixing contiguous runs (local
// windows, pages) and scattered keys, in random order when `shuffle`.
struct Lists {
  std::vector<int32_t> offsets{0}, indices;
  std::vector<int64_t> keys(int64_t r) const {
    return {indices.begin() + offsets[size_t(r)], indices.begin() + offsets[size_t(r) + 1]};
  }
};

Lists random_lists(int64_t n_lists, int64_t nkv, int64_t want, bool shuffle, std::mt19937& rng) {
  Lists l;
  std::uniform_int_distribution<int64_t> pos(0, nkv - 1);
  for (int64_t r = 0; r < n_lists; ++r) {
    std::set<int64_t> keys;
    // A run (a page or local window) of up to 300 keys, then scattered keys.
    const int64_t start = pos(rng), run = std::min<int64_t>(nkv - start, 1 + int64_t(rng() % 300));
    for (int64_t j = start; j < start + run && int64_t(keys.size()) < want; ++j) keys.insert(j);
    while (int64_t(keys.size()) < std::min(want, nkv)) keys.insert(pos(rng));
    std::vector<int32_t> v(keys.begin(), keys.end());
    if (shuffle) std::shuffle(v.begin(), v.end(), rng);
    l.indices.insert(l.indices.end(), v.begin(), v.end());
    l.offsets.push_back(int32_t(l.indices.size()));
  }
  return l;
}

IndexLists view(const Lists& l) {
  IndexLists x;
  x.offsets = l.offsets.data();
  x.indices = l.indices.data();
  x.lists = int64_t(l.offsets.size()) - 1;
  x.total = int64_t(l.indices.size());
  return x;
}

struct Out {
  HostTensor o, lse;
};

Out run_gather(Data& x, const Lists& l, int64_t chunk_keys = 0) {
  Out r{HostTensor({x.s.batch, x.s.q_heads, x.s.q_len, x.s.v_dim}),
        HostTensor({x.s.batch, x.s.q_heads, x.s.q_len, 1})};
  std::fill(r.o.data.begin(), r.o.data.end(), std::numeric_limits<float>::quiet_NaN());
  std::fill(r.lse.data.begin(), r.lse.data.end(), std::numeric_limits<float>::quiet_NaN());
  GatherDecodeArgs a;
  a.shape = x.s;
  a.q = ref_of(x.q);
  a.k = ref_of(x.k);
  a.v = ref_of(x.v);
  a.o = ref_of(r.o);
  a.lse = ref_of(r.lse);
  a.lists = view(l);
  cpu::gather_decode(a, chunk_keys);
  return r;
}

// The mask "key j is in the list of (b, kv head of h)" for the dense references.
Mask list_mask(const AttnShape& s, const Lists& l) {
  auto member = std::make_shared<std::vector<std::vector<char>>>();
  for (int64_t r = 0; r + 1 < int64_t(l.offsets.size()); ++r) {
    std::vector<char> in(size_t(s.kv_len), 0);
    for (int64_t j : l.keys(r)) in[size_t(j)] = 1;
    member->push_back(std::move(in));
  }
  auto pred = std::make_shared<MaskPredicate>();
  pred->name = "index_lists";
  const int G = s.q_heads / s.kv_heads, Hkv = s.kv_heads;
  pred->allows = [member, G, Hkv](int b, int h, int64_t, int64_t j) {
    return (*member)[size_t(b * Hkv + h / G)][size_t(j)] != 0;
  };
  Mask m;
  m.extra = pred;
  return m;
}

// Naive fp32 two-pass softmax over the listed keys: the same-precision error yardstick.
void naive_f32_row(const Data& x, const std::vector<int64_t>& keys, float scale, int kh, int b,
                   int h, int64_t i, std::vector<float>& o, float& lse) {
  const float* q = x.q.row(b, h, i);
  std::vector<float> logit(keys.size());
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t n = 0; n < keys.size(); ++n) {
    const float* k = x.k.row(b, kh, keys[n]);
    float dot = 0;
    for (int c = 0; c < x.s.head_dim; ++c) dot += q[c] * k[c];
    logit[n] = dot * scale;
    mx = std::max(mx, logit[n]);
  }
  o.assign(size_t(x.s.v_dim), 0.0f);
  float l = 0;
  for (size_t n = 0; n < keys.size(); ++n) {
    const float p = std::exp(logit[n] - mx);
    l += p;
    const float* v = x.v.row(b, kh, keys[n]);
    for (int c = 0; c < x.s.v_dim; ++c) o[size_t(c)] += p * v[c];
  }
  for (float& e : o) e /= l;
  lse = mx + std::log(l);
}

// Kernel error against float64 ≤ 2 × the naive fp32 error + a rounding floor (
// floors as in test_cpu_sdpa: a few fp32 ulps of |O| ≲ 4 and |LSE| ≲ 12).
void check_against_references(Data& x, const Lists& l, const Out& got) {
  const AttnShape& s = x.s;
  const float scale = 1.0f / std::sqrt(float(s.head_dim));
  const Mask m = list_mask(s, l);
  double err_k = 0, err_n = 0, lse_k = 0, lse_n = 0;
  std::vector<double> ref(size_t(s.v_dim)), ref_masked(size_t(s.v_dim));
  std::vector<float> nv;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h)
      for (int64_t i = 0; i < s.q_len; ++i) {
        const int kh = h / (s.q_heads / s.kv_heads);
        const auto keys = l.keys(int64_t(b) * s.kv_heads + kh);
        double rl = 0, rl_masked = 0;
        ab::gather_reference_row(x.q, x.k, x.v, s, scale, kh, b, h, i, keys, ref.data(), &rl);
        // The same row from the dense definition with the list as a mask: the two float64
        // formulas agree, so the gather reference is the dense attention restricted to the list.
        ab::sdpa_reference_row(x.q, x.k, x.v, s, m, scale, kh, b, h, i, ref_masked.data(), &rl_masked);
        for (int c = 0; c < s.v_dim; ++c) REQUIRE(std::abs(ref[size_t(c)] - ref_masked[size_t(c)]) < 1e-12);
        REQUIRE(std::abs(rl - rl_masked) < 1e-12);
        float nl = 0;
        naive_f32_row(x, keys, scale, kh, b, h, i, nv, nl);
        const float* o = got.o.row(b, h, i);
        for (int c = 0; c < s.v_dim; ++c) {
          REQUIRE(std::isfinite(o[c]));
          err_k = std::max(err_k, std::abs(o[c] - ref[size_t(c)]));
          err_n = std::max(err_n, std::abs(nv[size_t(c)] - ref[size_t(c)]));
        }
        lse_k = std::max(lse_k, std::abs(got.lse.row(b, h, i)[0] - rl));
        lse_n = std::max(lse_n, std::abs(nl - rl));
      }
  INFO("max |dO| kernel " << err_k << ", naive fp32 " << err_n << "; max |dLSE| kernel " << lse_k
                          << ", naive " << lse_n);
  CHECK(err_k <= 2 * err_n + 1e-6);
  CHECK(lse_k <= 2 * lse_n + 4e-6);
}

}  // namespace

TEST_CASE("gather decode equals dense attention restricted to the listed keys") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  struct Layout { int B, Hq, Hkv, d; int64_t nq, nkv, keys; bool shuffle; };
  for (Layout L : {Layout{2, 8, 2, 64, 1, 1013, 301, false},     // GQA 4, decode
                   Layout{1, 4, 4, 128, 3, 1013, 700, true},     // MHA, 3 query rows, unsorted
                   Layout{1, 8, 1, 128, 1, 3001, 2999, false},   // MQA, nearly every key
                   Layout{3, 6, 3, 64, 2, 517, 1, true}}) {      // one key per list
    INFO("B=" << L.B << " Hq=" << L.Hq << " Hkv=" << L.Hkv << " d=" << L.d << " Nq=" << L.nq
              << " Nkv=" << L.nkv << " keys=" << L.keys);
    Data x = make_data(L.B, L.Hq, L.Hkv, L.d, L.d, L.nq, L.nkv, rng);
    const Lists l = random_lists(int64_t(L.B) * L.Hkv, L.nkv, L.keys, L.shuffle, rng);
    const Out got = run_gather(x, l);
    check_against_references(x, l, got);

    // The fp32 dense kernel with the list as its mask computes the same attention.
    HostTensor o2({L.B, L.Hq, L.nq, L.d}), lse2({L.B, L.Hq, L.nq, 1});
    SdpaArgs sa;
    sa.shape = x.s;
    sa.q = ref_of(x.q);
    sa.k = ref_of(x.k);
    sa.v = ref_of(x.v);
    sa.o = ref_of(o2);
    sa.lse = ref_of(lse2);
    sa.mask = list_mask(x.s, l);
    cpu::sdpa_flash(sa);
    double diff = 0;
    for (size_t e = 0; e < o2.data.size(); ++e) diff = std::max(diff, double(std::abs(o2.data[e] - got.o.data[e])));
    CHECK(diff < 1e-5);
  }
}

TEST_CASE("gather decode: chunked lists merged by LSE equal one pass; two halves merge to the whole") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Data x = make_data(1, 4, 2, 64, 64, 1, 5003, rng);
  const Lists l = random_lists(2, 5003, 3001, true, rng);
  const Out whole = run_gather(x, l, 1 << 20);  // one chunk per list
  const Out chunked = run_gather(x, l, 256);    // 12 chunks per list, merged in the kernel
  for (size_t e = 0; e < whole.o.data.size(); ++e) REQUIRE(std::abs(whole.o.data[e] - chunked.o.data[e]) < 2e-6);
  for (size_t e = 0; e < whole.lse.data.size(); ++e) REQUIRE(std::abs(whole.lse.data[e] - chunked.lse.data[e]) < 4e-6);
  check_against_references(x, l, chunked);

  // Two halves of every list run apart, then merged with the formula of docs/variants.md §0:
  // o = (o₁e^{ℓ₁} + o₂e^{ℓ₂}) / (e^{ℓ₁} + e^{ℓ₂}), ℓ = log(e^{ℓ₁} + e^{ℓ₂}).
  Lists h1, h2;
  for (int64_t r = 0; r < 2; ++r) {
    const auto keys = l.keys(r);
    const size_t mid = keys.size() / 3;  // unequal halves
    h1.indices.insert(h1.indices.end(), keys.begin(), keys.begin() + long(mid));
    h2.indices.insert(h2.indices.end(), keys.begin() + long(mid), keys.end());
    h1.offsets.push_back(int32_t(h1.indices.size()));
    h2.offsets.push_back(int32_t(h2.indices.size()));
  }
  const Out a = run_gather(x, h1), b = run_gather(x, h2);
  for (int h = 0; h < 4; ++h) {
    const double l1 = a.lse.row(0, h, 0)[0], l2 = b.lse.row(0, h, 0)[0];
    const double mx = std::max(l1, l2), w1 = std::exp(l1 - mx), w2 = std::exp(l2 - mx);
    CHECK(std::abs(mx + std::log(w1 + w2) - whole.lse.row(0, h, 0)[0]) < 4e-6);
    for (int c = 0; c < 64; ++c) {
      const double o = (a.o.row(0, h, 0)[c] * w1 + b.o.row(0, h, 0)[c] * w2) / (w1 + w2);
      CHECK(std::abs(o - whole.o.row(0, h, 0)[c]) < 2e-6);
    }
  }
  // The same with the shared merge kernel (cpu/lse_merge.hpp), in place into the first half.
  Out m = a;
  cpu::lse_merge_into(m.o.ptr(), m.lse.ptr(), b.o.ptr(), b.lse.ptr(), 4, 64);
  for (size_t e = 0; e < whole.o.data.size(); ++e) CHECK(std::abs(m.o.data[e] - whole.o.data[e]) < 2e-6);
  for (size_t e = 0; e < whole.lse.data.size(); ++e) CHECK(std::abs(m.lse.data[e] - whole.lse.data[e]) < 4e-6);
}

TEST_CASE("gather decode: an empty list gives O = 0 and LSE = -inf; bad indices are refused") {
  std::mt19937 rng(test_seed());
  Data x = make_data(1, 2, 2, 64, 64, 1, 100, rng);
  Lists l;
  l.indices = {5, 6, 7};
  l.offsets = {0, 0, 3};  // kv head 0: empty
  const Out r = run_gather(x, l);
  for (int c = 0; c < 64; ++c) CHECK(r.o.row(0, 0, 0)[c] == 0.0f);
  CHECK(std::isinf(r.lse.row(0, 0, 0)[0]));
  CHECK(r.lse.row(0, 0, 0)[0] < 0);
  CHECK(std::isfinite(r.lse.row(0, 1, 0)[0]));

  l.indices = {5, 6, 100};
  CHECK_THROWS_WITH_AS(run_gather(x, l), doctest::Contains("index 100 outside the cache [0, 100)"),
                       std::invalid_argument);
  l.offsets = {0, 3};  // one list for two kv heads
  l.indices = {1, 2, 3};
  CHECK_THROWS_WITH_AS(run_gather(x, l), doctest::Contains("expected B·Hkv = 2 index lists"),
                       std::invalid_argument);
}

TEST_CASE("gather decode through the CPU backend: upload_indices, supports, run") {
  std::mt19937 rng(test_seed());
  Data x = make_data(2, 4, 2, 64, 64, 1, 777, rng);
  const Lists l = random_lists(4, 777, 123, true, rng);
  auto be = make_cpu_backend();
  GatherDecodeArgs a;
  a.shape = x.s;
  a.q = be->alloc(x.q.shape, DType::f32);
  a.k = be->alloc(x.k.shape, DType::f32);
  a.v = be->alloc(x.v.shape, DType::f32);
  a.o = be->alloc({2, 4, 1, 64}, DType::f32);
  a.lse = be->alloc({2, 4, 1, 1}, DType::f32);
  be->upload(x.q, a.q);
  be->upload(x.k, a.k);
  be->upload(x.v, a.v);
  be->poison(a.o);
  a.lists = be->upload_indices(l.offsets, l.indices);
  REQUIRE(be->supports_gather_decode(a).ok);
  be->gather_decode(a);
  const Out direct = run_gather(x, l);
  const HostTensor o = be->download(a.o);
  CHECK(o.data == direct.o.data);
  be->release_all();
}
