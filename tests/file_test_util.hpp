#pragma once
// Writing small made-up system files (a fake /sys/fs/cgroup, a fake powercap tree) for tests.
#include <filesystem>
#include <fstream>
#include <string>

namespace ab::test {

// Writes `text` to `p`, creating its parent directories.
inline void write_text_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

}  // namespace ab::test
