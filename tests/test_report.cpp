// Golden test of the report's structure (docs/report-schema.md) from a real run, and the
// atomic, incremental writer.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "analysis/table.hpp"
#include "core/errors.hpp"
#include "core/report.hpp"
#include "spec/spec.hpp"
#include "runner/runner.hpp"

using json = nlohmann::ordered_json;

namespace {
// Keys in order and value types; arrays by their first element. Free-form objects (params,
// options) are structural too, so the spec below fixes them.
json skeleton(const json& j) {
  if (j.is_object()) {
    json s = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) s[it.key()] = skeleton(it.value());
    return s;
  }
  // Arrays are data (ISA flags, samples, devices): only their being arrays is structure.
  if (j.is_array()) return "array";
  if (j.is_number()) return "number";
  if (j.is_string()) return "string";
  if (j.is_boolean()) return "boolean";
  return "null";
}

// Reports are read back the way table/compare read them.
json read_doc(const std::string& path) { return ab::analysis::load_report(path).doc; }

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attn_bench_test_" + std::to_string(::getpid()) + "_" + name)).string();
}
}  // namespace

TEST_CASE("report structure matches the golden skeleton") {
  const std::string spec = R"(name: golden
seed: 3
problem: {heads: 4, kv_heads: 4, head_dim: 32, seq_len: 67, causal: true}
variants: [mha, {name: gqa, kv_heads: 2}]
metrics:
  flops: {}
  accuracy: {rows: 8}
  latency: {warmup: 1, min_samples: 3, max_samples: 3}
)";
  const ab::Experiment ex = ab::parse_experiment(spec, "golden.yaml", {});
  ab::RunOptions ro;
  ro.output = temp_path("golden.json");
  ro.quiet = true;
  ro.argv = {"attn-bench", "run", "golden.yaml"};
  ro.table_out = nullptr;
  const int rc = ab::run_experiment(ex, ro);
  CHECK(rc == 0);
  const json r = read_doc(ro.output);
  CHECK(!std::filesystem::exists(ro.output + ".tmp"));
  CHECK(r["complete"] == true);
  CHECK(r["schema_version"] == ab::kSchemaVersion);
  REQUIRE(r["cases"].size() == 2);
  CHECK(r["cases"][1]["id"] == "gqa(kv_heads=2)/prefill_b1_h4_kv4_d32_q67_k67_causal_f32");
  CHECK(r["cases"][1]["shape"]["kv_heads"] == 2);
  CHECK(r["cases"][0]["metrics"]["latency"]["samples"].size() == 3);
  CHECK(r["cases"][0]["metrics"]["accuracy"]["pass"] == true);

  json sk = skeleton(r);
  sk["cases"] = json::array({skeleton(r["cases"][0])});
  sk["meta"]["git"]["dirty"] = "boolean or null";  // null outside a git checkout
  const std::string golden_path = std::string(ATTN_SOURCE_DIR) + "/tests/data/report_structure.golden.json";
  if (std::getenv("ATTN_UPDATE_GOLDEN")) {
    std::ofstream(golden_path) << sk.dump(2) << '\n';
    MESSAGE("golden skeleton rewritten: " << golden_path);
  }
  std::ifstream g(golden_path);
  REQUIRE_MESSAGE(g, "missing " << golden_path << " (run with ATTN_UPDATE_GOLDEN=1 to create it)");
  std::stringstream ss;
  ss << g.rdbuf();
  const json golden = json::parse(ss.str());
  CHECK_MESSAGE(sk == golden, "report structure changed; if intended, bump schema_version, update "
                              "docs/report-schema.md and rerun with ATTN_UPDATE_GOLDEN=1\n"
                                  << sk.dump(2));
  std::filesystem::remove(ro.output);
}

TEST_CASE("the writer refuses an unwritable path before anything runs") {
  CHECK_THROWS_AS(ab::ReportWriter("/nonexistent-dir/x/report.json", json::object()), ab::InputError);
}

TEST_CASE("the writer leaves a valid report after every case") {
  const std::string p = temp_path("incremental.json");
  ab::ReportWriter w(p, json{{"x", 1}});
  CHECK(read_doc(p)["cases"].empty());
  w.add_case(json{{"id", "a"}});
  CHECK(read_doc(p)["cases"].size() == 1);
  CHECK(read_doc(p)["complete"] == false);
  w.finish(true);
  CHECK(read_doc(p)["complete"] == true);
  std::filesystem::remove(p);
}


TEST_CASE("the journal holds every case at once; a second writer of the same report is refused") {
  const std::string p = temp_path("journal.json");
  {
    ab::ReportWriter w(p, json{{"spec", {{"sha256", "x"}}}});
    CHECK_THROWS_WITH_AS(ab::ReportWriter(p, json::object()), doctest::Contains("another attn-bench run is writing"),
                         ab::InputError);
    for (int i = 0; i < 50; ++i) w.add_case(json{{"id", "c" + std::to_string(i)}, {"status", "ok"}});
    // The report may lag behind by up to a second of rewrites; the journal does not.
    std::ifstream j(ab::ReportWriter::journal_path(p));
    int lines = 0;
    for (std::string l; std::getline(j, l);) ++lines;
    CHECK(lines == 50);
    // A torn last line (a kill mid-write) is skipped by the reader.
    std::ofstream(ab::ReportWriter::journal_path(p), std::ios::app) << "{\"id\": \"torn";
    json meta;
    const auto cases = ab::read_report_cases(p, &meta);
    CHECK(cases.size() == 50);
    CHECK(meta["spec"]["sha256"] == "x");
    // No temp file is left next to the report.
    std::string tmp_prefix = std::filesystem::path(p).filename().string();
    tmp_prefix += ".tmp";
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
      CHECK(e.path().filename().string().rfind(tmp_prefix, 0) == std::string::npos);
    w.finish(true);
  }
  CHECK(!std::filesystem::exists(ab::ReportWriter::journal_path(p)));  // complete: no journal left
  CHECK(read_doc(p)["cases"].size() == 50);
  std::filesystem::remove(p);
}
