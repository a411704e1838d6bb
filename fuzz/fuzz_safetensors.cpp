// libFuzzer harness: the .safetensors reader (header checks, then every supported tensor's
// data). Every input must be read or refused with ab::InputError.
#include <cstddef>
#include <cstdint>

#include "core/errors.hpp"
#include "fuzz_tensor_file.hpp"
#include "workloads/tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input(data, size, ".safetensors");
  try {
    const ab::SafetensorsHeader h = ab::read_safetensors_header(path);
    for (const auto& t : h.tensors) {
      if (!t.supported) continue;
      const std::vector<float> v = ab::read_tensor(t);
      if (v.size() != static_cast<size_t>(t.numel())) __builtin_trap();
    }
  } catch (const ab::InputError&) {
  }
  return 0;
}
