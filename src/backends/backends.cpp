#include "backends/backends.hpp"

#include "backends/cpu/cpu_backend.hpp"
#include "backends/fake/fake_device_backend.hpp"
#include "core/errors.hpp"
#ifdef ATTN_HAVE_CUDA
#include "backends/cuda/cuda_backend.hpp"
#endif

namespace ab {

bool cuda_available(std::string* why) {
#ifdef ATTN_HAVE_CUDA
  return cuda_probe(why);
#else
  if (why) *why = "this attn-bench was built without CUDA (ATTN_CUDA=OFF or no nvcc at build time)";
  return false;
#endif
}

int cuda_device_count(std::string* why) {
#ifdef ATTN_HAVE_CUDA
  return ab::cuda_device_count_impl(why);
#else
  if (why) *why = "this attn-bench was built without CUDA (ATTN_CUDA=OFF or no nvcc at build time)";
  return 0;
#endif
}

const std::vector<std::string>& device_names() {
  static const std::vector<std::string> names = {"cpu", "cuda", "fake", "auto"};
  return names;
}

std::unique_ptr<Backend> make_backend(const std::string& device, std::string* note) {
  if (device == "cpu") return make_cpu_backend();
  if (device == "fake") return make_fake_device_backend();
  if (device == "cuda" || device == "auto") {
    std::string why;
    if (cuda_available(&why)) {
#ifdef ATTN_HAVE_CUDA
      return make_cuda_backend();
#endif
    }
    if (device == "cuda") throw InputError("--device cuda: no usable CUDA device: " + why);
    if (note) *note = "device auto: using the CPU (" + why + ")";
    return make_cpu_backend();
  }
  throw InputError("device: unknown device '" + device + "' (allowed: cpu, cuda, fake, auto)");
}

}  // namespace ab
