#include "core/host_info.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "core/build_info.hpp"

namespace ab {

namespace {
std::string run_command(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    if (status) *status = -1;
    return out;
  }
  std::array<char, 256> buf{};
  while (fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int rc = pclose(p);
  if (status) *status = rc;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}
}  // namespace

nlohmann::ordered_json host_info() {
  nlohmann::ordered_json j;
  std::string model;
  std::set<std::string> flags;
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    const std::string val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && model.empty()) model = val;
    if (key == "flags" && flags.empty()) {
      std::istringstream ss(val);
      for (std::string f; ss >> f;) flags.insert(f);
    }
  }
  j["cpu_model"] = model;
  j["cores"] = std::thread::hardware_concurrency();
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  j["memory_bytes"] = static_cast<double>(pages) * static_cast<double>(page);
  // The ISA extensions that change kernel speed; the full flag list is noise.
  nlohmann::ordered_json isa = nlohmann::ordered_json::array();
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                        "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                        "amx_tile", "sve", "asimd"})
    if (flags.count(f)) isa.push_back(f);
  j["isa"] = isa;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  j["hostname"] = host;
  utsname u{};
  if (uname(&u) == 0) j["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  return j;
}

nlohmann::ordered_json build_json() {
  const BuildInfo& b = build_info();
  nlohmann::ordered_json j;
  j["compiler"] = b.compiler;
  j["flags"] = b.flags;
  j["build_type"] = b.build_type;
  j["cuda"] = b.cuda_version;
  j["cuda_archs"] = b.cuda_archs;
  return j;
}

extern const char* const kBuildGitSha;  // generated/git_sha.cpp
extern const bool kBuildGitDirty;

nlohmann::ordered_json git_info() {
  nlohmann::ordered_json j;
  const std::string dir = build_info().source_dir;
  int rc = 0;
  const std::string sha = run_command("git -C '" + dir + "' rev-parse HEAD 2>/dev/null", &rc);
  if (rc != 0 || sha.size() != 40) {
    // No checkout here (a binary carried to another machine): the sha recorded at build time.
    j["sha"] = kBuildGitSha;
    j["dirty"] = *kBuildGitSha ? nlohmann::ordered_json(kBuildGitDirty) : nlohmann::ordered_json(nullptr);
    if (*kBuildGitSha) j["source"] = "build";
    return j;
  }
  const std::string st = run_command(
      "git -C '" + dir + "' status --porcelain --untracked-files=no 2>/dev/null", &rc);
  j["sha"] = sha;
  j["dirty"] = !st.empty();
  return j;
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ab
