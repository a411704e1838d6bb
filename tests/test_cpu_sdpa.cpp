// sdpa_flash (each fp32 path: portable, AVX-512) against the float64 reference on fresh random
// inputs of odd shapes, with
// tolerances derived as in FlashAttention's tests: the kernel's error against fp64 may be
// at most kF32.ratio (2) × the error of a naive fp32 row reference (plain loops) plus a floor.
// Seeds come from std::random_device and are printed on failure; ATTN_TEST_SEED=<n> replays.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/sdpa.hpp"
#include "reference/attention_reference.hpp"

namespace {

using namespace ab;

// fp32 tolerance table. The floors are rounding floors: a few fp32 ulps of the
// quantity (|O| ≲ 4 and |LSE| ≲ 12 for these inputs). The absolute bounds are sanity limits
// far above what any correct fp32 kernel shows (≈1e-7..1e-6) and far below a logic error.
struct Tolerance {
  double ratio;      // kernel error ≤ ratio · naive fp32 error + floor
  double floor_o;    // max |ΔO|
  double floor_rel;  // ‖ΔO‖_F / ‖O‖_F
  double floor_lse;  // max |ΔLSE|
  double abs_o, abs_rel, abs_lse;
};
constexpr Tolerance kF32{2.0, 1e-6, 1e-7, 4e-6, 2e-5, 5e-6, 5e-5};

uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

struct Case {
  std::string name;
  int batch, q_heads, kv_heads, d, dv;
  int64_t q_len, kv_len;
  Mask mask;
  int sample_rows = 256;  // 0: every row
  std::vector<int> head_map = {};
};

struct Data {
  AttnShape shape;
  HostTensor q, k, v, o, lse;
};

TensorRef ref_of(HostTensor& t) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  return r;
}

Data make_data(const Case& c, std::mt19937& rng) {
  Data x;
  AttnShape& s = x.shape;
  s.batch = c.batch;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.d;
  s.v_dim = c.dv;
  s.q_len = c.q_len;
  s.kv_len = c.kv_len;
  s.causal = c.mask.causal;
  x.q = HostTensor({c.batch, c.q_heads, c.q_len, c.d});
  x.k = HostTensor({c.batch, c.kv_heads, c.kv_len, c.d});
  x.v = HostTensor({c.batch, c.kv_heads, c.kv_len, c.dv});
  x.o = HostTensor({c.batch, c.q_heads, c.q_len, c.dv});
  x.lse = HostTensor({c.batch, c.q_heads, c.q_len, 1});
  // Queries 2x wider than keys: logits of std ≈ 2, so rows range from flat to peaked.
  std::normal_distribution<float> n01(0.0f, 1.0f), nq(0.0f, 2.0f), nv(0.5f, 1.0f);
  for (float& e : x.q.data) e = nq(rng);
  for (float& e : x.k.data) e = n01(rng);
  for (float& e : x.v.data) e = nv(rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::fill(x.o.data.begin(), x.o.data.end(), nan);  // poison: unwritten elements fail
  std::fill(x.lse.data.begin(), x.lse.data.end(), nan);
  return x;
}

SdpaArgs args_of(Data& x, const Case& c) {
  SdpaArgs a;
  a.shape = x.shape;
  a.q = ref_of(x.q);
  a.k = ref_of(x.k);
  a.v = ref_of(x.v);
  a.o = ref_of(x.o);
  a.lse = ref_of(x.lse);
  a.mask = c.mask;
  a.head_map = c.head_map.empty() ? nullptr : c.head_map.data();
  return a;
}

// The naive same-precision reference: plain fp32 loops, two-pass softmax.
void naive_f32_row(const Data& x, const Mask& m, float scale, int kh, int b, int h, int64_t i,
                   float* o, float* lse) {
  const AttnShape& s = x.shape;
  const int64_t qpos = i + s.q_offset();
  std::vector<float> logit(size_t(s.kv_len), -std::numeric_limits<float>::infinity());
  float mx = -std::numeric_limits<float>::infinity();
  const float* q = x.q.row(b, h, i);
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!m.allows(b, h, qpos, j)) continue;
    const float* k = x.k.row(b, kh, j);
    float dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += q[c] * k[c];
    logit[size_t(j)] = dot * scale;
    mx = std::max(mx, logit[size_t(j)]);
  }
  std::fill(o, o + s.v_dim, 0.0f);
  if (mx == -std::numeric_limits<float>::infinity()) {
    *lse = mx;
    return;
  }
  float l = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (logit[size_t(j)] == -std::numeric_limits<float>::infinity()) continue;
    const float p = std::exp(logit[size_t(j)] - mx);
    l += p;
    const float* v = x.v.row(b, kh, j);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * v[c];
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] /= l;
  *lse = mx + std::log(l);
}

struct Errors {
  double max_o = 0, sq_o = 0, max_lse = 0;
  void add(double got, double want) {
    const double e = std::fabs(got - want);
    max_o = std::isnan(e) ? INFINITY : std::max(max_o, e);
    sq_o += e * e;
  }
  void add_lse(double got, double want) {
    if (std::isinf(want) && got == want) return;
    const double e = std::fabs(got - want);
    max_lse = std::isnan(e) ? INFINITY : std::max(max_lse, e);
  }
};

struct Rows {
  std::vector<int> b, h;
  std::vector<int64_t> i;
};

// Every row, or a sample: the first and last rows of each head, 128-row tile edges, random.
Rows pick_rows(const Case& c, std::mt19937& rng) {
  Rows r;
  auto add = [&](int b, int h, int64_t i) {
    r.b.push_back(b);
    r.h.push_back(h);
    r.i.push_back(i);
  };
  if (c.sample_rows == 0) {
    for (int b = 0; b < c.batch; ++b)
      for (int h = 0; h < c.q_heads; ++h)
        for (int64_t i = 0; i < c.q_len; ++i) add(b, h, i);
    return r;
  }
  std::uniform_int_distribution<int> db(0, c.batch - 1), dh(0, c.q_heads - 1);
  std::uniform_int_distribution<int64_t> di(0, c.q_len - 1);
  for (int h = 0; h < c.q_heads; ++h) {
    add(db(rng), h, 0);
    add(db(rng), h, c.q_len - 1);
  }
  for (int64_t e = 127; e + 1 < c.q_len && int(r.i.size()) < c.sample_rows / 2; e += 128) {
    add(db(rng), dh(rng), e);
    add(db(rng), dh(rng), e + 1);
  }
  while (int(r.i.size()) < c.sample_rows) add(db(rng), dh(rng), di(rng));
  return r;
}

struct Outcome {
  Errors kernel, naive;
  double ref_sq = 0;
  int64_t masked_rows = 0, masked_bad = 0;  // fully masked rows, and those not O=0/LSE=-inf
};

Outcome run_case(const Case& c, std::mt19937& rng, cpu::FlashPath path) {
  Data x = make_data(c, rng);
  SdpaArgs a = args_of(x, c);
  cpu::sdpa_flash(a, path);
  const Rows rows = pick_rows(c, rng);
  const int64_t n = int64_t(rows.i.size());
  const int dv = c.dv;
  const float scale = a.effective_scale();
  // Per-row results, filled in parallel (the references are slow); checked serially.
  std::vector<double> ref_o(static_cast<size_t>(n * dv)), ref_lse(static_cast<size_t>(n));
  std::vector<float> nv_o(static_cast<size_t>(n * dv)), nv_lse(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < n; ++r) {
    const int kh = a.kv_head_of(rows.h[size_t(r)]);
    ab::sdpa_reference_row(x.q, x.k, x.v, x.shape, a.mask, double(scale), kh, rows.b[size_t(r)],
                            rows.h[size_t(r)], rows.i[size_t(r)], &ref_o[size_t(r * dv)],
                            &ref_lse[size_t(r)]);
    naive_f32_row(x, a.mask, scale, kh, rows.b[size_t(r)], rows.h[size_t(r)], rows.i[size_t(r)],
                  &nv_o[size_t(r * dv)], &nv_lse[size_t(r)]);
  }
  Outcome out;
  for (int64_t r = 0; r < n; ++r) {
    const float* o = x.o.row(rows.b[size_t(r)], rows.h[size_t(r)], rows.i[size_t(r)]);
    const float lse = *x.lse.row(rows.b[size_t(r)], rows.h[size_t(r)], rows.i[size_t(r)]);
    const double want_lse = ref_lse[size_t(r)];
    if (std::isinf(want_lse)) {
      ++out.masked_rows;
      bool ok = lse == -INFINITY;
      for (int c2 = 0; c2 < dv; ++c2) ok &= o[c2] == 0.0f;
      out.masked_bad += !ok;
    }
    for (int c2 = 0; c2 < dv; ++c2) {
      const double want = ref_o[size_t(r * dv + c2)];
      out.kernel.add(o[c2], want);
      out.naive.add(nv_o[size_t(r * dv + c2)], want);
      out.ref_sq += want * want;
    }
    out.kernel.add_lse(lse, want_lse);
    out.naive.add_lse(nv_lse[size_t(r)], want_lse);
  }
  return out;
}

int64_t check_case_on(const Case& c, cpu::FlashPath path) {
  const uint32_t seed = test_seed();
  INFO("case " << c.name << "  path " << (path == cpu::FlashPath::portable ? "portable" : "avx512_f32")
                << "  seed " << seed << " (replay: ATTN_TEST_SEED=" << seed << ")");
  std::mt19937 rng(seed);
  const Outcome r = run_case(c, rng, path);
  const Tolerance& t = kF32;
  const double denom = std::sqrt(std::max(r.ref_sq, 1e-300));
  const double rel_k = std::sqrt(r.kernel.sq_o) / denom, rel_n = std::sqrt(r.naive.sq_o) / denom;
  INFO("O max |err|: kernel " << r.kernel.max_o << ", naive fp32 " << r.naive.max_o);
  INFO("O rel Frobenius: kernel " << rel_k << ", naive fp32 " << rel_n);
  INFO("LSE max |err|: kernel " << r.kernel.max_lse << ", naive fp32 " << r.naive.max_lse);
  CHECK(r.kernel.max_o <= t.ratio * r.naive.max_o + t.floor_o);
  CHECK(rel_k <= t.ratio * rel_n + t.floor_rel);
  CHECK(r.kernel.max_lse <= t.ratio * r.naive.max_lse + t.floor_lse);
  CHECK(r.kernel.max_o <= t.abs_o);
  CHECK(rel_k <= t.abs_rel);
  CHECK(r.kernel.max_lse <= t.abs_lse);
  CHECK(r.masked_bad == 0);
  return r.masked_rows;
}

// Every fp32 path this CPU runs: the portable one (Eigen) and the AVX-512 one where present,
// each on the same inputs. Returns the number of fully masked rows checked per path.
int64_t check_case(const Case& c) {
  int64_t masked = -1;
  for (cpu::FlashPath path : {cpu::FlashPath::portable, cpu::FlashPath::avx512_f32}) {
    if (!cpu::sdpa_flash_available(path)) {
      MESSAGE("fp32 path " << int(path) << " skipped: this CPU has no AVX-512");
      continue;
    }
    const int64_t m = check_case_on(c, path);
    CHECK((masked < 0 || m == masked));
    masked = m;
  }
  return masked;
}

Mask causal_mask() {
  Mask m;
  m.causal = true;
  return m;
}

}  // namespace

TEST_CASE("sdpa_flash matches the fp64 reference: N=1013, d in {64,80,128}, GQA 1/4/8") {
  for (int d : {64, 80, 128})
    for (int hkv : {8, 2, 1})
      for (bool causal : {false, true}) {
        Case c{"N1013_d" + std::to_string(d) + "_hq8_hkv" + std::to_string(hkv) +
                   (causal ? "_causal" : "_full"),
               1, 8, hkv, d, d, 1013, 1013, {}};
        c.mask.causal = causal;
        c.sample_rows = 128;
        check_case(c);
      }
}

TEST_CASE("sdpa_flash: every row, batch 2, d=80 dv=64, GQA 4, causal") {
  check_case({"all_rows_b2_d80_dv64", 2, 4, 1, 80, 64, 301, 1013, causal_mask(), 0});
}

TEST_CASE("sdpa_flash: decode, q_len=1") {
  check_case({"decode_kv1013", 1, 8, 2, 128, 128, 1, 1013, {}, 0});
  // Long: B·packs = 1 work unit, so the keys are split across threads and merged by LSE.
  check_case({"decode_kv20011_gqa8", 1, 8, 1, 128, 128, 1, 20011, {}, 0});
  check_case({"decode_kv20011_mha_d80", 2, 2, 2, 80, 64, 1, 20011, causal_mask(), 0});
  check_case({"decode_q3_kv20011_causal", 1, 4, 2, 64, 64, 3, 20011, causal_mask(), 0});
}

TEST_CASE("sdpa_flash: q_len != kv_len prefill, bottom-right causal") {
  check_case({"q17_kv1013_causal", 1, 8, 8, 128, 128, 17, 1013, causal_mask(), 0});
  check_case({"q17_kv1013_causal_gqa4", 1, 8, 2, 80, 80, 17, 1013, causal_mask(), 0});
  check_case({"q300_kv1013_full", 1, 2, 1, 64, 64, 300, 1013, {}, 0});
  check_case({"q1013_kv300_full", 1, 2, 2, 64, 64, 1013, 300, {}});
}

TEST_CASE("sdpa_flash: custom head map") {
  check_case({"head_map", 1, 6, 3, 80, 64, 77, 1013, causal_mask(), 0, {2, 0, 1, 2, 0, 2}});
  check_case({"head_map_decode", 1, 6, 3, 64, 64, 1, 5003, {}, 0, {1, 1, 0, 2, 0, 1}});
}

TEST_CASE("sdpa_flash: sliding window with sinks") {
  Mask m;
  m.causal = true;
  m.window = 100;
  m.sinks = 4;
  check_case({"causal_window100_sink4", 1, 4, 2, 80, 80, 1013, 1013, m, 0});
  Mask w;  // two-sided window, no causal
  w.window = 300;
  w.sinks = 7;
  check_case({"window300_sink7", 1, 2, 1, 64, 64, 1013, 1013, w, 0});
  m.window = 1;  // the row sees only itself and the sinks
  check_case({"causal_window1_sink4_decode", 1, 8, 2, 128, 128, 1, 20011, m, 0});
}

TEST_CASE("sdpa_flash: fully masked rows give O = 0 and LSE = -inf") {
  // q_len > kv_len with a bottom-right causal mask: rows 0..22 sit before every key.
  CHECK(check_case({"q40_kv17_causal", 1, 2, 1, 64, 64, 40, 17, causal_mask(), 0}) == 2 * 23);
  // A head-dependent predicate without its own classifier (element-scan classification):
  // head h sees only keys of its residue class mod 3, and row 500 of every head sees nothing.
  auto pred = std::make_shared<MaskPredicate>();
  pred->name = "test_residue3_row500";
  pred->allows = [](int, int h, int64_t qpos, int64_t j) {
    return qpos != 500 && (j + h) % 3 != 0;
  };
  Mask m;
  m.causal = true;
  m.extra = pred;
  CHECK(check_case({"extra_predicate", 1, 4, 2, 64, 64, 700, 1013, m, 0}) == 4);
  // Decode rows of 4 query heads packed into one tile: the tile class is the union over heads.
  check_case({"extra_predicate_packed", 1, 4, 1, 64, 64, 3, 5003, m, 0});
  {
    // Every key masked: all rows.
    Case c{"all_masked", 1, 2, 1, 64, 64, 50, 300, {}, 0};
    auto none = std::make_shared<MaskPredicate>();
    none->name = "none_visible";
    none->allows = [](int, int, int64_t, int64_t) { return false; };
    c.mask.extra = none;
    CHECK(check_case(c) == 2 * 50);
  }
}

TEST_CASE("sdpa_flash: lse may be null, and zero-length keys") {
  std::mt19937 rng(test_seed());
  Case c{"no_lse", 1, 2, 2, 64, 64, 33, 0, {}};
  Data x = make_data(c, rng);
  SdpaArgs a = args_of(x, c);
  a.lse = TensorRef{};
  cpu::sdpa_flash(a);
  for (float e : x.o.data) CHECK(e == 0.0f);
}

TEST_CASE("sdpa_flash_executed_fraction") {
  AttnShape s;
  s.q_heads = s.kv_heads = 8;
  s.head_dim = s.v_dim = 128;
  s.q_len = s.kv_len = 4096;
  Mask dense;
  CHECK(cpu::sdpa_flash_executed_fraction(s, dense) == doctest::Approx(1.0));
  // Causal: at least the allowed pairs, at most those plus a band of diagonal tiles.
  s.causal = true;
  const double allowed = s.allowed_pairs() / (double(s.q_len) * double(s.kv_len));
  const double causal = cpu::sdpa_flash_executed_fraction(s, causal_mask());
  CHECK(causal >= allowed);
  CHECK(causal <= allowed + 0.15);
  Mask win = causal_mask();
  win.window = 256;
  const double w = cpu::sdpa_flash_executed_fraction(s, win);
  CHECK(w >= 256.0 / 4096 * 0.9);
  CHECK(w < 0.3);
  // Partial tiles are narrowed to the columns some row sees: 4 sinks add 4 columns per query
  // tile, not a whole 256-column tile.
  win.sinks = 4;
  const double ws = cpu::sdpa_flash_executed_fraction(s, win);
  CHECK(ws > w);
  CHECK(ws <= w + 4.0 / 4096 + 1e-12);
  // The AMX path narrows per 32-row block: between the allowed pairs and the per-tile walk,
  // with a diagonal band of 32-row blocks (half a 32 × 32 block per row block, 16/4096 of
  // the pairs) in place of the 256-row one.
  const double causal_amx = cpu::sdpa_flash_executed_fraction(s, causal_mask(), cpu::FlashPath::amx_bf16);
  CHECK(causal_amx >= allowed);
  CHECK(causal_amx < causal);
  CHECK(causal_amx == doctest::Approx(allowed + 15.5 / 4096).epsilon(1e-9));
}

TEST_CASE("Mask::classify agrees with allows() element-wise") {
  const uint32_t seed = test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  struct M {
    std::string name;
    bool causal;
    int64_t window, sinks;
    bool blockdiag;  // AND a block-diagonal predicate (blocks of 48) without a classifier
  };
  // Positions are absolute (bottom-right aligned rows can be negative).
  const M masks[] = {{"causal", true, 0, 0, false},
                     {"window37", false, 37, 0, false},
                     {"causal_window37", true, 37, 0, false},
                     {"causal_window64_sink4", true, 64, 4, false},
                     {"window50_sink9", false, 50, 9, false},
                     {"causal_window1_sink1", true, 1, 1, false},
                     {"causal_blockdiag48", true, 0, 0, true},
                     {"window40_sink3_blockdiag48", false, 40, 3, true}};
  for (const M& mm : masks) {
    Mask m;
    m.causal = mm.causal;
    m.window = mm.window;
    m.sinks = mm.sinks;
    if (mm.blockdiag) {
      auto p = std::make_shared<MaskPredicate>();
      p->name = "blockdiag48";
      p->allows = [](int, int, int64_t i, int64_t j) {
        return (i < 0 ? -1 : i / 48) == j / 48;
      };
      m.extra = p;
    }
    INFO("mask " << mm.name);
    std::uniform_int_distribution<int64_t> pos(-40, 400), len(1, 70);
    int unsound = 0, inexact = 0;
    for (int t = 0; t < 3000; ++t) {
      const int64_t q0 = pos(rng), q1 = q0 + len(rng);
      const int64_t k0 = std::max<int64_t>(0, pos(rng)), k1 = k0 + len(rng);
      bool any = false, all = true;
      for (int64_t i = q0; i < q1; ++i)
        for (int64_t j = k0; j < k1; ++j) {
          const bool a = m.allows(0, 0, i, j);
          any |= a;
          all &= a;
        }
      const BlockClass got = m.classify(0, 0, q0, q1, k0, k1);
      const BlockClass want =
          !any ? BlockClass::empty : (all ? BlockClass::full : BlockClass::partial);
      // Soundness is what the kernel needs: it skips empty blocks and applies no element
      // mask on full ones. Exactness is what mask.hpp promises (no wasted tiles).
      const bool sound = !((got == BlockClass::empty && any) || (got == BlockClass::full && !all));
      if (!sound && unsound++ < 3)
        FAIL_CHECK("unsound: block q[" << q0 << "," << q1 << ") k[" << k0 << "," << k1
                                       << ") classified " << int(got) << ", elements say "
                                       << int(want));
      if (sound && got != want && inexact++ < 3)
        FAIL_CHECK("inexact: block q[" << q0 << "," << q1 << ") k[" << k0 << "," << k1
                                       << ") classified " << int(got) << ", elements say "
                                       << int(want));
    }
    CHECK(unsound == 0);
    CHECK(inexact == 0);
  }
}
