// `table` and `compare` logic on the hand-made reports in tests/data (report_a.json: mha,
// gqa, block_topk and linear at kv_len 1024 and 4096, with one skipped and one failed case;
// report_slow.json: the same ids with gqa@4096 1.3x slower and block_topk@1024 1.02x).
#include <doctest/doctest.h>

#include <random>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "analysis/compare.hpp"
#include "analysis/table.hpp"
#include "core/errors.hpp"

using namespace ab::analysis;
using doctest::Approx;

namespace {

const std::string kData = std::string(ATTN_SOURCE_DIR) + "/tests/data/";
const std::string kGqa = "gqa(kv_heads=4)";
const std::string kTopk = "block_topk(block=64, keep=0.25)";
const std::string kKey1k = "prefill_b1_h16_kv16_d64_q1024_k1024_full_f32";
const std::string kKey4k = "prefill_b1_h16_kv16_d64_q4096_k4096_full_f32";

// Options without designated initialisers (GCC 12 warns on the omitted members).
TableOptions topt(std::string metric, std::string baseline = "", std::string rows = "",
                  std::string cols = "") {
  TableOptions o;
  o.metric = std::move(metric);
  o.baseline = std::move(baseline);
  o.rows = std::move(rows);
  o.cols = std::move(cols);
  return o;
}

CompareOptions copt(std::string metric, double max_slowdown = 0.05, double alpha = 0.05,
                    double max_drop = 0.01) {
  CompareOptions o;
  o.metric = std::move(metric);
  o.max_slowdown = max_slowdown;
  o.alpha = alpha;
  o.max_drop = max_drop;
  return o;
}

Report report_a() { return load_report(kData + "report_a.json"); }
Report report_slow() { return load_report(kData + "report_slow.json"); }

const Cell& cell(const Table& t, const std::string& row, const std::string& col) {
  size_t r = 0, c = 0;
  while (r < t.rows.size() && t.rows[r] != row) ++r;
  while (c < t.cols.size() && t.cols[c] != col) ++c;
  REQUIRE_MESSAGE(r < t.rows.size(), "no row " << row);
  REQUIRE_MESSAGE(c < t.cols.size(), "no column " << col);
  return t.cells[r][c];
}

Json& case_by_id(Json& doc, const std::string& id) {
  for (auto& c : doc["cases"])
    if (c["id"] == id) return c;
  FAIL("no case " << id);
  return doc;
}

std::string message_of(const auto& fn) {
  try {
    fn();
  } catch (const ab::InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

const CaseDelta& row_of(const Comparison& c, const std::string& id) {
  for (const auto& d : c.rows)
    if (d.id == id) return d;
  FAIL("no compared row " << id);
  return c.rows.front();
}

}  // namespace

TEST_SUITE("table") {

TEST_CASE("reading reports: errors name the file and the rule") {
  CHECK(report_a().cases().size() == 8);
  CHECK(report_a().baseline() == "mha");
  CHECK(message_of([] { load_report(kData + "no_such_report.json"); }).find("cannot read report") !=
        std::string::npos);
  CHECK(message_of([] { report_from_json(Json::parse("[1, 2]"), "x.json"); })
            .find("not an attn-bench report") != std::string::npos);
  CHECK(message_of([] { report_from_json(Json::parse(R"({"schema_version": "1.0.0"})"), "x.json"); })
            .find("not an attn-bench report") != std::string::npos);
  Json doc = report_a().doc;
  doc["schema_version"] = "2.0.0";
  CHECK(message_of([&] { report_from_json(doc, "v2.json"); }).find("schema_version 2.0.0") !=
        std::string::npos);
  doc["schema_version"] = "1.3.0";  // a minor bump only adds keys: still readable
  CHECK_NOTHROW(report_from_json(doc, "v13.json"));
  doc["complete"] = false;
  CHECK(report_from_json(doc, "partial.json").warnings.size() == 1);
}

TEST_CASE("lookup by dotted path; n/a blocks read as absent") {
  const Report a = report_a();
  const Json& topk = a.cases()[2];
  CHECK(lookup_number(topk, "metrics.recall.mass_recall.mean").value() == Approx(0.962));
  CHECK(lookup_text(topk, "problem.kv_len") == "1024");
  CHECK(lookup_text(topk, "problem.causal") == "false");
  const Json& linear = a.cases()[3];
  CHECK_FALSE(lookup_number(linear, "metrics.recall.mass_recall.mean").has_value());
  CHECK_FALSE(lookup_number(linear, "metrics.nothing.here").has_value());
}

TEST_CASE("speedup against the report's baseline, matched by problem key") {
  const Table t = build_table({report_a()}, {});
  CHECK(t.metric == "speedup");
  CHECK(t.row_axis == "label");
  CHECK(t.col_axis == "kv_len");  // q_len varies too but is fixed by kv_len
  CHECK(t.rows == std::vector<std::string>{"mha", kGqa, kTopk, "linear(feature=elu)"});
  CHECK(t.cols == std::vector<std::string>{"1024", "4096"});
  CHECK(cell(t, "mha", "1024").value == Approx(1.0));
  CHECK(cell(t, kGqa, "1024").value == Approx(1.25));
  CHECK(cell(t, kGqa, "4096").value == Approx(1.6));
  CHECK(cell(t, kTopk, "1024").value == Approx(2.0));
  CHECK(cell(t, kTopk, "4096").kind == Cell::Kind::skipped);
  CHECK(cell(t, "linear(feature=elu)", "1024").value == Approx(2.5));
  CHECK(cell(t, "linear(feature=elu)", "4096").kind == Cell::Kind::failed);
  CHECK(t.title.find("baseline mha") != std::string::npos);
  CHECK(t.legend.find("same problem key") != std::string::npos);
  CHECK(t.warnings.empty());
}

TEST_CASE("baseline lookup uses the problem key, not the position, and stays in its report") {
  Json doc = report_a().doc;
  // Move the 4096 baseline to the front and make the 1024 baseline disappear.
  Json cases = Json::array();
  for (auto& c : doc["cases"])
    if (c["id"] == "mha/" + kKey4k) cases.push_back(c);
  for (auto& c : doc["cases"])
    if (c["id"] != "mha/" + kKey4k && c["id"] != "mha/" + kKey1k) cases.push_back(c);
  doc["cases"] = cases;
  const Table t = build_table({report_from_json(doc, "shuffled.json")}, {});
  CHECK(cell(t, kGqa, "4096").value == Approx(1.6));
  CHECK(cell(t, kGqa, "1024").kind == Cell::Kind::na);
  CHECK(cell(t, kGqa, "1024").why == "no baseline");
  CHECK_FALSE(t.warnings.empty());

  // Two reports: report B's baseline is twice as slow, so only B's speedups double.
  Json b = report_a().doc;
  for (auto& c : b["cases"]) {
    c["label"] = c["label"].get<std::string>() + "@b";
    if (c["variant"] == "mha") c["metrics"]["latency"]["median"] = c["metrics"]["latency"]["median"].get<double>() * 2;
  }
  const Table two = build_table({report_a(), report_from_json(b, "b.json")}, {});
  CHECK(cell(two, kGqa, "4096").value == Approx(1.6));
  CHECK(cell(two, kGqa + "@b", "4096").value == Approx(3.2));
  CHECK(cell(two, "mha@b", "1024").value == Approx(1.0));
}

TEST_CASE("explicit baseline by variant or label; unknown names suggest the closest") {
  const Table by_variant = build_table({report_a()}, topt("", "gqa"));
  CHECK(cell(by_variant, "mha", "1024").value == Approx(0.8));
  CHECK(cell(by_variant, kGqa, "1024").value == Approx(1.0));
  const Table by_label = build_table({report_a()}, topt("speedup", kGqa));
  CHECK(cell(by_label, "mha", "4096").value == Approx(0.625));
  const std::string msg = message_of([] { build_table({report_a()}, topt("", "mah")); });
  CHECK(msg.find("did you mean 'mha'") != std::string::npos);
  // No baseline at all: latency by default, an error when speedup is asked for.
  Json doc = report_a().doc;
  doc["meta"]["run"]["baseline"] = "";
  CHECK(build_table({report_from_json(doc)}, {}).metric == "latency");
  CHECK(message_of([&] { build_table({report_from_json(doc)}, topt("speedup")); })
            .find("needs a baseline") != std::string::npos);
}

TEST_CASE("other metrics come from the name -> path table") {
  const Table lat = build_table({report_a()}, topt("latency"));
  CHECK(cell(lat, "mha", "1024").value == Approx(2.007));  // ms
  CHECK(cell_text(lat, cell(lat, "mha", "1024")) == "2.01");
  CHECK(cell_text(lat, cell(lat, "mha", "4096")) == "32.1");
  const Table tf = build_table({report_a()}, topt("tflops"));
  CHECK(cell(tf, "mha", "1024").value == Approx(4.0 * 16 * 1024 * 1024 * 64 / 2.007e-3 / 1e12));
  const Table rec = build_table({report_a()}, topt("recall"));
  CHECK(cell_text(rec, cell(rec, kTopk, "1024")) == "0.962");
  CHECK(cell(rec, "mha", "1024").kind == Cell::Kind::na);
  CHECK(cell(rec, "linear(feature=elu)", "1024").kind == Cell::Kind::na);  // {"status":"n/a"}
  const Table den = build_table({report_a()}, topt("density"));
  CHECK(cell(den, kTopk, "1024").value == Approx(0.25));
  const Table err = build_table({report_a()}, topt("error"));
  CHECK(cell_text(err, cell(err, "mha", "1024")) == "2.10e-07");
  CHECK(message_of([] { build_table({report_a()}, topt("speedpu")); }).find("'speedup'") !=
        std::string::npos);
}

TEST_CASE("several metrics side by side: one column per (column value, metric)") {
  const Table t = build_table({report_a()}, topt("recall,speedup"));
  const Table rec = build_table({report_a()}, topt("recall"));
  const Table sp = build_table({report_a()}, topt("speedup"));
  REQUIRE(t.cols.size() == 2 * rec.cols.size());
  CHECK(t.rows == rec.rows);
  for (const auto& c : rec.cols) {
    const std::string col = rec.col_axis + "=" + c;
    // Each cell is the single-metric table's cell, printed in its own metric's style.
    CHECK(cell_text(t, cell(t, kTopk, col + " recall")) == cell_text(rec, cell(rec, kTopk, c)));
    CHECK(cell_text(t, cell(t, kTopk, col + " speedup")) == cell_text(sp, cell(sp, kTopk, c)));
    CHECK(cell(t, "mha", col + " recall").kind == Cell::Kind::na);
  }
  CHECK(t.title.find("recall, speedup") == 0);
  CHECK(t.title.find("vs baseline") != std::string::npos);
  CHECK(render_markdown(t).find("| " + rec.col_axis + "=" + rec.cols[0] + " recall |") != std::string::npos);
  CHECK(message_of([] { build_table({report_a()}, topt("recall,spedup")); }).find("'speedup'") !=
        std::string::npos);
}

TEST_CASE("axes: problem fields, param.NAME, key; unknown axes suggest") {
  const Table t = build_table({report_a()}, topt("latency", "", "kv_len", "label"));
  CHECK(t.rows == std::vector<std::string>{"1024", "4096"});
  CHECK(cell(t, "4096", kGqa).value == Approx(20.07));
  const Table p = build_table({report_a()}, topt("latency", "", "param.kv_heads", "seq_len"));
  CHECK(p.rows == std::vector<std::string>{"-", "4"});
  CHECK(cell(p, "4", "4096").value == Approx(20.07));
  CHECK(!p.warnings.empty());  // mha, block_topk, linear share the "-" row
  const Table k = build_table({report_a()}, topt("", "", "", "key"));
  // Key headers keep only the parts that differ; the shared rest is named once (docs/tables.md).
  REQUIRE(k.cols.size() == 2);
  CHECK(kKey1k.find(k.cols[0]) != std::string::npos);
  CHECK(kKey4k.find(k.cols[1]) != std::string::npos);
  CHECK(k.cols[0] != k.cols[1]);
  CHECK(!k.common.empty());
  CHECK(k.title.find("every column: " + k.common) != std::string::npos);
  // Default columns when rows is a problem field: the labels.
  CHECK(build_table({report_a()}, topt("", "", "kv_len")).col_axis == "label");
  CHECK(message_of([] { build_table({report_a()}, topt("", "", "kvlen")); }).find("'kv_len'") !=
        std::string::npos);
  CHECK(message_of([] { check_axis("lable"); }).find("'label'") != std::string::npos);
  CHECK_NOTHROW(check_axis("param.block"));
}

TEST_CASE("markdown: title, table, legend") {
  TableOptions plain;  // numbers only: the ± and bold decorations are tested in test_tables_paper.cpp
  plain.intervals = plain.bold_best = false;
  const std::string md = render_markdown(build_table({report_a()}, plain));
  CHECK(md.find("**speedup vs baseline mha; rows: label, columns: kv_len**") == 0);
  CHECK(md.find("| label | kv_len=1024 | kv_len=4096 |") != std::string::npos);
  CHECK(md.find("| gqa(kv_heads=4) | 1.25 | 1.60 |") != std::string::npos);
  CHECK(md.find("| block_topk(block=64, keep=0.25) | 2.00 | skipped |") != std::string::npos);
  CHECK(md.find("| linear(feature=elu) | 2.50 | failed |") != std::string::npos);
  CHECK(markdown_escape("a|b") == "a\\|b");
}

TEST_CASE("csv: RFC 4180 quoting, numeric cells, a status column") {
  CHECK(csv_field("plain") == "plain");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_field("two\nlines") == "\"two\nlines\"");
  const std::string csv = render_csv(build_table({report_a()}, {}));
  CHECK(csv.find("label,kv_len=1024,kv_len=4096,status\r\n") == 0);
  CHECK(csv.find("\r\nmha,1.00,1.00,ok\r\n") != std::string::npos);
  CHECK(csv.find("\r\n\"block_topk(block=64, keep=0.25)\",2.00,,kv_len=4096: skipped\r\n") !=
        std::string::npos);
  CHECK(csv.find("\r\nlinear(feature=elu),2.50,,kv_len=4096: failed\r\n") != std::string::npos);
}

TEST_CASE("latex: booktabs rules and escaped specials") {
  CHECK(latex_escape("block_topk") == "block\\_topk");
  CHECK(latex_escape("a&b 50% #1 $x {y}") == "a\\&b 50\\% \\#1 \\$x \\{y\\}");
  CHECK(latex_escape("~^\\") == "\\textasciitilde{}\\textasciicircum{}\\textbackslash{}");
  CHECK(latex_escape("a<b>c|d") == "a\\textless{}b\\textgreater{}c\\textbar{}d");
  TableOptions plain;
  plain.intervals = plain.bold_best = false;
  const std::string tex = render_latex(build_table({report_a()}, plain));
  CHECK(tex.find("\\begin{tabular}{lrr}\n\\toprule\n") != std::string::npos);
  CHECK(tex.find(" & \\multicolumn{2}{c}{kv\\_len} \\\\\n\\cmidrule(lr){2-3}\n") != std::string::npos);
  CHECK(tex.find("label & 1024 & 4096 \\\\\n\\midrule\n") != std::string::npos);
  CHECK(tex.find("block\\_topk(block=64, keep=0.25) & 2.00 & skipped \\\\\n") != std::string::npos);
  CHECK(tex.find("gqa(kv\\_heads=4) & 1.25 & 1.60 \\\\\n") != std::string::npos);
  CHECK(tex.find("\\bottomrule\n\\end{tabular}\n") != std::string::npos);
  // Everything outside the tabular is a comment line.
  CHECK(tex.rfind("\n% ") != std::string::npos);
}

TEST_CASE("number formatting") {
  CHECK(format_number(1.25, NumberStyle::fixed2) == "1.25");
  CHECK(format_number(123.4, NumberStyle::significant3) == "123");
  CHECK(format_number(12.34, NumberStyle::significant3) == "12.3");
  CHECK(format_number(0.01234, NumberStyle::significant3) == "0.0123");
  CHECK(format_number(2.1e-7, NumberStyle::scientific) == "2.10e-07");
}

}  // TEST_SUITE

TEST_SUITE("compare") {

// `runs` copies of a report with every latency sample scaled by factors[i] (a run's machine
// state), and `slow` more for case `id` (a real change).
std::vector<Report> runs_of(const Report& r, const std::vector<double>& factors,
                            const std::string& id = "", double slow = 1.0) {
  std::vector<Report> out;
  for (std::size_t i = 0; i < factors.size(); ++i) {
    Json doc = r.doc;
    for (auto& c : doc["cases"]) {
      if (!c["metrics"].contains("latency")) continue;
      const double f = factors[i] * (c["id"] == id ? slow : 1.0);
      for (auto& v : c["metrics"]["latency"]["samples"]) v = v.get<double>() * f;
      c["metrics"]["latency"]["median"] = c["metrics"]["latency"]["median"].get<double>() * f;
    }
    out.push_back(report_from_json(doc, r.name + "-run" + std::to_string(i + 1) + ".json"));
  }
  return out;
}

TEST_CASE("a report against itself: no regression") {
  const Comparison c = compare_reports(report_a(), report_a(), {});
  CHECK(c.rows.size() == 6);
  CHECK(c.single_run);
  CHECK(c.regressions == 0);
  CHECK(comparison_exit_code(c) == 0);
  for (const auto& d : c.rows) {
    CHECK(d.verdict == Verdict::ok);
    CHECK(d.ratio == Approx(1.0));
    CHECK(d.p.value() == Approx(1.0));
    CHECK(d.ci_lo.value() <= 1.0);
    CHECK(d.ci_hi.value() >= 1.0);
    CHECK(d.method == "within-run bootstrap");
  }
  CHECK(c.summary.value() == Approx(1.0));
  CHECK(c.not_compared.size() == 2);  // the skipped and the failed case
  CHECK(c.only_base.empty());
  CHECK(c.only_next.empty());
}

TEST_CASE("one report per side: the threshold is widened by the noise floor") {
  // 1.3x with 8 vs 8 samples fully separated: the within-run interval is far above 1.05, but
  // one run per side cannot tell a code change from the machine's drift between runs.
  const Comparison c = compare_reports(report_a(), report_slow(), {});
  const CaseDelta& g = row_of(c, kGqa + "/" + kKey4k);
  CHECK(g.ratio == Approx(1.3));
  CHECK(g.ci_lo.value() > 1.2);
  CHECK(g.threshold >= 1.02 * (1 + kDefaultNoiseFloor) - 1);  // times the runs' own spread
  CHECK(g.verdict == Verdict::ok);
  CHECK(c.regressions == 0);
  CHECK(comparison_exit_code(c) == 0);
  const std::string out = render_comparison(c);
  CHECK(out.find("run-to-run variance is unknown") != std::string::npos);
  CHECK(out.find("no interval: one run per side") != std::string::npos);

  // With no floor, the same change is a regression; its p-value is shown for information.
  CompareOptions no_floor;
  no_floor.noise_floor = 0;
  const Comparison raw = compare_reports(report_a(), report_slow(), no_floor);
  CHECK(raw.regressions == 1);
  CHECK(comparison_exit_code(raw) == 1);
  const CaseDelta& r = row_of(raw, kGqa + "/" + kKey4k);
  CHECK(r.verdict == Verdict::regressed);
  CHECK(r.p.value() == Approx(2.0 / 12870.0));  // complete separation: 2 / C(16, 8)
  CHECK(row_of(raw, kTopk + "/" + kKey1k).verdict != Verdict::regressed);  // 1.02x
  CHECK(raw.summary.value() == Approx(std::pow(1.3 * 1.02, 1.0 / 6.0)));
  CHECK(render_comparison(raw).find("result: 1 regression(s)") != std::string::npos);
  no_floor.max_slowdown = 0.5;
  CHECK(compare_reports(report_a(), report_slow(), no_floor).regressions == 0);
  no_floor.max_slowdown = 0.05;
  const Comparison back = compare_reports(report_slow(), report_a(), no_floor);
  CHECK(row_of(back, kGqa + "/" + kKey4k).verdict == Verdict::faster);
  CHECK(back.regressions == 0);

  // A noise calibration gives the run-to-run variance: then one run per side is a real test.
  NoiseCalibration cal;
  cal.path = "cal.json";
  for (const auto& d : c.rows) cal.cases[d.id] = {0.02, 10, 0};
  CompareOptions with_cal;
  with_cal.noise = &cal;
  const Comparison calibrated = compare_reports(report_a(), report_slow(), with_cal);
  const CaseDelta& k = row_of(calibrated, kGqa + "/" + kKey4k);
  CHECK(k.method == "calibrated");
  CHECK(k.threshold == Approx(CompareOptions{}.max_slowdown));
  CHECK(k.verdict == Verdict::regressed);
  CHECK(calibrated.regressions == 1);
}

TEST_CASE("several runs per side: the spread of per-run medians decides") {
  const std::string id = kGqa + "/" + kKey4k;
  // The machine drifts by +-8% from run to run; rounds are paired, so drift cancels.
  const std::vector<double> drift = {1.0, 1.08, 0.93, 1.04};
  const auto a = runs_of(report_a(), drift);
  const auto aa = compare_runs(a, runs_of(report_a(), drift), {});
  CHECK_FALSE(aa.single_run);
  CHECK(aa.paired);
  CHECK(aa.regressions == 0);
  CHECK(comparison_exit_code(aa) == 0);
  CHECK(aa.summary_lo.value() <= 1.0 + 1e-9);
  CHECK(aa.summary_hi.value() >= 1.0 - 1e-9);
  // The same binary with a drift that does not match round by round: it is common to every
  // case of a run, so the shift adjustment takes it out; without it the rows widen. Either
  // way none is flagged.
  const auto b_drift = runs_of(report_a(), {1.03, 0.97, 1.06, 0.95});
  const auto shifted = compare_runs(a, b_drift, {});
  CHECK(shifted.adjusted);
  CHECK(shifted.regressions == 0);
  for (const auto& d : shifted.rows) CHECK(d.ratio == Approx(1.0));
  CompareOptions raw;
  raw.adjust_common_shift = false;
  const auto shifted_raw = compare_runs(a, b_drift, raw);
  CHECK_FALSE(shifted_raw.adjusted);
  CHECK(shifted_raw.regressions == 0);
  for (const auto& d : shifted_raw.rows) CHECK(d.ci_hi.value() - d.ci_lo.value() > 0.02);

  // A real 12% slowdown of one case under the same drift: REGRESSED, the others ok.
  const auto slow = compare_runs(a, runs_of(report_a(), {1.01, 1.07, 0.94, 1.05}, id, 1.12), {});
  const CaseDelta& g = row_of(slow, id);
  CHECK(g.runs_base == 4);
  CHECK(g.runs_next == 4);
  CHECK(g.n_base == 32);
  CHECK(g.method == "paired+moderated, shift-adjusted");
  CHECK(g.ratio == Approx(1.12));  // each run's drift, common to all cases, is taken out
  // Weighted Bonferroni: half of alpha over the 6 cases, half over the 2 variants of 2+ cases
  // and the summary.
  CHECK(slow.tests == 9);
  CHECK(slow.aggregate_tests == 3);
  CHECK(slow.case_level == Approx(1 - 0.025 / 6));
  CHECK(slow.aggregate_level == Approx(1 - 0.025 / 3));
  CHECK(g.verdict == Verdict::regressed);
  CHECK(slow.regressions == 1);
  CHECK(comparison_exit_code(slow) == 1);
  const std::string text = render_comparison(slow);
  CHECK(text.find("4/4") != std::string::npos);     // runs per side
  CHECK(text.find("32/32") != std::string::npos);   // samples per side
  CHECK(text.find("99.58% CI") != std::string::npos);
  CHECK(text.find("99.17% CI") != std::string::npos);  // the per-variant rows
  CHECK(text.find("(Bonferroni, weighted)") != std::string::npos);
  CHECK(text.find("variances moderated over cases") != std::string::npos);
  CHECK(text.find("paired by round") != std::string::npos);
  // Without the adjustment the ratio carries the drift; unpaired, the drift between rounds is
  // noise too, and the interval widens.
  const auto b_slow = runs_of(report_a(), {1.01, 1.07, 0.94, 1.05}, id, 1.12);
  const Comparison paired_raw = compare_runs(a, b_slow, raw);
  const CaseDelta& p = row_of(paired_raw, id);
  CHECK(p.method == "paired+moderated");
  CHECK(p.ratio == Approx(1.12 * std::pow(1.01 / 1.0 * 1.07 / 1.08 * 0.94 / 0.93 * 1.05 / 1.04, 0.25)));
  CHECK(p.verdict == Verdict::regressed);
  raw.paired = false;
  const Comparison unpaired_raw = compare_runs(a, b_slow, raw);
  const CaseDelta& u = row_of(unpaired_raw, id);
  CHECK(u.method == "pooled+moderated");
  CHECK(u.ci_hi.value() - u.ci_lo.value() > p.ci_hi.value() - p.ci_lo.value());
  // Each case on its own runs only: 3 degrees of freedom, a wider interval.
  raw.paired = true;
  raw.moderate = false;
  const Comparison own_only = compare_runs(a, b_slow, raw);
  const CaseDelta& o = row_of(own_only, id);
  CHECK(o.method == "paired");
  CHECK(own_only.prior_df == 0);
  CHECK(paired_raw.prior_df > 0);
}

TEST_CASE("a variant's cases together: a slowdown too small for any one case is flagged on the variant") {
  // 8 paired rounds; every case's run moves by its own +-4% (a fixed pseudo-random pattern) and
  // each run by a common drift. mha's two cases are 5% slower in NEW.
  std::mt19937 rng(11);
  auto noise = [&] { return 1.0 + 0.08 * (static_cast<double>(rng()) / 4294967296.0 - 0.5); };
  auto make = [&](double mha_slow) {
    std::vector<Report> out;
    for (int i = 0; i < 8; ++i) {
      Json doc = report_a().doc;
      const double drift = 1.0 + 0.03 * ((i * 7) % 5 - 2);
      for (auto& c : doc["cases"]) {
        if (!c["metrics"].contains("latency")) continue;
        const bool is_mha = c["id"].get<std::string>().rfind("mha/", 0) == 0;
        const double f = drift * noise() * (is_mha ? mha_slow : 1.0);
        for (auto& v : c["metrics"]["latency"]["samples"]) v = v.get<double>() * f;
        c["metrics"]["latency"]["median"] = c["metrics"]["latency"]["median"].get<double>() * f;
      }
      out.push_back(report_from_json(doc, "run" + std::to_string(i) + ".json"));
    }
    return out;
  };
  const auto base = make(1.0);
  const Comparison aa = compare_runs(base, make(1.0), {});
  CHECK(aa.group_regressions == 0);
  CHECK(comparison_exit_code(aa) == 0);
  const Comparison c = compare_runs(base, make(1.05), {});
  REQUIRE(c.groups.size() == 2);  // mha and gqa have two timed cases each; the others one
  const GroupDelta* mha = nullptr;
  for (const auto& g : c.groups)
    if (g.variant == "mha") mha = &g;
  REQUIRE(mha);
  CHECK(mha->cases == 2);
  CHECK(mha->ratio == Approx(1.05).epsilon(0.03));
  CHECK(mha->ci_lo.value() > 1.0);
  CHECK(mha->verdict == Verdict::regressed);
  CHECK(c.group_regressions == 1);
  CHECK(comparison_exit_code(c) == 1);
  CHECK(render_comparison(c).find("per variant") != std::string::npos);
  const Json j = comparison_json(c);
  CHECK(j["group_regressions"] == 1);
  CHECK(render_comparison_markdown(c).find("| mha | 2 |") != std::string::npos);
}

TEST_CASE("a variant's common shift is taken over the other variants' cases") {
  // Four copies of the four timed non-mha cases under other variant names, so that mha's two
  // cases have 12 others to take each run's shift from. Every case moves by its own fixed
  // pseudo-random amount per run; mha's cases are FACTOR slower in NEW.
  auto make = [](double mha_slow, unsigned seed) {
    std::mt19937 rng(seed);
    auto noise = [&] { return 1.0 + 0.06 * (static_cast<double>(rng()) / 4294967296.0 - 0.5); };
    std::vector<Report> out;
    for (int i = 0; i < 6; ++i) {
      Json doc = report_a().doc;
      Json cases = Json::array();
      for (const auto& c : doc["cases"]) {
        if (!c["metrics"].contains("latency")) continue;
        const std::string id = c["id"];
        const bool is_mha = id.rfind("mha/", 0) == 0;
        for (int copy = 0; copy < (is_mha ? 1 : 3); ++copy) {
          Json k = c;
          if (copy) k["id"] = "copy" + std::to_string(copy) + "-" + id;
          const double f = noise() * (is_mha ? mha_slow : 1.0);
          for (auto& v : k["metrics"]["latency"]["samples"]) v = v.get<double>() * f;
          k["metrics"]["latency"]["median"] = k["metrics"]["latency"]["median"].get<double>() * f;
          cases.push_back(k);
        }
      }
      doc["cases"] = cases;
      out.push_back(report_from_json(doc, "run" + std::to_string(i) + ".json"));
    }
    return out;
  };
  const auto base = make(1.0, 5);
  auto mha_ratio = [&](double slow) {
    const Comparison c = compare_runs(base, make(slow, 6), {});
    REQUIRE(c.adjusted);
    for (const auto& g : c.groups)
      if (g.variant == "mha") return g.ratio;
    FAIL("no mha group");
    return 0.0;
  };
  // The shift of mha's runs does not see mha's own change: the estimate moves by exactly it.
  // (With mha's cases inside the median, a slower mha drags each NEW run's shift up and the
  // estimate moves by less.)
  CHECK(mha_ratio(1.05) / mha_ratio(1.0) == Approx(1.05).epsilon(1e-12));
  CHECK(mha_ratio(1.20) / mha_ratio(1.0) == Approx(1.20).epsilon(1e-12));
}

TEST_CASE("markdown and JSON for a pull-request comment") {
  const std::string id = kGqa + "/" + kKey4k;
  const std::vector<double> drift = {1.0, 1.02, 0.99};
  const Comparison c = compare_runs(runs_of(report_a(), drift), runs_of(report_a(), drift, id, 1.2), {});
  const std::string md = render_comparison_markdown(c);
  CHECK(md.find("| case | runs | n | base ms | new ms | ratio | 99.58% CI | verdict |") != std::string::npos);
  CHECK(md.find("**REGRESSED**") != std::string::npos);
  CHECK(md.find("**regression**") != std::string::npos);
  const Json j = comparison_json(c);
  CHECK(j["exit_code"] == 1);
  CHECK(j["regressions"] == 1);
  bool found = false;
  for (const auto& r : j["rows"])
    if (r["id"] == id) {
      found = true;
      CHECK(r["verdict"] == "REGRESSED");
      CHECK(r["runs"][0] == 3);
      CHECK(r["ci"][0].get<double>() > 1.05);
    }
  CHECK(found);
}

TEST_CASE("reports made under other conditions are refused, or compared with warnings") {
  Json next = report_a().doc;
  next["meta"]["run"]["threads"] = 1;
  next["meta"]["host"]["hostname"] = "elsewhere";
  const std::string msg = message_of([&] { compare_reports(report_a(), report_from_json(next, "n.json"), {}); });
  CHECK(msg.find("meta.run.threads") != std::string::npos);
  CHECK(msg.find("meta.host.hostname") != std::string::npos);
  CHECK(msg.find("--allow-mismatch") != std::string::npos);
  CompareOptions allow;
  allow.allow_mismatch = true;
  const Comparison c = compare_reports(report_a(), report_from_json(next, "n.json"), allow);
  CHECK(c.mismatches.size() == 2);
  CHECK(render_comparison(c).find("WARNING: not comparable: meta.host.hostname") != std::string::npos);
  // Build flags and the spec's sha256 count too.
  Json flags = report_a().doc;
  flags["meta"]["build"]["flags"] = "-O0";
  flags["meta"]["spec"]["sha256"] = "ff";
  CHECK(meta_mismatches({report_a()}, {report_from_json(flags)}).size() == 2);
}

TEST_CASE("a run that stopped above its target RSE is flagged in the row") {
  Json next = report_a().doc;
  Json& lat = case_by_id(next, "mha/" + kKey1k)["metrics"]["latency"];
  lat["stop"] = "max_samples";
  lat["rse"] = 0.05;
  lat["target_rse"] = 0.01;
  const Comparison c = compare_reports(report_a(), report_from_json(next), {});
  CHECK(row_of(c, "mha/" + kKey1k).rse_unmet);
  CHECK(row_of(c, "mha/" + kKey1k).note.find("rse>target") != std::string::npos);
  CHECK_FALSE(row_of(c, kGqa + "/" + kKey1k).rse_unmet);
  CHECK(c.rse_unmet == 1);
  CHECK(render_comparison(c).find("above metrics.latency.target_rse") != std::string::npos);
}

TEST_CASE("unmatched ids, duplicate ids, and no matched case at all") {
  Json next = report_slow().doc;
  next["cases"].erase(0);  // drop mha@1024
  Json extra = next["cases"][0];
  extra["id"] = "new_variant/" + kKey1k;
  next["cases"].push_back(extra);
  const Comparison c = compare_reports(report_a(), report_from_json(next, "next.json"), {});
  CHECK(c.only_base == std::vector<std::string>{"mha/" + kKey1k});
  CHECK(c.only_next == std::vector<std::string>{"new_variant/" + kKey1k});
  CHECK(c.rows.size() == 5);

  Json renamed = report_a().doc;
  for (auto& k : renamed["cases"]) k["id"] = "other/" + k["id"].get<std::string>();
  const Comparison none = compare_reports(report_a(), report_from_json(renamed), {});
  CHECK(none.rows.empty());
  CHECK(comparison_exit_code(none) == 2);  // nothing compared is not a pass
  CHECK(render_comparison(none).find("no matched cases") != std::string::npos);

  Json dup = report_a().doc;
  dup["cases"].push_back(dup["cases"][0]);
  CHECK(compare_reports(report_a(), report_from_json(dup), {}).notes.size() == 2);  // + the one-run note
}

TEST_CASE("few or missing samples cannot make a regression") {
  CompareOptions no_floor;
  no_floor.noise_floor = 0;
  Json next = report_slow().doc;
  Json& g = case_by_id(next, kGqa + "/" + kKey4k);
  g["metrics"]["latency"]["samples"] = Json::array({0.026, 0.0261, 0.0262});
  Json base = report_a().doc;
  case_by_id(base, kGqa + "/" + kKey4k)["metrics"]["latency"]["samples"] = Json::array({0.020, 0.0201});
  const Comparison few = compare_reports(report_from_json(base), report_from_json(next), no_floor);
  const CaseDelta& d = row_of(few, kGqa + "/" + kKey4k);
  CHECK(d.verdict == Verdict::slower_not_significant);
  CHECK(d.note.find("too few samples") != std::string::npos);

  g["metrics"]["latency"].erase("samples");
  const Comparison none = compare_reports(report_a(), report_from_json(next), no_floor);
  const CaseDelta& e = row_of(none, kGqa + "/" + kKey4k);
  CHECK_FALSE(e.p.has_value());
  CHECK_FALSE(e.ci_lo.has_value());
  CHECK(e.ratio == Approx(0.026091 / 0.02007));
  CHECK(e.verdict == Verdict::slower_not_significant);
  CHECK(none.regressions == 0);
}

TEST_CASE("deterministic metrics: FLOPs, bytes and density compare exactly or within a tolerance") {
  Json next = report_a().doc;
  Json& f = case_by_id(next, "mha/" + kKey1k)["metrics"]["flops"];
  f["executed"] = f["executed"].get<double>() * 1.001;
  const Comparison c = compare_reports(report_a(), report_from_json(next), copt("flops"));
  CHECK(row_of(c, "mha/" + kKey1k).verdict == Verdict::regressed);
  CHECK(row_of(c, kGqa + "/" + kKey1k).verdict == Verdict::ok);
  CHECK(comparison_exit_code(c) == 1);
  CompareOptions loose = copt("flops");
  loose.tolerance = 0.01;
  CHECK(compare_reports(report_a(), report_from_json(next), loose).regressions == 0);
  f["executed"] = f["executed"].get<double>() * 0.5;
  CHECK(row_of(compare_reports(report_a(), report_from_json(next), copt("flops")), "mha/" + kKey1k).verdict ==
        Verdict::improved);
  CHECK(compare_reports(report_a(), report_a(), copt("bytes")).regressions == 0);
  Json dense = report_a().doc;
  case_by_id(dense, kTopk + "/" + kKey1k)["metrics"]["flops"]["density"] = 0.5;
  const Comparison d = compare_reports(report_a(), report_from_json(dense), copt("density"));
  CHECK(row_of(d, kTopk + "/" + kKey1k).verdict == Verdict::regressed);
  CHECK(d.notes.front().find("no significance test") != std::string::npos);
}

TEST_CASE("a noise calibration from A/A runs, written and read back") {
  // Drift common to a round's cases is taken out (6 cases: a median is meaningful); what is
  // left of mha@1024 is its own 5% in every round of B.
  const std::vector<double> fa = {1.0, 1.02, 0.98}, fb = {1.01, 1.0, 0.99};
  const std::string id = "mha/" + kKey1k;
  const Json doc = noise_from_aa(runs_of(report_a(), fa), runs_of(report_a(), fb, id, 1.05), Json{{"spec", "x"}});
  const double d = std::log(1.05);
  CHECK(doc["cases"][id]["sigma"].get<double>() == Approx(std::sqrt(3 * d * d / 6)));
  CHECK(doc["cases"][id]["df"] == 3);
  CHECK(doc["cases"][kGqa + "/" + kKey1k]["sigma"].get<double>() == Approx(0).epsilon(1e-12));
  CHECK(doc["cases"].size() == 6);
  const std::string path = std::string(ATTN_BINARY) + ".test-noise.json";
  {
    std::ofstream f(path);
    f << doc.dump(2);
  }
  const NoiseCalibration n = load_noise(path);
  CHECK(n.cases.size() == 6);
  CHECK(n.cases.at(id).df == Approx(3));
  std::remove(path.c_str());
  CHECK(message_of([] { load_noise(kData + "report_a.json"); }).find("not a noise calibration") != std::string::npos);
}

TEST_CASE("recall: an absolute drop beyond --max-drop regresses; no test is made") {
  Json next = report_a().doc;
  Json& t = case_by_id(next, kTopk + "/" + kKey1k);
  t["metrics"]["recall"]["mass_recall"]["mean"] = 0.955;
  const Comparison small = compare_reports(report_a(), report_from_json(next), copt("recall"));
  CHECK(small.rows.size() == 1);  // only block_topk records recall
  CHECK(small.rows[0].verdict == Verdict::ok);
  CHECK(small.rows[0].delta == Approx(-0.007));
  CHECK_FALSE(small.rows[0].p.has_value());
  CHECK(small.notes.front().find("no significance test") != std::string::npos);
  t["metrics"]["recall"]["mass_recall"]["mean"] = 0.94;
  const Comparison big = compare_reports(report_a(), report_from_json(next), copt("recall"));
  CHECK(big.rows[0].verdict == Verdict::regressed);
  CHECK(comparison_exit_code(big) == 1);
  CHECK(compare_reports(report_a(), report_from_json(next), copt("recall", 0.05, 0.05, 0.05))
            .regressions == 0);
  // Cases without recall are listed, not compared.
  bool linear_listed = false;
  for (const auto& n : big.not_compared)
    if (n.id == "linear(feature=elu)/" + kKey1k) linear_listed = n.reason.find("recall not recorded") != std::string::npos;
  CHECK(linear_listed);
}

TEST_CASE("error: a rise beyond factor x base + floor regresses") {
  Json next = report_a().doc;
  // 2.1e-7 -> 5e-7 is 2.4x but under 2 x 2.1e-7 + 1e-6: the floor absorbs rounding noise.
  case_by_id(next, "mha/" + kKey1k)["metrics"]["accuracy"]["rel"] = 5e-7;
  const Comparison ok = compare_reports(report_a(), report_from_json(next), copt("error"));
  CHECK(ok.regressions == 0);
  CHECK(row_of(ok, "mha/" + kKey1k).ratio == Approx(5e-7 / 2.1e-7));
  case_by_id(next, "mha/" + kKey1k)["metrics"]["accuracy"]["rel"] = 2e-6;
  const Comparison bad = compare_reports(report_a(), report_from_json(next), copt("error"));
  CHECK(row_of(bad, "mha/" + kKey1k).verdict == Verdict::regressed);
  // block_topk has recall.output_rel_error on both sides: that is the value compared.
  CHECK(row_of(bad, kTopk + "/" + kKey1k).base == Approx(0.041));
  case_by_id(next, kTopk + "/" + kKey1k)["metrics"]["recall"]["output_rel_error"]["mean"] = 0.09;
  CHECK(row_of(compare_reports(report_a(), report_from_json(next), copt("error")),
               kTopk + "/" + kKey1k)
            .verdict == Verdict::regressed);
  CHECK(message_of([] { compare_reports(report_a(), report_a(), copt("eror")); })
            .find("did you mean 'error'") != std::string::npos);
}

TEST_CASE("threshold parsing") {
  CHECK(parse_fraction("5%", "--max-slowdown") == Approx(0.05));
  CHECK(parse_fraction("0.05", "--max-slowdown") == Approx(0.05));
  CHECK(parse_fraction("12.5%", "--max-slowdown") == Approx(0.125));
  CHECK(parse_fraction("0", "--max-slowdown") == Approx(0));
  CHECK(message_of([] { parse_fraction("5", "--max-slowdown"); }).find("ambiguous") != std::string::npos);
  CHECK(message_of([] { parse_fraction("fast", "--max-slowdown"); }).find("--max-slowdown") != std::string::npos);
  CHECK_THROWS_AS(parse_fraction("-1%", "--max-slowdown"), ab::InputError);
  CHECK(parse_factor("2", "--max-rise") == Approx(2));
  CHECK(parse_factor("3x", "--max-rise") == Approx(3));
  CHECK_THROWS_AS(parse_factor("0.5", "--max-rise"), ab::InputError);
}

}  // TEST_SUITE
