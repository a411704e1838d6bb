// Recall against dense attention (docs/metrics.md; docs/variants.md §0 "attention recall"): what a
// selection-based variant keeps of the attention it approximates. Dense means float64
// softmax(scale·q·kᵀ) under the problem's own mask (causal or not), NOT the variant's mask: a
// streaming variant's dropped keys count as lost mass. Sampled query rows, every head, memory
// O(threads × N): one row's probabilities at a time, never N×N.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "reference/attention_stats.hpp"
#include "core/errors.hpp"
#include "core/sample_stats.hpp"
#include "metrics/metrics.hpp"

namespace ab {

namespace {

json summary(const std::vector<double>& v, bool with_max) {
  if (v.empty()) return nullptr;
  double mean = 0, mn = std::numeric_limits<double>::infinity(), mx = -mn;
  for (double x : v) mean += x, mn = std::min(mn, x), mx = std::max(mx, x);
  mean /= static_cast<double>(v.size());
  json j = {{"mean", mean}, {"min", mn}, {"p5", quantile(v, 0.05)}};
  if (with_max) {
    j["p95"] = quantile(v, 0.95);
    j["max"] = mx;
  }
  return j;
}

std::vector<int64_t> topk_values(const json& o) {
  std::vector<int64_t> ks;
  for (const auto& k : o.value("topk", json::array())) ks.push_back(k.get<int64_t>());
  return ks;
}

}  // namespace

int64_t parse_query_rows(const json& v, const std::string& field) {
  auto bad = [&]() -> int64_t {
    throw InputError(field + " = " + v.dump() + ": must be a positive number of query rows or \"all\"");
  };
  if (v.is_number_integer()) return v.get<int64_t>() > 0 ? v.get<int64_t>() : bad();
  if (!v.is_string()) return bad();
  const std::string s = v.get<std::string>();
  if (s == "all") return 0;
  try {
    size_t pos = 0;
    const long long n = std::stoll(s, &pos);
    if (pos != s.size() || n <= 0) return bad();
    return n;
  } catch (const std::exception&) {
    return bad();
  }
}

void validate_recall(const json& o) {
  (void)parse_query_rows(o["queries"], "metrics.recall.queries");
  for (const auto& k : o["topk"])
    if (!k.is_number_integer() || k.get<int64_t>() < 1)
      throw InputError("metrics.recall.topk = " + o["topk"].dump() + ": every k must be an integer >= 1");
  const double m = o.value("min_mass_recall", 0.0);
  if (!(m >= 0 && m <= 1))
    throw InputError("metrics.recall.min_mass_recall = " + json(m).dump() + ": must lie in [0, 1]");
}

json measure_recall(MetricContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const AttnShape& s = ctx.inputs.shape;
  const json& opt = ctx.options;
  const int64_t want = parse_query_rows(opt["queries"], "metrics.recall.queries");
  const std::vector<int64_t> ks = topk_values(opt);
  const bool per_head = opt.value("per_head", false);
  const double min_mass = opt.value("min_mass_recall", 0.0);

  json j;
  j["convention"] =
      "dense = float64 softmax(scale*q.k) over the keys the problem's mask allows (causal or not; "
      "not the variant's own mask); mass_recall = sum of dense p over the selected keys; "
      "topk_recall[k] = |selected & dense top-k| / min(k, allowed); density = selected / allowed "
      "keys over the sampled rows; output_rel_error = |o - o*| / |o*| per row; aggregates over "
      "(batch, head, sampled row)";
  j["options"] = opt;
  if (ctx.variant.output_shape(s) != Shape4{s.batch, s.q_heads, s.q_len, s.v_dim})
    return {{"status", "n/a"},
            {"reason", "the variant's output is not one row per query (output_shape differs), so it "
                       "cannot be compared with dense attention"}};

  const HostInputs& in = *ctx.inputs.host;
  const HostTensor o = ctx.backend.download(ctx.outputs.o);
  const Selection* sel = ctx.plan.selection.get();
  Mask dense;
  dense.causal = s.causal;
  const double scale = ctx.inputs.effective_scale();
  const std::vector<int64_t> rows = sample_rows(s.q_len, want);
  const int64_t nrows = static_cast<int64_t>(rows.size());
  const int64_t heads = int64_t(s.batch) * s.q_heads;
  const int64_t tasks = heads * nrows;

  std::vector<double> mass(static_cast<size_t>(tasks)), err(static_cast<size_t>(tasks)),
      cosine(static_cast<size_t>(tasks));
  std::vector<std::vector<double>> topk(ks.size(), std::vector<double>(static_cast<size_t>(tasks)));
  std::vector<int64_t> selected(static_cast<size_t>(tasks), 0), allowed(static_cast<size_t>(tasks), 0);
  bool nonfinite = false;

  const int64_t kmax_all = ks.empty() ? 0 : *std::max_element(ks.begin(), ks.end());
  const int64_t kBlock = dense_row_block(s.kv_len);  // rows per pass over K and V
  const int64_t blocks = (nrows + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<double> pb(static_cast<size_t>(kBlock * s.kv_len)), ob(static_cast<size_t>(kBlock * s.v_dim)),
        lse(kBlock);
    std::vector<int64_t> keys;
    std::vector<std::pair<double, int64_t>> best;
    auto better = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& c) {
      return a.first != c.first ? a.first > c.first : a.second < c.second;
    };
    std::vector<char> mark(sel ? static_cast<size_t>(s.kv_len) : 0, 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < heads * blocks; ++blk) {
      const int bh = static_cast<int>(blk / blocks);
      const int b = bh / s.q_heads, h = bh % s.q_heads;
      const int64_t r0 = (blk % blocks) * kBlock;
      const int cnt = static_cast<int>(std::min(kBlock, nrows - r0));
      dense_attention_rows(in.q, in.k, &in.v, s, dense, scale, h / s.group(), b, h, &rows[static_cast<size_t>(r0)],
                           cnt, pb.data(), ob.data(), lse.data());
      for (int rr = 0; rr < cnt; ++rr) {
        const int64_t t = bh * nrows + r0 + rr;
        const int64_t i = rows[static_cast<size_t>(r0 + rr)];
        const double* p = pb.data() + rr * s.kv_len;
        const double* ostar = ob.data() + rr * s.v_dim;
        const float* got = o.row(b, h, i);
        double e2 = 0, r2 = 0, g2 = 0, dot = 0;
        for (int c = 0; c < s.v_dim; ++c) {
          if (!std::isfinite(got[c])) {
#pragma omp atomic write
            nonfinite = true;
          }
          const double d = got[c] - ostar[c];
          e2 += d * d;
          r2 += ostar[c] * ostar[c];
          g2 += double(got[c]) * got[c];
          dot += double(got[c]) * ostar[c];
        }
        err[t] = r2 > 0 ? std::sqrt(e2 / r2) : std::sqrt(e2);
        cosine[t] = (r2 > 0 && g2 > 0) ? dot / std::sqrt(r2 * g2) : (r2 == g2 ? 1.0 : 0.0);
        if (!sel) continue;

        const int64_t qpos = i + s.q_offset();
        sel->keys(b, h, i, keys);
        int64_t nsel = 0;
        for (int64_t j : keys) {
          if (j < 0 || j >= s.kv_len || !dense.allows(b, h, qpos, j) || mark[j]) continue;
          ++nsel;
          mark[j] = 1;
        }
        // Mass recall as 1 − the mass left out: exact (1) for a selection of every allowed key,
        // and accurate near 1, where the interesting differences are.
        double lost = 0;
        for (int64_t j = 0; j < s.kv_len; ++j)
          if (!mark[j]) lost += p[j];
        const int64_t nallowed = s.visible_keys(i);  // the dense mask is causal or nothing
        mass[t] = std::clamp(1.0 - lost, 0.0, 1.0);
        selected[t] = nsel;
        allowed[t] = nallowed;
        // Top-k of the dense row (ties broken by the lower key index), intersected with the
        // selection: one pass keeping the best kmax keys in a heap whose top is the worst kept
        // (most keys fail the first comparison), then sorted best first.
        const int64_t kmax = std::min(kmax_all, nallowed);
        best.clear();
        for (int64_t j = 0; j < nallowed && kmax > 0; ++j) {
          const std::pair<double, int64_t> c{p[j], j};
          if (static_cast<int64_t>(best.size()) < kmax) {
            best.push_back(c);
            std::push_heap(best.begin(), best.end(), better);
          } else if (better(c, best.front())) {
            std::pop_heap(best.begin(), best.end(), better);
            best.back() = c;
            std::push_heap(best.begin(), best.end(), better);
          }
        }
        std::sort(best.begin(), best.end(), better);
        for (size_t q = 0; q < ks.size(); ++q) {
          const int64_t kk = std::min<int64_t>(ks[q], nallowed);
          if (kk <= 0) {
            topk[q][t] = 1.0;
            continue;
          }
          int64_t hit = 0;
          for (int64_t r = 0; r < kk; ++r) hit += mark[best[r].second];
          topk[q][t] = double(hit) / double(kk);
        }
        for (int64_t j : keys)
          if (j >= 0 && j < s.kv_len) mark[j] = 0;
      }
    }
  }

  j["rows"] = {{"per_head", nrows}, {"heads", heads}, {"total", tasks}};
  if (sel) {
    j["selection"] = sel->kind();
    j["mass_recall"] = summary(mass, false);
    json tk = json::object();
    for (size_t q = 0; q < ks.size(); ++q) tk["k=" + std::to_string(ks[q])] = summary(topk[q], false);
    j["topk_recall"] = tk;
    double ns = 0, na = 0;
    for (int64_t t = 0; t < tasks; ++t) ns += double(selected[t]), na += double(allowed[t]);
    j["density"] = na > 0 ? ns / na : 0.0;
  } else {
    json na = {{"status", "n/a"},
               {"reason", ctx.plan.selection_na_reason.empty() ? "the variant exposes no selection"
                                                               : ctx.plan.selection_na_reason}};
    for (auto it = j.begin(); it != j.end(); ++it) na[it.key()] = it.value();
    j = std::move(na);
  }
  j["output_rel_error"] = summary(err, true);
  j["output_cosine"] = summary(cosine, false);
  if (nonfinite) j["note"] = "non-finite output values";
  if (per_head) {
    json ph = json::array();
    for (int64_t bh = 0; bh < heads; ++bh) {
      auto slice = [&](const std::vector<double>& v) {
        return std::vector<double>(v.begin() + bh * nrows, v.begin() + (bh + 1) * nrows);
      };
      json e = {{"batch", bh / s.q_heads}, {"head", bh % s.q_heads}};
      if (sel) e["mass_recall"] = summary(slice(mass), false);
      e["output_rel_error"] = summary(slice(err), true);
      ph.push_back(e);
    }
    j["per_head"] = ph;
  }
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sel && min_mass > 0) j["pass"] = j["mass_recall"]["mean"].get<double>() >= min_mass && !nonfinite;
  return j;
}

}  // namespace ab
