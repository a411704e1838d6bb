// attn-bench peaks: the device's peak compute and memory bandwidth, measured by the backend's
// microbenchmarks (Backend::measure_peaks), for the roofline of `report` and `plot --kind
// roofline` (docs/figures.md, "Roofline").
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <omp.h>

#include "backends/backends.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "core/host_info.hpp"
#include "runner/runner.hpp"

namespace ab::cli {

namespace {
struct PeaksOptions {
  std::string device = "cpu";
  int threads = 0;
  std::string output;
  bool json = false;
};

int run_peaks(const PeaksOptions& o) {
  const auto names = device_names();
  if (std::find(names.begin(), names.end(), o.device) == names.end())
    throw InputError(fmt::format("--device '{}': {}", o.device, suggest(o.device, names)));
  apply_cpu_threads(o.threads, "--threads", nullptr);
  std::string note;
  auto be = make_backend(o.device, &note);
  if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
  nlohmann::ordered_json j = measure_peaks_json(*be, o.device == "cpu" ? omp_get_max_threads() : 0);
  j["host"] = host_info();
  if (auto d = be->device_info(); !d.empty()) j["device_info"] = d;
  j["git"] = git_info();
  if (!o.output.empty()) {
    std::ofstream f(o.output, std::ios::binary | std::ios::trunc);
    if (!f) throw InputError(fmt::format("peaks: cannot write '{}': {}", o.output, std::strerror(errno)));
    f << j.dump(2) << "\n";
    f.close();
    if (!f) throw InputError(fmt::format("peaks: write to '{}' failed: {}", o.output, std::strerror(errno)));
  }
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s peaks on %s\n", o.device.c_str(), j["host"]["cpu_model"].get<std::string>().c_str());
    std::printf("  compute:   %.4g TFLOP/s  (%s)\n", j["tflops"]["value"].get<double>(),
                j["tflops"]["method"].get<std::string>().c_str());
    std::printf("  bandwidth: %.4g GB/s  (%s)\n", j["gbps"]["value"].get<double>(),
                j["gbps"]["method"].get<std::string>().c_str());
    if (!o.output.empty()) std::printf("wrote %s (give it to `report` or `plot` as --peaks)\n", o.output.c_str());
  }
  return kExitOk;
}
}  // namespace

void setup_peaks(CLI::App& app, Action& action) {
  auto opt = std::make_shared<PeaksOptions>();
  auto* sub = app.add_subcommand("peaks", "Measure the device's peak compute and memory bandwidth (for the roofline)");
  sub->add_option("--device,-d", opt->device, "cpu or cuda")->capture_default_str();
  sub->add_option("--threads,-t", opt->threads, "CPU threads (0 = every CPU this process may use, capped by a cgroup CPU limit)")->check(CLI::NonNegativeNumber);
  sub->add_option("--output,-o", opt->output, "also write the peaks as JSON here");
  sub->add_flag("--json", opt->json, "print JSON");
  sub->callback([opt, &action] { action = [opt] { return run_peaks(*opt); }; });
}

}  // namespace ab::cli
