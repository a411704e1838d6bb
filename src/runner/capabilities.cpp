#include "runner/capabilities.hpp"

#include "backends/backends.hpp"
#include "backends/cpu/cpu_backend.hpp"
#ifdef ATTN_HAVE_CUDA
#include "backends/cuda/cuda_backend.hpp"
#endif

namespace ab {

std::vector<NamedBackend> capability_backends() {
  std::vector<NamedBackend> out;
  out.push_back({"cpu", make_cpu_backend()});
#ifdef ATTN_HAVE_CUDA
  out.push_back({"cuda", make_cuda_capability_backend()});
#endif
  return out;
}

std::vector<Problem> probe_problems(Mode mode) {
  std::vector<Problem> out;
  for (DType dt : {DType::bf16, DType::f32})
    for (bool causal : {true, false}) {
      if (mode == Mode::decode && !causal) continue;
      Problem p;
      p.mode = mode;
      p.batch = 1;
      p.heads = 32;
      p.kv_heads = 8;
      p.head_dim = p.v_dim = 128;
      p.q_len = mode == Mode::decode ? 1 : 4096;
      p.kv_len = mode == Mode::decode ? 8192 : 4096;
      p.causal = causal;
      p.dtype = dt;
      out.push_back(p);
    }
  return out;
}

std::vector<std::string> supported_backends(const Variant& v, const std::vector<NamedBackend>& backends) {
  std::vector<std::string> out;
  for (const NamedBackend& b : backends) {
    bool ok = false;
    for (Mode m : v.info().modes) {
      for (const Problem& p : probe_problems(m)) {
        AttnShape s;
        try {
          s = v.shape(p);  // parameters impossible for this probe: try the next one
        } catch (const std::exception&) {
          continue;
        }
        if (v.supports(s, *b.backend).ok) {
          ok = true;
          break;
        }
      }
      if (ok) break;
    }
    if (ok) out.push_back(b.name);
  }
  return out;
}

}  // namespace ab
