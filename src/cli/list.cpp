// attn-bench list: every registered variant with its paper, fidelity to it, parameters, modes
// and backends — the backends whose dispatch supports it on a probe problem
// (runner/capabilities.hpp), with its default parameters.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "runner/capabilities.hpp"
#include "variants/registry.hpp"

namespace ab::cli {

namespace {
struct ListOptions {
  std::string family;
  bool json = false;
};
}  // namespace

void setup_list(CLI::App& app, Action& action) {
  auto opt = std::make_shared<ListOptions>();
  auto* sub = app.add_subcommand("list", "List the registered attention variants");
  sub->add_option("--family", opt->family, "only this family");
  sub->add_flag("--json", opt->json, "machine-readable output");
  sub->callback([opt, &action] {
    action = [opt] {
      std::vector<std::string> families;
      for (const auto& e : registry())
        if (std::find(families.begin(), families.end(), e.info.family) == families.end())
          families.push_back(e.info.family);
      if (!opt->family.empty() && std::find(families.begin(), families.end(), opt->family) == families.end())
        throw InputError("--family '" + opt->family + "': no such family: " + suggest(opt->family, families));
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      const std::vector<NamedBackend> probes = capability_backends();
      for (const auto& e : registry()) {
        const VariantInfo& v = e.info;
        if (!opt->family.empty() && v.family != opt->family) continue;
        const std::vector<std::string> runs_on =
            supported_backends(*e.make(resolve_params(v, {})), probes);
        if (opt->json) {
          nlohmann::ordered_json j;
          j["name"] = v.name;
          j["family"] = v.family;
          j["paper"] = v.paper;
          j["summary"] = v.summary;
          j["fidelity"] = {{"level", fidelity_name(v.fidelity.level)}, {"reason", v.fidelity.reason}};
          j["params"] = nlohmann::ordered_json::array();
          for (const auto& p : v.params) {
            nlohmann::ordered_json pj = {{"name", p.name}, {"type", std::string(param_type_name(p.type))}};
            std::visit([&](const auto& x) { pj["default"] = x; }, p.def);
            pj["meaning"] = p.meaning;
            if (!p.choices.empty()) pj["choices"] = p.choices;
            j["params"].push_back(pj);
          }
          j["modes"] = nlohmann::ordered_json::array();
          for (Mode m : v.modes) j["modes"].push_back(std::string(mode_name(m)));
          j["backends"] = runs_on;
          all.push_back(j);
          continue;
        }
        std::string modes, backends;
        for (Mode m : v.modes) modes += (modes.empty() ? "" : ", ") + std::string(mode_name(m));
        for (const auto& b : runs_on) backends += (backends.empty() ? "" : ", ") + b;
        std::printf("%s  [%s]\n  %s\n  paper: %s\n  fidelity: %s (%s)\n  modes: %s; backends: %s\n",
                    v.name.c_str(), v.family.c_str(), v.summary.c_str(), v.paper.c_str(),
                    fidelity_name(v.fidelity.level), v.fidelity.reason.c_str(), modes.c_str(),
                    backends.c_str());
        for (const auto& p : v.params) {
          std::string choices;
          for (const auto& c : p.choices) choices += (choices.empty() ? " {" : ", ") + c;
          if (!choices.empty()) choices += "}";
          std::printf("    %-16s %-6s default %-8s %s%s\n", p.name.c_str(),
                      std::string(param_type_name(p.type)).c_str(), param_value_str(p.def).c_str(),
                      p.meaning.c_str(), choices.c_str());
        }
        std::printf("\n");
      }
      if (opt->json) std::printf("%s\n", all.dump(2).c_str());
      return 0;
    };
  });
}

}  // namespace ab::cli
