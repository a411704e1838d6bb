// attn-bench inspect SPEC: statistics of the dense attention a spec's input produces, per
// problem and head, so that a user can check that a synthetic input resembles a real one
// (docs/inputs.md). Measured with analysis/attention_stats, the code the sink metric and the
// structured generator's tests use.
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "reference/attention_stats.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "spec/spec.hpp"
#include "workloads/workloads.hpp"

namespace ab::cli {

namespace {

using json = nlohmann::ordered_json;

struct InspectOptions {
  std::string spec;
  std::vector<std::string> sets;
  int64_t rows = 256;
  int64_t window = 128;
  double row_start = 0.5;
  int64_t token = 0;
  int64_t period = 0;
  double epsilon = 0.3;
  bool json_out = false;
};

int run_inspect(const InspectOptions& opt) {
  const Experiment ex = load_experiment(opt.spec, opt.sets);
  json doc;
  doc["spec"] = ex.path;
  doc["input"] = ex.input;
  doc["options"] = {{"rows", opt.rows},       {"row_start", opt.row_start}, {"window", opt.window},
                    {"token", opt.token},     {"epsilon", opt.epsilon}, {"period", opt.period}};
  doc["problems"] = json::array();
  std::map<std::string, bool> seen;
  for (const Case& c : ex.cases) {
    if (seen[c.problem.key()]) continue;
    seen[c.problem.key()] = true;
    const RegistryEntry* entry = find_variant(c.variant.name);
    auto variant = entry->make(c.variant.params);
    const AttnShape s = variant->shape(c.problem);
    const WorkloadDef* wl = find_workload(ex.input["kind"].get<std::string>());
    const HostInputs in = wl->generate(s, ex.input, input_seed(ex.seed, c.problem.key()));
    StatsOptions so;
    so.rows = opt.rows;
    so.row_start = opt.row_start;
    so.window = opt.window;
    so.sink_token = opt.token;
    so.period = opt.period;
    const std::vector<HeadStats> heads = attention_stats(in.q, in.k, s, 0.0, so);
    json p;
    p["problem"] = c.problem.key();
    p["variant"] = c.variant.label;
    p["q_heads"] = s.q_heads;
    p["kv_heads"] = s.kv_heads;
    const int64_t first = static_cast<int64_t>(opt.row_start * static_cast<double>(s.q_len));
    p["rows"] = heads.empty() ? 0 : heads.front().rows;
    p["row_range"] = {first, s.q_len};
    json hs = json::array();
    HeadStats mean;
    for (const auto& h : heads) {
      hs.push_back({{"batch", h.b},
                    {"head", h.h},
                    {"entropy", h.entropy},
                    {"first_mass", h.first_mass},
                    {"local_mass", h.local_mass},
                    {"top1_mass", h.top1_mass},
                    {"top10_mass", h.top10_mass},
                    {"slash_mass", h.slash_mass},
                    {"alpha", h.alpha}});
      mean.entropy += h.entropy;
      mean.first_mass += h.first_mass;
      mean.local_mass += h.local_mass;
      mean.top1_mass += h.top1_mass;
      mean.top10_mass += h.top10_mass;
      mean.alpha += h.alpha;
      mean.slash_mass += h.slash_mass;
    }
    const double n = heads.empty() ? 1.0 : static_cast<double>(heads.size());
    p["heads"] = hs;
    p["mean"] = {{"entropy", mean.entropy / n},       {"first_mass", mean.first_mass / n},
                 {"local_mass", mean.local_mass / n}, {"top1_mass", mean.top1_mass / n},
                 {"top10_mass", mean.top10_mass / n}, {"slash_mass", mean.slash_mass / n},
                 {"alpha", mean.alpha / n}};
    p["sink_ratio"] = sink_ratio(heads, opt.epsilon);
    doc["problems"].push_back(p);

    if (opt.json_out) continue;
    std::printf("%s  (variant %s: %d query heads, %d kv heads; input %s; rows %lld of [%lld, %lld))\n",
                c.problem.key().c_str(), c.variant.label.c_str(), s.q_heads, s.kv_heads,
                ex.input["kind"].get<std::string>().c_str(), static_cast<long long>(p["rows"].get<int64_t>()),
                static_cast<long long>(first), static_cast<long long>(s.q_len));
    const std::string local = fmt::format("local{}", opt.window);
    const std::string tok = fmt::format("tok{}", opt.token);
    const std::string slash = opt.period > 0 ? fmt::format(" {:>9}", fmt::format("lag%{}", opt.period)) : "";
    std::printf("%s\n", (fmt::format("{:>6} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7}", "head", "entropy", tok, local,
                                     "top1%", "top10%", "alpha") + slash).c_str());
    auto line = [&](const std::string& label, const HeadStats& h, double div) {
      std::string l = fmt::format("{:>6} {:>9.3f} {:>7.3f} {:>9.3f} {:>7.3f} {:>7.3f} {:>7.3f}", label, h.entropy / div,
                                  h.first_mass / div, h.local_mass / div, h.top1_mass / div, h.top10_mass / div,
                                  h.alpha / div);
      if (opt.period > 0) l += fmt::format(" {:>9.3f}", h.slash_mass / div);
      std::printf("%s\n", l.c_str());
    };
    for (const auto& h : heads) line(s.batch > 1 ? fmt::format("{}.{}", h.b, h.h) : std::to_string(h.h), h, 1.0);
    line("mean", mean, n);
    std::printf("Sink_%lld^%g = %.1f%% of heads (alpha = mean attention on token %lld)\n\n",
                static_cast<long long>(opt.token), opt.epsilon, sink_ratio(heads, opt.epsilon),
                static_cast<long long>(opt.token));
  }
  if (opt.json_out) {
    std::printf("%s\n", doc.dump(2).c_str());
  } else {
    std::printf("entropy: nats; %s: mass on token %lld; local%lld: mass on the %lld nearest keys; "
                "top1%%/top10%%: mass of the ceil(1%%/10%% of kv_len) largest probabilities; alpha: sink "
                "score (mean attention on the token); lag%%P: mass on lags that are multiples of P; float64 "
                "dense attention under the problem's mask, means over the sampled rows\n",
                fmt::format("tok{}", opt.token).c_str(), static_cast<long long>(opt.token),
                static_cast<long long>(opt.window), static_cast<long long>(opt.window));
  }
  return kExitOk;
}

}  // namespace

void setup_inspect(CLI::App& app, Action& action) {
  auto opt = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand(
      "inspect", "Statistics of the dense attention a spec's input produces, per problem and head");
  sub->add_option("spec", opt->spec, "YAML experiment spec")->required();
  sub->add_option("--set", opt->sets, "override a spec key: KEY=VALUE, e.g. input.sink_strength=8");
  sub->add_option("--rows", opt->rows, "query rows sampled per head (0 = all in range)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  sub->add_option("--row-start", opt->row_start, "sample rows from this fraction of q_len on (0.5: the second half)")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--window", opt->window, "local window for the local-mass column, keys")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  sub->add_option("--token", opt->token, "token whose mass and sink score alpha are shown")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  sub->add_option("--epsilon", opt->epsilon, "sink threshold of Sink_k^eps")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--period", opt->period, "also show the mass on lags that are multiples of this (slash lines)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  sub->add_flag("--json", opt->json_out, "print JSON instead of tables");
  sub->callback([opt, &action] { action = [opt] { return run_inspect(*opt); }; });
}

}  // namespace ab::cli
