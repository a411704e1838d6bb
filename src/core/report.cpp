#include "core/report.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

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

}  // namespace ab
