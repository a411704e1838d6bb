#include "core/report.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/errors.hpp"

namespace ab {

ReportWriter::ReportWriter(std::string path, nlohmann::ordered_json meta) : path_(std::move(path)) {
  doc_["schema_version"] = kSchemaVersion;
  doc_["complete"] = false;
  doc_["meta"] = std::move(meta);
  doc_["cases"] = nlohmann::ordered_json::array();
  write();
}

void ReportWriter::add_case(nlohmann::ordered_json c) {
  doc_["cases"].push_back(std::move(c));
  write();
}

void ReportWriter::finish(bool complete) {
  doc_["complete"] = complete;
  write();
}

void ReportWriter::write() {
  // Temp file in the same directory, then rename(2): atomic on POSIX file systems.
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f)
      throw InputError("report: cannot write '" + tmp + "': " + std::strerror(errno));
    // Non-finite numbers become null in JSON (nlohmann's rule); the schema says so.
    f << doc_.dump(2) << '\n';
    f.flush();
    if (!f) throw InputError("report: write to '" + tmp + "' failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw InputError("report: cannot move the report into '" + path_ + "': " + why);
  }
}

nlohmann::ordered_json read_report(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the report: " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("schema_version") || !j.contains("cases") || !j["cases"].is_array())
    throw InputError(path + ": not an attn-bench report (no schema_version / cases)");
  const std::string v = j["schema_version"].is_string() ? j["schema_version"].get<std::string>() : "";
  if (v.substr(0, v.find('.')) != std::string(kSchemaVersion).substr(0, 1))
    throw InputError(path + ": report schema " + v + " is not readable by this attn-bench (schema " +
                     kSchemaVersion + ")");
  return j;
}

}  // namespace ab
