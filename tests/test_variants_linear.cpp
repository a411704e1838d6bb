// The linear-attention family (linear, transnormer, lightning, mala) against each one's exact
// formula written here as an O(N) sum per row, in float64, on fresh random inputs of odd shapes
// (N = 1013, d in {64, 128}, several head layouts), causal and not where it applies; the
// chunked Lightning form equals the quadratic decay form; the decode recurrence equals the
// prefill result row by row.
#include <doctest/doctest.h>

#include <omp.h>

#include "core/errors.hpp"
#include "cpu/linear_attention.hpp"
#include "variants/linear_attention_base.hpp"
#include "variant_test_util.hpp"

using namespace ab;

namespace {

struct Layout {
  int heads, kv_heads, d;
};
constexpr Layout kLayouts[] = {{4, 4, 64}, {8, 2, 128}, {6, 1, 64}};

template <class T>
T elu(T x) {
  return x > 0 ? x : std::expm1(x);
}

// ALiBi slopes from Press et al. (ICLR 2022) as lightning-attention's _build_slope_tensor:
// a power of two n gives start = 2^(-8/n), slopes start^1..start^n; otherwise the closest
// lower power of two n, then every other slope of 2n.
std::vector<double> alibi(int heads) {
  auto pow2 = [](int n) {
    std::vector<double> s;
    for (int h = 0; h < n; ++h) s.push_back(std::pow(std::pow(2.0, -8.0 / n), h + 1));
    return s;
  };
  int n = 1;
  while (2 * n <= heads) n *= 2;
  std::vector<double> s = pow2(n);
  const std::vector<double> twice = pow2(2 * n);
  for (size_t i = 0; int(s.size()) < heads; i += 2) s.push_back(twice[i]);
  return s;
}

// The linear-attention row, straight from the definitions: phi on q and k, the keys the row
// sees, weights λ^(p-j)·φ(q)·φ(k), then the variant's normaliser and norm.
struct LinearDef {
  std::function<double(double)> phi;
  enum { none, denominator, mala } normalizer = none;
  enum { no_norm, rms, layer } norm = no_norm;
  bool across_heads = false;  // the norm spans every query head's row at (b, i) together
  std::vector<double> slopes;  // empty: no decay
  double eps = 1e-6;
};

template <class T>
void linear_row(const vt::Run& r, const LinearDef& def, int b, int h, int64_t i, T* out) {
  const AttnShape& s = r.shape;
  if (def.across_heads && def.norm != LinearDef::no_norm) {
    // Every head's row, concatenated, then one norm over the Hq·Dv values.
    LinearDef plain = def;
    plain.norm = LinearDef::no_norm;
    const size_t dv = size_t(s.v_dim), width = size_t(s.q_heads) * dv;
    std::vector<T> all(width);
    for (int g = 0; g < s.q_heads; ++g) linear_row<T>(r, plain, b, g, i, all.data() + size_t(g) * dv);
    T mean = 0, var = 0;
    if (def.norm == LinearDef::layer) {
      for (T x : all) mean += x;
      mean /= T(width);
    }
    for (T x : all) var += (x - mean) * (x - mean);
    var /= T(width);
    for (size_t c = 0; c < dv; ++c) out[c] = (all[size_t(h) * dv + c] - mean) / std::sqrt(var + T(1e-6));
    return;
  }
  const int kh = h / s.group();
  const int64_t p = i + s.q_offset();
  const int64_t keys = s.causal ? p + 1 : s.kv_len;
  std::vector<T> q(size_t(s.head_dim)), num(size_t(s.v_dim), T(0)), vsum(size_t(s.v_dim), T(0));
  for (int c = 0; c < s.head_dim; ++c) q[size_t(c)] = T(def.phi(r.host->q.row(b, h, i)[c]));
  T den = 0;
  const T lambda = def.slopes.empty() ? T(1) : T(std::exp(-def.slopes[size_t(h)]));
  for (int64_t j = 0; j < keys; ++j) {
    T dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += q[size_t(c)] * T(def.phi(r.host->k.row(b, kh, j)[c]));
    const T w = std::pow(lambda, T(p - j)) * dot;
    den += w;
    for (int c = 0; c < s.v_dim; ++c) {
      num[size_t(c)] += w * T(r.host->v.row(b, kh, j)[c]);
      vsum[size_t(c)] += T(r.host->v.row(b, kh, j)[c]);
    }
  }
  const T sc = T(1) / std::sqrt(T(s.head_dim)), n = T(keys);
  const T z = sc / n * den;
  for (int c = 0; c < s.v_dim; ++c) {
    if (def.normalizer == LinearDef::none) out[c] = num[size_t(c)];
    else if (def.normalizer == LinearDef::denominator) out[c] = num[size_t(c)] / (den + T(def.eps));
    else out[c] = (T(1) + T(1) / z) * sc / n * num[size_t(c)] - z / n * vsum[size_t(c)];
  }
  if (def.norm != LinearDef::no_norm) {
    T mean = 0, var = 0;
    for (int c = 0; c < s.v_dim; ++c) mean += out[c] / T(s.v_dim);
    if (def.norm == LinearDef::rms) mean = 0;
    for (int c = 0; c < s.v_dim; ++c) var += (out[c] - mean) * (out[c] - mean) / T(s.v_dim);
    for (int c = 0; c < s.v_dim; ++c) out[c] = (out[c] - mean) / std::sqrt(var + T(1e-6));
  }
}

struct Combo {
  const Layout* l;
  bool causal;
};
// Every layout, causal and not; the secondary configurations take two of them.
const std::vector<Combo> kAll = {{&kLayouts[0], true}, {&kLayouts[0], false}, {&kLayouts[1], true},
                                 {&kLayouts[1], false}, {&kLayouts[2], true}, {&kLayouts[2], false}};
const std::vector<Combo> kTwo = {{&kLayouts[1], true}, {&kLayouts[2], false}};
const std::vector<Combo> kCausal = {{&kLayouts[0], true}, {&kLayouts[1], true}, {&kLayouts[2], true}};

// MALA's output is (1 + 1/z)·φ(q)S − z·mean(v): two terms of the row's size whose difference
// keeps their fp32 rounding of the 1013-key state S. Over 150 seeds the worst error was 30
// ulps of the row scale (3.2x the naive row formula's), beyond the default 8-ulp floor in 3
// of them (e.g. ATTN_TEST_SEED=3083157465); 64 ulps keeps 2x headroom, ~1e-5 relative.
constexpr double kMalaFloor = 64 * 5.96e-8;

// Prefill on each combination; decode (q_len = 1 against 1013 keys) on the first.
void check_variant(const char* name, const std::map<std::string, ParamValue>& params, const LinearDef& def,
                   std::mt19937& rng, const std::vector<Combo>& combos = kAll, bool decode = true,
                   double floor = vt::kUlps) {
  for (size_t k = 0; k < combos.size(); ++k) {
    const Layout& l = *combos[k].l;
    const bool causal = combos[k].causal;
    for (Mode mode : {Mode::prefill, Mode::decode}) {
      if (mode == Mode::decode && (!decode || k != 0)) continue;
      INFO(name << " H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " causal " << causal
                << " " << mode_name(mode));
      LinearDef dd = def;
      if (!def.slopes.empty()) dd.slopes = alibi(l.heads);
      const int64_t nq = mode == Mode::prefill ? 1013 : 1;
      const vt::Run r = vt::run(name, params, vt::problem(1, l.heads, l.kv_heads, l.d, nq, 1013, causal, mode), rng());
      vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
        linear_row<decltype(zero)>(r, dd, b, h, i, out);
      }, rng, mode == Mode::prefill ? 12 : 4, floor);
      CHECK(r.plan.selection == nullptr);
      CHECK(!r.plan.selection_na_reason.empty());
    }
  }
}

double elu_plus_one(double x) { return x > 0 ? x + 1 : std::exp(x); }

}  // namespace

TEST_CASE("linear: φ(q)·Σφ(k)ᵀv / φ(q)·Σφ(k), elu+1 and relu, causal and not") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef def;
  def.normalizer = LinearDef::denominator;
  def.phi = elu_plus_one;
  check_variant("linear", {}, def, rng);
  def.phi = [](double x) { return std::max(x, 0.0); };
  check_variant("linear", {{"feature_map", std::string("relu")}}, def, rng, kTwo);
}

TEST_CASE("transnormer: no denominator, RMSNorm or LayerNorm over the heads' outputs concatenated") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef def;
  def.phi = [](double x) { return elu(x); };
  def.norm = LinearDef::rms;
  def.across_heads = true;  // the reference code's norm over embed_dim = heads x head_dim
  check_variant("transnormer", {}, def, rng);
  def.norm = LinearDef::layer;
  def.phi = elu_plus_one;
  check_variant("transnormer", {{"norm", std::string("layer")}, {"feature_map", std::string("elu_plus_one")}}, def,
                rng, kTwo);
  // norm_scope head: each head normalised on its own.
  def.across_heads = false;
  check_variant("transnormer",
                {{"norm", std::string("layer")}, {"feature_map", std::string("elu_plus_one")},
                 {"norm_scope", std::string("head")}},
                def, rng, kTwo);
}

TEST_CASE("lightning with TNL's norm: over the heads' outputs concatenated, or per head") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef def;
  def.phi = [](double x) { return x; };
  def.slopes = {0.0};  // filled per layout with ALiBi's slopes
  def.norm = LinearDef::rms;
  def.across_heads = true;
  check_variant("lightning", {{"norm", std::string("rms")}}, def, rng, {{&kLayouts[0], true}, {&kLayouts[2], true}});
  def.norm = LinearDef::layer;
  def.across_heads = false;
  check_variant("lightning", {{"norm", std::string("layer")}, {"norm_scope", std::string("head")}}, def, rng,
                {{&kLayouts[1], true}});
}

TEST_CASE("lightning: Σ λ^(i-j) (q·k) v with ALiBi slopes, chunked and quadratic") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef def;
  def.phi = [](double x) { return x; };
  def.slopes = {1.0};  // replaced by the layout's ALiBi slopes
  check_variant("lightning", {}, def, rng, kCausal);
  check_variant("lightning", {{"algorithm", std::string("quadratic")}, {"decay", std::string("alibi")}}, def,
                rng, kCausal, false);
  // TNL's configuration: SiLU on q and k, LayerNorm after; and the no-decay kernel.
  LinearDef tnl = def;
  tnl.phi = [](double x) { return x / (1 + std::exp(-x)); };
  tnl.norm = LinearDef::layer;
  tnl.across_heads = true;  // TNL's norm spans the heads concatenated (norm_scope heads, default)
  check_variant("lightning", {{"feature_map", std::string("silu")}, {"norm", std::string("layer")}}, tnl, rng,
                {{&kLayouts[1], true}});
  LinearDef plain;
  plain.phi = def.phi;
  check_variant("lightning", {{"decay", std::string("none")}, {"block", int64_t{37}}}, plain, rng,
                {{&kLayouts[2], true}});
}

TEST_CASE("lightning: the chunked form equals the quadratic decay form") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int64_t block : {64, 37, 128})
    for (const Layout& l : kLayouts) {
      if (block != 64 && &l != &kLayouts[2]) continue;
      INFO("block " << block << " H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d);
      const uint64_t s = rng();
      const Problem p = vt::problem(1, l.heads, l.kv_heads, l.d, 1013, 1013, true);
      const vt::Run a = vt::run("lightning", {{"block", block}}, p, s);
      const vt::Run q = vt::run("lightning", {{"block", block}, {"algorithm", std::string("quadratic")}}, p, s);
      REQUIRE(a.host->q.data == q.host->q.data);
      double diff = 0, scale = 0;
      for (size_t e = 0; e < a.o.data.size(); ++e) {
        diff = std::max(diff, double(std::abs(a.o.data[e] - q.o.data[e])));
        scale = std::max(scale, double(std::abs(q.o.data[e])));
      }
      INFO("max |chunked - quadratic| " << diff << " of scale " << scale);
      CHECK(diff <= 2e-6 * std::max(1.0, scale));
    }
}

TEST_CASE("decode recurrence kv = λ·kv + kᵀv, o = q·kv equals the prefill rows, row by row") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  // One kv head (MQA), so a prefix of K and V is a contiguous prefix tensor.
  const int H = 4, d = 64, dv = 80;
  const int64_t N = 301;
  AttnShape s;
  s.batch = 1;
  s.q_heads = H;
  s.kv_heads = 1;
  s.head_dim = d;
  s.v_dim = dv;
  s.q_len = s.kv_len = N;
  s.causal = true;
  HostInputs in = generate_gaussian(s, {{"std", 1.0}}, rng());
  auto ref = [](HostTensor& t) {
    TensorRef r;
    r.data = t.ptr();
    r.shape = t.shape;
    return r;
  };
  const std::vector<float> slopes = cpu::alibi_slopes(H);
  // Hundreds of one-token calls: on shared cores, waiting for a descheduled OpenMP worker at
  // each call's barrier took this test from 0.1 s to 20 s. One thread computes the same.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  struct Config {
    const char* name;
    FeatureMap phi;
    LinearNormalizer normalizer;
    OutputNorm norm;
    bool decay;
  };
  for (const Config& cfg : {Config{"lightning", FeatureMap::identity, LinearNormalizer::none, OutputNorm::none, true},
                            Config{"linear", FeatureMap::elu_plus_one, LinearNormalizer::denominator, OutputNorm::none, false},
                            Config{"transnormer", FeatureMap::elu, LinearNormalizer::none, OutputNorm::rms, false},
                            Config{"mala", FeatureMap::elu_plus_one, LinearNormalizer::mala, OutputNorm::none, false}}) {
    INFO(cfg.name);
    LinearAttnArgs base;
    base.feature_map = cfg.phi;
    base.normalizer = cfg.normalizer;
    base.norm = cfg.norm;
    base.slopes = cfg.decay ? slopes.data() : nullptr;
    // Prefill over all N rows.
    HostTensor o_pre({1, H, N, dv});
    LinearAttnArgs pre = base;
    pre.shape = s;
    pre.q = ref(in.q);
    pre.k = ref(in.k);
    pre.v = ref(in.v);
    pre.o = ref(o_pre);
    cpu::linear_attention(pre);
    // The state after the first p0 tokens, then one token at a time.
    const int64_t p0 = 97;
    HostTensor kv[2] = {HostTensor({1, H, d, dv}), HostTensor({1, H, d, dv})};
    HostTensor ks[2] = {HostTensor({1, H, 1, d}), HostTensor({1, H, 1, d})};
    HostTensor vs[2] = {HostTensor({1, H, 1, dv}), HostTensor({1, H, 1, dv})};
    auto state = [&](int w) { return LinearState{ref(kv[w]), ref(ks[w]), ref(vs[w])}; };
    LinearAttnArgs build = base;
    build.shape = s;
    build.shape.q_len = 1;
    build.shape.kv_len = p0 + 1;  // prefix [0, p0)
    HostTensor q1({1, H, 1, d}), o1({1, H, 1, dv});
    build.q = ref(q1);
    build.k = TensorRef{in.k.ptr(), DType::f32, {1, 1, p0 + 1, d}, false};
    build.v = TensorRef{in.v.ptr(), DType::f32, {1, 1, p0 + 1, dv}, false};
    build.phase = LinearAttnArgs::Phase::build_state;
    build.state_out = state(0);
    cpu::linear_attention(build);
    double err = 0, scale = 0;
    int cur = 0;
    for (int64_t t = p0; t < N; ++t) {
      for (int h = 0; h < H; ++h) std::copy_n(in.q.row(0, h, t), d, q1.row(0, h, 0));
      LinearAttnArgs step = base;
      step.shape = build.shape;
      step.shape.kv_len = t + 1;
      step.q = ref(q1);
      step.o = ref(o1);
      step.k = TensorRef{in.k.ptr(), DType::f32, {1, 1, t + 1, d}, false};
      step.v = TensorRef{in.v.ptr(), DType::f32, {1, 1, t + 1, dv}, false};
      step.state_in = state(cur);
      step.state_out = state(1 - cur);
      cpu::linear_attention(step);
      cur = 1 - cur;
      for (int h = 0; h < H; ++h)
        for (int c = 0; c < dv; ++c) {
          err = std::max(err, double(std::abs(o1.row(0, h, 0)[c] - o_pre.row(0, h, t)[c])));
          scale = std::max(scale, double(std::abs(o_pre.row(0, h, t)[c])));
        }
    }
    INFO("max |decode - prefill| " << err << " of scale " << scale);
    CHECK(err <= 5e-6 * std::max(1.0, scale));
  }
  omp_set_num_threads(threads);
}

TEST_CASE("multi-step decode: the recurrence one token per step equals the formula at each step") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef light;
  light.phi = [](double x) { return x; };
  LinearDef lin;
  lin.phi = elu_plus_one;
  lin.normalizer = LinearDef::denominator;
  LinearDef mala = lin;
  mala.normalizer = LinearDef::mala;
  struct V {
    const char* name;
    LinearDef def;
    bool decay;
  };
  for (const V& v : {V{"lightning", light, true}, V{"linear", lin, false}, V{"mala", mala, false}}) {
    const Layout& l = kLayouts[1];
    INFO(v.name);
    Problem p = vt::problem(1, l.heads, l.kv_heads, l.d, 1, 1013, true, Mode::decode);
    p.steps = 7;
    const vt::Run r = vt::run(v.name, {}, p, rng());
    REQUIRE(r.shape.q_len == 7);
    LinearDef dd = v.def;
    if (v.decay) dd.slopes = alibi(l.heads);
    vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
      linear_row<decltype(zero)>(r, dd, b, h, i, out);
    }, rng, 16, v.def.normalizer == LinearDef::mala ? kMalaFloor : vt::kUlps);
    // Executed FLOPs: 7 steps of one token each, not a 7-row block.
    auto one = vt::make(v.name);
    Problem p1 = p;
    p1.steps = 1;
    CHECK(r.variant->cost(r.shape, nullptr).executed ==
          doctest::Approx(7 * one->cost(one->shape(p1), nullptr).executed));
  }
}

TEST_CASE("mala: magnitude-aware weights, non-causal as published and our causal form") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  LinearDef def;
  def.phi = elu_plus_one;
  def.normalizer = LinearDef::mala;
  check_variant("mala", {}, def, rng, kAll, true, kMalaFloor);
}

TEST_CASE("linear family: FLOPs per token flat in N for the chunked form, quadratic for Lightning-1") {
  auto chunked = vt::make("lightning");
  auto quadratic = vt::make("lightning", {{"algorithm", std::string("quadratic")}});
  auto per_token = [](Variant& v, int64_t n) {
    return v.cost(v.shape(vt::problem(1, 8, 8, 128, n, n, true)), nullptr).executed / double(n);
  };
  CHECK(per_token(*chunked, 65536) == doctest::Approx(per_token(*chunked, 4096)).epsilon(1e-9));
  CHECK(per_token(*quadratic, 65536) > 10 * per_token(*quadratic, 4096));
  // Dense-equivalent is dense causal SDPA on the same shape.
  const AttnShape s = chunked->shape(vt::problem(1, 8, 8, 128, 4096, 4096, true));
  CHECK(chunked->cost(s, nullptr).dense_equivalent == doctest::Approx(2.0 * 8 * (4096.0 * 4097 / 2) * 256));
  // Decode: the step's FLOPs and bytes do not grow with the cache.
  const AttnShape d1 = chunked->shape(vt::problem(1, 8, 8, 128, 1, 4096, true, Mode::decode));
  const AttnShape d2 = chunked->shape(vt::problem(1, 8, 8, 128, 1, 65536, true, Mode::decode));
  CHECK(chunked->cost(d1, nullptr).executed == chunked->cost(d2, nullptr).executed);
  CHECK(chunked->cost(d1, nullptr).bytes_min == chunked->cost(d2, nullptr).bytes_min);
}

TEST_CASE("linear variants refuse impossible parameters, naming the field and the rule") {
  const Problem causal = vt::problem(1, 4, 4, 64, 1013, 1013, true);
  auto refuses = [&](const char* name, std::map<std::string, ParamValue> p, const Problem& pr, const char* says) {
    CHECK_THROWS_WITH_AS(vt::make(name, p)->shape(pr), doctest::Contains(says), InputError);
  };
  refuses("linear", {{"eps", 0.0}}, causal, "linear.eps = 0.000000: must be > 0");
  refuses("lightning", {{"block", int64_t{0}}}, causal, "lightning.block = 0: must be in [1, 1024]");
  refuses("lightning", {{"block", int64_t{2048}}}, causal, "lightning.block = 2048: must be in [1, 1024]");
  refuses("lightning", {{"slope_scale", 0.0}}, causal, "lightning.slope_scale = 0.000000: must be > 0");
  refuses("lightning", {}, vt::problem(1, 4, 4, 64, 1013, 1013, false), "problem.causal = false");
  refuses("lightning", {{"algorithm", std::string("quadratic")}},
          vt::problem(1, 4, 4, 64, 1, 1013, true, Mode::decode), "decode needs the chunked algorithm");
  refuses("mala", {{"scale", -1.0}}, causal, "mala.scale = -1.000000: must be >= 0");
}
