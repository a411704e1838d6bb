#include "core/report.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "core/errors.hpp"

namespace ab {

using json = nlohmann::ordered_json;

ReportWriter::ReportWriter(std::string path, json meta, std::vector<json> kept) : path_(std::move(path)) {
  const std::string jp = journal_path(path_);
  journal_fd_ = ::open(jp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (journal_fd_ < 0)
    throw InputError("report: cannot write '" + jp + "': " + std::strerror(errno));
  // flock: released by the kernel when this process ends, however it ends.
  if (::flock(journal_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(journal_fd_);
    journal_fd_ = -1;
    throw InputError("report: another attn-bench run is writing '" + path_ + "' (its journal '" + jp +
                     "' is locked); give this run another -o");
  }
  if (::ftruncate(journal_fd_, 0) != 0)
    throw InputError("report: cannot truncate '" + jp + "': " + std::strerror(errno));
  doc_["schema_version"] = kSchemaVersion;
  doc_["complete"] = false;
  doc_["meta"] = std::move(meta);
  doc_["cases"] = json::array();
  for (auto& c : kept) {
    journal(c);
    doc_["cases"].push_back(std::move(c));
  }
  write();
}

ReportWriter::~ReportWriter() {
  if (journal_fd_ >= 0) ::close(journal_fd_);
}

void ReportWriter::journal(const json& c) {
  // One line per case, written with a single write(2) so that a kill leaves at most one torn
  // line at the end (which the reader skips).
  const std::string line = c.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(journal_fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw InputError("report: cannot append to '" + journal_path(path_) + "': " + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

void ReportWriter::add_case(json c) {
  journal(c);
  doc_["cases"].push_back(std::move(c));
  // Rewrite after the first case, then when a second has passed and the last rewrite took
  // under 5% of the time since it: a sweep of many tiny cases spends its time on cases, not
  // on rewriting an ever longer file.
  const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_write_).count();
  if (doc_["cases"].size() == 1 || (since >= 1.0 && since >= 20 * last_write_s_)) write();
}

void ReportWriter::sort_cases_by_index() {
  auto& cs = doc_["cases"];
  std::stable_sort(cs.begin(), cs.end(), [](const json& a, const json& b) {
    return a.value("index", int64_t{-1}) < b.value("index", int64_t{-1});
  });
}

void ReportWriter::finish(bool complete) {
  doc_["complete"] = complete;
  write();
  if (complete) std::remove(journal_path(path_).c_str());
}

void ReportWriter::write() {
  const auto t0 = std::chrono::steady_clock::now();
  // A temp file unique to this process and write in the same directory, then rename(2):
  // atomic on POSIX file systems, and two processes never share a temp file.
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(writes_++);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw InputError("report: cannot write '" + tmp + "': " + std::strerror(errno));
    // Non-finite numbers become null in JSON (nlohmann's rule); the schema says so.
    f << doc_.dump(2) << '\n';
    f.flush();
    if (!f) {
      const std::string why = std::strerror(errno);
      f.close();
      std::remove(tmp.c_str());  // a full disk leaves no stray temp file
      throw InputError("report: write to '" + tmp + "' failed: " + why);
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw InputError("report: cannot move the report into '" + path_ + "': " + why);
  }
  last_write_ = std::chrono::steady_clock::now();
  last_write_s_ = std::chrono::duration<double>(last_write_ - t0).count();
}

std::vector<json> read_report_cases(const std::string& path, json* meta) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("--resume: cannot read '" + path + "': " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  json doc;
  try {
    doc = json::parse(ss.str(), [&](int depth, json::parse_event_t, json&) {
      if (depth > 64) throw InputError("--resume: '" + path + "' nests deeper than 64 levels: not a report");
      return true;
    });
  } catch (const json::exception& e) {
    throw InputError("--resume: '" + path + "' is not valid JSON: " + e.what());
  }
  if (!doc.is_object() || !doc.contains("meta") || !doc["meta"].is_object() || !doc.contains("cases") ||
      !doc["cases"].is_array())
    throw InputError("--resume: '" + path + "' is not an attn-bench report (no meta or cases)");
  if (meta) *meta = doc["meta"];
  std::vector<json> cases;
  std::set<std::string> ids;
  auto take = [&](json c) {
    if (!c.is_object() || !c.contains("id") || !c["id"].is_string()) return;
    const std::string id = c["id"].get<std::string>();
    if (ids.insert(id).second) {
      cases.push_back(std::move(c));
    } else {
      for (auto& k : cases)  // a later entry for the same case (a rerun) wins
        if (k["id"] == id) k = std::move(c);
    }
  };
  for (auto& c : doc["cases"]) take(std::move(c));
  std::ifstream jf(ReportWriter::journal_path(path), std::ios::binary);
  for (std::string line; std::getline(jf, line);) {
    if (line.empty()) continue;
    json c;
    try {
      c = json::parse(line, [](int depth, json::parse_event_t, json&) { return depth <= 64; });
    } catch (const json::exception&) {
      continue;  // the torn last line of a killed run
    }
    take(std::move(c));
  }
  return cases;
}

}  // namespace ab
