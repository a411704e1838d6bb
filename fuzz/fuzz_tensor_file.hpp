#pragma once
// The tensor-file readers take a path: the fuzz input is written to a per-process file first.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace fuzz {
inline std::string write_input(const uint8_t* data, size_t size, const char* ext) {
  static const std::string path = "/tmp/attn-fuzz-" + std::to_string(getpid()) + ext;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}
}  // namespace fuzz
