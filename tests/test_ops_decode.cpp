// The decode-time selection ops (core/ops_decode.hpp; the LSE merge is tested with core/ops_select.hpp) through the Backend interface: each op on
// odd shapes against a direct float64 computation, its refusals, and its Support answers. The
// tensors go through alloc/upload/download, so the same checks hold on any backend that has
// the op. Fresh random inputs; seeds from std::random_device (ATTN_TEST_SEED=<n> replays).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "core/backend.hpp"

using namespace ab;

namespace {

uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

// Every backend these tests can run on here.
void for_each_backend(const std::function<void(Backend&)>& fn) {
  auto cpu = make_cpu_backend();
  SUBCASE("cpu") { fn(*cpu); }
}

HostTensor random_tensor(const Shape4& shape, std::mt19937& rng, float mean = 0.0f, float sd = 1.0f) {
  HostTensor t(shape);
  std::normal_distribution<float> n(mean, sd);
  for (float& e : t.data) e = n(rng);
  return t;
}

TensorRef on_backend(Backend& be, const HostTensor& h) {
  TensorRef t = be.alloc(h.shape, DType::f32);
  be.upload(h, t);
  return t;
}

AttnShape shape_of(int B, int Hq, int Hkv, int d) {
  AttnShape s;
  s.batch = B;
  s.q_heads = Hq;
  s.kv_heads = Hkv;
  s.head_dim = s.v_dim = d;
  s.mode = Mode::decode;
  return s;
}

}  // namespace

TEST_CASE("copy_rows: rows of every (batch, head) move along the sequence axis exactly") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_backend([&](Backend& be) {
    const HostTensor src = random_tensor({2, 3, 7, 5}, rng), dst0 = random_tensor({2, 3, 4, 5}, rng);
    CopyRowsArgs a;
    a.src = on_backend(be, src);
    a.dst = on_backend(be, dst0);
    a.src_row = 4;
    a.dst_row = 1;
    a.rows = 3;
    REQUIRE(be.supports_copy_rows(a).ok);
    be.copy_rows(a);
    const HostTensor got = be.download(a.dst);
    for (int b = 0; b < 2; ++b)
      for (int h = 0; h < 3; ++h)
        for (int64_t n = 0; n < 4; ++n)
          for (int c = 0; c < 5; ++c) {
            const float want = n >= 1 ? src.row(b, h, n + 3)[c] : dst0.row(b, h, n)[c];
            CHECK(got.row(b, h, n)[c] == want);
          }
    a.rows = 4;  // rows 4..7 of a 7-row source
    CHECK_FALSE(be.supports_copy_rows(a).ok);
    a.rows = 1;
    a.dst.shape[3] = 6;
    CHECK_FALSE(be.supports_copy_rows(a).ok);
  });
}

TEST_CASE("block_mean_keys: block means of a key range, written at a row offset") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_backend([&](Backend& be) {
    const HostTensor k = random_tensor({2, 3, 41, 9}, rng);
    HostTensor out0({2, 3, 6, 9});
    BlockMeanKeysArgs a;
    a.k = on_backend(be, k);
    a.out = on_backend(be, out0);
    a.offset = 3;
    a.block = 7;
    a.blocks = 5;  // keys 3 .. 37
    a.out_row = 1;
    REQUIRE(be.supports_block_mean_keys(a).ok);
    be.block_mean_keys(a);
    const HostTensor got = be.download(a.out);
    for (int b = 0; b < 2; ++b)
      for (int h = 0; h < 3; ++h) {
        for (int c = 0; c < 9; ++c) CHECK(got.row(b, h, 0)[c] == 0.0f);  // untouched
        for (int64_t p = 0; p < 5; ++p)
          for (int c = 0; c < 9; ++c) {
            double m = 0;
            for (int64_t j = 3 + p * 7; j < 3 + (p + 1) * 7; ++j) m += k.row(b, h, j)[c];
            CHECK(got.row(b, h, 1 + p)[c] == doctest::Approx(m / 7).epsilon(1e-5));
          }
      }
    a.blocks = 6;  // past the last key
    CHECK_FALSE(be.supports_block_mean_keys(a).ok);
  });
}

namespace {

// Float64 decode scores of one item: s (R, n) with R = G or 1.
std::vector<double> item_scores(const HostTensor& q, const HostTensor& k, const AttnShape& s, const DecodeScoreItem& it,
                                const std::vector<int32_t>* keys, DecodeQueryRows rows, double scale) {
  const int G = s.q_heads / s.kv_heads, d = s.head_dim, heads = rows == DecodeQueryRows::group ? G : 1;
  const int64_t R = heads * it.q_rows;
  std::vector<double> out(size_t(R) * size_t(it.n), 0.0);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t g = r / it.q_rows, row = it.q_row + r % it.q_rows;  // head-major rows (g, m)
    for (int64_t e = 0; e < it.n; ++e) {
      const int64_t j = keys ? (*keys)[size_t(it.k0 + e)] : it.k0 + e;
      double dot = 0;
      for (int c = 0; c < d; ++c) {
        double qc = 0;
        if (rows == DecodeQueryRows::group) {
          qc = q.row(it.b, it.kv_head * G + int(g), row)[c];
        } else {
          for (int h = 0; h < G; ++h) qc += double(q.row(it.b, it.kv_head * G + h, row)[c]) / G;
        }
        dot += qc * k.row(it.b, it.kv_head, j)[c];
      }
      out[size_t(r) * size_t(it.n) + size_t(e)] = scale * dot;
    }
  }
  return out;
}

void softmax_rows(std::vector<double>& x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    double* p = x.data() + r * n;
    const double m = *std::max_element(p, p + n);
    double sum = 0;
    for (int64_t e = 0; e < n; ++e) sum += std::exp(p[e] - m);
    for (int64_t e = 0; e < n; ++e) p[e] = std::exp(p[e] - m) / sum;
  }
}

}  // namespace

TEST_CASE("decode_scores: every epilogue, group and group-mean rows, key ranges and gathered keys, against float64") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  using E = DecodeScoreEpilogue;
  for_each_backend([&](Backend& be) {
    const AttnShape s = shape_of(2, 6, 2, 13);  // G = 3
    const HostTensor q = random_tensor({2, 6, 5, 13}, rng), k = random_tensor({2, 2, 57, 13}, rng),
                     v = random_tensor({2, 2, 57, 7}, rng);
    const std::vector<int32_t> gathered = {3, 50, 7, 7, 22, 56, 0, 31, 12, 40, 9};
    for (E ep : {E::raw, E::probs, E::probs_head_sum, E::probs_head_max, E::soft_vote, E::head_max, E::probs_output_l1})
      for (DecodeQueryRows rows : {DecodeQueryRows::group, DecodeQueryRows::group_mean})
        for (bool by_index : {false, true}) {
          CAPTURE(int(ep));
          CAPTURE(int(rows));
          CAPTURE(by_index);
          DecodeScoresArgs a;
          a.shape = s;
          a.q = on_backend(be, q);
          a.k = on_backend(be, k);
          a.v = on_backend(be, v);
          a.scale = 0.29f;
          a.rows = rows;
          a.epilogue = ep;
          if (by_index) a.key_lists = be.upload_indices({0, int32_t(gathered.size())}, gathered);
          // Items of odd sizes, one of two query rows per head; the soft vote's first two share
          // one output (they add).
          std::vector<DecodeScoreItem> items = {{1, 0, 4, 2, 9, 0, 1}, {1, 1, 2, 0, 11, 0, 1}, {0, 1, 0, 5, 6, 0, 2}};
          int64_t total = 0;
          for (size_t i = 0; i < items.size(); ++i) {
            if (ep == E::soft_vote && i == 1) {
              items[1].n = items[0].n;
              items[1].k0 = items[0].k0;
              items[1].out = items[0].out;
              continue;
            }
            items[i].out = total;
            total += a.item_size(items[i]);
          }
          a.items = items.data();
          a.n_items = int64_t(items.size());
          a.out = be.alloc({1, 1, 1, total}, DType::f32);
          REQUIRE(be.supports_decode_scores(a).ok);
          be.decode_scores(a);
          const HostTensor got = be.download(a.out);
          std::vector<double> want(size_t(total), 0.0);
          for (const DecodeScoreItem& it : items) {
            const int64_t R = (rows == DecodeQueryRows::group ? 3 : 1) * it.q_rows;
            std::vector<double> x = item_scores(q, k, s, it, by_index ? &gathered : nullptr, rows, a.scale);
            double* w = want.data() + it.out;
            if (ep == E::raw) std::copy(x.begin(), x.end(), w);
            if (ep != E::raw && ep != E::head_max) softmax_rows(x, R, it.n);
            if (ep == E::probs || ep == E::probs_output_l1) std::copy(x.begin(), x.end(), w);
            if (ep == E::probs_output_l1) {  // Σ_r Σ_c |Σ_j p_rj v_jc|
              double l1 = 0;
              for (int64_t r = 0; r < R; ++r)
                for (int c = 0; c < 7; ++c) {
                  double o = 0;
                  for (int64_t e = 0; e < it.n; ++e) {
                    const int64_t j = by_index ? gathered[size_t(it.k0 + e)] : it.k0 + e;
                    o += x[size_t(r * it.n + e)] * v.row(it.b, it.kv_head, j)[c];
                  }
                  l1 += std::abs(o);
                }
              w[R * it.n] = l1;
              continue;
            }
            for (int64_t e = 0; e < it.n; ++e) {
              double sum = 0, mx = -std::numeric_limits<double>::infinity();
              for (int64_t r = 0; r < R; ++r) {
                sum += x[size_t(r * it.n + e)];
                mx = std::max(mx, x[size_t(r * it.n + e)]);
              }
              if (ep == E::probs_head_sum) w[e] = sum;
              if (ep == E::soft_vote) w[e] += sum;
              if (ep == E::probs_head_max || ep == E::head_max) w[e] = mx;
            }
          }
          for (int64_t e = 0; e < total; ++e)
            CHECK(got.data[size_t(e)] == doctest::Approx(want[size_t(e)]).epsilon(2e-5).scale(1.0));
        }
  });
}

TEST_CASE("decode_scores: items outside the tensors or the key lists are refused") {
  for_each_backend([&](Backend& be) {
    const AttnShape s = shape_of(1, 4, 2, 8);
    std::mt19937 rng(1);
    DecodeScoresArgs a;
    a.shape = s;
    a.q = on_backend(be, random_tensor({1, 4, 3, 8}, rng));
    a.k = on_backend(be, random_tensor({1, 2, 20, 8}, rng));
    a.out = be.alloc({1, 1, 1, 64}, DType::f32);
    DecodeScoreItem it{0, 1, 2, 10, 10, 0, 1};
    a.items = &it;
    a.n_items = 1;
    CHECK(be.supports_decode_scores(a).ok);
    it.n = 11;  // key 20 of 20
    CHECK_FALSE(be.supports_decode_scores(a).ok);
    it.n = 10;
    it.q_row = 3;
    CHECK_FALSE(be.supports_decode_scores(a).ok);
    it.q_row = 0;
    it.out = 50;  // 2 × 10 floats from 50 > 64
    CHECK_FALSE(be.supports_decode_scores(a).ok);
    it.out = 0;
    a.key_lists = be.upload_indices({0, 3}, {1, 2, 3});
    CHECK_FALSE(be.supports_decode_scores(a).ok);  // entries 10..19 of a 3-entry list
    it.k0 = 0;
    it.n = 3;
    CHECK(be.supports_decode_scores(a).ok);
  });
}
