// Conformance of the selection and estimation ops (core/ops_select.hpp) on every backend that
// implements them: each op runs on odd shapes on backend tensors and is compared with a direct
// float64 computation of the formula its header states. Decisions (top-k, thresholds) are
// compared where the float64 margin exceeds fp32 rounding. Seeds from std::random_device,
// printed with INFO; ATTN_TEST_SEED=<n> replays.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "core/backend.hpp"
#include "sparse_test_util.hpp"

namespace {

using namespace ab;

// Every backend the build offers with these ops.
void for_each_select_backend(const std::function<void(Backend&)>& fn) {
  std::vector<std::unique_ptr<Backend>> all;
  all.push_back(make_cpu_backend());
  for (auto& be : all) {
    INFO("backend " << be->name());
    fn(*be);
    be->release_all();
  }
}

HostTensor random_tensor(Shape4 s, std::mt19937& rng, float sd = 1.0f) {
  HostTensor t(s);
  std::normal_distribution<float> n01;
  for (float& e : t.data) e = sd * n01(rng);
  return t;
}

TensorRef put(Backend& be, const HostTensor& h) {
  TensorRef t = be.alloc(h.shape, DType::f32);
  be.upload(h, t);
  return t;
}

double at(const HostTensor& t, int64_t b, int64_t h, int64_t r, int64_t c) { return t.row(b, h, r)[c]; }

// Relative closeness for fp32 results of float64 formulas.
bool close(double got, double want, double tol = 2e-5) {
  return std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want));
}

CsrOut csr(Backend& be, int64_t lists, int64_t capacity) {
  CsrOut c;
  c.offsets = be.alloc_indices(lists + 1);
  c.entries = be.alloc_indices(capacity);
  return c;
}

std::vector<std::vector<int32_t>> read_csr(Backend& be, const CsrOut& c, int64_t lists) {
  const std::vector<int32_t> off = be.download_index_buffer(c.offsets, lists + 1);
  const std::vector<int32_t> ent = be.download_index_buffer(c.entries, off.back());
  std::vector<std::vector<int32_t>> out;
  for (int64_t l = 0; l < lists; ++l) out.emplace_back(ent.begin() + off[size_t(l)], ent.begin() + off[size_t(l) + 1]);
  return out;
}

IndexBuffer put_indices(Backend& be, const std::vector<int32_t>& v) {
  IndexBuffer b = be.alloc_indices(int64_t(v.size()));
  be.upload_index_buffer(v, b);
  return b;
}

// Float64 softmax probabilities of row q against keys [0, vis) of k (the rest 0).
std::vector<double> probs_f64(const float* q, const HostTensor& k, int64_t b, int64_t kh, int64_t n_keys, int64_t vis,
                              double scale) {
  const int64_t d = k.shape[3];
  std::vector<double> p(size_t(n_keys), 0.0);
  if (vis <= 0) return p;
  double mx = -1e300;
  for (int64_t j = 0; j < vis; ++j) {
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) dot += double(q[c]) * k.row(b, kh, j)[c];
    p[size_t(j)] = scale * dot;
    mx = std::max(mx, p[size_t(j)]);
  }
  double sum = 0;
  for (int64_t j = 0; j < vis; ++j) sum += std::exp(p[size_t(j)] - mx);
  for (int64_t j = 0; j < vis; ++j) p[size_t(j)] = std::exp(p[size_t(j)] - mx) / sum;
  return p;
}

}  // namespace

TEST_CASE("ops_select: pool over head groups with strided rows, mean and max") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    // 2 input heads read by 6 logical heads (3 each), pooled in groups of 3 -> 2 output heads.
    const HostTensor x = random_tensor({2, 2, 37, 5}, rng);
    for (Reduce how : {Reduce::mean, Reduce::max})
      for (int64_t stride : {1, 4}) {
        INFO("max " << (how == Reduce::max) << " stride " << stride);
        PoolArgs a;
        a.axis = PoolAxis::heads;
        a.how = how;
        a.group = 3;
        a.row_stride = stride;
        a.in = put(be, x);
        const int64_t R = (37 + stride - 1) / stride;
        a.out = be.alloc({2, 2, R, 5}, DType::f32);
        REQUIRE(be.supports_pool(a).ok);
        be.pool(a);
        const HostTensor o = be.download(a.out);
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t g = 0; g < 2; ++g)
            for (int64_t r = 0; r < R; ++r) {
              const int64_t row = std::min<int64_t>(36, r * stride + stride - 1);
              for (int64_t c = 0; c < 5; ++c) {
                double want = how == Reduce::mean ? 0.0 : -1e300;
                for (int t = 0; t < 3; ++t) {
                  const double v = at(x, b, (g * 3 + t) / 3, row, c);
                  want = how == Reduce::mean ? want + v / 3 : std::max(want, v);
                }
                CHECK(close(at(o, b, g, r, c), want));
              }
            }
      }
    // Query-head groups: 4 heads in groups of 2, each reading its own head.
    const HostTensor y = random_tensor({1, 4, 11, 3}, rng);
    PoolArgs a;
    a.group = 2;
    a.in = put(be, y);
    a.out = be.alloc({1, 2, 11, 3}, DType::f32);
    be.pool(a);
    const HostTensor o = be.download(a.out);
    for (int64_t g = 0; g < 2; ++g)
      for (int64_t r = 0; r < 11; ++r)
        for (int64_t c = 0; c < 3; ++c)
          CHECK(close(at(o, 0, g, r, c), (at(y, 0, 2 * g, r, c) + at(y, 0, 2 * g + 1, r, c)) / 2));
  });
}

TEST_CASE("ops_select: pool over row blocks and segments (mean, max, f64 sum, sqrt(len))") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const HostTensor x = random_tensor({2, 3, 29, 7}, rng);
    const std::vector<int32_t> bounds = {2, 3, 11, 29};
    for (int mode = 0; mode < 4; ++mode) {
      INFO("mode " << mode);
      PoolArgs a;
      a.axis = PoolAxis::rows;
      a.in = put(be, x);
      std::vector<std::pair<int64_t, int64_t>> segs;
      if (mode == 3) {
        a.bounds = put_indices(be, bounds);
        for (size_t s = 0; s + 1 < bounds.size(); ++s) segs.push_back({bounds[s], bounds[s + 1]});
      } else {
        a.block = 6;
        a.rows_end = mode == 2 ? 0 : 26;
        const int64_t end = a.rows_end ? a.rows_end : 29;
        for (int64_t lo = 0; lo < end; lo += 6) segs.push_back({lo, std::min<int64_t>(end, lo + 6)});
      }
      a.how = mode == 1 ? Reduce::max : Reduce::mean;
      a.f64_sum = mode == 2;
      a.sqrt_len = mode == 0 || mode == 3;
      a.out = be.alloc({2, 3, int64_t(segs.size()), 7}, DType::f32);
      REQUIRE(be.supports_pool(a).ok);
      be.pool(a);
      const HostTensor o = be.download(a.out);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 3; ++h)
          for (size_t s = 0; s < segs.size(); ++s)
            for (int64_t c = 0; c < 7; ++c) {
              const auto [lo, hi] = segs[s];
              double want = a.how == Reduce::max ? -1e300 : 0.0;
              for (int64_t r = lo; r < hi; ++r)
                want = a.how == Reduce::max ? std::max(want, at(x, b, h, r, c)) : want + at(x, b, h, r, c);
              if (a.how == Reduce::mean) want /= double(hi - lo);
              if (a.sqrt_len) want *= std::sqrt(double(hi - lo));
              CHECK(close(at(o, b, h, int64_t(s), c), want));
            }
    }
  });
}

TEST_CASE("ops_select: scores, head-group mean of softmax probabilities") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const HostTensor q = random_tensor({2, 6, 5, 9}, rng), k = random_tensor({2, 2, 41, 9}, rng);
    for (bool causal : {false, true}) {
      INFO("causal " << causal);
      ScoresArgs a;
      a.epilogue = ScoresEpilogue::probs_head_mean;
      a.q = put(be, q);
      a.k = put(be, k);
      a.scale = 0.37f;
      a.n_keys = 39;
      a.row_begin = 1;
      a.row_end = 4;
      a.causal = causal;
      a.q_offset = 33;  // row r sees keys <= r + 33
      a.head_group = 3;
      a.out = be.alloc({2, 2, 3, 39}, DType::f32);
      REQUIRE(be.supports_scores(a).ok);
      be.scores(a);
      const HostTensor o = be.download(a.out);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t g = 0; g < 2; ++g)
          for (int64_t r = 1; r < 4; ++r) {
            std::vector<double> want(39, 0.0);
            for (int t = 0; t < 3; ++t) {
              const int64_t h = g * 3 + t;
              const int64_t vis = causal ? std::min<int64_t>(39, r + 34) : 39;
              const std::vector<double> p = probs_f64(q.row(b, h, r), k, b, h / 3, 39, vis, 0.37);
              for (int64_t j = 0; j < 39; ++j) want[size_t(j)] += p[size_t(j)] / 3;
            }
            for (int64_t j = 0; j < 39; ++j) CHECK(close(at(o, b, g, r - 1, j), want[size_t(j)]));
          }
    }
  });
}

TEST_CASE("ops_select: scores, probabilities pooled over key blocks and row groups") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    // 14 strided rows (stride 3) standing for positions 2, 5, ..., 40 (cut at 40), keys of 43.
    const HostTensor q = random_tensor({1, 4, 14, 6}, rng), k = random_tensor({1, 2, 43, 6}, rng);
    for (Reduce key_pool : {Reduce::max, Reduce::mean})
      for (Reduce row_reduce : {Reduce::max, Reduce::mean}) {
        INFO("key max " << (key_pool == Reduce::max) << " row max " << (row_reduce == Reduce::max));
        ScoresArgs a;
        a.epilogue = ScoresEpilogue::probs_block_pool;
        a.q = put(be, q);
        a.k = put(be, k);
        a.scale = 0.41f;
        a.causal = true;
        a.positions = 41;
        a.row_stride = 3;
        a.q_offset = 2;
        a.row_begin = 2;
        a.key_block = 5;
        a.key_pool = key_pool;
        a.row_block = 7;
        a.row_reduce = row_reduce;
        a.group_base = 1;  // pos(2) = 8: group 1
        auto pos = [](int64_t r) { return std::min<int64_t>(40, r * 3 + 2); };
        const int64_t g0 = pos(2) / 7, g1 = pos(13) / 7, n_kb = 9;
        a.out = be.alloc({1, 4, g1 - g0 + 1, n_kb}, DType::f32);
        REQUIRE(be.supports_scores(a).ok);
        be.scores(a);
        const HostTensor o = be.download(a.out);
        for (int64_t h = 0; h < 4; ++h) {
          std::vector<std::vector<double>> want(size_t(g1 - g0 + 1), std::vector<double>(n_kb, 0.0));
          std::vector<int64_t> rows_in(size_t(g1 - g0 + 1), 0);
          for (int64_t r = 2; r < 14; ++r) rows_in[size_t(pos(r) / 7 - g0)]++;
          for (int64_t r = 2; r < 14; ++r) {
            const int64_t vis = std::min<int64_t>(43, pos(r) + 3);
            const std::vector<double> p = probs_f64(q.row(0, h, r), k, 0, h / 2, 43, vis, 0.41);
            for (int64_t n = 0; n < n_kb; ++n) {
              double v = 0;
              for (int64_t j = n * 5; j < std::min<int64_t>(43, n * 5 + 5); ++j)
                v = key_pool == Reduce::max ? std::max(v, p[size_t(j)]) : v + p[size_t(j)];
              if (key_pool == Reduce::mean) v /= double(std::min<int64_t>(43, n * 5 + 5) - n * 5);
              double& w = want[size_t(pos(r) / 7 - g0)][size_t(n)];
              w = row_reduce == Reduce::max ? std::max(w, v) : w + v / double(rows_in[size_t(pos(r) / 7 - g0)]);
            }
          }
          for (int64_t g = 0; g <= g1 - g0; ++g)
            for (int64_t n = 0; n < n_kb; ++n) CHECK(close(at(o, 0, h, g, n), want[size_t(g)][size_t(n)]));
        }
      }
  });
}

TEST_CASE("ops_select: scores, keys some row of the group reaches (CSR lists)") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    // 11 pooled rows (blocks of 4 positions of 43), groups of 3 rows; keys of 50.
    const int64_t Nr = 11, rg = 3, n_groups = 4, per_group = 12, key_begin = 5;
    const HostTensor q = random_tensor({2, 2, Nr, 8}, rng), k = random_tensor({2, 1, 50, 8}, rng);
    HostTensor thr = random_tensor({2, 2, Nr, 1}, rng, 0.5f);
    ScoresArgs a;
    a.epilogue = ScoresEpilogue::keys_reaching;
    a.q = put(be, q);
    a.k = put(be, k);
    a.thr = put(be, thr);
    a.thr_offset = 0.3f;
    a.scale = 0.35f;
    a.row_group = rg;
    a.row_stride = 4;
    a.positions = 43;  // group 3 covers positions 36..47 > 43: partial, keeps every candidate
    a.key_begin = key_begin;
    a.keys_per_group = per_group;
    const int64_t lists = 2 * 2 * n_groups;
    a.lists = csr(be, lists, lists * 50);
    REQUIRE(be.supports_scores(a).ok);
    be.scores(a);
    const auto got = read_csr(be, a.lists, lists);
    int64_t decided = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t g = 0; g < n_groups; ++g) {
          const std::vector<int32_t>& l = got[size_t((b * 2 + h) * n_groups + g)];
          const std::set<int32_t> kept(l.begin(), l.end());
          CHECK(std::is_sorted(l.begin(), l.end()));
          const int64_t c1 = std::min<int64_t>(50, g * per_group);
          for (int32_t j : l) CHECK((j >= key_begin && j < c1));
          for (int64_t j = key_begin; j < c1; ++j) {
            if (g == n_groups - 1) {
              CHECK(kept.count(int32_t(j)));
              continue;
            }
            double best = -1e300;
            for (int64_t r = g * rg; r < std::min(Nr, (g + 1) * rg); ++r) {
              double dot = 0;
              for (int c = 0; c < 8; ++c) dot += double(q.row(b, h, r)[c]) * k.row(b, 0, j)[c];
              best = std::max(best, 0.35 * dot - (double(thr.row(b, h, r)[0]) - 0.3));
            }
            if (std::fabs(best) < 1e-4) continue;
            CHECK(bool(kept.count(int32_t(j))) == (best >= 0));
            ++decided;
          }
        }
    CHECK(decided > 20);
  });
}

TEST_CASE("ops_select: select top-k and cumulative mass with rules, column map and expansion") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    // Scores (B=2, Hs=1, R=3, C=13) shared by list_heads = 2: lists (b, lh, i), i < 3.
    HostTensor sc = random_tensor({2, 1, 3, 13}, rng);
    for (float& e : sc.data) e = std::fabs(e);
    const int64_t lists = 2 * 2 * 3;
    // Rules: n_cand, k, excluded, two forced ranges.
    std::vector<int32_t> rules;
    for (int64_t l = 0; l < lists; ++l) {
      const int32_t n_cand = int32_t(7 + l % 6), k = int32_t(l % 4);
      rules.insert(rules.end(), {n_cand, k, int32_t(l % 3), int32_t(l % 3 + 1), n_cand - 2, n_cand, 0, int32_t(l % 2)});
    }
    for (int variant = 0; variant < 4; ++variant) {
      INFO("variant " << variant);  // 0 top-k, 1 top-k masked forced, 2 col_map + cumulative mass, 3 expand
      SelectArgs a;
      a.scores = put(be, sc);
      a.batch = 2;
      a.list_heads = 2;
      a.n_per = 3;
      a.rules = put_indices(be, rules);
      a.mask_forced = variant == 1;
      std::vector<int32_t> cmap;
      if (variant == 2) {
        for (int j = 0; j < 20; ++j) cmap.push_back(int32_t((j * 7) % 13));
        a.col_map = put_indices(be, cmap);
        a.rule = SelectRule::cumulative_mass;
        a.gamma = 0.6;
      }
      if (variant == 3) {
        a.expand_width = 13;
        a.expand_n = 40;
      }
      a.lists = csr(be, lists, lists * 40);
      REQUIRE(be.supports_select(a).ok);
      be.select(a);
      const auto got = read_csr(be, a.lists, lists);
      for (int64_t l = 0; l < lists; ++l) {
        const int32_t* r = rules.data() + l * 8;
        const int64_t b = l / 6, i = l % 3;
        std::vector<double> s(static_cast<size_t>(r[0]));
        for (int64_t j = 0; j < r[0]; ++j) s[size_t(j)] = at(sc, b, 0, i, cmap.empty() ? j : cmap[size_t(j)]);
        auto masked = [&](int64_t j) {
          return (j >= r[2] && j < r[3]) ||
                 (a.mask_forced && ((j >= r[4] && j < r[5]) || (j >= r[6] && j < r[7])));
        };
        for (int64_t j = 0; j < r[0]; ++j)
          if (masked(j)) s[size_t(j)] = -std::numeric_limits<double>::infinity();
        int64_t count = std::min<int64_t>(r[1], r[0]);
        if (variant == 2) {  // the fewest largest reaching 0.6 of the total
          std::vector<double> v;
          for (double x : s) v.push_back(std::max(0.0, x));
          std::sort(v.rbegin(), v.rend());
          const double total = std::accumulate(v.begin(), v.end(), 0.0);
          double acc = 0;
          count = 0;
          while (acc < 0.6 * total) acc += v[size_t(count++)];
        }
        std::vector<int64_t> order(static_cast<size_t>(r[0]));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return s[size_t(x)] > s[size_t(y)]; });
        std::set<int64_t> want(order.begin(), order.begin() + count);
        for (int f = 0; f < 2; ++f)
          for (int64_t j = r[4 + 2 * f]; j < r[5 + 2 * f]; ++j) want.insert(j);
        std::vector<int32_t> expect;
        for (int64_t c : want) {
          if (variant == 3)
            for (int64_t j = c * 40 / 13; j < (c + 1) * 40 / 13; ++j) expect.push_back(int32_t(j));
          else
            expect.push_back(int32_t(c));
        }
        CHECK(got[size_t(l)] == expect);
      }
    }
  });
}

TEST_CASE("ops_select: LSE merge with a per-row and a scalar offset") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const Shape4 os{2, 3, 7, 5}, ls{2, 3, 7, 1};
    const HostTensor o1 = random_tensor(os, rng), o2 = random_tensor(os, rng);
    HostTensor l1 = random_tensor(ls, rng), l2 = random_tensor(ls, rng), w = random_tensor({1, 1, 7, 1}, rng);
    const float ninf = -std::numeric_limits<float>::infinity();
    l1.data[3] = ninf;  // part 1 empty
    l2.data[5] = ninf;  // part 2 empty
    l1.data[8] = ninf;
    l2.data[8] = ninf;  // both empty: O = 0
    LseMergeArgs a;
    a.o = put(be, o1);
    a.lse = put(be, l1);
    a.o2 = put(be, o2);
    a.lse2 = put(be, l2);
    a.row_offset = put(be, w);
    a.offset = 0.25f;
    REQUIRE(be.supports_lse_merge(a).ok);
    be.lse_merge(a);
    const HostTensor o = be.download(a.o), l = be.download(a.lse);
    for (int64_t r = 0; r < 2 * 3 * 7; ++r) {
      const double a1 = l1.data[size_t(r)], a2 = l2.data[size_t(r)] + double(w.data[size_t(r % 7)]) + 0.25;
      const double mx = std::max(a1, a2);
      if (std::isinf(mx)) {
        CHECK(std::isinf(l.data[size_t(r)]));
        for (int c = 0; c < 5; ++c) CHECK(o.data[size_t(r * 5 + c)] == 0.0f);
        continue;
      }
      const double w1 = std::exp(a1 - mx), w2 = std::exp(a2 - mx);
      CHECK(close(l.data[size_t(r)], mx + std::log(w1 + w2)));
      for (int c = 0; c < 5; ++c)
        CHECK(close(o.data[size_t(r * 5 + c)], (w1 * o1.data[size_t(r * 5 + c)] + w2 * o2.data[size_t(r * 5 + c)]) / (w1 + w2)));
    }
  });
}

TEST_CASE("ops_select: index buffers round-trip and lists beyond capacity are refused") {
  for_each_select_backend([&](Backend& be) {
    std::vector<int32_t> v = {5, -3, 0, 1 << 30, 7};
    IndexBuffer b = put_indices(be, v);
    CHECK(be.download_index_buffer(b, 5) == v);
    HostTensor sc({1, 1, 1, 9});
    std::iota(sc.data.begin(), sc.data.end(), 0.0f);
    SelectArgs a;
    a.scores = put(be, sc);
    a.k = 5;
    a.lists = csr(be, 1, 3);
    CHECK_THROWS(be.select(a));
  });
}

TEST_CASE("ops_select: raw scores and the window-contrast pool") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const HostTensor q = random_tensor({2, 4, 7, 6}, rng), k = random_tensor({2, 2, 13, 6}, rng);
    ScoresArgs a;
    a.epilogue = ScoresEpilogue::raw;
    a.q = put(be, q);
    a.k = put(be, k);
    a.scale = 0.8f;
    a.row_begin = 2;
    a.n_keys = 11;
    a.out = be.alloc({2, 4, 5, 11}, DType::f32);
    REQUIRE(be.supports_scores(a).ok);
    be.scores(a);
    const HostTensor o = be.download(a.out);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t r = 2; r < 7; ++r)
          for (int64_t j = 0; j < 11; ++j) {
            double dot = 0;
            for (int c = 0; c < 6; ++c) dot += double(q.row(b, h, r)[c]) * k.row(b, h / 2, j)[c];
            CHECK(close(at(o, b, h, r - 2, j), 0.8 * dot, 1e-5));
          }

    const HostTensor x = random_tensor({1, 2, 23, 5}, rng);
    PoolArgs p;
    p.axis = PoolAxis::window_contrast;
    p.block = 3;
    p.in = put(be, x);
    p.out = be.alloc({1, 2, 23, 1}, DType::f32);
    REQUIRE(be.supports_pool(p).ok);
    be.pool(p);
    const HostTensor w = be.download(p.out);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < 23; ++t) {
        if (t < 2 || t >= 20) {
          CHECK(std::isinf(at(w, 0, h, t, 0)));
          continue;
        }
        double dot = 0, na = 0, nb = 0;
        for (int c = 0; c < 5; ++c) {
          double sa = 0, sb = 0;
          for (int64_t u = t - 2; u <= t; ++u) sa += at(x, 0, h, u, c);
          for (int64_t u = t + 1; u <= t + 3; ++u) sb += at(x, 0, h, u, c);
          dot += sa * sb;
          na += sa * sa;
          nb += sb * sb;
        }
        CHECK(close(at(w, 0, h, t, 0), 1.0 - dot / std::sqrt(na * nb), 1e-5));
      }
  });
}

namespace {

// int4 quantisation of rows (n, d) in fp32 as quantize_int4 states it: per block of rows,
// scale = max |x| / 7, q = clamp(nearbyint(x · (1 / scale)), −7, 7).
void int4_ref(const std::vector<float>& x, int64_t n, int64_t d, int64_t block, std::vector<int>& q,
              std::vector<float>& scales) {
  q.assign(size_t(n * d), 0);
  scales.clear();
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t r1 = std::min(n, r0 + block);
    float amax = 0;
    for (int64_t e = r0 * d; e < r1 * d; ++e) amax = std::max(amax, std::fabs(x[size_t(e)]));
    const float scale = amax / 7.0f, inv = scale > 0 ? 1.0f / scale : 0.0f;
    scales.push_back(scale);
    for (int64_t e = r0 * d; e < r1 * d; ++e)
      q[size_t(e)] = int(std::clamp(std::nearbyint(x[size_t(e)] * inv), -7.0f, 7.0f));
  }
}

// Rows of (b, h) of x minus a per-(b, h) center row (fp32), as a flat vector.
std::vector<float> centered(const HostTensor& x, int64_t b, int64_t h, const HostTensor* center) {
  const int64_t n = x.shape[2], d = x.shape[3];
  std::vector<float> out(x.row(b, h, 0), x.row(b, h, 0) + n * d);
  if (center)
    for (int64_t e = 0; e < n * d; ++e) out[size_t(e)] -= center->row(b, h, 0)[e % d];
  return out;
}

}  // namespace

TEST_CASE("ops_select: int4 quantisation scales per row block, with and without a center") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const Shape4 shape{2, 3, 37, 13};
    const int64_t block = 5, nb = 8;
    const HostTensor x = random_tensor(shape, rng, 2.0f), center = random_tensor({2, 3, 1, 13}, rng, 0.5f);
    for (const bool with_center : {false, true}) {
      INFO("center " << with_center);
      QuantizeInt4Args a;
      a.x = put(be, x);
      if (with_center) a.center = put(be, center);
      a.out = be.alloc_int4(shape, block);
      REQUIRE(be.supports_quantize_int4(a).ok);
      be.quantize_int4(a);
      const HostTensor got = be.download(a.out.scales);
      REQUIRE(got.shape == Shape4{2, 3, nb, 1});
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 3; ++h) {
          const std::vector<float> xs = centered(x, b, h, with_center ? &center : nullptr);
          for (int64_t s = 0; s < nb; ++s) {
            double amax = 0;
            for (int64_t e = s * block * 13; e < std::min<int64_t>(37, (s + 1) * block) * 13; ++e)
              amax = std::max(amax, std::fabs(double(xs[size_t(e)])));
            CHECK(close(got.row(b, h, s)[0], amax / 7.0, 1e-6));
          }
        }
      be.free_int4(a.out);
    }
    QuantizeInt4Args bad;
    bad.x = put(be, x);
    bad.out = be.alloc_int4({2, 3, 36, 13}, block);
    CHECK_THROWS_AS(be.quantize_int4(bad), std::invalid_argument);
  });
}

TEST_CASE("ops_select: int4 block scan against float64 statistics and estimates") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_select_backend([&](Backend& be) {
    const int64_t B = 2, Hq = 4, Hk = 2, D = 13, bq = 5, bk = 8, window = 20, seg = 2;
    const double tau = 0.2;
    int64_t decided = 0, kept_total = 0, scanned = 0;
    const float scale = 1.0f / std::sqrt(13.0f);
    for (const int64_t nq : {int64_t(150), int64_t(101)})
      for (const bool refresh : {false, true})
        for (const bool with_center : {false, true}) {
          const int64_t nk = 150, off = nk - nq, n_qb = (nq + bq - 1) / bq;
          INFO("nq " << nq << " refresh " << refresh << " center " << with_center);
          const HostTensor q = random_tensor({B, Hq, nq, D}, rng), k = random_tensor({B, Hk, nk, D}, rng);
          const HostTensor center = random_tensor({B, Hk, 1, D}, rng, 0.3f);
          Int4BlockScanArgs a;
          a.q = put(be, q);
          a.k = put(be, k);
          if (with_center) a.k_center = put(be, center);
          a.q4 = be.alloc_int4(q.shape, bk);
          a.k4 = be.alloc_int4(k.shape, bk);
          QuantizeInt4Args qa;
          qa.x = a.q;
          qa.out = a.q4;
          be.quantize_int4(qa);
          qa.x = a.k;
          qa.center = a.k_center;
          qa.out = a.k4;
          be.quantize_int4(qa);
          a.scale = scale;
          a.tau = float(tau);
          a.block_q = bq;
          a.block_k = bk;
          a.local_window = window;
          a.segment = seg;
          a.refresh = refresh;
          a.q_offset = off;
          const int64_t lists = B * Hq * n_qb;
          a.lists = csr(be, lists, lists * (nk / bk + 1));
          REQUIRE(be.supports_int4_block_scan(a).ok);
          be.int4_block_scan(a);
          const auto got = read_csr(be, a.lists, lists);
          for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < Hq; ++h) {
              const int64_t kh = h / (Hq / Hk);
              std::vector<int> qv, kv;
              std::vector<float> qs, ks;
              int4_ref(centered(q, b, h, nullptr), nq, D, bk, qv, qs);
              int4_ref(centered(k, b, kh, with_center ? &center : nullptr), nk, D, bk, kv, ks);
              for (int64_t qb = 0; qb < n_qb; ++qb) {
                const std::vector<int32_t>& l = got[size_t((b * Hq + h) * n_qb + qb)];
                const int64_t r0 = qb * bq, nr = std::min(nq, r0 + bq) - r0;
                const int64_t last_key = r0 + nr - 1 + off, lb1 = last_key / bk;
                const int64_t lb0 = std::max<int64_t>(0, r0 + off - window) / bk;
                // Structure: {0} ∪ kept ⊂ [1, lb0) ∪ [max(1, lb0), lb1], ascending.
                std::vector<int32_t> kept, want = {0};
                for (int32_t kb : l)
                  if (kb >= 1 && kb < lb0) kept.push_back(kb);
                want.insert(want.end(), kept.begin(), kept.end());
                for (int64_t kb = std::max<int64_t>(1, lb0); kb <= lb1; ++kb) want.push_back(int32_t(kb));
                CHECK(l == want);
                if (lb0 <= 1) continue;
                // Float64 statistics, thresholds and int4 estimates; the refresh follows the op's
                // kept blocks so that each decision is checked on its own.
                std::vector<double> m(size_t(nr), -1e300), lsum(size_t(nr), 0.0);
                auto add_keys = [&](int64_t k0, int64_t k1) {
                  for (int64_t r = 0; r < nr; ++r) {
                    std::vector<double> x;
                    for (int64_t j = k0; j < std::min(k1, r0 + r + off + 1); ++j) {
                      double dot = 0;
                      for (int64_t c = 0; c < D; ++c) dot += double(q.row(b, h, r0 + r)[c]) * k.row(b, kh, j)[c];
                      x.push_back(double(scale) * dot);
                    }
                    if (x.empty()) continue;
                    const double mx = std::max(m[size_t(r)], *std::max_element(x.begin(), x.end()));
                    double s = lsum[size_t(r)] * std::exp(m[size_t(r)] - mx);
                    for (double v : x) s += std::exp(v - mx);
                    m[size_t(r)] = mx;
                    lsum[size_t(r)] = s;
                  }
                };
                add_keys(0, std::min(nk, bk));
                add_keys(lb0 * bk, std::min(nk, last_key + 1));
                const int64_t step = refresh ? seg : lb0;
                for (int64_t s0 = 1; s0 < lb0; s0 += step) {
                  const int64_t s1 = std::min(lb0, s0 + step);
                  for (int64_t kb = s0; kb < s1; ++kb) {
                    double margin = -1e300;
                    for (int64_t r = 0; r < nr; ++r) {
                      const double t = m[size_t(r)] + std::log(tau * lsum[size_t(r)]);
                      double qc = 0;
                      if (with_center)
                        for (int64_t c = 0; c < D; ++c) qc += double(q.row(b, h, r0 + r)[c]) * center.row(b, kh, 0)[c];
                      for (int64_t j = kb * bk; j < std::min(nk, (kb + 1) * bk); ++j) {
                        double dot = 0;
                        for (int64_t c = 0; c < D; ++c) dot += double(qv[size_t((r0 + r) * D + c)]) * kv[size_t(j * D + c)];
                        const double est = double(scale) * (double(qs[size_t((r0 + r) / bk)]) * ks[size_t(j / bk)] * dot + qc);
                        margin = std::max(margin, est - t);
                      }
                    }
                    const bool is_kept = std::find(kept.begin(), kept.end(), int32_t(kb)) != kept.end();
                    ++scanned;
                    kept_total += is_kept;
                    if (std::fabs(margin) < 1e-4) continue;
                    CHECK(is_kept == (margin >= 0));
                    ++decided;
                  }
                  if (refresh)
                    for (int32_t kb : kept)
                      if (kb >= s0 && kb < s1) add_keys(int64_t(kb) * bk, std::min(nk, int64_t(kb + 1) * bk));
                }
              }
            }
          be.release_all();
        }
    CHECK(decided > scanned * 9 / 10);
    CHECK(kept_total > scanned / 20);
    CHECK(kept_total < scanned * 19 / 20);
  });
}
