#pragma once
// The JSON report (docs/report-schema.md): rewritten atomically after every case, so the file
// on disk always parses and holds every finished case (DESIGN.md §7).
#include <string>

#include <nlohmann/json.hpp>

namespace ab {

inline constexpr const char* kSchemaVersion = "1.1.0";

class ReportWriter {
 public:
  // Writes an empty report at once: an unwritable path fails here, before any case runs
  // (InputError naming the path and the reason).
  ReportWriter(std::string path, nlohmann::ordered_json meta);
  void add_case(nlohmann::ordered_json c);
  // complete=false after an interrupted sweep.
  void finish(bool complete);
  const nlohmann::ordered_json& doc() const { return doc_; }
  const std::string& path() const { return path_; }

 private:
  void write();
  std::string path_;
  nlohmann::ordered_json doc_;
};

}  // namespace ab
