// The needle overlay (docs/metrics.md, NIAH): plants one needle key/value per (batch, kv head)
// into any other input, aligned with the probe queries so that under dense attention the
// needle holds a chosen share of each probe's mass, whatever the length and the haystack.
//
// Definition (docs/metrics.md, "niah"): with the haystack log-partition of probe row i
//   Z_i = log Σ_{j ≠ p, j visible} exp(s_ij),   s_ij = scale·q_i·k_j,
// the needle's logit is set to s_ip = Z_i + margin, so its dense probability is
// σ(margin) = 1/(1 + e^−margin). For an i.i.d. haystack Z_i ≈ mean logit + ln N + var/2: the
// margin is measured relative to ln N, which keeps the difficulty comparable across N.
// Construction, per (b, kv head): a random unit direction u is projected out of every key
// (one of D directions: the haystack barely changes), the needle key is κ·u (κ = the head's
// RMS key norm, so its norm gives nothing away), and each probe query of each query head of
// the group gets its u-component set to (Z_i + margin)/(scale·κ) — which moves no haystack
// logit, since the haystack keys are orthogonal to u. The needle value v* is a random
// direction with the head's RMS value norm (× value_scale).
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/errors.hpp"
#include "workloads/workloads.hpp"

namespace ab {

namespace {

using json = nlohmann::ordered_json;

uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<double> random_unit(int d, std::mt19937_64& rng) {
  std::normal_distribution<double> dist;
  std::vector<double> u(static_cast<size_t>(d));
  double n2 = 0;
  for (auto& x : u) {
    x = dist(rng);
    n2 += x * x;
  }
  const double inv = 1.0 / std::sqrt(std::max(n2, 1e-300));
  for (auto& x : u) x *= inv;
  return u;
}

double dot_f(const float* a, const double* u, int d) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int c = 0; c < d; ++c) s += static_cast<double>(a[c]) * u[c];
  return s;
}

// Haystack log-partitions of several query rows of one head at once: out[r] = log Σ_{j < vis[r],
// j ≠ skip} exp(scale·q_r·k_j) (−inf when empty). Keys outer, rows inner: each key row is read
// and widened once for all rows (the NIAH grid plants 100 needles up to 16k keys: this loop
// is most of its cost). `logits` is scratch (rows × max vis).
void haystack_lse(const std::vector<const float*>& q, const std::vector<int64_t>& vis, const HostTensor& k,
                  int b, int g, int64_t skip, int d, double scale, std::vector<double>& logits,
                  std::vector<double>& out) {
  const size_t rows = q.size();
  const int64_t n = *std::max_element(vis.begin(), vis.end());
  logits.resize(rows * static_cast<size_t>(n));
  std::vector<double> qd(rows * static_cast<size_t>(d)), kd(static_cast<size_t>(d));
  for (size_t r = 0; r < rows; ++r)
    for (int c = 0; c < d; ++c) qd[r * d + c] = q[r][c];
  for (int64_t j = 0; j < n; ++j) {
    const float* kr = k.row(b, g, j);
    for (int c = 0; c < d; ++c) kd[c] = kr[c];
    for (size_t r = 0; r < rows; ++r) {
      const double* qr = &qd[r * d];
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int c = 0; c < d; ++c) s += qr[c] * kd[c];
      logits[r * n + j] = s * scale;
    }
  }
  out.assign(rows, -std::numeric_limits<double>::infinity());
  for (size_t r = 0; r < rows; ++r) {
    const double* l = &logits[r * n];
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < vis[r]; ++j)
      if (j != skip) mx = std::max(mx, l[j]);
    if (mx == -std::numeric_limits<double>::infinity()) continue;
    double sum = 0;
    for (int64_t j = 0; j < vis[r]; ++j)
      if (j != skip) sum += std::exp(l[j] - mx);
    out[r] = mx + std::log(sum);
  }
}

NeedleSpec needle_spec(const json& o) {
  NeedleSpec n;
  n.depth = o.value("depth", 0.5);
  n.margin = o.value("margin", 2.0);
  n.probe_rows = o.value("probe_rows", int64_t{1});
  n.value_scale = o.value("value_scale", 1.0);
  return n;
}

}  // namespace

PlantedNeedle plant_needle(HostInputs& in, const AttnShape& s, const NeedleSpec& spec, double scale,
                           uint64_t seed) {
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  const int d = s.head_dim, dv = s.v_dim;
  const int64_t n = s.kv_len;
  PlantedNeedle out;
  const int64_t nprobe = std::clamp<int64_t>(spec.probe_rows, 1, s.q_len);
  for (int64_t i = s.q_len - nprobe; i < s.q_len; ++i) out.probes.push_back(i);
  const int64_t p0 = s.causal ? out.probes.front() + s.q_offset() : n - 1;
  out.position = std::clamp<int64_t>(std::llround(spec.depth * double(p0)), 0, p0);
  const int64_t pos = out.position;
  out.value = HostTensor({s.batch, s.kv_heads, 1, dv});
  out.dense_mass.assign(static_cast<size_t>(s.batch) * s.q_heads * nprobe, 0.0);
  const int group = s.group();

#pragma omp parallel for schedule(dynamic, 1)
  for (int bg = 0; bg < s.batch * s.kv_heads; ++bg) {
    const int b = bg / s.kv_heads, g = bg % s.kv_heads;
    std::mt19937_64 rng(splitmix(seed ^ splitmix(static_cast<uint64_t>(bg) + 1)));
    const std::vector<double> u = random_unit(d, rng);
    // Keys: project u out; the RMS key norm sets the needle key's norm.
    double k2 = 0;
    for (int64_t j = 0; j < n; ++j) {
      float* kr = in.k.row(b, g, j);
      const double a = dot_f(kr, u.data(), d);
      for (int c = 0; c < d; ++c) kr[c] = static_cast<float>(kr[c] - a * u[c]);
      if (s.dtype != DType::f32)
        for (int c = 0; c < d; ++c) kr[c] = round_to(s.dtype, kr[c]);
      double r2 = 0;
#pragma omp simd reduction(+ : r2)
      for (int c = 0; c < d; ++c) r2 += double(kr[c]) * kr[c];
      k2 += r2;
    }
    double kappa = std::sqrt(k2 / double(n));
    if (!(kappa > 0)) kappa = std::sqrt(double(d));
    float* kp = in.k.row(b, g, pos);
    for (int c = 0; c < d; ++c) kp[c] = round_to(s.dtype, static_cast<float>(kappa * u[c]));
    const double kappa_eff = dot_f(kp, u.data(), d);  // κ after rounding (k_p ≈ κu)

    // Value: a random direction with the head's RMS value norm.
    double v2 = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float* vr = in.v.row(b, g, j);
      double r2 = 0;
#pragma omp simd reduction(+ : r2)
      for (int c = 0; c < dv; ++c) r2 += double(vr[c]) * vr[c];
      v2 += r2;
    }
    double vnorm = std::sqrt(v2 / double(n)) * spec.value_scale;
    if (!(vnorm > 0)) vnorm = std::sqrt(double(dv)) * spec.value_scale;
    const std::vector<double> vdir = random_unit(dv, rng);
    float* vp = in.v.row(b, g, pos);
    float* vstar = out.value.row(b, g, 0);
    for (int c = 0; c < dv; ++c) vstar[c] = vp[c] = round_to(s.dtype, static_cast<float>(vnorm * vdir[c]));

    // Probe queries: the u-component that puts the needle `margin` nats above the haystack.
    std::vector<double> logits, z, z2;
    std::vector<const float*> rows;
    std::vector<int64_t> vis;
    for (int h = g * group; h < (g + 1) * group; ++h) {
      rows.clear();
      vis.clear();
      for (int64_t i : out.probes) {
        rows.push_back(in.q.row(b, h, i));
        vis.push_back(s.causal ? i + s.q_offset() + 1 : n);
      }
      haystack_lse(rows, vis, in.k, b, g, pos, d, scale, logits, z);
      for (size_t r = 0; r < out.probes.size(); ++r) {
        float* qr = in.q.row(b, h, out.probes[r]);
        const double target = (std::isfinite(z[r]) ? z[r] : 0.0) + spec.margin;
        const double shift = target / (scale * kappa_eff) - dot_f(qr, u.data(), d);
        for (int c = 0; c < d; ++c) qr[c] = round_to(s.dtype, static_cast<float>(qr[c] + shift * u[c]));
      }
      // The needle's dense probability on the final inputs. In fp32 the haystack logits did not
      // move (its keys are orthogonal to u up to fp32 rounding, ~1e-7 relative); rounding the
      // query to bf16/fp16 moves every logit a little, so the log-partition is measured again.
      if (s.dtype != DType::f32) haystack_lse(rows, vis, in.k, b, g, pos, d, scale, logits, z2);
      else z2 = z;
      for (size_t r = 0; r < out.probes.size(); ++r) {
        const float* qr = in.q.row(b, h, out.probes[r]);
        double sp = 0;
        for (int c = 0; c < d; ++c) sp += double(qr[c]) * kp[c];
        sp *= scale;
        const double mass = std::isfinite(z2[r]) ? 1.0 / (1.0 + std::exp(z2[r] - sp)) : 1.0;
        out.dense_mass[(static_cast<size_t>(b) * s.q_heads + h) * out.probes.size() + r] = mass;
      }
    }
  }
  return out;
}

void validate_needle(const AttnShape& s, const json& o) {
  const NeedleSpec n = needle_spec(o);
  auto fail = [](const std::string& f, const std::string& v, const std::string& rule) {
    throw InputError("input." + f + " = " + v + ": " + rule);
  };
  if (!(n.depth >= 0 && n.depth <= 1)) fail("depth", json(n.depth).dump(), "must lie in [0, 1]");
  if (!(std::isfinite(n.margin) && std::abs(n.margin) <= 50))
    fail("margin", json(n.margin).dump(), "must lie in [-50, 50] nats");
  if (n.probe_rows < 1) fail("probe_rows", std::to_string(n.probe_rows), "must be >= 1");
  if (!(n.value_scale > 0 && std::isfinite(n.value_scale)))
    fail("value_scale", json(n.value_scale).dump(), "must be > 0");
  const std::string base = o.value("base", std::string("gaussian"));
  std::vector<std::string> kinds;
  for (const auto& w : workload_table())
    if (w.name != "needle") kinds.push_back(w.name);
  const WorkloadDef* def = find_workload(base);
  if (!def || base == "needle")
    throw InputError("input.base = '" + base + "': the needle's haystack must be one of the other input kinds: " +
                     suggest(base, kinds));
  const json bo = workload_options(*def, o.contains("base_options") ? o["base_options"] : json::object(),
                                   "input.base_options");
  if (def->validate) def->validate(s, bo);
}

HostInputs generate_needle(const AttnShape& s, const json& o, uint64_t seed) {
  validate_needle(s, o);
  const WorkloadDef* def = find_workload(o.value("base", std::string("gaussian")));
  const json bo = workload_options(*def, o.contains("base_options") ? o["base_options"] : json::object(),
                                   "input.base_options");
  HostInputs in = def->generate(s, bo, seed);
  plant_needle(in, s, needle_spec(o), 0.0, splitmix(seed ^ 0x6e656564ull));
  return in;
}

}  // namespace ab
