#include "backends/cpu/rapl.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

namespace ab::cpu {

namespace {
std::optional<double> read_number(const std::filesystem::path& p) {
  std::ifstream f(p);
  double v = 0;
  if (!(f >> v)) return std::nullopt;
  return v;
}
}  // namespace

std::optional<EnergyReading> read_rapl_packages(std::string* why, const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (why) *why = root + " does not exist (no powercap/RAPL driver, or a virtual machine without it)";
    return std::nullopt;
  }
  // Top-level zones only (intel-rapl:0, intel-rapl:1: the packages); their subzones (core,
  // uncore, dram) are parts of a package or beside it, and counting them too would add twice.
  std::vector<fs::path> zones;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("intel-rapl:", 0) == 0 && n.find(':', 11) == std::string::npos) zones.push_back(e.path());
  }
  std::sort(zones.begin(), zones.end());
  EnergyReading r;
  r.source = "RAPL package energy (powercap)";
  for (const auto& z : zones) {
    std::ifstream nf(z / "name");
    std::string name;
    std::getline(nf, name);
    if (name.rfind("package", 0) != 0) continue;
    const auto uj = read_number(z / "energy_uj");
    if (!uj) {
      if (why) *why = (z / "energy_uj").string() + " is not readable (root only on most kernels)";
      return std::nullopt;
    }
    const auto range = read_number(z / "max_energy_range_uj");
    r.joules.push_back(*uj * 1e-6);
    r.wraps_at.push_back(range ? (*range + 1) * 1e-6 : 0.0);
  }
  if (r.joules.empty()) {
    if (why) *why = "no RAPL package domain under " + root;
    return std::nullopt;
  }
  return r;
}

}  // namespace ab::cpu
