#include "figures/html_report.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

#include "variants/registry.hpp"

namespace ab::figures {

using analysis::Json;
using analysis::lookup_text;
using analysis::Report;

namespace {

std::string h(const std::string& s) { return xml_escape(s); }

std::string row(const std::string& k, const std::string& v) {
  return "<tr><th>" + h(k) + "</th><td>" + h(v.empty() ? "–" : v) + "</td></tr>\n";
}

std::string provenance(const Report& r) {
  const Json& d = r.doc;
  std::map<std::string, int> counts;
  for (const auto& c : r.cases()) {
    const std::string s = lookup_text(c, "status");
    ++counts[s.empty() ? "ok" : s];
  }
  std::string cases;
  for (const auto& [k, n] : counts) cases += (cases.empty() ? "" : ", ") + fmt::format("{} {}", n, k);
  std::string o = "<section class=\"prov\"><h3>" + h(r.path) + "</h3>\n<table>\n";
  o += row("tool", lookup_text(d, "meta.tool.name") + " " + lookup_text(d, "meta.tool.version") + ", schema " +
                       lookup_text(d, "schema_version"));
  const std::string sha = lookup_text(d, "meta.git.sha");
  const std::string dirty = lookup_text(d, "meta.git.dirty");
  o += row("git", (sha.empty() ? "unknown" : sha.substr(0, 12)) +
                      (dirty == "true" ? " (dirty: uncommitted changes)" : dirty == "false" ? " (clean)" : " (dirty flag unknown)") +
                      (lookup_text(d, "meta.git.source") == "build" ? ", sha recorded at build time" : ""));
  o += row("spec", lookup_text(d, "meta.spec.name") + " (" + lookup_text(d, "meta.spec.path") + ", sha256 " +
                       lookup_text(d, "meta.spec.sha256").substr(0, 12) + "): " + lookup_text(d, "meta.spec.description"));
  o += row("when", lookup_text(d, "meta.timestamp") + (lookup_text(d, "complete") == "false" ? " — INCOMPLETE sweep" : ""));
  o += row("host", fmt::format("{}, {} cores, {}", lookup_text(d, "meta.host.cpu_model"), lookup_text(d, "meta.host.cores"),
                               lookup_text(d, "meta.host.os")));
  o += row("build", lookup_text(d, "meta.build.compiler") + ", " + lookup_text(d, "meta.build.build_type") + ", flags " +
                        lookup_text(d, "meta.build.flags") +
                        (lookup_text(d, "meta.build.cuda").empty() ? "" : ", CUDA " + lookup_text(d, "meta.build.cuda")));
  o += row("run", fmt::format("device {}, threads {}, seed {}, baseline {}", lookup_text(d, "meta.run.device"),
                              lookup_text(d, "meta.run.threads"), lookup_text(d, "meta.run.seed"),
                              lookup_text(d, "meta.run.baseline")) +
                      (lookup_text(d, "meta.run.note").empty() ? "" : "; note: " + lookup_text(d, "meta.run.note")));
  std::string devices;
  if (d.contains("meta") && d["meta"].contains("devices") && d["meta"]["devices"].is_array())
    for (const auto& dev : d["meta"]["devices"]) {
      std::string one = lookup_text(dev, "name");
      for (const char* k : {"sms", "memory_bytes", "driver", "runtime"})
        if (!lookup_text(dev, k).empty()) one += fmt::format(", {} {}", k, lookup_text(dev, k));
      if (dev.contains("clocks")) one += ", clocks " + dev["clocks"].dump();
      devices += (devices.empty() ? "" : "; ") + one;
    }
  o += row("devices", devices.empty() ? "none (CPU run)" : devices);
  // The clocks of GPU cases, first and last, show throttling across the sweep.
  std::string clocks;
  for (const auto& c : r.cases())
    if (!lookup_text(c, "metrics.latency.clocks.before.sm_mhz").empty()) {
      clocks = fmt::format("first case: {} MHz, {} °C", lookup_text(c, "metrics.latency.clocks.before.sm_mhz"),
                           lookup_text(c, "metrics.latency.clocks.before.temperature_c"));
      break;
    }
  if (!clocks.empty()) o += row("clocks", clocks);
  o += row("cases", cases);
  o += "</table></section>\n";
  return o;
}

std::string fidelity_table(const std::vector<Report>& reports) {
  std::set<std::string> seen;
  std::string rows;
  for (const auto& r : reports)
    for (const auto& c : r.cases()) {
      const std::string v = lookup_text(c, "variant");
      if (!seen.insert(v).second) continue;
      std::string level = lookup_text(c, "fidelity.level"), reason = lookup_text(c, "fidelity.reason");
      std::string source = "report";
      if (level.empty()) {
        if (const RegistryEntry* e = find_variant(v)) {
          level = fidelity_name(e->info.fidelity.level);
          reason = e->info.fidelity.reason;
          source = "registry (the report predates the field)";
        } else {
          level = "peer";
          reason = "measured by another tool";
          source = "–";
        }
      }
      rows += "<tr class=\"fid-" + h(level) + "\"><td>" + h(v + fidelity_mark(level)) + "</td><td>" + h(level) + "</td><td>" +
              h(reason) + "</td><td>" + h(source) + "</td></tr>\n";
    }
  return "<table class=\"fid\"><tr><th>variant</th><th>fidelity</th><th>why</th><th>from</th></tr>\n" + rows + "</table>\n";
}

std::string failures(const std::vector<Report>& reports) {
  std::string rows;
  size_t n = 0;
  for (const auto& r : reports)
    for (const auto& c : r.cases()) {
      const std::string s = lookup_text(c, "status");
      if (s.empty() || s == "ok") continue;
      ++n;
      rows += "<tr><td>" + h(r.name) + "</td><td>" + h(lookup_text(c, "id")) + "</td><td class=\"st-" + h(s) + "\">" + h(s) +
              "</td><td>" + h(lookup_text(c, "reason")) + "</td></tr>\n";
    }
  if (n == 0) return "<p>Every case finished with status ok.</p>\n";
  return fmt::format("<p>{} case(s) did not finish ok; none is dropped silently:</p>\n", n) +
         "<table class=\"fail\"><tr><th>report</th><th>case</th><th>status</th><th>reason</th></tr>\n" + rows + "</table>\n";
}

const char* kStyle = R"(
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; max-width: 820px; margin: 1em auto; padding: 0 12px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
.prov th { white-space: nowrap; color: #555; font-weight: normal; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #444; max-width: 760px; }
svg { max-width: 100%; height: auto; }
.none { color: #666; font-style: italic; }
.fid-stand-in td:nth-child(2) { color: #b00; font-weight: bold; }
.st-failed { color: #b00; font-weight: bold; } .st-skipped { color: #a60; }
nav a { margin-right: 1em; }
)";

}  // namespace

std::string html_report(const std::vector<Report>& reports, const FigureOptions& opts) {
  std::string names;
  for (const auto& r : reports) names += (names.empty() ? "" : ", ") + r.name;
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += "<title>attn-bench report: " + h(names) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  o += "<h1>attn-bench report: " + h(names) + "</h1>\n";
  const std::vector<std::pair<FigureKind, std::string>> sections = {
      {FigureKind::latency, "Latency vs sequence length"},
      {FigureKind::speedup, "Speedup over the baseline vs sequence length"},
      {FigureKind::pareto, "Recall vs speedup (Pareto front)"},
      {FigureKind::niah, "Needle in a haystack"},
      {FigureKind::roofline, "Roofline"}};
  o += "<nav><a href=\"#provenance\">provenance</a><a href=\"#fidelity\">fidelity</a>";
  for (const auto& [k, t] : sections) o += "<a href=\"#" + figure_kind_names()[static_cast<int>(k)] + "\">" + figure_kind_names()[static_cast<int>(k)] + "</a>";
  o += "<a href=\"#not-ok\">failed/skipped</a></nav>\n";
  o += "<h2 id=\"provenance\">Provenance</h2>\n";
  for (const auto& r : reports) o += provenance(r);
  o += "<h2 id=\"fidelity\">Fidelity to the papers</h2>\n<p>† stand-in: a defining component of the paper's method is "
       "replaced, so its numbers are not the paper's method; ‡ simplified: the method with named departures.</p>\n";
  o += fidelity_table(reports);
  for (const auto& [k, title] : sections) {
    o += "<h2 id=\"" + figure_kind_names()[static_cast<int>(k)] + "\">" + h(title) + "</h2>\n";
    const FigureSet fs = build_figures(reports, k, opts);
    if (fs.figures.empty()) o += "<p class=\"none\">No figure: " + h(fs.why_none) + ".</p>\n";
    for (const auto& f : fs.figures)
      o += "<figure id=\"fig-" + h(f.id) + "\">\n" + to_svg(f) + "<figcaption>" + h(f.caption) + "</figcaption>\n</figure>\n";
  }
  o += "<h2 id=\"not-ok\">Failed and skipped cases</h2>\n" + failures(reports);
  o += "</body>\n</html>\n";
  return o;
}

}  // namespace ab::figures
