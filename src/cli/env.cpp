// attn-bench env: host and build facts, and the GPU when one is usable.
#include <cstdio>

#include "backends/backends.hpp"
#include "cli/commands.hpp"
#include "core/host_info.hpp"

namespace ab::cli {

namespace {
struct EnvOptions {
  bool json = false;
};
}  // namespace

void setup_env(CLI::App& app, Action& action) {
  auto opt = std::make_shared<EnvOptions>();
  auto* sub = app.add_subcommand("env", "Print host, build and device facts");
  sub->add_flag("--json", opt->json, "machine-readable output");
  sub->callback([opt, &action] {
    action = [opt] {
      nlohmann::ordered_json j;
      j["host"] = host_info();
      j["build"] = build_json();
      j["git"] = git_info();
      const ThreadDefault td = default_cpu_threads();
      j["cpu_threads_default"] = {{"threads", td.threads}, {"source", td.source}};
      std::string why;
      const bool cuda = cuda_available(&why);
      j["cuda"] = {{"available", cuda}, {"reason", cuda ? "" : why}};
      if (cuda) {
        std::string note;
        auto be = make_backend("cuda", &note);
        j["cuda"]["device"] = be->device_info();
      }
      if (opt->json) {
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
      }
      const auto& h = j["host"];
      std::string isa;
      for (const auto& f : h["isa"]) isa += (isa.empty() ? "" : " ") + f.get<std::string>();
      std::printf("host:    %s, %d cores, %.1f GiB, %s\n", h["cpu_model"].get<std::string>().c_str(),
                  h["cores"].get<int>(), h["memory_bytes"].get<double>() / (1u << 30),
                  h.value("os", std::string()).c_str());
      std::printf("isa:     %s\n", isa.c_str());
      std::printf("threads: %d by default (%s; --threads or OMP_NUM_THREADS override)\n", td.threads,
                  td.source.c_str());
      const auto& b = j["build"];
      std::printf("build:   %s, %s, flags: %s\n", b["compiler"].get<std::string>().c_str(),
                  b["build_type"].get<std::string>().c_str(), b["flags"].get<std::string>().c_str());
      std::printf("cuda:    %s\n", b["cuda"].get<std::string>().empty()
                                       ? "not built in"
                                       : ("built with " + b["cuda"].get<std::string>() + " for sm_" +
                                          b["cuda_archs"].get<std::string>()).c_str());
      std::printf("git:     %s%s\n", j["git"]["sha"].get<std::string>().c_str(),
                  j["git"]["dirty"].is_boolean() && j["git"]["dirty"].get<bool>() ? " (dirty)" : "");
      if (cuda) {
        std::printf("gpu:     %s\n", j["cuda"]["device"].dump().c_str());
      } else {
        std::printf("gpu:     none usable (%s)\n", why.c_str());
      }
      return 0;
    };
  });
}

}  // namespace ab::cli
