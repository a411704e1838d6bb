// Structured Q/K/V whose dense attention looks like a trained model's (docs/inputs.md): attention
// sinks, locality, heavy-hitter key columns, periodic "slash" diagonals and heads that differ
// in which structure dominates. Random Gaussian inputs make every sparse method look bad
// (their attention is nearly uniform); these give sparse methods the structure they exploit,
// with each knob in nats of logit so its effect is predictable. docs/inputs.md lists the knobs
// with the statistic each moves (measured with `attn-bench inspect`).
//
// Construction (scale = 1/sqrt(D), the default softmax scale): the head dimension is split
// into channels whose dot products add up in the logit s_ij = scale·q_i·k_j:
//   sink     1 dim : k_j = b for j < sinks, q_i = g·b        -> +sink_strength on the sinks
//   heavy    1 dim : k_j = b for heavy-hitter keys            -> +heavy_strength on them
//   slash    2M dims (M harmonics of ω = 2π/period, rotary): (1/M)Σ_m cos(mω(i−j)), a comb
//                    that peaks at +slash_strength where i − j is a multiple of the period
//   local    2F dims: a smooth latent z(n) (AR(1), correlation exp(−|Δ|/length_scale)) rotated
//                    by rotary position encoding (RoPE, base rope_base); q_i and k_j carry the
//                    latent of their own position, so E[s_ij] = locality·(1/F)Σ_f
//                    exp(−|i−j|/ℓ)·cos((i−j)θ_f): near keys score high, far ones ≈ 0 with
//                    spread locality/sqrt(2F)
//   noise    rest : normal, logit spread `noise` (nats, standard deviation); i.i.d. for keys,
//                    and for queries AR(1) over positions with correlation `query_rho` (0:
//                    i.i.d.), so that consecutive decode queries can be as similar as a model's
// Heads: each query head has a dominant structure (round-robin over the active ones, offset by
// the seed); the other structures are scaled by (1 − head_diversity) in its queries. Finally
// two random Householder reflections per (batch, kv head), applied to its keys and its
// queries alike, mix the channels without changing any dot product.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include "core/errors.hpp"
#include "workloads/workloads.hpp"

namespace ab {

namespace {

using json = nlohmann::ordered_json;

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t z = seed ^ (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full) ^ (c * 0x165667b19e3779f9ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

enum Component { kLocal, kSink, kHeavy, kSlash, kComponents };

struct Params {
  int64_t sinks;
  double sink_strength;
  double locality, length_scale, rope_base;
  int64_t heavy_hitters;
  double heavy_strength;
  int64_t slash_period;
  double slash_strength;
  double noise, head_diversity, v_std, query_rho;
  bool mix;
};

Params read_params(const json& o) {
  Params p;
  p.sinks = o.value("sinks", int64_t{1});
  p.sink_strength = o.value("sink_strength", 0.0);
  p.locality = o.value("locality", 0.0);
  p.length_scale = o.value("length_scale", 32.0);
  p.rope_base = o.value("rope_base", 10000.0);
  p.heavy_hitters = o.value("heavy_hitters", int64_t{0});
  p.heavy_strength = o.value("heavy_strength", 0.0);
  p.slash_period = o.value("slash_period", int64_t{0});
  p.slash_strength = o.value("slash_strength", 0.0);
  p.noise = o.value("noise", 1.0);
  p.head_diversity = o.value("head_diversity", 0.0);
  p.v_std = o.value("v_std", 1.0);
  p.query_rho = o.value("query_rho", 0.0);
  p.mix = o.value("mix", true);
  return p;
}

// Channel layout of the head dimension.
struct Layout {
  int sink = 0, heavy = 1;
  int slash = 2, harmonics = 0;  // 2·harmonics dims from `slash`
  int local = 2, pairs = 1;      // 2·pairs dims from `local`
  int noise = 4, noise_dims = 0;
};

Layout layout_for(int d, const Params& p) {
  Layout l;
  if (p.slash_period >= 2) l.harmonics = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(4, p.slash_period / 2), 1, std::max(1, (d - 4) / 2)));
  l.local = l.slash + 2 * l.harmonics;
  const int rest = d - l.local;
  l.pairs = std::max(1, rest / 4);
  l.noise = l.local + 2 * l.pairs;
  l.noise_dims = d - l.noise;
  return l;
}

// Standard normal variates by the ziggurat method (Marsaglia & Tsang, "The Ziggurat Method for
// Generating Random Variables", J. Stat. Softw. 5(8), 2000; 128 layers) on a splitmix64
// stream, with the layer index and the value taken from different bits (the original shares
// them). std::normal_distribution took 12% of a 16k NIAH grid; this is several times faster.
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : state_(seed) {}
  double operator()() {
    const uint64_t u = next();
    const int iz = static_cast<int>(u & 127);
    const int64_t hz = static_cast<int32_t>(u >> 32);
    if (static_cast<uint64_t>(hz < 0 ? -hz : hz) < table().kn[iz]) return double(hz) * table().wn[iz];
    return tail(hz, iz);
  }

 private:
  struct Tables {
    uint64_t kn[128];
    double wn[128], fn[128];
    Tables() {
      const double m1 = 2147483648.0, vn = 9.91256303526217e-3;
      double dn = 3.442619855899, tn = dn;
      const double q = vn / std::exp(-0.5 * dn * dn);
      kn[0] = static_cast<uint64_t>((dn / q) * m1);
      kn[1] = 0;
      wn[0] = q / m1;
      wn[127] = dn / m1;
      fn[0] = 1.0;
      fn[127] = std::exp(-0.5 * dn * dn);
      for (int i = 126; i >= 1; --i) {
        dn = std::sqrt(-2.0 * std::log(vn / dn + std::exp(-0.5 * dn * dn)));
        kn[i + 1] = static_cast<uint64_t>((dn / tn) * m1);
        tn = dn;
        fn[i] = std::exp(-0.5 * dn * dn);
        wn[i] = dn / m1;
      }
    }
  };
  static const Tables& table() {
    static const Tables t;
    return t;
  }
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }
  double tail(int64_t hz, int iz) {
    const Tables& t = table();
    constexpr double r = 3.442619855899;
    for (;;) {
      double x = double(hz) * t.wn[iz];
      if (iz == 0) {
        double y;
        do {
          x = -std::log(uniform()) / r;
          y = -std::log(uniform());
        } while (y + y < x * x);
        return hz > 0 ? r + x : -r - x;
      }
      if (t.fn[iz] + uniform() * (t.fn[iz - 1] - t.fn[iz]) < std::exp(-0.5 * x * x)) return x;
      const uint64_t u = next();
      iz = static_cast<int>(u & 127);
      hz = static_cast<int32_t>(u >> 32);
      if (static_cast<uint64_t>(hz < 0 ? -hz : hz) < t.kn[iz]) return double(hz) * t.wn[iz];
    }
  }
  uint64_t state_;
};

void fill_normal(float* x, int64_t n, NormalStream& rng, double stddev) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(stddev * rng());
}

// Random unit vector.
std::vector<double> unit_vector(int d, std::mt19937_64& rng) {
  std::normal_distribution<double> dist;
  std::vector<double> w(static_cast<size_t>(d));
  double n2 = 0;
  for (auto& x : w) {
    x = dist(rng);
    n2 += x * x;
  }
  const double inv = 1.0 / std::sqrt(std::max(n2, 1e-300));
  for (auto& x : w) x *= inv;
  return w;
}

void reflect(float* x, const std::vector<double>& w) {
  double dot = 0;
  for (size_t c = 0; c < w.size(); ++c) dot += w[c] * x[c];
  for (size_t c = 0; c < w.size(); ++c) x[c] = static_cast<float>(x[c] - 2.0 * dot * w[c]);
}

}  // namespace

void validate_structured(const AttnShape& s, const json& o) {
  const Params p = read_params(o);
  auto fail = [](const std::string& field, const std::string& value, const std::string& rule) {
    throw InputError("input." + field + " = " + value + ": " + rule);
  };
  auto num = [](double v) { return json(v).dump(); };
  if (s.head_dim < 8)
    throw InputError("input.kind = structured: head_dim = " + std::to_string(s.head_dim) +
                     ": needs head_dim >= 8 (one channel per structure)");
  if (p.sinks < 0) fail("sinks", std::to_string(p.sinks), "must be >= 0");
  if (p.sinks > s.kv_len)
    fail("sinks", std::to_string(p.sinks), "must not exceed the key length " + std::to_string(s.kv_len));
  if (p.heavy_hitters < 0) fail("heavy_hitters", std::to_string(p.heavy_hitters), "must be >= 0");
  for (auto [name, v] : {std::pair<const char*, double>{"sink_strength", p.sink_strength},
                         {"locality", p.locality}, {"heavy_strength", p.heavy_strength},
                         {"slash_strength", p.slash_strength}, {"noise", p.noise},
                         {"v_std", p.v_std}})
    if (!(std::isfinite(v) && v >= 0 && v <= 100)) fail(name, num(v), "must lie in [0, 100] (nats)");
  if (!(p.length_scale > 0) || !std::isfinite(p.length_scale))
    fail("length_scale", num(p.length_scale), "must be > 0 (tokens)");
  if (!(p.rope_base == 0 || (p.rope_base > 1 && std::isfinite(p.rope_base))))
    fail("rope_base", num(p.rope_base), "must be 0 (no rotary encoding) or > 1");
  if (p.slash_period == 1 || p.slash_period < 0)
    fail("slash_period", std::to_string(p.slash_period), "must be 0 (no slash lines) or >= 2");
  if (!(p.head_diversity >= 0 && p.head_diversity <= 1))
    fail("head_diversity", num(p.head_diversity), "must lie in [0, 1]");
  if (!(p.query_rho >= 0 && p.query_rho < 1))
    fail("query_rho", num(p.query_rho), "must lie in [0, 1) (correlation of consecutive queries' noise)");
}

HostInputs generate_structured(const AttnShape& s, const json& options, uint64_t seed) {
  validate_structured(s, options);
  const Params p = read_params(options);
  const int d = s.head_dim;
  const Layout L = layout_for(d, p);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const int64_t n = s.kv_len;
  const int group = s.group();

  // Channel amplitudes: q·k·scale gives the strength in nats (queries scaled by head gains).
  const double a_sink = std::sqrt(p.sink_strength / scale);
  const double a_heavy = std::sqrt(p.heavy_strength / scale);
  const double a_slash = L.harmonics ? std::sqrt(p.slash_strength / (scale * L.harmonics)) : 0.0;
  const double a_local = std::sqrt(p.locality / (scale * 2.0 * L.pairs));
  const double sd_noise = L.noise_dims ? std::sqrt(p.noise / (scale * std::sqrt(double(L.noise_dims)))) : 0.0;
  const double rho = std::exp(-1.0 / p.length_scale);
  const double innov = std::sqrt(std::max(0.0, 1.0 - rho * rho));
  std::vector<double> theta(static_cast<size_t>(L.pairs), 0.0);
  if (p.rope_base > 0)
    for (int f = 0; f < L.pairs; ++f) theta[f] = std::pow(p.rope_base, -double(f) / L.pairs);
  const double omega = p.slash_period >= 2 ? 2.0 * std::numbers::pi / double(p.slash_period) : 0.0;

  // Head gains: the dominant structure of each query head keeps gain 1, the others 1 − div.
  std::vector<int> active;
  if (p.locality > 0) active.push_back(kLocal);
  if (p.sinks > 0 && p.sink_strength > 0) active.push_back(kSink);
  if (p.heavy_hitters > 0 && p.heavy_strength > 0) active.push_back(kHeavy);
  if (L.harmonics && p.slash_strength > 0) active.push_back(kSlash);
  const int offset = static_cast<int>(mix_seed(seed, 7, 0, 0) % 4);
  auto gain = [&](int h, int component) {
    if (active.empty()) return 1.0;
    const int dominant = active[static_cast<size_t>((h + offset) % static_cast<int>(active.size()))];
    return component == dominant ? 1.0 : 1.0 - p.head_diversity;
  };

  // Rotary and slash angles of every position, shared by all heads: (cos, sin) per pair.
  const int nang = L.pairs + L.harmonics;
  std::vector<float> rot(static_cast<size_t>(n * nang * 2));
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    float* r = &rot[static_cast<size_t>(j * nang * 2)];
    for (int f = 0; f < L.pairs; ++f) {
      r[2 * f] = static_cast<float>(std::cos(theta[f] * double(j)));
      r[2 * f + 1] = static_cast<float>(std::sin(theta[f] * double(j)));
    }
    for (int m = 0; m < L.harmonics; ++m) {
      const double ang = (m + 1) * omega * double(j);
      r[2 * (L.pairs + m)] = static_cast<float>(std::cos(ang));
      r[2 * (L.pairs + m) + 1] = static_cast<float>(std::sin(ang));
    }
  }

  HostInputs in;
  in.q = HostTensor({s.batch, s.q_heads, s.q_len, d});
  in.k = HostTensor({s.batch, s.kv_heads, n, d});
  in.v = HostTensor({s.batch, s.kv_heads, n, s.v_dim});

  // One independent stream per (batch, kv head) and per (batch, query head): the bytes do not
  // depend on the thread count.
#pragma omp parallel for schedule(dynamic, 1)
  for (int bg = 0; bg < s.batch * s.kv_heads; ++bg) {
    const int b = bg / s.kv_heads, g = bg % s.kv_heads;
    std::mt19937_64 rng(mix_seed(seed, 1, b, g));
    NormalStream normal(mix_seed(seed, 3, b, g));
    // Latent z (n × 2F), AR(1) per coordinate with unit variance.
    const int zd = 2 * L.pairs;
    std::vector<float> z(static_cast<size_t>(n * zd));
    for (int c = 0; c < zd; ++c) z[c] = static_cast<float>(normal());
    for (int64_t j = 1; j < n; ++j)
      for (int c = 0; c < zd; ++c)
        z[j * zd + c] = static_cast<float>(rho * z[(j - 1) * zd + c] + innov * normal());
    // Heavy-hitter keys: distinct positions after the sinks.
    std::vector<char> heavy(static_cast<size_t>(n), 0);
    {
      const int64_t lo = std::min<int64_t>(p.sinks, n);
      const int64_t avail = n - lo;
      const int64_t want = p.heavy_strength > 0 ? std::min(p.heavy_hitters, avail) : 0;
      for (int64_t placed = 0; placed < want;) {
        const int64_t j = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(avail));
        if (!heavy[j]) heavy[j] = 1, ++placed;
      }
    }
    const std::vector<double> w1 = unit_vector(d, rng), w2 = unit_vector(d, rng);

    // Position-dependent channels of a row at absolute position pos, scaled by per-structure
    // gains; noise filled by the caller.
    auto structured_row = [&](float* x, int64_t pos, double g_sink, double g_heavy, double g_slash,
                              double g_local, bool is_key) {
      x[L.sink] = static_cast<float>(a_sink * g_sink * (is_key ? (pos < p.sinks ? 1.0 : 0.0) : 1.0));
      x[L.heavy] = static_cast<float>(a_heavy * g_heavy * (is_key ? (heavy[pos] ? 1.0 : 0.0) : 1.0));
      const float* r = &rot[static_cast<size_t>(pos * nang * 2)];
      for (int m = 0; m < L.harmonics; ++m) {
        x[L.slash + 2 * m] = static_cast<float>(a_slash * g_slash * r[2 * (L.pairs + m)]);
        x[L.slash + 2 * m + 1] = static_cast<float>(a_slash * g_slash * r[2 * (L.pairs + m) + 1]);
      }
      const float* zr = &z[static_cast<size_t>(pos * zd)];
      for (int f = 0; f < L.pairs; ++f) {
        const double c = r[2 * f], sn = r[2 * f + 1];
        const double x0 = zr[2 * f], x1 = zr[2 * f + 1];
        x[L.local + 2 * f] = static_cast<float>(a_local * g_local * (x0 * c - x1 * sn));
        x[L.local + 2 * f + 1] = static_cast<float>(a_local * g_local * (x0 * sn + x1 * c));
      }
    };
    for (int64_t j = 0; j < n; ++j) {
      float* kr = in.k.row(b, g, j);
      structured_row(kr, j, 1, 1, 1, 1, true);
      fill_normal(kr + L.noise, L.noise_dims, normal, sd_noise);
      if (p.mix) reflect(kr, w1), reflect(kr, w2);
    }
    fill_normal(in.v.row(b, g, 0), n * s.v_dim, normal, p.v_std);
    for (int h = g * group; h < (g + 1) * group; ++h) {
      NormalStream qrng(mix_seed(seed, 2, b, h));
      const double gs = gain(h, kSink), gh = gain(h, kHeavy), gl = gain(h, kLocal), gsl = gain(h, kSlash);
      std::vector<float> fresh(static_cast<size_t>(L.noise_dims));
      const double q_innov = std::sqrt(1.0 - p.query_rho * p.query_rho);
      for (int64_t i = 0; i < s.q_len; ++i) {
        float* qr = in.q.row(b, h, i);
        structured_row(qr, i + s.q_offset(), gs, gh, gsl, gl, false);
        if (p.query_rho > 0 && i > 0) {  // AR(1): unit variance kept, the previous row's noise
          fill_normal(fresh.data(), L.noise_dims, qrng, sd_noise);
          const float* prev = in.q.row(b, h, i - 1) + L.noise;  // before mixing: see below
          for (int c = 0; c < L.noise_dims; ++c)
            qr[L.noise + c] = static_cast<float>(p.query_rho * prev[c] + q_innov * fresh[c]);
        } else {
          fill_normal(qr + L.noise, L.noise_dims, qrng, sd_noise);
        }
      }
      // Mixing last, so that row i - 1's noise channels above were still unmixed.
      if (p.mix)
        for (int64_t i = 0; i < s.q_len; ++i) reflect(in.q.row(b, h, i), w1), reflect(in.q.row(b, h, i), w2);
    }
  }
  round_tensor(in.q, s.dtype);
  round_tensor(in.k, s.dtype);
  round_tensor(in.v, s.dtype);
  return in;
}

}  // namespace ab
