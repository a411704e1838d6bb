// The plotting layer (src/figures/plot.*): ticks, tick text, palette and colour map by value;
// the SVG and PGFPlots writers against golden files (tests/data/figures/, rewritten with
// ATTN_UPDATE_GOLDEN=1 after a deliberate change — then look at them); and the report figures
// built from small in-memory reports (Pareto front, crossover, fidelity marks).
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "analysis/table.hpp"
#include "variants/registry.hpp"
#include "figures/html_report.hpp"
#include "figures/plot.hpp"
#include "figures/report_figures.hpp"

using namespace ab::figures;
using ab::analysis::Json;

namespace {

void check_golden(const std::string& name, const std::string& text) {
  const std::string path = std::string(ATTN_SOURCE_DIR) + "/tests/data/figures/" + name;
  if (std::getenv("ATTN_UPDATE_GOLDEN")) {
    std::ofstream(path, std::ios::binary) << text;
    MESSAGE("golden rewritten: " << path);
    return;
  }
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "missing " << path << " (run with ATTN_UPDATE_GOLDEN=1 to create it)");
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK_MESSAGE(ss.str() == text, "output differs from " << path
                                                         << "; if intended, rerun with ATTN_UPDATE_GOLDEN=1 and look at it");
}

Figure sample_xy() {
  Figure f;
  f.id = "sample";
  f.title = "Latency vs sequence length (test)";
  f.caption = "A test figure.";
  f.x = {"sequence length N (tokens)", Scale::log, NAN, NAN, true};
  f.y = {"latency (ms)", Scale::log};
  Series a;
  a.name = "dense";
  a.colour = 0;
  a.band = true;
  a.points = {{4096, 2.0, 1.8, 2.3}, {16384, 30, 27, 33}, {65536, 480, 450, 520}};
  Series b;
  b.name = "sea†";
  b.colour = 1;
  b.marker = Marker::square;
  b.points = {{4096, 3.0}, {16384, 20}, {65536, 150}};
  Series p;
  p.name = "torch_flash (peer)";
  p.colour = 2;
  p.dashed = true;
  p.points = {{4096, 1.0}, {65536, 200}};
  f.series = {a, b, p};
  f.marks = {{9000, 10, "sea† beats dense from N≈9k", 1}};
  f.notes = {"† stand-in: test note"};
  return f;
}

Figure sample_maps() {
  Figure f;
  f.id = "maps";
  f.title = "NIAH (test)";
  f.map_x_label = "context length (tokens)";
  f.map_y_label = "needle depth";
  f.scale_label = "success (%)";
  f.maps = {{"dense", {"4k", "16k"}, {"0", "0.5", "1"}, {{1.0, 1.0}, {1.0, 0.5}, {0.0, NAN}}},
            {"streaming", {"4k", "16k"}, {"0", "0.5", "1"}, {{1.0, 1.0}, {0.25, 0.0}, {1.0, 1.0}}}};
  return f;
}

Json case_json(const std::string& variant, const std::string& label, int64_t n, double median, double recall,
               const std::string& status = "ok") {
  Json c;
  c["id"] = label + "/k" + std::to_string(n);
  c["variant"] = variant;
  c["label"] = label;
  c["problem"] = {{"batch", 1},      {"heads", 4},        {"kv_heads", 1},   {"head_dim", 64}, {"v_dim", 64},
                  {"q_len", n},      {"kv_len", n},       {"causal", true},  {"mode", "prefill"},
                  {"dtype", "f32"},  {"key", "prefill_k" + std::to_string(n)}};
  c["backend"] = "cpu";
  c["status"] = status;
  c["reason"] = status == "ok" ? "" : "out of memory (test)";
  c["metrics"]["latency"] = {{"median", median}, {"samples", {median * 0.9, median, median * 1.1}}};
  c["metrics"]["latency"]["rates"] = {{"tflops_executed", 1e-3 / median}, {"gbps", 0.1 / median}};
  c["metrics"]["flops"] = {{"executed", 1e9}, {"bytes_min", 1e7}};
  if (recall >= 0) c["metrics"]["recall"]["mass_recall"]["mean"] = recall;
  return c;
}

ab::analysis::Report sweep_report() {
  Json doc;
  doc["schema_version"] = "1.0.0";  // an old report: no fidelity field, looked up by name
  doc["meta"]["run"]["baseline"] = "dense";
  doc["meta"]["spec"]["name"] = "test";
  doc["cases"] = Json::array();
  for (int64_t n : {4096, 16384}) {
    const double dense = n == 4096 ? 1.0 : 16.0;
    doc["cases"].push_back(case_json("gqa", "dense", n, dense, -1));
    // sea: slower at 4k, faster at 16k → one crossover; three budgets.
    doc["cases"].push_back(case_json("sea", "sea(k=1)", n, n == 4096 ? 2.0 : 4.0, 0.70));
    doc["cases"].push_back(case_json("sea", "sea(k=2)", n, n == 4096 ? 2.5 : 6.0, 0.90));
    doc["cases"].push_back(case_json("anchor", "anchor(t=4)", n, n == 4096 ? 0.5 : 5.0, 0.60));  // dominated at 16k
  }
  doc["cases"].push_back(case_json("anchor", "anchor(t=8)", 16384, 0, -1, "failed"));
  return ab::analysis::report_from_json(doc, "sweep.json");
}

}  // namespace

TEST_CASE("linear ticks are 1-2-5 steps covering the range") {
  CHECK(linear_ticks(0, 1, 5) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
  CHECK(linear_ticks(0.13, 0.97, 5) == std::vector<double>{0.2, 0.4, 0.6000000000000001, 0.8});
  CHECK(linear_ticks(-3, 7, 5) == std::vector<double>{-2, 0, 2, 4, 6});
  CHECK(linear_ticks(5, 5) == std::vector<double>{5});
  CHECK(linear_ticks(NAN, 1).empty());
}

TEST_CASE("log ticks are decades, with 2 and 5 when a range spans less") {
  CHECK(log_ticks(1, 1000) == std::vector<double>{1, 10, 100, 1000});
  CHECK(log_ticks(0.9, 1100) == std::vector<double>{1, 10, 100, 1000});
  CHECK(log_ticks(3, 40) == std::vector<double>{5, 10, 20});
  CHECK(log_ticks(1.1, 1.9).empty() == false);  // 1..9 multiples: falls back to the finest set
  CHECK(log_ticks(0, 10).empty());
}

TEST_CASE("tick text: 3 significant digits, binary k for sequence lengths") {
  CHECK(tick_text(32768, true) == "32k");
  CHECK(tick_text(1048576, true) == "1M");
  CHECK(tick_text(1000, true) == "1000");
  CHECK(tick_text(0.5) == "0.5");
  CHECK(tick_text(12.345) == "12.3");
  CHECK(tick_text(1e-4) == "1e-4");
  CHECK(tick_text(2.5e-7) == "2.5e-7");
  CHECK(tick_text(1234567) == "1.2e6");
  CHECK(tick_text(0) == "0");
}

TEST_CASE("palette and colour map") {
  CHECK(palette(0) == "#0072B2");
  CHECK(palette(8) == palette(0));
  CHECK(palette_marker(8) != palette_marker(0));  // repeated colours get another marker
  CHECK(palette(-1) == "#888888");
  CHECK(colormap(0) == "#440154");
  CHECK(colormap(1) == "#fde725");
  CHECK(colormap(0.5) == "#21918c");
  CHECK(colormap(NAN) == "#dddddd");
  CHECK(xml_escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;");
  CHECK(text_width("mmmm", 10) > text_width("iiii", 10));
}

TEST_CASE("SVG and PGFPlots writers match their golden files") {
  const Figure xy = sample_xy();
  const std::string svg = to_svg(xy);
  CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") == 0);
  CHECK(svg.find("stroke-dasharray") != std::string::npos);  // the peer's dashed line
  CHECK(svg.find("sea† beats dense from N≈9k") != std::string::npos);
  CHECK(svg.find(">16k<") != std::string::npos);  // ticks at the data lengths
  check_golden("xy.svg", svg);
  check_golden("xy.pgf.tex", to_pgfplots(xy));
  const Figure maps = sample_maps();
  const std::string msvg = to_svg(maps);
  CHECK(msvg.find(">50<") != std::string::npos);  // the 0.5 cell, in %
  check_golden("maps.svg", msvg);
  check_golden("maps.pgf.tex", to_pgfplots(maps));
}

TEST_CASE("every variant states its fidelity, and the named stand-ins are stand-ins") {
  for (const auto& e : ab::registry()) {
    INFO(e.info.name);
    CHECK(!e.info.fidelity.reason.empty());
  }
  for (const char* n : {"sea", "landmark", "retrieval", "dhsa", "vtc_cls", "infiniretri", "gated", "positional", "lama"}) {
    INFO(n);
    REQUIRE(ab::find_variant(n));
    CHECK(ab::find_variant(n)->info.fidelity.level == ab::Fidelity::stand_in);
  }
  CHECK(ab::find_variant("mha")->info.fidelity.level == ab::Fidelity::faithful);
}

TEST_CASE("report figures: Pareto front, crossover, fidelity marks from the registry") {
  const std::vector<ab::analysis::Report> reports = {sweep_report()};

  const FigureSet pareto = build_figures(reports, FigureKind::pareto);
  REQUIRE(pareto.figures.size() == 2);  // one per problem (4k, 16k)
  const Figure& p16 = pareto.figures[1];
  REQUIRE(p16.series[0].name == "Pareto front");
  // 16k: speedups sea(k=1) 4 @0.70, sea(k=2) 2.67 @0.90, anchor 3.2 @0.60 (dominated by sea(k=1)).
  std::vector<std::pair<double, double>> front;
  for (const auto& pt : p16.series[0].points) front.push_back({pt.x, pt.y});
  CHECK(front.size() == 3);  // (4, .70) step (2.67, .70) (2.67, .90)
  CHECK(front[0].first == doctest::Approx(4.0));
  CHECK(front[2].second == doctest::Approx(0.90));
  bool sea_marked = false;
  for (const auto& s : p16.series) sea_marked = sea_marked || s.name == "sea†";
  CHECK(sea_marked);  // an old report: the mark comes from the registry by variant name
  CHECK(p16.notes.size() == 1);

  const FigureSet sp = build_figures(reports, FigureKind::speedup);
  REQUIRE(sp.figures.size() == 1);
  // sea(k=1): 0.5 at 4k, 4 at 16k → crossover at N = 4096·4^(ln2/ln8) = 4096·4^(1/3).
  bool found = false;
  for (const auto& m : sp.figures[0].marks)
    if (m.x == doctest::Approx(4096 * std::pow(4.0, 1.0 / 3.0))) {
      found = true;
      CHECK(m.y == 1.0);
      CHECK(m.text == "N≈6502");
    }
  CHECK(found);
  CHECK(sp.figures[0].caption.find("sea(k=1)† from N≈6502") != std::string::npos);
  CHECK(sp.figures[0].title.find("Speedup over dense vs") == 0);

  const FigureSet lat = build_figures(reports, FigureKind::latency);
  REQUIRE(lat.figures.size() == 1);
  CHECK(lat.figures[0].series.front().band);

  CHECK(build_figures(reports, FigureKind::niah).figures.empty());
  CHECK(build_figures(reports, FigureKind::niah).why_none == "no case with a `niah` metric");
  const FigureSet roof = build_figures(reports, FigureKind::roofline);
  REQUIRE(roof.figures.size() == 1);
  CHECK(roof.figures[0].series[0].name.find("not a machine peak") != std::string::npos);
  const FigureSet roof2 = build_figures(reports, FigureKind::roofline, {"", 5.0, 100.0, ""});
  CHECK(roof2.figures[0].series[0].name == "peaks given: 5 TFLOP/s, 100 GB/s");  // maybe a datasheet's
  CHECK(roof2.figures[0].caption.find("given on the command line") != std::string::npos);

  // Peaks measured before the run (meta.peaks of the same backend) make the roof.
  Json doc = reports[0].doc;
  doc["meta"]["peaks"] = {{"kind", "attn-bench peaks"}, {"device", "cpu"},
                          {"tflops", {{"value", 2.5}, {"method", "gemm test"}}},
                          {"gbps", {{"value", 40.0}, {"method", "triad test"}}}};
  const FigureSet roof3 = build_figures({ab::analysis::report_from_json(doc, "peaks.json")}, FigureKind::roofline);
  REQUIRE(roof3.figures.size() == 1);
  CHECK(roof3.figures[0].series[0].name == "measured peaks: 2.5 TFLOP/s, 40 GB/s");
  CHECK(roof3.figures[0].caption.find("run --measure-peaks") != std::string::npos);
  CHECK(roof3.figures[0].caption.find("gemm test; triad test") != std::string::npos);
  // Peaks of another device are not this roof.
  doc["meta"]["peaks"]["device"] = "cuda";
  const FigureSet roof4 = build_figures({ab::analysis::report_from_json(doc, "peaks.json")}, FigureKind::roofline);
  CHECK(roof4.figures[0].series[0].name.find("not a machine peak") != std::string::npos);

  // A file of `attn-bench peaks`; anything else is refused.
  const std::string path = "test_figures_peaks.json";
  {
    std::ofstream f(path);
    f << R"({"kind": "attn-bench peaks", "device": "cpu", "tflops": {"value": 1.5, "method": "m1"},
             "gbps": {"value": 20, "method": "m2"}})";
  }
  FigureOptions fo;
  load_peaks_file(path, fo);
  CHECK(fo.peak_tflops == 1.5);
  CHECK(fo.peak_gbps == 20.0);
  CHECK(fo.peaks_source.find("m1; m2") != std::string::npos);
  {
    std::ofstream f(path);
    f << R"({"kind": "attn-bench report", "tflops": {"value": 1}})";
  }
  CHECK_THROWS_WITH(load_peaks_file(path, fo), doctest::Contains("is not a peaks file"));
  std::remove(path.c_str());
  CHECK_THROWS_WITH(load_peaks_file(path, fo), doctest::Contains("cannot read"));
}

TEST_CASE("the HTML report lists provenance, fidelity and the failed case with its reason") {
  const std::string html = html_report({sweep_report()}, {});
  CHECK(html.find("<!DOCTYPE html>") == 0);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("out of memory (test)") != std::string::npos);
  CHECK(html.find("registry (the report predates the field)") != std::string::npos);
  CHECK(html.find("No figure: no case with a `niah` metric.") != std::string::npos);
  const std::regex svg("<svg ");
  CHECK(std::distance(std::sregex_iterator(html.begin(), html.end(), svg), std::sregex_iterator()) == 5);
  CHECK_THROWS_WITH(parse_figure_kind("paretto"), doctest::Contains("did you mean 'pareto'"));
}
