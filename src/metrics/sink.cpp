// Sink_k^ε from "When Attention Sink Emerges in Language Models: An Empirical View"
// (Gu et al., ICLR 2025, arXiv 2410.10781; docs/variants.md §16a), on the case's inputs: for every
// (batch, head), the importance of token k is α_k = mean over the queries t that can see k of
// A[t, k] (the paper: (1/(T−k)) Σ_{t≥k} A[t, k]), and Sink_k^ε = 100 × the fraction of heads
// with α_k > ε (ε = 0.3, k = 0). A is the dense attention of the inputs under the problem's mask,
// in float64 on sampled query rows (the paper averages over every row). It describes the
// input — generated or loaded — not the variant, which is why every variant of a problem
// reports the same value (head layouts aside).
#include <algorithm>
#include <chrono>

#include "reference/attention_stats.hpp"
#include "core/errors.hpp"
#include "metrics/metrics.hpp"

namespace ab {

void validate_sink(const json& o) {
  const double eps = o.value("epsilon", 0.3);
  if (!(eps >= 0 && eps < 1)) throw InputError("metrics.sink.epsilon = " + json(eps).dump() + ": must lie in [0, 1)");
  if (o.value("token", int64_t{0}) < 0)
    throw InputError("metrics.sink.token = " + o["token"].dump() + ": must be >= 0");
  (void)parse_query_rows(o["queries"], "metrics.sink.queries");
}

json measure_sink(MetricContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const AttnShape& s = ctx.inputs.shape;
  const double eps = ctx.options.value("epsilon", 0.3);
  StatsOptions so;
  so.sink_token = ctx.options.value("token", int64_t{0});
  so.rows = parse_query_rows(ctx.options["queries"], "metrics.sink.queries");
  so.row_start = 0.0;
  if (so.sink_token >= s.kv_len)
    return {{"status", "n/a"},
            {"reason", "token " + std::to_string(so.sink_token) + " lies beyond the " +
                           std::to_string(s.kv_len) + " keys"}};
  const HostInputs& in = *ctx.inputs.host;
  const std::vector<HeadStats> heads = attention_stats(in.q, in.k, s, ctx.inputs.effective_scale(), so);
  json j;
  j["convention"] =
      "alpha_k = mean dense attention on token k over the sampled query rows that can see it "
      "(problem's mask, float64); sink_ratio = 100 x fraction of (batch, head) with alpha_k > "
      "epsilon (Sink_k^epsilon, arXiv 2410.10781)";
  j["options"] = ctx.options;
  j["epsilon"] = eps;
  j["token"] = so.sink_token;
  j["rows"] = heads.empty() ? 0 : heads.front().rows;
  j["sink_ratio"] = sink_ratio(heads, eps);
  double mean = 0, mn = 1, mx = 0, ent = 0;
  json per = json::array();
  for (const auto& h : heads) {
    mean += h.alpha;
    mn = std::min(mn, h.alpha);
    mx = std::max(mx, h.alpha);
    ent += h.entropy;
    per.push_back(h.alpha);
  }
  const double n = heads.empty() ? 1.0 : double(heads.size());
  j["alpha"] = {{"mean", mean / n}, {"min", heads.empty() ? 0.0 : mn}, {"max", mx}};
  j["entropy_mean"] = ent / n;
  j["alpha_per_head"] = per;
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return j;
}

}  // namespace ab
