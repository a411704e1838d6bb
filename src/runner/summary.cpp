#include "runner/summary.hpp"

#include <map>
#include <vector>

#include <fmt/format.h>

namespace ab {

namespace {
const nlohmann::ordered_json* find_path(const nlohmann::ordered_json& j, std::initializer_list<const char*> path) {
  const nlohmann::ordered_json* cur = &j;
  for (const char* p : path) {
    if (!cur->is_object() || !cur->contains(p)) return nullptr;
    cur = &(*cur)[p];
  }
  return cur;
}
double num(const nlohmann::ordered_json& j, std::initializer_list<const char*> path, double def = -1) {
  const auto* v = find_path(j, path);
  return v && v->is_number() ? v->get<double>() : def;
}
}  // namespace

void print_run_summary(const nlohmann::ordered_json& report, const std::string& baseline, FILE* out) {
  const auto& cases = report["cases"];
  // Baseline median per problem key.
  std::map<std::string, double> base;
  for (const auto& c : cases)
    if ((c["label"] == baseline || c["variant"] == baseline) && c["status"] == "ok")
      if (double m = num(c, {"metrics", "latency", "median"}); m > 0) base[c["problem"]["key"]] = m;

  // A case whose sampling stopped (max_samples, max_time) above its target RSE: its median is
  // less certain than the spec asked for, which a gate comparing it should know.
  auto rse_unmet = [](const nlohmann::ordered_json& c) {
    const auto* stop = find_path(c, {"metrics", "latency", "stop"});
    if (!stop || !stop->is_string() || (*stop != "max_samples" && *stop != "max_time")) return false;
    return num(c, {"metrics", "latency", "rse"}) > num(c, {"metrics", "latency", "target_rse"}, 1e300);
  };
  size_t unmet = 0;
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"case", "problem", "status", "median ms", "TFLOP/s", "GB/s", "speedup", "rel err"});
  for (const auto& c : cases) {
    std::vector<std::string> r;
    r.push_back(c["label"].get<std::string>());
    r.push_back(c["problem"]["key"].get<std::string>());
    r.push_back(c["status"].get<std::string>());
    if (rse_unmet(c)) {
      r.back() += "*";
      ++unmet;
    }
    const double med = num(c, {"metrics", "latency", "median"});
    r.push_back(med > 0 ? fmt::format("{:.3f}", med * 1e3) : "-");
    const double tf = num(c, {"metrics", "latency", "rates", "tflops_executed"});
    r.push_back(tf >= 0 ? fmt::format("{:.3f}", tf) : "-");
    const double gb = num(c, {"metrics", "latency", "rates", "gbps"});
    r.push_back(gb >= 0 ? fmt::format("{:.1f}", gb) : "-");
    auto it = base.find(c["problem"]["key"].get<std::string>());
    r.push_back(med > 0 && it != base.end() ? fmt::format("{:.2f}x", it->second / med) : "-");
    const double err = num(c, {"metrics", "accuracy", "rel"});
    r.push_back(err >= 0 ? fmt::format("{:.1e}", err) : "-");
    rows.push_back(std::move(r));
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    std::string line;
    for (size_t i = 0; i < rows[ri].size(); ++i) {
      const bool right = i >= 3;
      line += i ? "  " : "";
      line += right ? fmt::format("{:>{}}", rows[ri][i], width[i]) : fmt::format("{:<{}}", rows[ri][i], width[i]);
    }
    std::fprintf(out, "%s\n", line.c_str());
    if (ri == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      std::fprintf(out, "%s\n", std::string(total - 2, '-').c_str());
    }
  }
  if (unmet)
    std::fprintf(out, "* %zu case(s) stopped at max_samples/max_time with the median's relative standard error above "
                      "metrics.latency.target_rse: their medians are less certain than the spec asked\n", unmet);
  std::fprintf(out, "speedup: median latency of '%s' on the same problem / this case's; TFLOP/s: executed FLOPs / median\n",
               baseline.c_str());
}

}  // namespace ab
