#pragma once
// The JSON report (docs/report-schema.md) and its journal (docs/reliability.md). Every finished
// case is appended to REPORT.journal at once (one JSON line: O(1) per case); the report itself
// is rewritten atomically (a temp file unique to this process, then rename(2)) after the first
// case, then at most about once a second, and at the end, so the file on disk always parses and
// writing stays O(cases) over a sweep. The journal holds what the last rewrite may lack, for
// `run --resume`. The journal is also the lock: a second run writing the same report is refused.
#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ab {

inline constexpr const char* kSchemaVersion = "1.4.0";

class ReportWriter {
 public:
  // Writes an empty report (plus `kept`, cases carried over by --resume) at once: an unwritable
  // path, or a report another run is writing, fails here before any case runs (InputError
  // naming the path and the reason).
  ReportWriter(std::string path, nlohmann::ordered_json meta, std::vector<nlohmann::ordered_json> kept = {});
  ~ReportWriter();
  ReportWriter(const ReportWriter&) = delete;
  ReportWriter& operator=(const ReportWriter&) = delete;
  void add_case(nlohmann::ordered_json c);
  // Orders the cases by their `index` (the spec's order) before finish(): the cases of a
  // worker pool arrive in the order they finish.
  void sort_cases_by_index();
  // complete=false after an interrupted sweep. A complete report no longer needs its journal,
  // which is removed.
  void finish(bool complete);
  const nlohmann::ordered_json& doc() const { return doc_; }
  const std::string& path() const { return path_; }
  static std::string journal_path(const std::string& report) { return report + ".journal"; }

 private:
  void write();
  void journal(const nlohmann::ordered_json& c);
  std::string path_;
  nlohmann::ordered_json doc_;
  int journal_fd_ = -1;
  int writes_ = 0;
  std::chrono::steady_clock::time_point last_write_{};
  double last_write_s_ = 0;
};

// The cases a report and its journal hold together (the journal's lines after the report's own
// cases; a torn last line, from a kill mid-write, is ignored). InputError when the report does
// not parse. `meta` receives the report's meta block.
std::vector<nlohmann::ordered_json> read_report_cases(const std::string& path, nlohmann::ordered_json* meta);

}  // namespace ab
