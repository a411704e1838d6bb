// The CUDA backend: device memory, GPU timing (docs/architecture.md) and the dispatch of the ops to
// the kernels in kernels/cuda. Host code only, compiled by the C++ compiler against the CUDA
// runtime (static in the portable build). NVML is loaded with dlopen, never linked, so the
// binary starts where no NVIDIA driver exists (docs/gpu.md).
#include "backends/cuda/cuda_backend.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_sparse_ops.hpp"
#include "backends/cuda/cuda_probs_ops.hpp"
#include "backends/cuda/cuda_select_ops.hpp"
#include "backends/cuda/cuda_linear_ops.hpp"
#include "cuda/decode/decode.hpp"
#include "cuda/peaks/peaks.hpp"
#include "cuda/sdpa_prefill/sdpa_prefill.hpp"

namespace ab {
namespace {

[[noreturn]] void throw_cuda(cudaError_t e, const char* what) {
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) +
                           " (" + cudaGetErrorString(e) + ")");
}
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda(e, what);
}

std::string version_string(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// The few NVML entry points we use, resolved at run time from libnvidia-ml.so.1.
class Nvml {
 public:
  Nvml() {
    lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib_) return;
    init_ = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlInit_v2"));
    by_pci_ = reinterpret_cast<int (*)(const char*, void**)>(
        dlsym(lib_, "nvmlDeviceGetHandleByPciBusId_v2"));
    clock_ = reinterpret_cast<int (*)(void*, int, unsigned*)>(dlsym(lib_, "nvmlDeviceGetClockInfo"));
    max_clock_ =
        reinterpret_cast<int (*)(void*, int, unsigned*)>(dlsym(lib_, "nvmlDeviceGetMaxClockInfo"));
    temp_ = reinterpret_cast<int (*)(void*, int, unsigned*)>(dlsym(lib_, "nvmlDeviceGetTemperature"));
    driver_ = reinterpret_cast<int (*)(char*, unsigned)>(dlsym(lib_, "nvmlSystemGetDriverVersion"));
    energy_ = reinterpret_cast<int (*)(void*, unsigned long long*)>(
        dlsym(lib_, "nvmlDeviceGetTotalEnergyConsumption"));
    ok_ = init_ && by_pci_ && clock_ && temp_ && init_() == 0;
  }
  ~Nvml() {
    // nvmlShutdown is deliberately not called: other backends in the process may still use it.
    if (lib_) dlclose(lib_);
  }
  bool attach(const std::string& pci_bus_id) {
    if (!ok_) return false;
    ok_ = by_pci_(pci_bus_id.c_str(), &dev_) == 0;
    return ok_;
  }
  bool ok() const { return ok_; }
  // NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2; NVML_TEMPERATURE_GPU = 0.
  std::optional<unsigned> clock(int type) const {
    unsigned v = 0;
    if (!ok_ || clock_(dev_, type, &v) != 0) return std::nullopt;
    return v;
  }
  std::optional<unsigned> max_clock(int type) const {
    unsigned v = 0;
    if (!ok_ || !max_clock_ || max_clock_(dev_, type, &v) != 0) return std::nullopt;
    return v;
  }
  std::optional<unsigned> temperature() const {
    unsigned v = 0;
    if (!ok_ || temp_(dev_, 0, &v) != 0) return std::nullopt;
    return v;
  }
  // The board's energy since the driver loaded, in mJ (Volta and later).
  std::optional<unsigned long long> energy_mj() const {
    unsigned long long v = 0;
    if (!ok_ || !energy_ || energy_(dev_, &v) != 0) return std::nullopt;
    return v;
  }
  bool loaded() const { return lib_ != nullptr; }
  std::string driver_version() const {
    char buf[96] = {0};
    if (!ok_ || !driver_ || driver_(buf, sizeof buf) != 0) return "";
    return buf;
  }

 private:
  void* lib_ = nullptr;
  void* dev_ = nullptr;
  bool ok_ = false;
  int (*init_)() = nullptr;
  int (*by_pci_)(const char*, void**) = nullptr;
  int (*clock_)(void*, int, unsigned*) = nullptr;
  int (*max_clock_)(void*, int, unsigned*) = nullptr;
  int (*temp_)(void*, int, unsigned*) = nullptr;
  int (*energy_)(void*, unsigned long long*) = nullptr;
  int (*driver_)(char*, unsigned) = nullptr;
};

cuda::ElemType elem_of(DType t) { return t == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16; }

cuda::MaskDesc mask_desc(const Mask& m, const AttnShape& s) {
  cuda::MaskDesc d;
  d.causal = m.causal ? 1 : 0;
  d.window = m.window > 0 ? m.window : 0;
  d.sinks = m.window > 0 ? std::max<int64_t>(0, m.sinks) : 0;
  d.kv_len = s.kv_len;
  return d;
}

// Which kernel runs an SDPA call, or why none does: the single answer behind both
// supports_sdpa() and sdpa().
struct SdpaRoute {
  Support support;
  bool decode = false;
  bool predicate = false;  // a mask predicate: cuda_ops::predicate_sdpa
  cuda::PrefillLaunchFn prefill = nullptr;
  cuda::DecodeLaunchFn dec = nullptr;
};

Support check_tensors(const char* op, const AttnShape& s, const TensorRef& q, const TensorRef& k,
                      const TensorRef& v, const TensorRef& o, const TensorRef& lse) {
  const std::string p = op;
  if (s.dtype != DType::bf16 && s.dtype != DType::f16)
    return Support::no(p + ": dtype " + std::string(dtype_name(s.dtype)) +
                       " has no CUDA kernel (bf16, f16)");
  // Variants ask supports() before any tensor exists (null data): only tensors that are there
  // are checked; sdpa() itself refuses missing ones.
  for (const TensorRef* t : {&q, &k, &v, &o}) {
    if (!t->data) continue;
    if (!t->on_device) return Support::no(p + ": tensors must be allocated by the cuda backend");
    if (t->dtype != s.dtype) return Support::no(p + ": q/k/v/o must all have the problem's dtype");
  }
  if (lse.data && (!lse.on_device || lse.dtype != DType::f32))
    return Support::no(p + ": lse must be an fp32 tensor of the cuda backend");
  if (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0)
    return Support::no(p + ": q_heads must be a multiple of kv_heads");
  if (s.kv_len >= (int64_t(1) << 31) || s.q_len >= (int64_t(1) << 31))
    return Support::no(p + ": sequence lengths must stay below 2^31");
  if (s.batch > 65535 || s.q_heads > 65535 || int64_t(s.batch) * s.kv_heads > 65535)
    return Support::no(p + ": batch × heads exceeds the grid limit (65535)");
  return Support::yes();
}

cuda::PrefillTransform prefill_transform(ScoreTransform t) {
  switch (t) {
    case ScoreTransform::softmax: return cuda::PrefillTransform::softmax;
    case ScoreTransform::softcap: return cuda::PrefillTransform::softcap;
    case ScoreTransform::sigmoid: return cuda::PrefillTransform::sigmoid;
    case ScoreTransform::relu: return cuda::PrefillTransform::relu;
  }
  return cuda::PrefillTransform::softmax;
}

// Kernels written and built but not yet run against the float64 reference on a GPU (their
// tests exist: tests/test_cuda_ops.cpp, tests/test_backend_conformance.cpp) answer "no" with
// this reason unless ATTN_CUDA_UNVERIFIED=1, so that no result comes from an unvalidated
// kernel by default (docs/gpu.md, "Kernels awaiting validation on a GPU").
Support unverified_gate(const char* what, Support s) {
  if (!s.ok) return s;
  const char* e = std::getenv("ATTN_CUDA_UNVERIFIED");
  if (e && std::string(e) == "1") return s;
  return Support::no(std::string(what) +
                     ": the CUDA kernel is built but not yet validated on a GPU (docs/gpu.md); "
                     "ATTN_CUDA_UNVERIFIED=1 runs it");
}

void require_verified(const char* what) {
  const Support s = unverified_gate(what, Support::yes());
  if (!s.ok) throw std::runtime_error(s.reason);
}

SdpaRoute route_sdpa(const SdpaArgs& a) {
  SdpaRoute r;
  const AttnShape& s = a.shape;
  if (a.transform == ScoreTransform::softcap && !(a.softcap > 0)) {
    r.support = Support::no("cuda sdpa: softcap needs a cap > 0");
    return r;
  }
  if (a.mask.extra) {
    // Predicates run on the sparse kernel over block lists built from the predicate.
    r.predicate = true;
    r.support = unverified_gate("cuda sdpa with a mask predicate", cuda_ops::predicate_sdpa_support(a));
    return r;
  }
  if (a.head_map) {
    for (int h = 0; h < s.q_heads; ++h)
      if (a.head_map[h] != h / std::max(1, s.group())) {
        r.support = Support::no("cuda sdpa: only the head map h -> h / group has a kernel");
        return r;
      }
  }
  if (!(a.effective_scale() > 0.f)) {
    r.support = Support::no("cuda sdpa: the softmax scale must be positive");
    return r;
  }
  r.support = check_tensors("cuda sdpa", s, a.q, a.k, a.v, a.o, a.lse);
  if (!r.support.ok) return r;
  std::string why;
  if (s.q_len <= cuda::kDecodeMaxQLen) {
    r.decode = true;
    r.dec = cuda::decode_select(elem_of(s.dtype), s.head_dim, s.v_dim, false, prefill_transform(a.transform), &why);
    if (!r.dec) r.support = Support::no(why);
  } else {
    const bool masked = a.mask.causal || a.mask.window > 0;
    r.prefill = cuda::prefill_select(elem_of(s.dtype), s.head_dim, s.v_dim, masked, prefill_transform(a.transform),
                                     &why);
    if (!r.prefill) r.support = Support::no(why);
  }
  return r;
}

void require_tensors(const char* op, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                     const TensorRef& o) {
  for (const TensorRef* t : {&q, &k, &v, &o})
    if (!t->data && t->numel() > 0)
      throw std::runtime_error(std::string(op) + ": q/k/v/o must be allocated by the cuda backend");
}

class CudaBackend final : public Backend {
 public:
  struct CapabilityOnly {};
  explicit CudaBackend(CapabilityOnly) : capability_only_(true) {}
  CudaBackend() {
    check(cudaSetDevice(0), "cudaSetDevice");
    check(cudaGetDeviceProperties(&prop_, 0), "cudaGetDeviceProperties");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreate(&start_), "cudaEventCreate");
    check(cudaEventCreate(&stop_), "cudaEventCreate");
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, 0) == cudaSuccess) {
      pci_bus_id_ = bus;
      nvml_.attach(pci_bus_id_);
    }
    // Cold-cache flush: writing 2x the L2 (H200: 2 x 60 MiB) evicts every line the previous
    // sample left there.
    flush_bytes_ = std::max<size_t>(size_t(2) * size_t(prop_.l2CacheSize), size_t(64) << 20);
    check(cudaMalloc(&flush_, flush_bytes_), "cudaMalloc(L2 flush buffer)");
    // The selection ops' scratch, allocated up front so their first calls do not allocate.
    scratch_bytes_ = size_t(1) << 20;
    check(cudaMalloc(&scratch_, scratch_bytes_), "cudaMalloc(selection scratch)");
  }
  ~CudaBackend() override {
    if (capability_only_) return;
    cudaStreamSynchronize(stream_);
    for (void* p : buffers_) cudaFree(p);
    if (ws_) cudaFree(ws_);
    if (mask_ws_) cudaFree(mask_ws_);
    if (scratch_) cudaFree(scratch_);
    if (flush_) cudaFree(flush_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }

  TensorRef alloc(const Shape4& shape, DType dtype) override {
    TensorRef t;
    t.dtype = dtype;
    t.shape = shape;
    t.on_device = true;
    const size_t bytes = size_t(ab::numel(shape)) * size_t(dtype_bytes(dtype));
    if (bytes > 0) {
      check(cudaMalloc(&t.data, bytes), "cudaMalloc");
      buffers_.push_back(t.data);
    }
    return t;
  }

  // Host fp32 -> the tensor's dtype with the same round-to-nearest-even as the CPU backend's
  // inputs (core/dtype.hpp), so both backends see bit-identical values.
  // Index buffers: only the first min(src.size(), dst.size) entries are written, the rest
  // keeps its contents, as on the CPU backend (the conformance test's short upload; Backend's
  // default re-uploads the whole storage tensor).
  void upload_index_buffer(const std::vector<int32_t>& src, const IndexBuffer& dst) override {
    const size_t n = std::min(src.size(), size_t(std::max<int64_t>(dst.size, 0)));
    if (n == 0) return;
    check(cudaMemcpyAsync(dst.data, src.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "upload_index_buffer");
  }
  void upload(const HostTensor& src, const TensorRef& dst) override {
    if (src.numel() != dst.numel())
      throw std::runtime_error("cuda upload: host tensor has " + std::to_string(src.numel()) +
                               " elements, device tensor " + std::to_string(dst.numel()));
    const size_t n = size_t(src.numel());
    if (n == 0) return;
    if (dst.dtype == DType::f32) {
      check(cudaMemcpyAsync(dst.data, src.ptr(), n * 4, cudaMemcpyHostToDevice, stream_), "upload");
    } else {
      staging_.resize(n);
      const float* s = src.ptr();
      if (dst.dtype == DType::bf16)
        for (size_t i = 0; i < n; ++i) staging_[i] = float_to_bf16_bits(s[i]);
      else
        for (size_t i = 0; i < n; ++i) staging_[i] = float_to_f16_bits(s[i]);
      check(cudaMemcpyAsync(dst.data, staging_.data(), n * 2, cudaMemcpyHostToDevice, stream_),
            "upload");
    }
    check(cudaStreamSynchronize(stream_), "upload (synchronize)");
  }

  HostTensor download(const TensorRef& src) override {
    HostTensor h(src.shape);
    const size_t n = size_t(h.numel());
    if (n == 0) return h;
    if (src.dtype == DType::f32) {
      check(cudaMemcpyAsync(h.ptr(), src.data, n * 4, cudaMemcpyDeviceToHost, stream_), "download");
      check(cudaStreamSynchronize(stream_), "download (synchronize)");
    } else {
      staging_.resize(n);
      check(cudaMemcpyAsync(staging_.data(), src.data, n * 2, cudaMemcpyDeviceToHost, stream_),
            "download");
      check(cudaStreamSynchronize(stream_), "download (synchronize)");
      float* d = h.ptr();
      if (src.dtype == DType::bf16)
        for (size_t i = 0; i < n; ++i) d[i] = bf16_bits_to_float(staging_[i]);
      else
        for (size_t i = 0; i < n; ++i) d[i] = f16_bits_to_float(staging_[i]);
    }
    return h;
  }

  // All-ones bytes are a NaN in fp32, fp16 and bf16 alike.
  void poison(const TensorRef& t) override {
    const size_t bytes = size_t(t.numel()) * size_t(dtype_bytes(t.dtype));
    if (bytes) check(cudaMemsetAsync(t.data, 0xff, bytes, stream_), "poison");
  }

  void release_all() override {
    check(cudaStreamSynchronize(stream_), "release_all (synchronize)");
    for (void* p : buffers_) check(cudaFree(p), "cudaFree");
    buffers_.clear();
    list_max_.clear();
  }

  double time(const std::function<void()>& fn, CacheMode mode) override {
    if (mode == CacheMode::cold)
      check(cudaMemsetAsync(flush_, int(++flush_value_ & 0xff), flush_bytes_, stream_), "L2 flush");
    check(cudaEventRecord(start_, stream_), "cudaEventRecord");
    fn();
    check(cudaEventRecord(stop_, stream_), "cudaEventRecord");
    check(cudaEventSynchronize(stop_), "kernel execution (cudaEventSynchronize)");
    check(cudaGetLastError(), "kernel execution");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return double(ms) * 1e-3;
  }

  void synchronize() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  // Enough copies that successive samples never find their inputs in the L2: copies × bytes
  // > 2 × L2, within half the free memory. Cold mode flushes instead.
  int rotation_copies(int64_t input_bytes, CacheMode mode) const override {
    if (mode == CacheMode::cold || input_bytes <= 0) return 1;
    const int64_t l2x2 = 2 * int64_t(prop_.l2CacheSize);
    int64_t copies = l2x2 / input_bytes + 1;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      const int64_t cap = std::max<int64_t>(1, int64_t(free_b / 2) / input_bytes);
      copies = std::min(copies, cap);
    }
    return int(std::clamp<int64_t>(copies, 1, 1024));
  }

  std::optional<ClockReading> read_clocks() override {
    const auto sm = nvml_.clock(1);
    const auto t = nvml_.temperature();
    if (!sm && !t) return std::nullopt;
    ClockReading r;
    r.sm_mhz = sm ? double(*sm) : 0.0;
    r.temperature_c = t ? double(*t) : 0.0;
    return r;
  }

  std::optional<EnergyReading> read_energy(std::string* why) override {
    const auto mj = nvml_.energy_mj();
    if (!mj) {
      if (why)
        *why = !nvml_.loaded() ? "libnvidia-ml.so.1 could not be loaded"
               : !nvml_.ok()   ? "NVML did not initialise for this GPU"
                               : "nvmlDeviceGetTotalEnergyConsumption is not supported on this GPU";
      return std::nullopt;
    }
    EnergyReading r;
    r.joules = {double(*mj) * 1e-3};
    r.wraps_at = {0.0};  // 64-bit millijoules
    r.source = "NVML total energy consumption (GPU board, mJ)";
    return r;
  }

  std::optional<MeasuredPeaks> measure_peaks() override {
    const auto mma = cuda::measure_mma_bf16_tflops();
    const auto copy = cuda::measure_copy_gbps();
    return MeasuredPeaks{{mma.value, mma.method}, {copy.value, copy.method}};
  }

  nlohmann::ordered_json device_info() const override {
    nlohmann::ordered_json j;
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    int sm_khz = 0, mem_khz = 0;
    cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, 0);
    cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0);
    j["backend"] = "cuda";
    j["name"] = prop_.name;
    j["compute_capability"] = std::to_string(prop_.major) + "." + std::to_string(prop_.minor);
    j["sms"] = prop_.multiProcessorCount;
    j["memory_bytes"] = uint64_t(prop_.totalGlobalMem);
    j["l2_bytes"] = prop_.l2CacheSize;
    j["smem_per_block_optin_bytes"] = uint64_t(prop_.sharedMemPerBlockOptin);
    j["memory_bus_bits"] = prop_.memoryBusWidth;
    j["pci_bus_id"] = pci_bus_id_;
    j["driver"] = nvml_.driver_version();
    j["driver_cuda"] = version_string(drv);
    j["runtime"] = version_string(rt);
    nlohmann::ordered_json c;
    c["sm_max_mhz"] = nvml_.max_clock(1) ? double(*nvml_.max_clock(1)) : sm_khz / 1000.0;
    c["mem_max_mhz"] = nvml_.max_clock(2) ? double(*nvml_.max_clock(2)) : mem_khz / 1000.0;
    if (auto cur = nvml_.clock(1)) c["sm_mhz_now"] = double(*cur);
    if (auto cur = nvml_.clock(2)) c["mem_mhz_now"] = double(*cur);
    c["source"] = nvml_.ok() ? "nvml" : "cuda attributes (NVML not loaded)";
    j["clocks"] = c;
    return j;
  }

  Support supports_sdpa(const SdpaArgs& a) const override { return route_sdpa(a).support; }

  void sdpa(const SdpaArgs& a) override {
    const SdpaRoute r = route_sdpa(a);
    if (!r.support.ok) throw std::runtime_error(r.support.reason);
    require_tensors("cuda sdpa", a.q, a.k, a.v, a.o);
    const AttnShape& s = a.shape;
    if (s.q_len == 0 || s.batch == 0 || s.q_heads == 0) return;
    const float scale_log2 = a.effective_scale() * 1.4426950408889634f;
    if (r.predicate) {
      require_verified("cuda sdpa with a mask predicate");
      const size_t need = cuda_ops::predicate_sdpa_workspace_ints(a) * sizeof(int32_t);
      if (need > mask_ws_bytes_) {  // grows on the first (untimed, warm-up) call of a shape
        check(cudaStreamSynchronize(stream_), "mask workspace (synchronize)");
        if (mask_ws_) check(cudaFree(mask_ws_), "cudaFree(mask workspace)");
        mask_ws_ = nullptr;
        mask_ws_bytes_ = 0;
        check(cudaMalloc(&mask_ws_, need), "cudaMalloc(mask workspace)");
        mask_ws_bytes_ = need;
      }
      cuda_ops::predicate_sdpa(a, static_cast<int32_t*>(mask_ws_), stream_);
      return;
    }
    if (r.decode) {
      cuda::DecodeParams p = decode_params(s, a.q, a.k, a.v, a.o, a.lse, scale_log2);
      p.mask = mask_desc(a.mask, s);
      p.transform = prefill_transform(a.transform);
      p.scale = a.effective_scale();
      p.bias = a.transform == ScoreTransform::sigmoid ? a.transform_bias : 0.f;
      p.cap = a.softcap;
      p.normalize = a.transform_normalize;
      run_decode(p, false, r.dec);
    } else {
      cuda::PrefillParams p;
      p.q = a.q.data;
      p.k = a.k.data;
      p.v = a.v.data;
      p.o = a.o.data;
      p.lse = static_cast<float*>(a.lse.data);
      p.batch = s.batch;
      p.q_heads = s.q_heads;
      p.kv_heads = s.kv_heads;
      p.head_dim = s.head_dim;
      p.q_len = s.q_len;
      p.kv_len = s.kv_len;
      p.scale_log2 = scale_log2;
      p.mask = mask_desc(a.mask, s);
      p.elem = elem_of(s.dtype);
      p.transform = prefill_transform(a.transform);
      p.scale = a.effective_scale();
      p.bias = a.transform == ScoreTransform::sigmoid ? a.transform_bias : 0.f;
      p.cap = a.softcap;
      p.normalize = a.transform_normalize;
      check(r.prefill(p, stream_), "sdpa prefill launch");
    }
  }

  IndexLists upload_indices(const std::vector<int32_t>& offsets,
                            const std::vector<int32_t>& indices) override {
    if (offsets.empty()) throw std::runtime_error("cuda upload_indices: offsets is empty");
    int64_t max_len = 0;
    for (size_t r = 0; r + 1 < offsets.size(); ++r) {
      const int64_t len = int64_t(offsets[r + 1]) - offsets[r];
      if (len < 0 || offsets[r] < 0 || size_t(offsets[r + 1]) > indices.size())
        throw std::runtime_error("cuda upload_indices: offsets must be non-decreasing within indices");
      max_len = std::max(max_len, len);
    }
    IndexLists l;
    l.lists = int64_t(offsets.size()) - 1;
    l.total = int64_t(indices.size());
    l.on_device = true;
    l.offsets = static_cast<const int32_t*>(device_copy(offsets.data(), offsets.size() * 4));
    l.indices = indices.empty() ? nullptr
                                : static_cast<const int32_t*>(device_copy(indices.data(), indices.size() * 4));
    list_max_[l.offsets] = max_len;
    return l;
  }

  Support supports_sparse_prefill(const SparsePrefillArgs& a) const override {
    return unverified_gate("cuda sparse_prefill", cuda_ops::sparse_prefill_support(a));
  }
  void sparse_prefill(const SparsePrefillArgs& a) override {
    require_verified("cuda sparse_prefill");
    cuda_ops::sparse_prefill(a, stream_);
  }
  std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) const override {
    return cuda_ops::sparse_prefill_executed_pairs(a);
  }

  // Op 1's companions (backends/cuda/cuda_probs_ops.cpp).
  Support supports_output_gate(const OutputGateArgs& a) const override {
    return unverified_gate("cuda output_gate", cuda_ops::route_output_gate(a));
  }
  void output_gate(const OutputGateArgs& a) override {
    require_verified("cuda output_gate");
    cuda_ops::output_gate(a, stream_);
  }
  Support supports_scale_heads(const ScaleHeadsArgs& a) const override {
    return unverified_gate("cuda scale_heads", cuda_ops::route_scale_heads(a));
  }
  void scale_heads(const ScaleHeadsArgs& a) override {
    require_verified("cuda scale_heads");
    cuda_ops::scale_heads(a, stream_);
  }
  Support supports_lse_blend(const LseBlendArgs& a) const override {
    return unverified_gate("cuda lse_blend", cuda_ops::route_lse_blend(a));
  }
  void lse_blend(const LseBlendArgs& a) override {
    require_verified("cuda lse_blend");
    cuda_ops::lse_blend(a, stream_);
  }
  Support supports_attention_probs(const AttnProbsArgs& a) const override {
    return unverified_gate("cuda attention_probs", cuda_ops::route_attention_probs(a));
  }
  void attention_probs(const AttnProbsArgs& a) override {
    require_verified("cuda attention_probs");
    cuda_ops::attention_probs(a, stream_);
  }
  std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) const override {
    return cuda_ops::attention_probs_executed_pairs(a);
  }

  Support supports_gather_decode(const GatherDecodeArgs& a) const override {
    return route_gather(a).support;
  }

  void gather_decode(const GatherDecodeArgs& a) override {
    const SdpaRoute r = route_gather(a);
    if (!r.support.ok) throw std::runtime_error(r.support.reason);
    require_tensors("cuda gather decode", a.q, a.k, a.v, a.o);
    if (!a.lists.offsets) throw std::runtime_error("cuda gather decode: no index lists (upload_indices)");
    const AttnShape& s = a.shape;
    if (s.q_len == 0 || s.batch == 0 || s.q_heads == 0) return;
    cuda::DecodeParams p = decode_params(s, a.q, a.k, a.v, a.o, a.lse,
                                         a.effective_scale() * 1.4426950408889634f);
    p.offsets = a.lists.offsets;
    p.indices = a.lists.indices;
    p.max_list_len = list_max_.at(a.lists.offsets);
    run_decode(p, true, r.dec);
  }

  // ---- Selection and estimation ops (core/ops_select.hpp, core/ops_decode.hpp): routed in
  // cuda_select_ops.cpp to kernels/cuda/selection. Index buffers and int4 tensors keep
  // Backend's default layouts (alloc()'d 4-byte tensors).
  std::vector<int32_t> download_index_buffer(const IndexBuffer& src, int64_t count) override {
    std::vector<int32_t> out(size_t(std::max<int64_t>(count, 0)));
    if (out.empty()) return out;
    check(cudaMemcpyAsync(out.data(), src.data, out.size() * 4, cudaMemcpyDeviceToHost, stream_), "download_index_buffer");
    check(cudaStreamSynchronize(stream_), "download_index_buffer (synchronize)");
    return out;
  }
  Support supports_pool(const PoolArgs& a) const override {
    return unverified_gate("cuda pool", cuda_select::supports_pool(a));
  }
  void pool(const PoolArgs& a) override {
    require_verified("cuda pool");
    cuda_select::pool(a, stream_);
  }
  Support supports_project(const ProjectArgs& a) const override {
    return unverified_gate("cuda project", cuda_select::supports_project(a));
  }
  void project(const ProjectArgs& a) override {
    require_verified("cuda project");
    cuda_select::project(a, stream_, scratch_fn());
  }
  Support supports_scores(const ScoresArgs& a) const override {
    return unverified_gate("cuda scores", cuda_select::supports_scores(a));
  }
  void scores(const ScoresArgs& a) override {
    require_verified("cuda scores");
    cuda_select::scores(a, stream_);
  }
  Support supports_select(const SelectArgs& a) const override {
    return unverified_gate("cuda select", cuda_select::supports_select(a));
  }
  void select(const SelectArgs& a) override {
    require_verified("cuda select");
    cuda_select::select(a, stream_, scratch_fn());
  }
  Support supports_lse_merge(const LseMergeArgs& a) const override {
    return unverified_gate("cuda lse_merge", cuda_select::supports_lse_merge(a));
  }
  void lse_merge(const LseMergeArgs& a) override {
    require_verified("cuda lse_merge");
    cuda_select::lse_merge(a, stream_);
  }
  Support supports_quantize_int4(const QuantizeInt4Args& a) const override {
    return unverified_gate("cuda quantize_int4", cuda_select::supports_quantize_int4(a));
  }
  void quantize_int4(const QuantizeInt4Args& a) override {
    require_verified("cuda quantize_int4");
    cuda_select::quantize_int4(a, stream_);
  }
  Support supports_int4_block_scan(const Int4BlockScanArgs& a) const override {
    return unverified_gate("cuda int4_block_scan", cuda_select::supports_int4_block_scan(a));
  }
  void int4_block_scan(const Int4BlockScanArgs& a) override {
    require_verified("cuda int4_block_scan");
    cuda_select::int4_block_scan(a, stream_);
  }
  Support supports_copy_rows(const CopyRowsArgs& a) const override {
    return unverified_gate("cuda copy_rows", cuda_select::supports_copy_rows(a));
  }
  void copy_rows(const CopyRowsArgs& a) override {
    require_verified("cuda copy_rows");
    cuda_select::copy_rows(a, stream_);
  }
  Support supports_block_mean_keys(const BlockMeanKeysArgs& a) const override {
    return unverified_gate("cuda block_mean_keys", cuda_select::supports_block_mean_keys(a));
  }
  void block_mean_keys(const BlockMeanKeysArgs& a) override {
    require_verified("cuda block_mean_keys");
    cuda_select::block_mean_keys(a, stream_);
  }
  Support supports_fake_quantize(const FakeQuantizeArgs& a) const override {
    return unverified_gate("cuda fake_quantize", cuda_select::supports_fake_quantize(a));
  }
  void fake_quantize(const FakeQuantizeArgs& a) override {
    require_verified("cuda fake_quantize");
    cuda_select::fake_quantize(a, stream_);
  }
  Support supports_decode_scores(const DecodeScoresArgs& a) const override {
    return unverified_gate("cuda decode_scores", cuda_select::supports_decode_scores(a));
  }
  void decode_scores(const DecodeScoresArgs& a) override {
    require_verified("cuda decode_scores");
    cuda_select::decode_scores(a, stream_);
  }
  // Op 4: kernels/cuda/linear_attention, routed by cuda_linear_ops.cpp.
  Support supports_linear_attention(const LinearAttnArgs& a) const override {
    return unverified_gate("cuda linear_attention", cuda_linear_support(a));
  }
  void linear_attention(const LinearAttnArgs& a) override {
    require_verified("cuda linear_attention");
    cuda_linear_attention(a, stream_, [this](size_t bytes) { return workspace(bytes); });
  }

 private:
  SdpaRoute route_gather(const GatherDecodeArgs& a) const {
    SdpaRoute r;
    const AttnShape& s = a.shape;
    r.support = check_tensors("cuda gather decode", s, a.q, a.k, a.v, a.o, a.lse);
    if (!r.support.ok) return r;
    if (!(a.effective_scale() > 0.f)) {
      r.support = Support::no("cuda gather decode: the softmax scale must be positive");
      return r;
    }
    if (a.lists.offsets && (!a.lists.on_device || !list_max_.count(a.lists.offsets))) {
      r.support = Support::no("cuda gather decode: index lists must come from this backend's upload_indices");
      return r;
    }
    if (a.lists.offsets && a.lists.lists != int64_t(s.batch) * s.kv_heads) {
      r.support = Support::no("cuda gather decode: expected batch × kv_heads = " +
                              std::to_string(int64_t(s.batch) * s.kv_heads) + " index lists, got " +
                              std::to_string(a.lists.lists));
      return r;
    }
    std::string why;
    r.decode = true;
    r.dec = cuda::decode_select(elem_of(s.dtype), s.head_dim, s.v_dim, true, cuda::PrefillTransform::softmax, &why);
    if (!r.dec) r.support = Support::no(why);
    return r;
  }

  cuda::DecodeParams decode_params(const AttnShape& s, const TensorRef& q, const TensorRef& k,
                                   const TensorRef& v, const TensorRef& o, const TensorRef& lse,
                                   float scale_log2) const {
    cuda::DecodeParams p;
    p.q = q.data;
    p.k = k.data;
    p.v = v.data;
    p.o = o.data;
    p.lse = static_cast<float*>(lse.data);
    p.batch = s.batch;
    p.q_heads = s.q_heads;
    p.kv_heads = s.kv_heads;
    p.head_dim = s.head_dim;
    p.q_len = s.q_len;
    p.kv_len = s.kv_len;
    p.scale_log2 = scale_log2;
    p.mask.kv_len = s.kv_len;
    p.elem = elem_of(s.dtype);
    return p;
  }

  void run_decode(cuda::DecodeParams& p, bool gather, cuda::DecodeLaunchFn fn) {
    cuda::decode_plan(p, gather, prop_.multiProcessorCount);
    const size_t need = cuda::decode_workspace_bytes(p);
    if (need > ws_bytes_) {
      check(cudaStreamSynchronize(stream_), "decode workspace (synchronize)");
      if (ws_) check(cudaFree(ws_), "cudaFree(workspace)");
      ws_ = nullptr;
      ws_bytes_ = 0;
      check(cudaMalloc(&ws_, need), "cudaMalloc(decode workspace)");
      ws_bytes_ = need;
    }
    const int64_t rows_total = int64_t(p.batch) * p.q_heads * p.q_len;
    p.ws_o = static_cast<float*>(ws_);
    p.ws_lse = p.ws_o + rows_total * p.splits * p.head_dim;
    check(fn(p, stream_), gather ? "gather decode launch" : "decode launch");
  }

  // Scratch of the selection ops (select's per-list thresholds, project's slice maxima), grown
  // like the decode workspace: a bigger request waits for the stream once, then reallocates.
  cuda_select::ScratchFn scratch_fn() {
    return [this](size_t bytes) {
      if (bytes > scratch_bytes_) {
        check(cudaStreamSynchronize(stream_), "selection scratch (synchronize)");
        if (scratch_) check(cudaFree(scratch_), "cudaFree(selection scratch)");
        scratch_ = nullptr;
        scratch_bytes_ = 0;
        const size_t want = std::max<size_t>(bytes, size_t(1) << 20);
        check(cudaMalloc(&scratch_, want), "cudaMalloc(selection scratch)");
        scratch_bytes_ = want;
      }
      return scratch_;
    };
  }

  // Scratch of at least `bytes` from the backend's workspace (shared with split-KV decode; the
  // ops run in stream order). It grows only when a larger request comes: the first, untimed run
  // of a case pays the allocation, later runs find it in place.
  void* workspace(size_t bytes) {
    if (bytes > ws_bytes_) {
      check(cudaStreamSynchronize(stream_), "workspace (synchronize)");
      if (ws_) check(cudaFree(ws_), "cudaFree(workspace)");
      ws_ = nullptr;
      ws_bytes_ = 0;
      check(cudaMalloc(&ws_, bytes), "cudaMalloc(workspace)");
      ws_bytes_ = bytes;
    }
    return ws_;
  }

  void* device_copy(const void* src, size_t bytes) {
    void* d = nullptr;
    check(cudaMalloc(&d, std::max<size_t>(bytes, 4)), "cudaMalloc(index list)");
    buffers_.push_back(d);
    if (bytes) {
      check(cudaMemcpyAsync(d, src, bytes, cudaMemcpyHostToDevice, stream_), "upload_indices");
      check(cudaStreamSynchronize(stream_), "upload_indices (synchronize)");
    }
    return d;
  }

  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  std::string pci_bus_id_;
  Nvml nvml_;
  std::vector<void*> buffers_;
  std::vector<uint16_t> staging_;
  std::map<const int32_t*, int64_t> list_max_;  // longest list per uploaded IndexLists
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  void* mask_ws_ = nullptr;  // block lists of mask predicates (cuda_ops::predicate_sdpa)
  size_t mask_ws_bytes_ = 0;
  void* scratch_ = nullptr;  // selection ops (scratch_fn)
  size_t scratch_bytes_ = 0;
  void* flush_ = nullptr;
  size_t flush_bytes_ = 0;
  unsigned flush_value_ = 0;
  bool capability_only_ = false;
};

}  // namespace

bool cuda_probe(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    cudaGetLastError();  // clear it so later calls start clean
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA-capable device is detected";
    return false;
  }
  const cudaError_t img = cuda::prefill_image_check();
  if (img != cudaSuccess) {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    if (why)
      *why = std::string("device 0 (") + prop.name + ", sm_" + std::to_string(prop.major) +
             std::to_string(prop.minor) + ") cannot run this build's kernels: " + cudaGetErrorString(img);
    cudaGetLastError();
    return false;
  }
  return true;
}

int cuda_device_count_impl(std::string* why) {
  if (!cuda_probe(why)) return 0;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }
std::unique_ptr<Backend> make_cuda_capability_backend() {
  return std::make_unique<CudaBackend>(CudaBackend::CapabilityOnly{});
}

}  // namespace ab
