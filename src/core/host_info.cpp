#include "core/host_info.hpp"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
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

namespace {
std::optional<long long> parse_integer(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string read_small_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  return s;
}
}  // namespace

std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text) {
  const auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto quota = parse_integer(text.substr(0, space));
  const auto period = parse_integer(text.substr(space + 1));
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;  // "max": no limit
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> parse_cgroup_v1_cpu_quota(std::string_view quota_us, std::string_view period_us) {
  const auto quota = parse_integer(quota_us);
  const auto period = parse_integer(period_us);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;  // -1: no limit
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> cgroup_cpu_limit(const std::string& root) {
  namespace fs = std::filesystem;
  std::optional<double> best;
  auto take = [&](std::optional<double> v) {
    if (v && (!best || *v < *best)) best = v;
  };
  // /proc/self/cgroup: "0::/path" (v2) and "N:cpu,cpuacct:/path" (v1). Inside a container the
  // paths are usually "/", and the container's own limit is at the root of its view.
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    const auto a = line.find(':'), b = line.find(':', a == std::string::npos ? 0 : a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    const bool v2 = controllers.empty();
    bool cpu = v2;
    for (std::string_view c : {"cpu", "cpu,cpuacct", "cpuacct,cpu"}) cpu = cpu || controllers == c;
    if (!cpu) continue;
    const fs::path base = v2 ? (fs::exists(fs::path(root) / "cgroup.controllers") ? fs::path(root)
                                                                                    : fs::path(root) / "unified")
                             : (fs::exists(fs::path(root) / "cpu") ? fs::path(root) / "cpu"
                                                                   : fs::path(root) / "cpu,cpuacct");
    // The limit that binds is the tightest one on the way up from this process's group.
    for (fs::path p = base / fs::path(path).relative_path();; p = p.parent_path()) {
      std::error_code ec;
      if (v2) {
        if (fs::exists(p / "cpu.max", ec)) take(parse_cgroup_v2_cpu_max(read_small_file(p / "cpu.max")));
      } else if (fs::exists(p / "cpu.cfs_quota_us", ec)) {
        take(parse_cgroup_v1_cpu_quota(read_small_file(p / "cpu.cfs_quota_us"),
                                       read_small_file(p / "cpu.cfs_period_us")));
      }
      if (p == base || p == p.parent_path() || p.string().size() <= base.string().size()) break;
    }
  }
  return best;
}

ThreadDefault default_cpu_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  cpus = std::max(cpus, 1);
  ThreadDefault d{cpus, std::to_string(cpus) + " CPUs"};
  if (const auto limit = cgroup_cpu_limit(); limit && std::floor(*limit) < cpus) {
    d.threads = std::max(1, static_cast<int>(std::floor(*limit)));
    char buf[96];
    std::snprintf(buf, sizeof buf, "cgroup CPU limit %.3g (of %d CPUs)", *limit, cpus);
    d.source = buf;
  }
  return d;
}

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
