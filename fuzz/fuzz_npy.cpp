// libFuzzer harness: the .npy reader (header, then the data of a well-formed header) under
// every declared dtype. Every input must be read or refused with ab::InputError.
#include <cstddef>
#include <cstdint>

#include "core/errors.hpp"
#include "fuzz_tensor_file.hpp"
#include "workloads/tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input(data, size, ".npy");
  for (const char* declared : {"", "bf16", "f16"}) {
    try {
      const ab::TensorInfo t = ab::read_npy_header(path, declared);
      const std::vector<float> v = ab::read_tensor(t);
      if (v.size() != static_cast<size_t>(t.numel())) __builtin_trap();
    } catch (const ab::InputError&) {
    }
  }
  return 0;
}
