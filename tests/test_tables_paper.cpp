// Paper tables (docs/tables.md): the 95% CI of the median, bold best entries, significance
// marks, fidelity marks, short key headers, the NIAH heat-map table, the long CSV and
// `--aggregate`, on small in-memory reports and on the committed results/cpu/niah.json.
#include <doctest/doctest.h>

#include "analysis/table.hpp"

using namespace ab::analysis;

namespace {

Json make_case(const std::string& variant, const std::string& label, const std::string& key,
               std::vector<double> samples) {
  std::vector<double> s = samples;
  std::sort(s.begin(), s.end());
  Json c;
  c["id"] = label + "/" + key;
  c["variant"] = variant;
  c["label"] = label;
  c["problem"] = {{"mode", "prefill"}, {"q_len", 1}, {"kv_len", 1}, {"dtype", "f32"}, {"key", key}};
  c["backend"] = "cpu";
  c["status"] = "ok";
  c["metrics"]["latency"] = {{"median", s[s.size() / 2]}, {"samples", samples}, {"cache", "hot"}};
  return c;
}

Report two_key_report(double scale = 1.0) {
  Json doc;
  doc["schema_version"] = "1.1.0";
  doc["meta"]["run"] = {{"baseline", "mha"}, {"threads", 2}};
  doc["meta"]["host"]["cpu_model"] = "Test CPU";
  doc["meta"]["spec"]["sha256"] = "abc";
  doc["cases"] = Json::array();
  for (const std::string key : {"prefill_b1_q4096_k4096_f32", "prefill_b1_q8192_k8192_f32"}) {
    doc["cases"].push_back(make_case("mha", "mha", key, {10, 11, 12, 13, 14, 15, 16}));
    doc["cases"].push_back(make_case("sea", "sea", key, {4, 4.5, 5, 5.5, 6, 6.5, 7}));
    doc["cases"].push_back(make_case("gqa", "gqa", key, {9, 10, 11, 12, 13, 14, 15}));
  }
  for (auto& c : doc["cases"])
    for (auto& v : c["metrics"]["latency"]["samples"]) v = v.get<double>() * scale;
  for (auto& c : doc["cases"]) c["metrics"]["latency"]["median"] = c["metrics"]["latency"]["median"].get<double>() * scale;
  return report_from_json(doc, "two.json");
}

}  // namespace

TEST_CASE("median_ci95: order statistics reaching 95%, none below 6 samples") {
  CHECK(!median_ci95({1, 2, 3, 4, 5}));
  const auto seven = median_ci95({7, 1, 2, 3, 4, 5, 6});
  REQUIRE(seven);
  CHECK(seven->first == 1);  // n = 7: x(1), x(7), coverage 1 − 2/128
  CHECK(seven->second == 7);
  const auto ten = median_ci95({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  REQUIRE(ten);
  CHECK(ten->first == 2);  // n = 10: P(B ≤ 1) = 11/1024 ≤ 0.025 < P(B ≤ 2) → x(2), x(9)
  CHECK(ten->second == 9);
}

TEST_CASE("speedup table: ± intervals, bold best, significance, fidelity mark, short key headers") {
  TableOptions o;
  o.significance = true;
  const Table t = build_table({two_key_report()}, o);
  REQUIRE(t.cols.size() == 2);
  CHECK(t.cols[0] == "q4096_k4096");  // what varies, not the whole key
  CHECK(t.common == "prefill_b1_f32");
  const std::string md = render_markdown(t);
  // sea: 13/5.5 = 2.36; CI [10/7, 16/4] = [1.43, 4.00] → ± 1.29; bold (best); significant.
  CHECK(md.find("| sea† | **2.36 ± 1.29\\*** |") != std::string::npos);
  CHECK(md.find("| mha | 1.00 |") != std::string::npos);  // the baseline: no interval, never bold
  CHECK(md.find("† stand-in") != std::string::npos);
  CHECK(md.find("hardware: Test CPU, 2 threads") != std::string::npos);
  CHECK(md.find("* differs from the baseline at p < 0.05") != std::string::npos);
  const std::string tex = render_latex(t, true);
  CHECK(tex.find("sea\\textsuperscript{\\dag} & \\textbf{2.36 $\\pm$ 1.29$^{*}$}") != std::string::npos);
  CHECK(tex.find("\\caption{") != std::string::npos);
  // gqa vs mha: overlapping samples, not significant.
  CHECK(md.find("| gqa | 1.08 ± 0.56 |") != std::string::npos);

  TableOptions plain;
  plain.intervals = plain.bold_best = false;
  const std::string p = render_markdown(build_table({two_key_report()}, plain));
  CHECK(p.find("| sea† | 2.36 | 2.36 |") != std::string::npos);
}

TEST_CASE("long CSV: one row per case and metric, full precision") {
  const std::string csv = render_long_csv({two_key_report()}, {});
  CHECK(csv.rfind("report,id,variant,label,fidelity,", 0) == 0);
  // 6 cases × (speedup, latency) = 12 rows + header.
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 13);
  CHECK(csv.find(",sea,sea,stand-in,cpu,ok,") != std::string::npos);
  CHECK(csv.find(",speedup,2.3636363636363638,x,") != std::string::npos);
}

TEST_CASE("--aggregate pools the samples of repeated runs of one spec") {
  const Report r = aggregate_reports({two_key_report(1.0), two_key_report(2.0)});
  const Json& c = r.cases()[1];  // sea, first key
  CHECK(c["metrics"]["latency"]["samples"].size() == 14);
  CHECK(c["metrics"]["latency"]["median"].get<double>() == doctest::Approx(7.5));  // 4..7 and 8..14 pooled
  CHECK(c["aggregated_runs"] == 2);
  Json other = two_key_report().doc;
  other["meta"]["spec"]["sha256"] = "def";
  CHECK_THROWS_WITH(aggregate_reports({two_key_report(), report_from_json(other, "other.json")}),
                    doctest::Contains("ran another spec"));
}

TEST_CASE("table -m niah gives the heat map of results/cpu/niah.json") {
  const Report r = load_report(std::string(ATTN_SOURCE_DIR) + "/results/cpu/niah.json");
  const Table t = build_niah_table({r}, {});
  CHECK(t.cols.front() == "4k d=0");
  CHECK(t.cols.back() == "mean");
  CHECK(t.cols.size() == 3 * 5 + 1);
  CHECK(t.rows.size() == r.cases().size());
  const std::string md = render_markdown(t);
  CHECK(md.find("| gqa | 100 | 100 |") != std::string::npos);
  CHECK_THROWS_WITH(build_niah_table({two_key_report()}, {}), doctest::Contains("no case of these reports has a `niah`"));
}
