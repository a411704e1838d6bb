// Op 2 (sparse prefill SDPA), the LSE merge, the selection primitives and the list-backed
// selections, each against a direct computation on fresh random inputs of odd shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <limits>
#include <random>
#include <vector>

#include "core/selection_lists.hpp"
#include "cpu/lse_merge.hpp"
#include "cpu/sdpa.hpp"
#include "cpu/selection.hpp"
#include "cpu/sparse_prefill.hpp"
#include "sparse_test_util.hpp"

namespace {

using namespace ab;
using namespace sparse_test;

// Random strictly ascending block lists, one per (b, list head, query block), each keeping a
// block with probability `p` (causal: only blocks that reach the block's rows).
HostBlockLists random_block_lists(const AttnShape& s, int64_t qb, int64_t kb, int list_heads,
                                  double p, std::mt19937& rng) {
  HostBlockLists L;
  L.q_block = qb;
  L.k_block = kb;
  L.list_heads = list_heads;
  std::bernoulli_distribution keep(p);
  const int64_t n_qb = (s.q_len + qb - 1) / qb, n_kb = (s.kv_len + kb - 1) / kb;
  for (int64_t r = 0; r < int64_t(s.batch) * list_heads * n_qb; ++r) {
    for (int64_t k = 0; k < n_kb; ++k)
      if (keep(rng)) L.blocks.push_back(int32_t(k));
    L.offsets.push_back(int32_t(L.blocks.size()));
  }
  return L;
}

// The op's keys for row i, straight from the definition: the listed blocks, causal-cut.
std::vector<int64_t> block_keys(const HostBlockLists& L, const AttnShape& s, int b, int h, int64_t i) {
  std::vector<int64_t> keys;
  const int64_t n_qb = (s.q_len + L.q_block - 1) / L.q_block;
  const int lh = L.list_heads == 1 ? 0 : h;
  const int64_t r = (int64_t(b) * L.list_heads + lh) * n_qb + i / L.q_block;
  for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p)
    for (int64_t j = int64_t(L.blocks[size_t(p)]) * L.k_block;
         j < std::min(s.kv_len, int64_t(L.blocks[size_t(p)] + 1) * L.k_block); ++j)
      if (!s.causal || j <= i + s.q_offset()) keys.push_back(j);
  return keys;
}

SparsePrefillArgs args_for(Tensors& x) {
  SparsePrefillArgs a;
  a.shape = x.shape;
  a.q = ref_of(x.q);
  a.k = ref_of(x.k);
  a.v = ref_of(x.v);
  a.o = ref_of(x.o);
  a.lse = ref_of(x.lse);
  return a;
}

// The same over op 2's block or index lists.
SparsePrefillArgs args_for(Tensors& x, const HostBlockLists& lists) {
  SparsePrefillArgs a = args_for(x);
  a.layout = SparseLayout::key_blocks;
  a.blocks = lists.view();
  return a;
}

SparsePrefillArgs args_for(Tensors& x, const HostIndexLists& lists) {
  SparsePrefillArgs a = args_for(x);
  a.layout = SparseLayout::key_indices;
  a.indices = lists.view();
  return a;
}

// Keys of [lo, hi), each kept when keep(rng) says so.
std::vector<int32_t> random_keys(int64_t lo, int64_t hi, std::bernoulli_distribution& keep, std::mt19937& rng) {
  std::vector<int32_t> keys;
  for (int64_t j = lo; j < hi; ++j)
    if (keep(rng)) keys.push_back(int32_t(j));
  return keys;
}

struct StateBuf {
  HostTensor m, l, acc;
  explicit StateBuf(const AttnShape& s)
      : m({s.batch, s.q_heads, s.q_len, 1}), l({s.batch, s.q_heads, s.q_len, 1}),
        acc({s.batch, s.q_heads, s.q_len, s.v_dim}) {}
  SoftmaxState view() { return {ref_of(m), ref_of(l), ref_of(acc)}; }
};

struct Layout {
  int hq, hkv, d;
  int64_t nq, nkv;
  bool causal;
};

}  // namespace

TEST_CASE("op 2 over random key-block lists equals dense attention with the equivalent mask") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (Layout L : {Layout{4, 4, 64, 1013, 1013, true}, Layout{6, 2, 128, 1013, 1013, false},
                   Layout{4, 1, 64, 517, 1013, true}, Layout{2, 2, 80, 300, 700, false}}) {
    for (auto [qb, kb] : {std::pair<int64_t, int64_t>{64, 32}, {128, 128}, {100, 300}}) {
      for (int list_heads : {1, L.hq}) {
        const AttnShape s = make_shape(2, L.hq, L.hkv, L.d, L.d, L.nq, L.nkv, L.causal);
        INFO("Hq " << L.hq << " Hkv " << L.hkv << " d " << L.d << " Nq " << L.nq << " Nkv " << L.nkv
                   << " causal " << L.causal << " blocks " << qb << "x" << kb << " list_heads " << list_heads);
        Tensors x = make_tensors(s, rng);
        const HostBlockLists lists = random_block_lists(s, qb, kb, list_heads, 0.35, rng);
        cpu::sparse_prefill(args_for(x, lists));
        check_rows(x, pick_rows(s, 96, rng), [&](int b, int h, int64_t i, std::vector<int64_t>& out) {
          out = block_keys(lists, s, b, h, i);
        });

        // The dense op with the same mask as a predicate agrees to rounding.
        auto bits = std::make_shared<std::vector<std::vector<char>>>();
        const int64_t n_qb = (s.q_len + qb - 1) / qb, n_kb = (s.kv_len + kb - 1) / kb;
        for (size_t r = 0; r + 1 < lists.offsets.size(); ++r) {
          std::vector<char> blk(size_t(n_kb), 0);
          for (int32_t p = lists.offsets[r]; p < lists.offsets[r + 1]; ++p) blk[size_t(lists.blocks[size_t(p)])] = 1;
          bits->push_back(std::move(blk));
        }
        auto pred = std::make_shared<MaskPredicate>();
        pred->name = "block_lists";
        pred->allows = [bits, qb, kb, n_qb, s, list_heads](int b, int h, int64_t qpos, int64_t j) {
          const int lh = list_heads == 1 ? 0 : h;
          const int64_t r = (int64_t(b) * list_heads + lh) * n_qb + (qpos - s.q_offset()) / qb;
          return (*bits)[size_t(r)][size_t(j / kb)] != 0;
        };
        Tensors y = x;
        SdpaArgs d;
        d.shape = s;
        d.q = ref_of(y.q);
        d.k = ref_of(y.k);
        d.v = ref_of(y.v);
        d.o = ref_of(y.o);
        d.lse = ref_of(y.lse);
        d.mask.causal = s.causal;
        d.mask.extra = pred;
        cpu::sdpa_flash(d);
        double max_do = 0;
        for (size_t e = 0; e < x.o.data.size(); ++e)
          max_do = std::max(max_do, double(std::fabs(x.o.data[e] - y.o.data[e])));
        CHECK(max_do < 5e-5);
      }
    }
  }
}

TEST_CASE("op 2 over key-index lists: implicit and explicit row groups, repeats, empty rows") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const AttnShape s = make_shape(1, 4, 2, 64, 64, 1013, 1013, true);
  Tensors x = make_tensors(s, rng);

  SUBCASE("implicit groups of 100 rows, per-head lists without repeats") {
    HostIndexLists L;
    L.q_group = 100;
    L.n_groups = (s.q_len + 99) / 100;
    L.list_heads = s.q_heads;
    std::bernoulli_distribution keep(0.2);
    for (int64_t r = 0; r < L.n_groups * s.q_heads; ++r) {
      L.push_list(random_keys(0, s.kv_len, keep, rng));
    }
    cpu::sparse_prefill(args_for(x, L));
    const TokenSelection sel(s, std::make_shared<HostIndexLists>(L));
    check_rows(x, pick_rows(s, 96, rng), [&](int b, int h, int64_t i, std::vector<int64_t>& out) {
      sel.keys(b, h, i, out);
    });
  }

  SUBCASE("explicit groups: a random partition of most rows; the rest see no keys") {
    HostIndexLists L;
    L.list_heads = 1;
    std::vector<int32_t> perm(static_cast<size_t>(s.q_len));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int64_t covered = s.q_len - 37;
    L.n_groups = 7;
    std::bernoulli_distribution keep(0.3);
    for (int64_t g = 0; g < L.n_groups; ++g) {
      const int64_t r0 = g * covered / L.n_groups, r1 = (g + 1) * covered / L.n_groups;
      L.push_group_rows(std::vector<int32_t>(perm.begin() + r0, perm.begin() + r1));
      L.push_list(random_keys(0, s.kv_len, keep, rng));
    }
    cpu::sparse_prefill(args_for(x, L));
    const TokenSelection sel(s, std::make_shared<HostIndexLists>(L));
    std::vector<RowPick> rows = pick_rows(s, 64, rng);
    for (int64_t t = covered; t < s.q_len; ++t) rows.push_back({0, int(t % s.q_heads), perm[size_t(t)]});
    check_rows(x, rows, [&](int b, int h, int64_t i, std::vector<int64_t>& out) { sel.keys(b, h, i, out); });
    CHECK(sel.group_of(0, 1, perm[size_t(covered)]) == -1);
  }

  SUBCASE("a repeated index weighs its key twice") {
    HostIndexLists L;
    L.q_group = s.q_len;
    L.n_groups = 1;
    L.list_heads = 1;
    std::vector<int32_t> keys;
    for (int32_t j = 0; j < 200; ++j) {
      keys.push_back(j);
      if (j % 3 == 0) keys.push_back(j);
    }
    L.push_list(keys);
    cpu::sparse_prefill(args_for(x, L));
    std::vector<int64_t> uniq;
    std::vector<double> w;
    for (int32_t j = 0; j < 200; ++j) {
      uniq.push_back(j);
      w.push_back(j % 3 == 0 ? 2.0 : 1.0);
    }
    std::vector<double> ref(static_cast<size_t>(s.v_dim));
    for (int64_t i : {int64_t(250), int64_t(1012)}) {
      double rl;
      f64_row(x, 0, 3, i, uniq, 1.0 / 8.0, ref.data(), &rl, &w);
      CHECK(x.lse.row(0, 3, i)[0] == doctest::Approx(rl).epsilon(1e-5));
      for (int c = 0; c < s.v_dim; ++c) CHECK(x.o.row(0, 3, i)[c] == doctest::Approx(ref[size_t(c)]).epsilon(1e-4));
    }
  }
}

TEST_CASE("op 2 resumes from its state: a sink/local pass continued over selected keys") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const AttnShape s = make_shape(1, 3, 3, 64, 48, 1013, 1013, true);
  Tensors x = make_tensors(s, rng);
  // Pass 1: sink block 0 and the diagonal blocks (block lists). Pass 2: random stripes.
  HostBlockLists first;
  first.q_block = 64;
  first.k_block = 64;
  first.list_heads = 1;
  const int64_t n_qb = (s.q_len + 63) / 64;
  for (int64_t qb = 0; qb < n_qb; ++qb) {
    if (qb > 1) first.blocks.push_back(0);
    if (qb > 0) first.blocks.push_back(int32_t(qb - 1));
    first.blocks.push_back(int32_t(qb));
    first.offsets.push_back(int32_t(first.blocks.size()));
  }
  HostIndexLists second;
  second.q_group = 64;
  second.n_groups = n_qb;
  second.list_heads = s.q_heads;
  std::bernoulli_distribution keep(0.25);
  for (int64_t h = 0; h < s.q_heads; ++h)
    for (int64_t qb = 0; qb < n_qb; ++qb) {
      second.push_list(random_keys(64, std::max<int64_t>(64, (qb - 1) * 64), keep, rng));
    }
  StateBuf st(s);
  SparsePrefillArgs a = args_for(x, first);
  a.finalize = false;
  a.state_out = st.view();
  cpu::sparse_prefill(a);
  // Unnormalised state: ℓ = Σ exp(x - m) > 0 and m is the row max of pass 1.
  CHECK(st.l.data[0] > 0.0f);
  SparsePrefillArgs c = args_for(x, second);
  c.state_in = st.view();
  c.state_out = st.view();  // in place
  c.finalize = true;
  cpu::sparse_prefill(c);
  const BlockSelection s1(s, std::make_shared<HostBlockLists>(first));
  const TokenSelection s2(s, std::make_shared<HostIndexLists>(second));
  const UnionSelection both({std::make_shared<BlockSelection>(s1), std::make_shared<TokenSelection>(s2)});
  check_rows(x, pick_rows(s, 128, rng), [&](int b, int h, int64_t i, std::vector<int64_t>& out) {
    both.keys(b, h, i, out);
  });
  // The state written in place finalises to the same O.
  const HostTensor o = x.o;
  for (int64_t r = 0; r < s.q_len; r += 97) {
    const float l = st.l.data[size_t(r)];
    CHECK(st.acc.data[size_t(r) * s.v_dim] / l == doctest::Approx(o.data[size_t(r) * s.v_dim]).epsilon(1e-6));
  }
}

TEST_CASE("op 2 refuses malformed lists and counts the pairs it computes") {
  std::mt19937 rng(7);
  const AttnShape s = make_shape(1, 2, 2, 64, 64, 300, 300, true);
  Tensors x = make_tensors(s, rng);
  HostBlockLists L;
  L.q_block = 64;
  L.k_block = 64;
  L.list_heads = 1;
  for (int qb = 0; qb < 5; ++qb) {
    L.blocks.push_back(0);
    if (qb > 0) L.blocks.push_back(int32_t(qb));
    L.offsets.push_back(int32_t(L.blocks.size()));
  }
  SparsePrefillArgs a = args_for(x, L);
  // Pairs: every query block computes block 0 (64 keys) and its diagonal block; the kernel
  // skips nothing here (each listed block reaches some row of its query block).
  double want = 0;
  for (int qb = 0; qb < 5; ++qb) {
    const double rows = std::min<int64_t>(300, (qb + 1) * 64) - qb * 64;
    want += rows * 64;
    if (qb > 0) want += rows * double(std::min<int64_t>(300, (qb + 1) * 64) - qb * 64);
  }
  CHECK(cpu::sparse_prefill_executed_pairs(a) == doctest::Approx(want * s.q_heads));
  CHECK(selected_pairs(L, s) == doctest::Approx(selected_pairs(BlockSelection(s, std::make_shared<HostBlockLists>(L)), s)));

  HostBlockLists bad = L;
  bad.blocks[2] = 0;  // list 1 = {0, 0}
  a.blocks = bad.view();
  CHECK_THROWS_WITH(cpu::sparse_prefill(a), doctest::Contains("not strictly ascending"));
  bad = L;
  bad.blocks.back() = 9;
  a.blocks = bad.view();
  CHECK_THROWS_WITH(cpu::sparse_prefill(a), doctest::Contains("outside"));
  a.blocks = L.view();
  a.finalize = false;
  CHECK_THROWS_WITH(cpu::sparse_prefill(a), doctest::Contains("neither finalize nor state_out"));

  HostIndexLists I;
  I.list_heads = 1;
  I.n_groups = 2;
  I.push_group_rows({1, 2, 3});
  I.push_group_rows({3, 4});  // row 3 twice
  I.push_list({0, 1});
  I.push_list({0});
  CHECK_THROWS_WITH(cpu::sparse_prefill(args_for(x, I)), doctest::Contains("two groups"));
}

TEST_CASE("LSE merge of two halves equals the whole") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const AttnShape s = make_shape(1, 4, 2, 64, 64, 1013, 1013, true);
  Tensors whole = make_tensors(s, rng), half1 = whole, half2 = whole;
  auto run = [&](Tensors& x, int64_t lo, int64_t hi) {
    HostIndexLists L;
    L.q_group = s.q_len;
    L.n_groups = 1;
    L.list_heads = 1;
    std::vector<int32_t> keys(static_cast<size_t>(hi - lo));
    std::iota(keys.begin(), keys.end(), int32_t(lo));
    L.push_list(keys);
    cpu::sparse_prefill(args_for(x, L));
  };
  run(whole, 0, s.kv_len);
  run(half1, 0, 507);
  run(half2, 507, s.kv_len);  // rows below 507 see none of these keys: LSE = -inf, O = 0
  const int64_t rows = int64_t(s.q_heads) * s.q_len;
  std::vector<float> o(half1.o.data.size()), lse(static_cast<size_t>(rows));
  cpu::lse_merge(o.data(), lse.data(), half1.o.ptr(), half1.lse.ptr(), half2.o.ptr(), half2.lse.ptr(), rows, s.v_dim);
  double max_do = 0, max_dl = 0;
  for (size_t e = 0; e < o.size(); ++e) max_do = std::max(max_do, double(std::fabs(o[e] - whole.o.data[e])));
  for (int64_t r = 0; r < rows; ++r) max_dl = std::max(max_dl, double(std::fabs(lse[size_t(r)] - whole.lse.data[size_t(r)])));
  CHECK(max_do < 1e-5);
  CHECK(max_dl < 1e-5);

  // In place, with an offset: part 2 weighted by 2 = the keys of part 2 each counted twice.
  std::vector<float> o1 = half1.o.data, l1 = half1.lse.data;
  cpu::lse_merge_into(o1.data(), l1.data(), half2.o.ptr(), half2.lse.ptr(), rows, s.v_dim, std::log(2.0f));
  std::vector<double> ref(static_cast<size_t>(s.v_dim));
  std::vector<int64_t> keys(static_cast<size_t>(s.kv_len));
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<double> w(size_t(s.kv_len), 1.0);
  for (int64_t j = 507; j < s.kv_len; ++j) w[size_t(j)] = 2.0;
  const int64_t i = 900;
  double rl;
  std::vector<int64_t> vis(keys.begin(), keys.begin() + i + 1);
  std::vector<double> wv(w.begin(), w.begin() + i + 1);
  f64_row(whole, 0, 1, i, vis, 0.125, ref.data(), &rl, &wv);
  CHECK(l1[size_t(s.q_len + i)] == doctest::Approx(rl).epsilon(1e-5));
  for (int c = 0; c < s.v_dim; ++c)
    CHECK(o1[size_t((s.q_len + i) * s.v_dim + c)] == doctest::Approx(ref[size_t(c)]).epsilon(1e-4));

  // An empty part contributes nothing even when its O holds NaN.
  float oa[2] = {1.0f, 2.0f}, la = 0.5f, ob[2] = {NAN, NAN}, lb = -INFINITY;
  cpu::lse_merge_into(oa, &la, ob, &lb, 1, 2);
  CHECK(oa[0] == 1.0f);
  CHECK(oa[1] == 2.0f);
  CHECK(la == 0.5f);
  double od[2] = {1.0, 2.0}, ld = std::log(3.0), o2d[2] = {4.0, 8.0};
  cpu::lse_merge_row_f64(od, &ld, o2d, std::log(1.0), 2);
  CHECK(od[0] == doctest::Approx((3.0 * 1 + 1.0 * 4) / 4.0));
  CHECK(ld == doctest::Approx(std::log(4.0)));
}

TEST_CASE("selection primitives agree with direct computations") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;

  SUBCASE("mean/max block pooling with a short last block") {
    const int64_t n = 103;
    const int d = 5;
    std::vector<float> x(static_cast<size_t>(n * d));
    for (float& e : x) e = n01(rng);
    for (cpu::Pool how : {cpu::Pool::mean, cpu::Pool::max}) {
      std::vector<float> out(size_t(((n + 15) / 16) * d));
      cpu::pool_rows(x.data(), n, d, 16, how, out.data());
      for (int64_t b = 0; b < (n + 15) / 16; ++b)
        for (int c = 0; c < d; ++c) {
          double acc = how == cpu::Pool::max ? -1e30 : 0.0;
          const int64_t r1 = std::min<int64_t>(n, (b + 1) * 16);
          for (int64_t r = b * 16; r < r1; ++r)
            acc = how == cpu::Pool::max ? std::max<double>(acc, x[size_t(r * d + c)]) : acc + x[size_t(r * d + c)];
          if (how == cpu::Pool::mean) acc /= double(r1 - b * 16);
          CHECK(out[size_t(b * d + c)] == doctest::Approx(acc).epsilon(1e-6));
        }
    }
  }

  SUBCASE("head averaging, strided rows, softmax probabilities") {
    std::vector<float> h0(40), h1(40), h2(40), avg(40);
    for (size_t e = 0; e < 40; ++e) { h0[e] = n01(rng); h1[e] = n01(rng); h2[e] = n01(rng); }
    const float* heads[3] = {h0.data(), h1.data(), h2.data()};
    cpu::average_heads(heads, 3, 40, avg.data());
    for (size_t e = 0; e < 40; ++e) CHECK(avg[e] == doctest::Approx((h0[e] + h1[e] + h2[e]) / 3.0));
    CHECK(cpu::strided_rows(10, 4) == std::vector<int64_t>{3, 7, 9});
    CHECK(cpu::strided_rows(8, 4) == std::vector<int64_t>{3, 7});

    const int d = 24;
    const int64_t rows = 5, nk = 37;
    std::vector<float> q(static_cast<size_t>(rows * d)), k(size_t(nk * d)), p(size_t(rows * nk));
    for (float& e : q) e = n01(rng);
    for (float& e : k) e = n01(rng);
    const int64_t vis[5] = {37, 1, 20, 0, 36};
    cpu::softmax_probs(q.data(), rows, vis, k.data(), nk, d, 0.3f, p.data());
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> logit(static_cast<size_t>(vis[r]));
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < vis[r]; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c) dot += double(q[size_t(r * d + c)]) * k[size_t(j * d + c)];
        logit[size_t(j)] = 0.3 * dot;
        mx = std::max(mx, logit[size_t(j)]);
      }
      for (double l : logit) sum += std::exp(l - mx);
      for (int64_t j = 0; j < nk; ++j) {
        const double want = j < vis[r] ? std::exp(logit[size_t(j)] - mx) / sum : 0.0;
        CHECK(p[size_t(r * nk + j)] == doctest::Approx(want).epsilon(1e-5));
      }
    }
  }

  SUBCASE("softmax probabilities pooled over key blocks (max and mean)") {
    const int d = 16;
    const int64_t rows = 37, nk = 203, block = 32;
    std::vector<float> q(static_cast<size_t>(rows * d)), k(size_t(nk * d));
    for (float& e : q) e = 2.0f * n01(rng);
    for (float& e : k) e = n01(rng);
    std::vector<int64_t> vis(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) vis[size_t(r)] = (r * 41) % (nk + 1);
    const int64_t nb = (nk + block - 1) / block;
    for (cpu::Pool how : {cpu::Pool::max, cpu::Pool::mean}) {
      std::vector<float> out(static_cast<size_t>(rows * nb));
      cpu::pooled_softmax(q.data(), rows, vis.data(), k.data(), nk, d, 0.25f, block, how, out.data());
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<double> logit(static_cast<size_t>(vis[size_t(r)]));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < vis[size_t(r)]; ++j) {
          double dot = 0;
          for (int c = 0; c < d; ++c) dot += double(q[size_t(r * d + c)]) * k[size_t(j * d + c)];
          logit[size_t(j)] = 0.25 * dot;
          mx = std::max(mx, logit[size_t(j)]);
        }
        for (double l : logit) sum += std::exp(l - mx);
        for (int64_t n = 0; n < nb; ++n) {
          double want = 0;
          for (int64_t j = n * block; j < std::min(nk, (n + 1) * block); ++j) {
            const double p = j < vis[size_t(r)] ? std::exp(logit[size_t(j)] - mx) / sum : 0.0;
            want = how == cpu::Pool::max ? std::max(want, p) : want + p / double(std::min(nk, (n + 1) * block) - n * block);
          }
          CHECK(out[size_t(r * nb + n)] == doctest::Approx(want).epsilon(1e-5));
        }
      }
    }
  }

  SUBCASE("top-k, cumulative-mass budgets, thresholds") {
    std::vector<float> sc(501);
    for (float& e : sc) e = n01(rng);
    sc[10] = sc[20];  // a tie: the lower index ranks first
    std::vector<int32_t> got;
    cpu::top_k(sc.data(), 501, 60, got);
    std::vector<int32_t> all(501);
    std::iota(all.begin(), all.end(), 0);
    std::stable_sort(all.begin(), all.end(), [&](int32_t a, int32_t b) { return sc[size_t(a)] > sc[size_t(b)]; });
    CHECK(got == std::vector<int32_t>(all.begin(), all.begin() + 60));
    cpu::top_k(sc.data(), 501, 900, got);
    CHECK(got.size() == 501);

    std::vector<float> w(300);
    for (float& e : w) e = std::exp(2.0f * n01(rng));
    for (double gamma : {0.0, 0.5, 0.9, 0.95, 0.999, 1.0}) {
      const int64_t c = cpu::cumulative_mass_count(w.data(), 300, gamma);
      std::vector<double> sorted(w.begin(), w.end());
      std::sort(sorted.rbegin(), sorted.rend());
      const double total = std::accumulate(sorted.begin(), sorted.end(), 0.0);
      int64_t want = 0;
      double acc = 0;
      if (gamma >= 1.0) want = 300;
      else if (gamma > 0)
        while (acc < gamma * total) acc += sorted[size_t(want++)];
      INFO("gamma " << gamma);
      CHECK(c == want);
    }
    cpu::cumulative_mass_set(w.data(), 300, 0.9, got);
    CHECK(int64_t(got.size()) == cpu::cumulative_mass_count(w.data(), 300, 0.9));

    // SALE's relative score: exp(x - m)/ℓ >= τ  <=>  x >= m + ln(τ·ℓ).
    const float m = 3.0f, l = 17.0f, tau = 0.004f;
    const float t = cpu::threshold_relative_to_sum(m, l, tau);
    CHECK(std::exp(t - m) / l == doctest::Approx(tau).epsilon(1e-5));
    CHECK(cpu::threshold_below_max(5.0f, 12.0f) == -7.0f);
  }

  SUBCASE("int4 fake-quantised QKᵀ with per-block scales") {
    for (int d : {64, 80, 7}) {
      const int64_t nq = 45, nk = 70;
      std::vector<float> q(static_cast<size_t>(nq * d)), k(size_t(nk * d));
      for (float& e : q) e = n01(rng);
      for (float& e : k) e = 3.0f * n01(rng);
      std::fill(k.begin(), k.begin() + 32 * d, 0.0f);  // an all-zero block: scale 0
      const cpu::Int4Rows a = cpu::quantize_int4(q.data(), nq, d, 16);
      const cpu::Int4Rows b = cpu::quantize_int4(k.data(), nk, d, 32);
      for (int64_t r = 0; r < nq; ++r)
        for (int c = 0; c < d; ++c) {
          double amax = 0;
          const int64_t b0 = (r / 16) * 16;
          for (int64_t rr = b0; rr < std::min<int64_t>(nq, b0 + 16); ++rr)
            for (int cc = 0; cc < d; ++cc) amax = std::max(amax, double(std::fabs(q[size_t(rr * d + cc)])));
          const double want = std::clamp(std::nearbyint(q[size_t(r * d + c)] / (amax / 7.0)), -7.0, 7.0);
          CHECK(a.q[size_t(r * d + c)] == int(want));
        }
      std::vector<float> s(size_t((nq - 3) * (nk - 5)));
      cpu::int4_scores(a, 3, nq - 3, b, 5, nk - 5, s.data());
      for (int64_t i = 0; i < nq - 3; ++i)
        for (int64_t j = 0; j < nk - 5; ++j) {
          double dot = 0;
          for (int c = 0; c < d; ++c)
            dot += double(a.q[size_t((i + 3) * d + c)]) * double(b.q[size_t((j + 5) * d + c)]);
          const double want = double(a.scale_of(i + 3)) * double(b.scale_of(j + 5)) * dot;
          CHECK(s[size_t(i * (nk - 5) + j)] == doctest::Approx(want).epsilon(1e-6));
        }
      // The block test: some row's estimate reaching its threshold, blocks of 32 and of 12 keys.
      for (int64_t kblock : {int64_t(32), int64_t(12)}) {
        std::vector<float> thr(static_cast<size_t>(nq - 1));
        for (float& t : thr) t = 0.5f * n01(rng);
        const int64_t nkb = (nk + kblock - 1) / kblock;
        std::vector<uint8_t> keep(static_cast<size_t>(nkb));
        cpu::int4_blocks_reaching(a, 1, nq - 1, b, 0, nkb, kblock, thr.data(), keep.data());
        for (int64_t kb = 0; kb < nkb; ++kb) {
          bool want = false;
          for (int64_t i = 0; i < nq - 1; ++i)
            for (int64_t j = kb * kblock; j < std::min(nk, (kb + 1) * kblock); ++j) {
              int32_t dot = 0;
              for (int c = 0; c < d; ++c) dot += int32_t(a.q[size_t((i + 1) * d + c)]) * b.q[size_t(j * d + c)];
              want |= a.scale_of(i + 1) * b.scale_of(j) * float(dot) >= thr[size_t(i)];
            }
          CHECK(bool(keep[size_t(kb)]) == want);
        }
      }
      // Row maxima of the integer dots over key ranges that start and end inside 16-key groups.
      for (auto [k0, kn] : {std::pair<int64_t, int64_t>{5, 60}, {16, 32}, {33, 1}, {0, 70}}) {
        std::vector<int32_t> mx(static_cast<size_t>(nq - 2));
        cpu::int4_row_max(a, 2, nq - 2, b, k0, kn, mx.data());
        for (int64_t i = 0; i < nq - 2; ++i) {
          int32_t want = std::numeric_limits<int32_t>::min();
          for (int64_t j = k0; j < k0 + kn; ++j) {
            int32_t dot = 0;
            for (int c = 0; c < d; ++c) dot += int32_t(a.q[size_t((i + 2) * d + c)]) * b.q[size_t(j * d + c)];
            want = std::max(want, dot);
          }
          CHECK(mx[size_t(i)] == want);
        }
      }
    }
  }

  SUBCASE("angular LSH, Gray-code order, stable sort, seeded randomness") {
    for (int bits : {1, 3, 7}) {
      const std::vector<int32_t> g = cpu::gray_code_sequence(bits);
      REQUIRE(g.size() == size_t(1) << bits);
      for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == int32_t(i ^ (i >> 1)));
    }
    const int d = 32;
    const cpu::AngularLsh lsh = cpu::make_angular_lsh(d, 7, 123);
    const cpu::AngularLsh same = cpu::make_angular_lsh(d, 7, 123);
    CHECK(lsh.proj == same.proj);
    std::vector<float> x(static_cast<size_t>(50 * d));
    for (float& e : x) e = n01(rng);
    std::vector<int32_t> h(50);
    cpu::lsh_hash(lsh, x.data(), 50, h.data());
    for (int64_t i = 0; i < 50; ++i) {
      int bin = 0;
      for (int r = 0; r < 7; ++r) {
        double dot = 0;
        for (int c = 0; c < d; ++c) dot += double(x[size_t(i * d + c)]) * lsh.proj[size_t(c * 7 + r)];
        if (dot > 0) bin |= 1 << r;
      }
      CHECK(h[size_t(i)] == (bin ^ (bin >> 1)));
    }
    const int32_t keys[8] = {3, 1, 3, 0, 1, 3, 2, 0};
    CHECK(cpu::stable_order(keys, 8) == std::vector<int32_t>{3, 7, 1, 4, 6, 0, 2, 5});

    cpu::SeededRandom r1(9), r2(9);
    double sum = 0, sq = 0;
    for (int i = 0; i < 20000; ++i) {
      const double z = r1.normal();
      CHECK(z == r2.normal());
      sum += z;
      sq += z * z;
      const int64_t u = r1.uniform_int(13);
      (void)r2.uniform_int(13);
      CHECK((u >= 0 && u < 13));
    }
    CHECK(std::fabs(sum / 20000) < 0.05);
    CHECK(std::fabs(sq / 20000 - 1.0) < 0.05);
    CHECK(cpu::mix_seed(1, 2, 3) == cpu::mix_seed(1, 2, 3));
    CHECK(cpu::mix_seed(1, 2, 3) != cpu::mix_seed(1, 3, 2));
  }
}

TEST_CASE("list-backed selections: keys and pair counts from the lists") {
  std::mt19937 rng(11);
  for (bool causal : {true, false}) {
    const AttnShape s = make_shape(2, 3, 3, 16, 16, 150, 211, causal);
    const HostBlockLists B = random_block_lists(s, 32, 24, 3, 0.4, rng);
    const BlockSelection bs(s, std::make_shared<HostBlockLists>(B));
    std::vector<int64_t> keys;
    for (int64_t i : {int64_t(0), int64_t(31), int64_t(32), int64_t(149)}) {
      bs.keys(1, 2, i, keys);
      CHECK(keys == block_keys(B, s, 1, 2, i));
    }
    CHECK(selected_pairs(B, s) == doctest::Approx(selected_pairs(bs, s)));

    HostIndexLists I;
    I.list_heads = 1;
    I.n_groups = 3;
    for (int b = 0; b < 2; ++b)
      for (int g = 0; g < 3; ++g) {
        std::vector<int32_t> rows, ks;
        for (int32_t r = g; r < 150; r += 3) rows.push_back(r);
        for (int32_t j = 0; j < 211; ++j)
          if (rng() % 4 == 0) {
            ks.push_back(j);
            if (j % 5 == 0) ks.push_back(j);  // repeats count once as a selected pair
          }
        I.push_group_rows(rows);
        I.push_list(ks);
      }
    const TokenSelection ts(s, std::make_shared<HostIndexLists>(I));
    CHECK(selected_pairs(I, s) == doctest::Approx(selected_pairs(ts, s)));
    ts.keys(1, 0, 149, keys);
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());
  }
}
