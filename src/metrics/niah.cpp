// Model-free needle in a haystack at the attention level (docs/metrics.md): over a grid of
// context lengths × needle depths × trials, plant a needle key aligned with the probe queries
// (workloads/needle.cpp: its dense probability is σ(margin)) and a distinctive value v*, run
// the variant, and count a probe as retrieved when cos(o_probe, v*) ≥ τ. A variant that drops
// the needle's key outputs a mix of haystack values, nearly orthogonal to v*; one that keeps it
// outputs mostly v*. docs/metrics.md gives the definition and the conventions.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/errors.hpp"
#include "metrics/metrics.hpp"
#include "execution/execute.hpp"
#include "workloads/workloads.hpp"
#include "workloads/extra_inputs.hpp"

namespace ab {

namespace {

uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A length: an integer or a string with a k/K (×1024) or M (×1024²) suffix, as in specs.
int64_t parse_length(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    int64_t mult = 1;
    if (!s.empty() && (s.back() == 'k' || s.back() == 'K')) mult = 1024, s.pop_back();
    else if (!s.empty() && s.back() == 'M') mult = 1024 * 1024, s.pop_back();
    try {
      size_t pos = 0;
      const long long n = std::stoll(s, &pos);
      if (pos == s.size()) return n * mult;
    } catch (const std::exception&) {
    }
  }
  return -1;
}

struct NiahOptions {
  std::vector<int64_t> lengths;
  std::vector<double> depths;
  int64_t trials = 4, probe_rows = 16;
  double margin = 2.0, tau = 0.5, value_scale = 1.0, min_success = 0.0;
  std::string input;
  bool full_prefill = false, heatmap = true;
};

NiahOptions read_options(const json& o) {
  NiahOptions n;
  for (const auto& l : o.value("lengths", json::array())) n.lengths.push_back(parse_length(l));
  for (const auto& d : o.value("depths", json::array())) n.depths.push_back(d.is_number() ? d.get<double>() : -1.0);
  n.trials = o.value("trials", int64_t{4});
  n.probe_rows = o.value("probe_rows", int64_t{16});
  n.margin = o.value("margin", 2.0);
  n.tau = o.value("tau", 0.5);
  n.value_scale = o.value("value_scale", 1.0);
  n.min_success = o.value("min_success", 0.0);
  n.input = o.value("input", std::string());
  n.full_prefill = o.value("full_prefill", false);
  n.heatmap = o.value("heatmap", true);
  return n;
}

json matrix(size_t rows, size_t cols) {
  json m = json::array();
  for (size_t r = 0; r < rows; ++r) m.push_back(std::vector<json>(cols, nullptr));
  return m;
}

// Text heat map of the success rates: depths down, lengths across.
void print_heatmap(std::FILE* f, const std::string& title, const NiahOptions& o, const json& success) {
  static const char* kRamp = " .:+#@";  // 0, <25%, <50%, <75%, <100%, 100%
  std::string out = title + "\n  success %   ";
  for (int64_t n : o.lengths) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%8s", (n % 1024 == 0 ? std::to_string(n / 1024) + "k" : std::to_string(n)).c_str());
    out += buf;
  }
  out += "\n";
  for (size_t d = 0; d < o.depths.size(); ++d) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "  depth %4.2f  ", o.depths[d]);
    out += buf;
    for (size_t l = 0; l < o.lengths.size(); ++l) {
      const json& v = success[d][l];
      if (!v.is_number()) {
        out += "       -";
        continue;
      }
      const double r = v.get<double>();
      const int level = r >= 1.0 ? 5 : r <= 0.0 ? 0 : 1 + static_cast<int>(r * 4.0);
      std::snprintf(buf, sizeof buf, "  %c %4.0f", kRamp[std::min(level, 5)], 100.0 * r);
      out += buf;
    }
    out += "\n";
  }
  out += "  (@ 100%, # >= 75%, + >= 50%, : >= 25%, . > 0, blank 0)\n";
  if (isatty(fileno(f))) std::fputs("\r\033[K", f);
  std::fputs(out.c_str(), f);
  std::fflush(f);
}

}  // namespace

void validate_niah(const json& o) {
  const NiahOptions n = read_options(o);
  auto fail = [&](const std::string& field, const std::string& rule) {
    throw InputError("metrics.niah." + field + " = " + o[field].dump() + ": " + rule);
  };
  if (n.lengths.empty()) fail("lengths", "give at least one context length");
  for (int64_t l : n.lengths)
    if (l < 2 || l > (int64_t{1} << 26)) fail("lengths", "every length must be an integer in [2, 64M] (4096 or \"4k\")");
  if (n.depths.empty()) fail("depths", "give at least one depth");
  for (double d : n.depths)
    if (!(d >= 0 && d <= 1)) fail("depths", "every depth must lie in [0, 1]");
  if (n.trials < 1 || n.trials > 10000) fail("trials", "must lie in [1, 10000]");
  if (n.probe_rows < 1) fail("probe_rows", "must be >= 1");
  if (!(std::isfinite(n.margin) && std::abs(n.margin) <= 50)) fail("margin", "must lie in [-50, 50] nats");
  if (!(n.tau >= -1 && n.tau <= 1)) fail("tau", "must lie in [-1, 1] (a cosine)");
  if (!(n.value_scale > 0 && std::isfinite(n.value_scale))) fail("value_scale", "must be > 0");
  if (!(n.min_success >= 0 && n.min_success <= 1)) fail("min_success", "must lie in [0, 1]");
  if (!n.input.empty()) {
    std::vector<std::string> kinds;
    for (const auto& w : workload_table())
      if (w.name != "needle") kinds.push_back(w.name);
    if (!find_workload(n.input) || n.input == "needle")
      fail("input", "must be \"\" (the spec's input) or an input kind: " + suggest(n.input, kinds));
  }
}

json measure_niah(MetricContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const NiahOptions o = read_options(ctx.options);
  const Problem& base = ctx.c.problem;

  // The haystack: the spec's input (a needle overlay's base), or the kind the options name.
  json hay_opts;
  if (o.input.empty()) {
    hay_opts = ctx.experiment.input;
    if (hay_opts.value("kind", std::string()) == "needle") {
      const WorkloadDef* bdef = find_workload(hay_opts.value("base", std::string("gaussian")));
      hay_opts = workload_options(*bdef, hay_opts.contains("base_options") ? hay_opts["base_options"] : json::object(),
                                  "input.base_options");
    }
  } else {
    hay_opts = workload_options(*find_workload(o.input), json::object(), "metrics.niah.input");
  }
  const std::string kind = hay_opts["kind"].get<std::string>();
  const WorkloadDef* wl = find_workload(kind);
  if (kind == "file") hay_opts["slice"] = true;  // each length reads a prefix of the capture

  const size_t nl = o.lengths.size(), nd = o.depths.size();
  json success = matrix(nd, nl), mass = matrix(nd, nl), dense_mass = matrix(nd, nl), cosine = matrix(nd, nl);
  json skipped = json::array();
  json qlens = json::array();
  std::string mass_source;
  int64_t probes_per_trial = 0;
  int64_t total = 0, hits = 0;
  bool interrupted = false;

  json fallbacks = json::array();
  for (size_t li = 0; li < nl && !interrupted; ++li) {
    Problem p = base;
    p.kv_len = o.lengths[li];
    if (p.mode == Mode::prefill) p.q_len = o.full_prefill ? p.kv_len : std::min(o.probe_rows, p.kv_len);
    else p.q_len = std::min(base.q_len, p.kv_len);
    // The variant's shape for p, or why it refuses it.
    AttnShape s;
    auto refusal = [&]() -> std::string {
      try {
        s = ctx.variant.shape(p);
      } catch (const InputError& e) {
        return e.what();
      }
      if (const Support sup = ctx.variant.supports(s, ctx.backend); !sup.ok) return sup.reason;
      return {};
    };
    std::string why = refusal();
    if (!why.empty() && p.mode == Mode::prefill && p.q_len != p.kv_len) {
      // Methods whose selection needs every row (AnchorAttention's anchor pass, DHSA's query
      // blocks, HyperAttention's causal split) run the whole prefill; the probes are its last rows.
      p.q_len = p.kv_len;
      if (const std::string full = refusal(); full.empty()) {
        fallbacks.push_back({{"length", p.kv_len}, {"reason", why}});
        why.clear();
      }
    }
    qlens.push_back(p.q_len);
    if (!why.empty()) {
      skipped.push_back({{"length", p.kv_len}, {"reason", why}});
      continue;
    }
    if (ctx.variant.output_shape(s) != Shape4{s.batch, s.q_heads, s.q_len, s.v_dim})
      return {{"status", "n/a"},
              {"reason", "the variant's output is not one row per query (output_shape differs): no "
                         "probe output to compare with the needle's value"}};
    if (wl->validate) {  // e.g. a captured haystack shorter than this length
      try {
        wl->validate(s, hay_opts);
      } catch (const InputError& e) {
        skipped.push_back({{"length", p.kv_len}, {"reason", e.what()}});
        continue;
      }
    }
    // One buffer per length for the planted copies: reused across depths and trials (fresh
    // pages for 100 copies of a 16k haystack cost more than planting them).
    auto host = std::make_shared<HostInputs>();
    std::vector<int64_t> cell_hits(nd, 0), cell_n(nd, 0);
    std::vector<double> cell_mass(nd, 0.0), cell_dense(nd, 0.0), cell_cos(nd, 0.0);
    for (int64_t t = 0; t < o.trials && !interrupted; ++t) {
      // One haystack per (length, trial), shared by every depth: depth is the only variable.
      const uint64_t hay_seed = splitmix(input_seed(ctx.experiment.seed, p.key()) ^ splitmix(uint64_t(t) + 1));
      const HostInputs hay = wl->generate(s, hay_opts, hay_seed);
      for (size_t di = 0; di < nd; ++di) {
        if (ctx.interrupted && ctx.interrupted()) {
          interrupted = true;
          break;
        }
        *host = hay;  // vector assignment keeps the buffers
        NeedleSpec ns;
        ns.depth = o.depths[di];
        ns.margin = o.margin;
        ns.probe_rows = o.probe_rows;
        ns.value_scale = o.value_scale;
        const PlantedNeedle needle = plant_needle(*host, s, ns, 0.0, splitmix(hay_seed ^ (0x6e6565646c65ull + di)));
        load_extra_input_files(ctx.variant, s, *host);
        ctx.variant.prepare_inputs(s, *host, hay_seed ^ 0xe7);
        const HostRun r = run_once(ctx.variant, ctx.backend, s, host);
        const Selection* sel = r.plan.selection.get();
        mass_source = sel ? "selection" : "output";
        std::vector<int64_t> keys;
        const size_t np = needle.probes.size();
        probes_per_trial = int64_t(s.batch) * s.q_heads * int64_t(np);
        for (int b = 0; b < s.batch; ++b)
          for (int h = 0; h < s.q_heads; ++h) {
            const float* vs = needle.value.row(b, h / s.group(), 0);
            for (size_t pr = 0; pr < np; ++pr) {
              const int64_t i = needle.probes[pr];
              const float* orow = r.o.row(b, h, i);
              double dot = 0, oo = 0, vv = 0;
              for (int c = 0; c < s.v_dim; ++c) dot += double(orow[c]) * vs[c], oo += double(orow[c]) * orow[c], vv += double(vs[c]) * vs[c];
              const double cs = (oo > 0 && vv > 0 && std::isfinite(oo)) ? dot / std::sqrt(oo * vv) : 0.0;
              const double dm = needle.dense_mass[(size_t(b) * s.q_heads + h) * np + pr];
              double kept;
              if (sel) {
                sel->keys(b, h, i, keys);
                kept = std::binary_search(keys.begin(), keys.end(), needle.position) ? dm : 0.0;
              } else {
                kept = vv > 0 ? dot / vv : 0.0;  // the needle value's weight in the output
              }
              const bool ok = cs >= o.tau;
              cell_hits[di] += ok;
              cell_n[di] += 1;
              cell_mass[di] += kept;
              cell_dense[di] += dm;
              cell_cos[di] += cs;
            }
          }
      }
    }
    for (size_t di = 0; di < nd; ++di) {
      if (!cell_n[di]) continue;
      const double n = double(cell_n[di]);
      success[di][li] = double(cell_hits[di]) / n;
      mass[di][li] = cell_mass[di] / n;
      dense_mass[di][li] = cell_dense[di] / n;
      cosine[di][li] = cell_cos[di] / n;
      total += cell_n[di];
      hits += cell_hits[di];
    }
  }

  if (total == 0 && !interrupted && !skipped.empty())
    return {{"status", "n/a"}, {"reason", "every length refused: " + skipped[0]["reason"].get<std::string>()},
            {"skipped", skipped}};
  json j;
  j["convention"] =
      "per (length, depth) cell: trials x batch x query heads x probe rows retrievals; needle key at "
      "position round(depth * P0) (P0 = the first probe row's position), its logit set to the "
      "haystack's log-partition + margin (dense needle mass = sigmoid(margin)); retrieved when "
      "cos(o_probe, v*) >= tau; needle_mass = dense needle probability where the selection keeps "
      "the needle key (mass_source selection) or the needle value's weight o.v*/|v*|^2 in the "
      "output (mass_source output); matrices are [depth][length]";
  j["options"] = ctx.options;
  j["mode"] = std::string(mode_name(base.mode));
  j["haystack"] = kind;
  j["q_len"] = qlens;
  j["probes_per_trial"] = probes_per_trial;
  j["lengths"] = o.lengths;
  j["depths"] = o.depths;
  j["success"] = success;
  j["needle_mass"] = mass;
  j["mass_source"] = mass_source;
  j["dense_needle_mass"] = dense_mass;
  j["cosine"] = cosine;
  j["success_rate"] = total ? double(hits) / double(total) : 0.0;
  j["retrievals"] = total;
  if (!skipped.empty()) j["skipped"] = skipped;
  if (!fallbacks.empty()) j["full_prefill_fallback"] = fallbacks;  // refused probe-only rows
  if (interrupted) j["interrupted"] = true;
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.min_success > 0) j["pass"] = total > 0 && double(hits) / double(total) >= o.min_success;
  if (o.heatmap && total > 0)
    print_heatmap(stderr,
                  "niah " + ctx.c.id + " (" + kind + " haystack, margin " + json(o.margin).dump() +
                      " nats, tau " + json(o.tau).dump() + ", " + std::to_string(o.trials) + " trials x " +
                      std::to_string(probes_per_trial) + " probes per cell)",
                  o, success);
  return j;
}

}  // namespace ab
