#pragma once
#include <string>

namespace ab {
struct BuildInfo {
  std::string version;
  std::string compiler;
  std::string flags;
  std::string build_type;
  std::string cuda_version;  // empty when built without CUDA
  std::string cuda_archs;
  std::string source_dir;    // for the git sha at run time
};
const BuildInfo& build_info();
}  // namespace ab
