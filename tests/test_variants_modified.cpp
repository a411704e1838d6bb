// The modified softmax variants (gated, sigmoid, positional, act, lama) against their
// formulas written here from each paper, in float64, on fresh random inputs of odd shapes
// (N = 1013, d in {64, 128}, several head layouts), causal and not where it applies.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/errors.hpp"
#include "variant_test_util.hpp"
#include "workloads/extra_inputs.hpp"

using namespace ab;

namespace {

struct Layout {
  int heads, kv_heads, d;
};
constexpr Layout kLayouts[] = {{4, 4, 64}, {8, 2, 128}, {6, 1, 64}};

auto causal_rule(bool causal) {
  return [causal](int64_t p, int64_t j) { return !causal || j <= p; };
}

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// A .npy v1.0 file of little-endian float32, written from the format's specification
// (numpy.lib.format): magic, version, header length, a dict padded to 64 bytes, the data.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& data) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(header.size());
  f.put(char(len & 0xff));
  f.put(char(len >> 8));
  f.write(header.data(), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size() * sizeof(float)));
}

}  // namespace

TEST_CASE("gated: SDPA times σ(gate), headwise and elementwise, causal and not") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (const Layout& l : kLayouts)
    for (bool causal : {true, false})
      for (const char* gate : {"headwise", "elementwise"}) {
        INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " causal " << causal << " " << gate);
        const vt::Run r = vt::run("gated", {{"gate", std::string(gate)}},
                                  vt::problem(1, l.heads, l.kv_heads, l.d, 1013, 1013, causal), rng());
        const HostTensor& g = r.host->extra.at("gate");
        REQUIRE(g.shape == Shape4{1, l.heads, 1013, std::string(gate) == "headwise" ? 1 : l.d});
        vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
          using T = decltype(zero);
          vt::masked_softmax_row<T>(r, b, h, i, causal_rule(causal), out);
          for (int c = 0; c < l.d; ++c) out[c] *= sigmoid(T(g.row(b, h, i)[g.shape[3] == 1 ? 0 : c]));
        }, rng, 24);
        CHECK(r.plan.selection == nullptr);
      }
}

TEST_CASE("gated: gate logits from a .npy file, checked against the gate's shape") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("attn_gate_" + std::to_string(seed) + ".npy")).string();
  std::vector<float> logits(size_t(2 * 3 * 101));
  std::normal_distribution<float> n(0.0f, 2.0f);
  for (float& x : logits) x = n(rng);
  write_npy(path, {2, 3, 101, 1}, logits);
  const Problem p = vt::problem(2, 3, 3, 64, 101, 101, true);
  const vt::Run r = vt::run("gated", {{"gate", std::string("headwise")}, {"gate_file", path}}, p, rng());
  CHECK(r.host->extra.at("gate").data == logits);
  vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
    using T = decltype(zero);
    vt::masked_softmax_row<T>(r, b, h, i, causal_rule(true), out);
    for (int c = 0; c < 64; ++c) out[c] *= sigmoid(T(logits[size_t((b * 3 + h) * 101 + i)]));
  }, rng, 16);
  // The elementwise gate needs (2, 3, 101, 64): the file is refused at validation.
  auto v = vt::make("gated", {{"gate", std::string("elementwise")}, {"gate_file", path}});
  CHECK_THROWS_WITH_AS(check_extra_input_files(*v, v->shape(p)),
                       doctest::Contains("shape [2,3,101,1], expected [2,3,101,64]"), InputError);
  std::filesystem::remove(path);
  auto missing = vt::make("gated", {{"gate_file", path}});
  CHECK_THROWS_WITH_AS(check_extra_input_files(*missing, missing->shape(p)),
                       doctest::Contains("no such file"), InputError);
}

TEST_CASE("sigmoid: σ(q·k·scale + b), normalised and not, causal and not") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> bias(-8.0, 1.0);
  for (const Layout& l : kLayouts)
    for (bool causal : {true, false})
      for (bool normalize : {false, true}) {
        const double b0 = bias(rng);
        INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " causal " << causal
                  << " normalize " << normalize << " bias " << b0);
        const vt::Run r = vt::run("sigmoid", {{"normalize", normalize}, {"bias", b0}},
                                  vt::problem(1, l.heads, l.kv_heads, l.d, 1013, 1013, causal), rng());
        vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
          using T = decltype(zero);
          const AttnShape& s = r.shape;
          const int kh = h / s.group();
          const int64_t p = i + s.q_offset();
          T total = 0;
          for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
          for (int64_t j = 0; j < s.kv_len; ++j) {
            if (causal && j > p) continue;
            T dot = 0;
            for (int c = 0; c < s.head_dim; ++c) dot += T(r.host->q.row(b, h, i)[c]) * T(r.host->k.row(b, kh, j)[c]);
            const T w = sigmoid(dot / std::sqrt(T(s.head_dim)) + T(b0));
            total += w;
            for (int c = 0; c < s.v_dim; ++c) out[c] += w * T(r.host->v.row(b, kh, j)[c]);
          }
          if (normalize)
            for (int c = 0; c < s.v_dim; ++c) out[c] /= total + T(1e-8);
        }, rng, 24);
        CHECK(r.plan.selection == nullptr);
      }
}

TEST_CASE("sigmoid and gated: multi-step decode, one call per step") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Problem p = vt::problem(1, 8, 2, 128, 1, 1013, true, Mode::decode);
  p.steps = 5;
  const vt::Run r = vt::run("sigmoid", {{"normalize", true}}, p, rng());
  REQUIRE(r.shape.q_len == 5);
  vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
    using T = decltype(zero);
    const AttnShape& s = r.shape;
    const int64_t pos = i + s.q_offset();
    T total = 0;
    for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
    for (int64_t j = 0; j <= pos; ++j) {
      T dot = 0;
      for (int c = 0; c < s.head_dim; ++c) dot += T(r.host->q.row(b, h, i)[c]) * T(r.host->k.row(b, h / 4, j)[c]);
      const T w = sigmoid(dot / std::sqrt(T(s.head_dim)));
      total += w;
      for (int c = 0; c < s.v_dim; ++c) out[c] += w * T(r.host->v.row(b, h / 4, j)[c]);
    }
    for (int c = 0; c < s.v_dim; ++c) out[c] /= total + T(1e-8);
  }, rng, 12);
  const vt::Run g = vt::run("gated", {{"gate", std::string("headwise")}}, p, rng());
  const HostTensor& gt = g.host->extra.at("gate");
  vt::check_rows(g, [&](auto zero, int b, int h, int64_t i, auto* out) {
    using T = decltype(zero);
    vt::masked_softmax_row<T>(g, b, h, i, causal_rule(true), out);
    for (int c = 0; c < 128; ++c) out[c] *= sigmoid(T(gt.row(b, h, i)[0]));
  }, rng, 12);
}

TEST_CASE("positional: softmax((P W_Q)(P W_K)ᵀ) · V, weights cached or positional Q/K cached") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  struct Combo {
    const Layout& l;
    bool causal;
    const char* cache;
  };
  for (const Combo& cb : {Combo{kLayouts[0], true, "weights"}, Combo{kLayouts[1], false, "weights"},
                          Combo{kLayouts[1], true, "qk"}, Combo{kLayouts[2], false, "qk"}}) {
        const Layout& l = cb.l;
        const bool causal = cb.causal;
        const char* cache = cb.cache;
        const int64_t dp = 2 * std::uniform_int_distribution<int64_t>(1, 20)(rng);
        INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " causal " << causal << " cache "
                  << cache << " pe_dim " << dp);
        const vt::Run r = vt::run("positional", {{"cache", std::string(cache)}, {"pe_dim", dp}},
                                  vt::problem(2, l.heads, l.kv_heads, l.d, 1013, 1013, causal), rng());
        const HostTensor& wq = r.host->extra.at("pos_wq");
        const HostTensor& wk = r.host->extra.at("pos_wk");
        // Sinusoidal encodings (Vaswani et al. §3.5): PE(pos, 2i) = sin(pos / 10000^(2i/d_p)),
        // PE(pos, 2i+1) = cos(pos / 10000^(2i/d_p)).
        auto pe = [&](auto zero, int64_t pos, int64_t c) {
          using T = decltype(zero);
          const T angle = T(pos) / std::pow(T(10000), T(2 * (c / 2)) / T(dp));
          return c % 2 == 0 ? std::sin(angle) : std::cos(angle);
        };
        vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
          using T = decltype(zero);
          const AttnShape& s = r.shape;
          const int kh = h / s.group();
          std::vector<T> q(size_t(s.head_dim), T(0)), logit(size_t(s.kv_len)), pj(static_cast<size_t>(dp));
          for (int c = 0; c < s.head_dim; ++c)
            for (int64_t t = 0; t < dp; ++t) q[size_t(c)] += pe(zero, i, t) * T(wq.row(0, h, t)[c]);
          T mx = -INFINITY;
          for (int64_t j = 0; j < s.kv_len; ++j) {
            logit[size_t(j)] = -INFINITY;
            if (causal && j > i) continue;
            for (int64_t t = 0; t < dp; ++t) pj[size_t(t)] = pe(zero, j, t);
            T dot = 0;
            for (int c = 0; c < s.head_dim; ++c) {
              T kc = 0;  // (P W_K)[j, c]
              for (int64_t t = 0; t < dp; ++t) kc += pj[size_t(t)] * T(wk.row(0, kh, t)[c]);
              dot += q[size_t(c)] * kc;
            }
            logit[size_t(j)] = dot / std::sqrt(T(s.head_dim));
            mx = std::max(mx, logit[size_t(j)]);
          }
          T sum = 0;
          for (T x : logit) sum += std::exp(x - mx);
          for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
          for (int64_t j = 0; j < s.kv_len; ++j)
            for (int c = 0; c < s.v_dim; ++c)
              out[c] += std::exp(logit[size_t(j)] - mx) / sum * T(r.host->v.row(b, kh, j)[c]);
        }, rng, 6);
  }
  // The weights are computed in the plan phase (once per shape), the per-input work is A·V.
  auto v = vt::make("positional");
  CHECK(v->has_plan_phase());
  const AttnShape s = v->shape(vt::problem(4, 8, 8, 64, 2048, 2048, true));
  const Cost c = v->cost(s, nullptr);
  CHECK(c.estimation > 0);
  CHECK(c.executed - c.estimation == doctest::Approx(2.0 * 4 * 8 * (2048.0 * 2049 / 2) * 64));
  // A of 8 × 32768² floats is over budget: refused with the way out named.
  auto backend = make_cpu_backend();
  const AttnShape big = v->shape(vt::problem(1, 8, 8, 64, 32768, 32768, true));
  const Support sup = v->supports(big, *backend);
  CHECK(!sup.ok);
  CHECK(sup.reason.find("cache: qk") != std::string::npos);
}

TEST_CASE("act: sink columns found from the column scores, calibrated as the paper's steps") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (const Layout& l : kLayouts) {
    const bool causal = &l != &kLayouts[1];
    {
      INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d << " causal " << causal);
      const int64_t n = 1013;
      // Plant two sink keys (j = 5, 300): a direction every query shares, which those keys carry.
      std::vector<int64_t> planted = {5, 300};
      auto plant = [&](HostInputs& in) {
        for (float& x : in.q.data) x *= 0.5f;
        const int64_t d = in.q.shape[3];
        for (int64_t r = 0; r < in.q.numel() / d; ++r)
          for (int64_t c = 0; c < d; ++c) in.q.data[size_t(r * d + c)] += 1.0f;
        for (int b = 0; b < in.k.shape[0]; ++b)
          for (int h = 0; h < in.k.shape[1]; ++h)
            for (int64_t j : planted)
              for (int64_t c = 0; c < d; ++c) in.k.row(b, h, j)[c] = 0.8f;
      };
      const std::string heads = l.heads > 4 ? "0-2,5" : "all";
      const vt::Run r = vt::run("act", {{"heads", heads}},
                                vt::problem(1, l.heads, l.kv_heads, l.d, n, n, causal), rng(), plant);
      const AttnShape& s = r.shape;
      auto calibrated = [&](int h) { return heads == "all" || h <= 2 || h == 5; };
      // Float64 dense probabilities of every row of a head, column scores, sinks (step 1-2).
      auto probs = [&](int b, int h, int64_t i, std::vector<double>& p) {
        p.assign(size_t(n), 0.0);
        const int kh = h / s.group();
        double mx = -INFINITY;
        std::vector<double> lg(size_t(n), -INFINITY);
        for (int64_t j = 0; j < n; ++j) {
          if (causal && j > i) continue;
          double dot = 0;
          for (int c = 0; c < s.head_dim; ++c) dot += double(r.host->q.row(b, h, i)[c]) * r.host->k.row(b, kh, j)[c];
          lg[size_t(j)] = dot / std::sqrt(double(s.head_dim));
          mx = std::max(mx, lg[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(lg[size_t(j)] - mx);
        for (int64_t j = 0; j < n; ++j) p[size_t(j)] = std::exp(lg[size_t(j)] - mx) / sum;
      };
      std::vector<std::vector<int64_t>> sinks(size_t(s.q_heads));
      bool near_threshold = false;
      std::vector<double> p;
      for (int h = 0; h < s.q_heads; ++h) {
        if (!calibrated(h)) continue;
        std::vector<double> col(size_t(n), 0.0);
        for (int64_t i = 0; i < n; ++i) {
          probs(0, h, i, p);
          for (int64_t j = 0; j < n; ++j) col[size_t(j)] += p[size_t(j)];
        }
        for (int64_t j = 1; j < n; ++j) {
          const double cj = col[size_t(j)] / double(causal ? n - j : n);
          near_threshold |= std::abs(cj - 0.1) < 1e-4;
          if (cj > 0.1) sinks[size_t(h)].push_back(j);
        }
        CHECK(std::find(sinks[size_t(h)].begin(), sinks[size_t(h)].end(), 5) != sinks[size_t(h)].end());
      }
      if (near_threshold) {
        MESSAGE("a column score lies within 1e-4 of alpha: the sink sets may differ by rounding; skipped");
        continue;
      }
      // Steps 3-4 on each sampled row.
      vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
        using T = decltype(zero);
        probs(b, h, i, p);
        const auto& S = sinks[size_t(h)];
        T m = 0;
        for (int64_t j : S) m += T(p[size_t(j)]);
        const T beta = T(0.4);
        for (int c = 0; c < s.v_dim; ++c) out[c] = 0;
        for (int64_t j = 0; j < n; ++j) {
          T a = T(p[size_t(j)]);
          if (!S.empty()) {
            const bool sink = std::find(S.begin(), S.end(), j) != S.end();
            a = sink ? beta * a : a + (T(1) - beta) * m * a / (T(1) - m);
          }
          for (int c = 0; c < s.v_dim; ++c) out[c] += a * T(r.host->v.row(b, h / s.group(), j)[c]);
        }
      }, rng, 16);
    }
  }
}

TEST_CASE("lama: pooled multi-head attention against a global context") {
  const uint32_t seed = vt::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (const Layout& l : kLayouts) {
    INFO("H " << l.heads << " Hkv " << l.kv_heads << " d " << l.d);
    const vt::Run r = vt::run("lama", {}, vt::problem(3, l.heads, l.kv_heads, l.d, 1013, 1013, true), rng());
    REQUIRE(r.o.shape == Shape4{3, l.heads, 1, l.d});
    CHECK(r.variant->output_shape(r.shape) == Shape4{3, l.heads, 1, l.d});
    const HostTensor& P = r.host->extra.at("lama_p");
    const HostTensor& c = r.host->extra.at("lama_c");
    vt::check_rows(r, [&](auto zero, int b, int h, int64_t i, auto* out) {
      using T = decltype(zero);
      const AttnShape& s = r.shape;
      T u = 0;  // u = Pᵀc
      for (int k = 0; k < s.head_dim; ++k) u += T(P.row(0, 0, k)[h]) * T(c.ptr()[k]);
      std::vector<T> f(size_t(s.kv_len));
      T mx = -INFINITY;
      for (int64_t t = 0; t < s.kv_len; ++t) {
        T dot = 0;
        for (int k = 0; k < s.head_dim; ++k) dot += T(r.host->q.row(b, h, i)[k]) * T(r.host->k.row(b, h / s.group(), t)[k]);
        f[size_t(t)] = std::tanh(u * dot);
        mx = std::max(mx, f[size_t(t)]);
      }
      T sum = 0;
      for (T x : f) sum += std::exp(x - mx);
      for (int k = 0; k < s.v_dim; ++k) out[k] = 0;
      for (int64_t t = 0; t < s.kv_len; ++t)
        for (int k = 0; k < s.v_dim; ++k) out[k] += std::exp(f[size_t(t)] - mx) / sum * T(r.host->v.row(b, h / s.group(), t)[k]);
    }, rng, 12);
    CHECK(r.plan.selection == nullptr);
    CHECK(r.plan.selection_na_reason.find("pooled") != std::string::npos);
  }
}

TEST_CASE("modified variants refuse impossible parameters, naming the field and the rule") {
  const Problem causal = vt::problem(1, 4, 4, 64, 1013, 1013, true);
  auto refuses = [&](const char* name, std::map<std::string, ParamValue> p, const char* says) {
    CHECK_THROWS_WITH_AS(vt::make(name, p)->shape(causal), doctest::Contains(says), InputError);
  };
  refuses("positional", {{"pe_dim", int64_t{7}}}, "positional.pe_dim = 7: must be even and >= 2");
  refuses("act", {{"alpha", 1.5}}, "act.alpha = 1.500000: must be in (0, 1)");
  refuses("act", {{"beta", -0.1}}, "act.beta = -0.100000: must be in [0, 1]");
  refuses("act", {{"heads", std::string("0-9")}}, "act.heads = '0-9': head 9 does not exist");
  refuses("act", {{"heads", std::string("x")}}, "act.heads = 'x': expected");
  // String choices are checked by the schema.
  CHECK_THROWS_AS(resolve_params(find_variant("gated")->info, {{"gate", std::string("rowwise")}}), InputError);
}
