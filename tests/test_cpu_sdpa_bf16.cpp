// sdpa_flash's bf16 paths, avx512_bf16 and amx_bf16 (bf16 products, fp32 accumulation and softmax), against the float64 reference
// on bf16-rounded random inputs of odd shapes. Tolerances are derived as for the GPU's bf16
// kernels (FlashAttention's rule): the kernel's error against fp64 may be at most 2× the error
// of a naive reference at the kernel's precision (fp32 loops, P rounded to bf16 before P·V)
// plus an fp32 rounding floor. Seeds come from std::random_device, printed on failure;
// ATTN_TEST_SEED=<n> replays. Each path runs where the CPU has it (skipped, with a message, without AVX512_BF16).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "core/dtype.hpp"
#include "cpu/sdpa.hpp"
#include "reference/attention_reference.hpp"

namespace {

using namespace ab;

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

struct Case {
  std::string name;
  int batch, q_heads, kv_heads, d, dv;
  int64_t q_len, kv_len;
  Mask mask;
};

struct Data {
  AttnShape shape;
  HostTensor q, k, v, o, lse;
};

TensorRef ref_of(HostTensor& t, DType dt) {
  TensorRef r;
  r.data = t.ptr();
  r.shape = t.shape;
  r.dtype = dt;
  return r;
}

// Inputs rounded to bf16 (as the runner rounds them), logits of std ≈ 2 (queries 2× wider).
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
  s.dtype = DType::bf16;
  x.q = HostTensor({c.batch, c.q_heads, c.q_len, c.d});
  x.k = HostTensor({c.batch, c.kv_heads, c.kv_len, c.d});
  x.v = HostTensor({c.batch, c.kv_heads, c.kv_len, c.dv});
  x.o = HostTensor({c.batch, c.q_heads, c.q_len, c.dv});
  x.lse = HostTensor({c.batch, c.q_heads, c.q_len, 1});
  std::normal_distribution<float> nq(0.0f, 2.0f), nk(0.0f, 1.0f), nv(0.5f, 1.0f);
  for (float& e : x.q.data) e = round_to(DType::bf16, nq(rng));
  for (float& e : x.k.data) e = round_to(DType::bf16, nk(rng));
  for (float& e : x.v.data) e = round_to(DType::bf16, nv(rng));
  std::fill(x.o.data.begin(), x.o.data.end(), std::numeric_limits<float>::quiet_NaN());
  std::fill(x.lse.data.begin(), x.lse.data.end(), std::numeric_limits<float>::quiet_NaN());
  return x;
}

SdpaArgs args_of(Data& x, const Case& c) {
  SdpaArgs a;
  a.shape = x.shape;
  a.q = ref_of(x.q, DType::bf16);
  a.k = ref_of(x.k, DType::bf16);
  a.v = ref_of(x.v, DType::bf16);
  a.o = ref_of(x.o, DType::bf16);
  a.lse = ref_of(x.lse, DType::f32);
  a.mask = c.mask;
  return a;
}

// The naive reference at the kernel's precision: fp32 loops, two-pass softmax, P rounded to
// bf16 before it multiplies V (ℓ sums the unrounded P, as the kernel's does).
void naive_bf16_row(const Data& x, const Mask& m, float scale, int kh, int b, int h, int64_t i,
                    float* o, float* lse) {
  const AttnShape& s = x.shape;
  const int64_t qpos = i + s.q_offset();
  std::vector<float> logit(size_t(s.kv_len), -kInf);
  float mx = -kInf;
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
  if (mx == -kInf) {
    *lse = mx;
    return;
  }
  float l = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (logit[size_t(j)] == -kInf) continue;
    const float p = std::exp(logit[size_t(j)] - mx);
    l += p;
    const float pr = round_to(DType::bf16, p);
    const float* v = x.v.row(b, kh, j);
    for (int c = 0; c < s.v_dim; ++c) o[c] += pr * v[c];
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

// Every row when there are few, else the first and last of each head, rows on both sides of
// the 16-key block and 256-row tile edges, and random ones.
std::vector<std::array<int64_t, 3>> pick_rows(const Case& c, std::mt19937& rng) {
  std::vector<std::array<int64_t, 3>> r;
  if (int64_t(c.batch) * c.q_heads * c.q_len <= 3000) {
    for (int b = 0; b < c.batch; ++b)
      for (int h = 0; h < c.q_heads; ++h)
        for (int64_t i = 0; i < c.q_len; ++i) r.push_back({b, h, i});
    return r;
  }
  std::uniform_int_distribution<int> db(0, c.batch - 1), dh(0, c.q_heads - 1);
  std::uniform_int_distribution<int64_t> di(0, c.q_len - 1);
  for (int h = 0; h < c.q_heads; ++h) {
    r.push_back({db(rng), h, 0});
    r.push_back({db(rng), h, c.q_len - 1});
  }
  for (int64_t e : {15, 16, 255, 256, 511, 512})
    if (e < c.q_len) r.push_back({db(rng), dh(rng), e});
  while (r.size() < 200) r.push_back({db(rng), dh(rng), di(rng)});
  return r;
}

struct Outcome {
  Errors kernel, naive;
  double ref_sq = 0;
  int64_t masked_rows = 0, masked_bad = 0;
};

Outcome compare(Data& x, const SdpaArgs& a, const std::vector<std::array<int64_t, 3>>& rows) {
  const int dv = x.shape.v_dim;
  const int64_t n = int64_t(rows.size());
  const float scale = a.effective_scale();
  std::vector<double> ref_o(static_cast<size_t>(n * dv)), ref_lse(static_cast<size_t>(n));
  std::vector<float> nv_o(static_cast<size_t>(n * dv)), nv_lse(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < n; ++r) {
    const auto [b, h, i] = rows[size_t(r)];
    const int kh = a.kv_head_of(int(h));
    ab::sdpa_reference_row(x.q, x.k, x.v, x.shape, a.mask, double(scale), kh, int(b), int(h), i,
                            &ref_o[size_t(r * dv)], &ref_lse[size_t(r)]);
    naive_bf16_row(x, a.mask, scale, kh, int(b), int(h), i, &nv_o[size_t(r * dv)], &nv_lse[size_t(r)]);
  }
  Outcome out;
  for (int64_t r = 0; r < n; ++r) {
    const auto [b, h, i] = rows[size_t(r)];
    const float* o = x.o.row(int(b), int(h), i);
    const float lse = *x.lse.row(int(b), int(h), i);
    if (std::isinf(ref_lse[size_t(r)])) {
      ++out.masked_rows;
      bool ok = lse == -kInf;
      for (int c = 0; c < dv; ++c) ok &= o[c] == 0.0f;
      out.masked_bad += !ok;
    }
    for (int c = 0; c < dv; ++c) {
      const double want = ref_o[size_t(r * dv + c)];
      out.kernel.add(o[c], want);
      out.naive.add(nv_o[size_t(r * dv + c)], want);
      out.ref_sq += want * want;
    }
    out.kernel.add_lse(lse, ref_lse[size_t(r)]);
    out.naive.add_lse(nv_lse[size_t(r)], ref_lse[size_t(r)]);
  }
  return out;
}

// The bounds: 2× the naive bf16 reference's error plus fp32 floors (a few ulps of |O| ≲ 4 and
// |LSE| ≲ 12), and the report's bf16 table bound as an absolute sanity limit.
void check(const Outcome& r, const std::string& name) {
  const double denom = std::sqrt(std::max(r.ref_sq, 1e-300));
  const double rel_k = std::sqrt(r.kernel.sq_o) / denom, rel_n = std::sqrt(r.naive.sq_o) / denom;
  const Tolerance table = tolerance_for(DType::bf16, false);
  INFO(name << ": O max |err| kernel " << r.kernel.max_o << ", naive bf16 " << r.naive.max_o
            << "; rel kernel " << rel_k << ", naive " << rel_n << "; LSE kernel " << r.kernel.max_lse
            << ", naive " << r.naive.max_lse);
  CHECK(r.kernel.max_o <= 2 * r.naive.max_o + 1e-6);
  CHECK(rel_k <= 2 * rel_n + 1e-7);
  CHECK(r.kernel.max_lse <= 2 * r.naive.max_lse + 4e-6);
  CHECK(r.kernel.max_o <= table.max_abs);
  CHECK(rel_k <= table.rel);
  CHECK(r.masked_bad == 0);
}

// The bf16 paths this CPU runs: VDPBF16PS register blocks, and AMX tiles where present.
std::vector<cpu::FlashPath> bf16_paths() {
  std::vector<cpu::FlashPath> out;
  for (cpu::FlashPath p : {cpu::FlashPath::avx512_bf16, cpu::FlashPath::amx_bf16})
    if (cpu::sdpa_flash_available(p)) out.push_back(p);
  return out;
}

// The case on every bf16 path, on the same inputs and rows; returns the masked-row count.
int64_t check_case(const Case& c) {
  const uint32_t seed = test_seed();
  INFO("case " << c.name << "  seed " << seed << " (replay: ATTN_TEST_SEED=" << seed << ")");
  std::mt19937 rng(seed);
  Data x = make_data(c, rng);
  SdpaArgs a = args_of(x, c);
  const auto rows = pick_rows(c, rng);
  int64_t masked = -1;
  for (cpu::FlashPath path : bf16_paths()) {
    INFO("path " << std::string(cpu::flash_path_name(path)));
    std::fill(x.o.data.begin(), x.o.data.end(), std::numeric_limits<float>::quiet_NaN());
    std::fill(x.lse.data.begin(), x.lse.data.end(), std::numeric_limits<float>::quiet_NaN());
    cpu::sdpa_flash(a, path);
    const Outcome r = compare(x, a, rows);
    check(r, c.name);
    if (masked >= 0) CHECK(r.masked_rows == masked);
    masked = r.masked_rows;
  }
  return masked;
}

Mask causal_mask() {
  Mask m;
  m.causal = true;
  return m;
}

bool have_bf16() {
  if (cpu::sdpa_flash_available(cpu::FlashPath::avx512_bf16)) return true;
  MESSAGE("skipped: this CPU has no AVX512_BF16 (the CPU backend uses the fp32 path)");
  return false;
}

}  // namespace

TEST_CASE("sdpa_flash bf16 paths match fp64 within 2x a naive bf16 reference: N=1013, d 64/80/128, GQA 1/4/8") {
  if (!have_bf16()) return;
  for (int d : {64, 80, 128})
    for (int hkv : {8, 2, 1})
      for (bool causal : {false, true}) {
        Case c{"N1013_d" + std::to_string(d) + "_hq8_hkv" + std::to_string(hkv) +
                   (causal ? "_causal" : "_full"),
               1, 8, hkv, d, d, 1013, 1013, {}};
        c.mask.causal = causal;
        check_case(c);
      }
}

TEST_CASE("sdpa_flash bf16 paths: odd head dims, q_len != kv_len, batch 2") {
  if (!have_bf16()) return;
  // d and dv odd or not multiples of 16: zero-padded pairs and masked column vectors.
  check_case({"d33_dv17_b2_gqa3_causal", 2, 6, 2, 33, 17, 301, 1013, causal_mask()});
  check_case({"d80_dv64_b2_gqa4_causal", 2, 4, 1, 80, 64, 301, 1013, causal_mask()});
  check_case({"d72_dv40_full", 1, 3, 3, 72, 40, 257, 255, {}});
  // Bottom-right causal with fewer keys than queries: rows 0..22 see nothing.
  CHECK(check_case({"q40_kv17_causal", 1, 2, 1, 64, 64, 40, 17, causal_mask()}) == 2 * 23);
  check_case({"q1013_kv300_causal_gqa4", 1, 8, 2, 128, 128, 1013, 300, causal_mask()});
  check_case({"q300_kv4099_causal_gqa8", 1, 8, 1, 128, 128, 300, 4099, causal_mask()});
  // One query tile: the keys are split across threads and merged by LSE.
  check_case({"q64_kv20011_mha_d80", 1, 1, 1, 80, 80, 64, 20011, {}});
}

TEST_CASE("sdpa_flash bf16 paths: sliding window with sinks, and a predicate mask") {
  if (!have_bf16()) return;
  Mask m = causal_mask();
  m.window = 100;
  m.sinks = 4;  // partial tiles narrowed to the sink columns, then widened to a 16-key block
  check_case({"causal_window100_sink4", 1, 4, 2, 80, 80, 1013, 1013, m});
  Mask w;
  w.window = 300;
  w.sinks = 7;
  check_case({"window300_sink7_d33", 1, 2, 1, 33, 33, 1013, 1013, w});
  auto pred = std::make_shared<MaskPredicate>();
  pred->name = "test_residue3_row500";
  pred->allows = [](int, int h, int64_t qpos, int64_t j) { return qpos != 500 && (j + h) % 3 != 0; };
  Mask p = causal_mask();
  p.extra = pred;
  CHECK(check_case({"extra_predicate", 1, 4, 2, 64, 64, 700, 1013, p}) == 4);
}

TEST_CASE("CPU backend: bf16 inputs take the bf16 path where it pays, fp32 inputs never") {
  if (!have_bf16()) return;
  const uint32_t seed = test_seed();
  INFO("seed " << seed << " (replay: ATTN_TEST_SEED=" << seed << ")");
  std::mt19937 rng(seed);
  auto be = make_cpu_backend();
  Case c{"backend_d128_gqa2", 1, 4, 2, 128, 128, 517, 517, causal_mask()};
  Data x = make_data(c, rng);
  REQUIRE(cpu::sdpa_flash_packing_pays(x.shape));
  SdpaArgs a = args_of(x, c);
  be->sdpa(a);
  const HostTensor via_backend = x.o;
  cpu::sdpa_flash(a, bf16_paths().back());  // AMX where present, as the backend chooses
  CHECK(via_backend.data == x.o.data);  // the same kernel, deterministically
  check(compare(x, a, pick_rows(c, rng)), c.name);
  // The same values as fp32 tensors: the fp32 kernel (its own best path), whose error is
  // ~1000x smaller.
  SdpaArgs f = a;
  f.q.dtype = f.k.dtype = f.v.dtype = f.o.dtype = DType::f32;
  f.shape.dtype = DType::f32;
  be->sdpa(f);
  const HostTensor fp32 = x.o;
  cpu::sdpa_flash(f);
  CHECK(fp32.data == x.o.data);
  double diff = 0;
  for (size_t e = 0; e < fp32.data.size(); ++e)
    diff = std::max(diff, double(std::fabs(fp32.data[e] - via_backend.data[e])));
  CHECK(diff > 1e-5);  // P rounded to bf16 shows: the bf16 path really ran
  // Decode (one query row per key): bound by reading K and V, it stays on the fp32 path.
  Case dc{"decode", 1, 4, 4, 128, 128, 1, 4099, {}};
  Data y = make_data(dc, rng);
  CHECK_FALSE(cpu::sdpa_flash_packing_pays(y.shape));
  SdpaArgs da = args_of(y, dc);
  be->sdpa(da);
  const HostTensor decode_backend = y.o;
  cpu::sdpa_flash(da);
  CHECK(decode_backend.data == y.o.data);
}
