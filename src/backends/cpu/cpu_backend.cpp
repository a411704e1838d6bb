#include "backends/cpu/cpu_backend.hpp"
#include "backends/cpu/cpu_select_ops.hpp"
#include "backends/cpu/rapl.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <limits>
#include <fstream>
#include <list>
#include <vector>

#include <omp.h>

#include "cpu/gather_decode.hpp"
#include "backends/cpu/cpu_decode_ops.hpp"
#include "cpu/linear_attention.hpp"
#include "cpu/lse_merge.hpp"
#include "cpu/peaks.hpp"
#include "cpu/sdpa.hpp"
#include "cpu/sparse_prefill.hpp"
#include "cpu/sdpa_transforms.hpp"
#include "cpu/selection.hpp"

namespace ab {
namespace {

// The largest cache sysfs lists for cpu0 (bytes; 0 when unknown).
size_t last_level_cache_bytes() {
  size_t best = 0;
  for (int idx = 0; idx < 8; ++idx) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/size");
    std::string v;
    if (!(f >> v) || v.empty()) continue;
    size_t mult = 1;
    if (v.back() == 'K') mult = size_t(1) << 10;
    else if (v.back() == 'M') mult = size_t(1) << 20;
    if (mult > 1) v.pop_back();
    try {
      best = std::max(best, size_t(std::stoull(v)) * mult);
    } catch (const std::exception&) {
    }
  }
  return best;
}

// bf16 products are used unless the CPU lacks them or ATTN_CPU_BF16=off asks for fp32.
bool bf16_allowed() {
  static const bool ok = [] {
    const char* e = std::getenv("ATTN_CPU_BF16");
    return cpu::sdpa_flash_available(cpu::FlashPath::avx512_bf16) && !(e && std::string(e) == "off");
  }();
  return ok;
}

bool use_bf16_products(const SdpaArgs& a) {
  return a.q.dtype == DType::bf16 && a.k.dtype == DType::bf16 && a.v.dtype == DType::bf16 &&
         bf16_allowed() && cpu::sdpa_flash_packing_pays(a.shape);
}

// AMX tiles where the CPU has AMX-BF16 (ATTN_NO_AMX=1 keeps VDPBF16PS), else AVX512_BF16.
cpu::FlashPath bf16_path() {
  return cpu::sdpa_flash_available(cpu::FlashPath::amx_bf16) ? cpu::FlashPath::amx_bf16
                                                               : cpu::FlashPath::avx512_bf16;
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  TensorRef alloc(const Shape4& shape, DType dtype) override {
    buffers_.emplace_back(static_cast<size_t>(ab::numel(shape)));
    TensorRef t;
    t.data = buffers_.back().data();
    t.dtype = dtype;
    t.shape = shape;
    t.on_device = false;
    return t;
  }
  std::optional<TensorRef> view_host(const HostTensor& t, DType dtype) const override {
    TensorRef r;
    r.data = const_cast<float*>(t.ptr());  // ops read inputs only
    r.dtype = dtype;
    r.shape = t.shape;
    r.on_device = false;
    return r;
  }
  void upload(const HostTensor& src, const TensorRef& dst) override {
    std::memcpy(dst.data, src.ptr(), sizeof(float) * static_cast<size_t>(src.numel()));
  }
  HostTensor download(const TensorRef& src) override {
    HostTensor h(src.shape);
    std::memcpy(h.ptr(), src.data, sizeof(float) * static_cast<size_t>(h.numel()));
    return h;
  }
  void poison(const TensorRef& t) override {
    float* p = t.host_f32();
    std::fill(p, p + t.numel(), std::numeric_limits<float>::quiet_NaN());
  }
  void free(const TensorRef& t) override {
    buffers_.remove_if([&](const std::vector<float>& b) { return b.data() == t.data; });
  }
  void release_all() override {
    buffers_.clear();
    index_store_.clear();
    int4_store_.clear();
  }

  double time(const std::function<void()>& fn, CacheMode mode) override {
    if (mode == CacheMode::cold) flush_caches();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double>(t1 - t0).count();
  }

  Support supports_sdpa(const SdpaArgs& a) const override {
    if (a.transform == ScoreTransform::softcap && !(a.softcap > 0))
      return Support::no("cpu sdpa: softcap needs a cap > 0");
    return Support::yes();
  }
  // Softmax: the tiled flash kernel (docs/cpu.md), with bf16 products for bf16 inputs where
  // the CPU has AVX512_BF16 (on AMX tiles where it has AMX-BF16) and the shape has enough query rows per key to pay for packing K
  // and V (ATTN_CPU_BF16=off keeps fp32); the other score transforms: cpu/sdpa_transforms.
  std::optional<double> sdpa_executed_pairs(const SdpaArgs& a) const override {
    const double all = double(a.shape.q_len) * double(a.shape.kv_len);
    if (a.transform != ScoreTransform::softmax)
      return all * cpu::sdpa_transformed_executed_fraction(a.shape, a.mask);
    const cpu::FlashPath path = use_bf16_products(a) ? bf16_path() : cpu::FlashPath::portable;
    return all * cpu::sdpa_flash_executed_fraction(a.shape, a.mask, path);
  }
  void sdpa(const SdpaArgs& a) override {
    if (a.transform != ScoreTransform::softmax) cpu::sdpa_transformed(a);
    else if (use_bf16_products(a)) cpu::sdpa_flash(a, bf16_path());
    else cpu::sdpa_flash(a);
  }
  std::optional<EnergyReading> read_energy(std::string* why) override { return cpu::read_rapl_packages(why); }
  std::optional<MeasuredPeaks> measure_peaks() override {
    const int threads = omp_get_max_threads();
    const auto gemm = cpu::measure_gemm_tflops(threads);
    const auto triad = cpu::measure_triad_gbps(threads);
    return MeasuredPeaks{{gemm.value, gemm.method}, {triad.value, triad.method}};
  }
  // Which products dense prefill-sized softmax attention runs (decode: the portable path).
  nlohmann::ordered_json device_info() const override {
    const char* e = std::getenv("ATTN_CPU_SIMD");
    const bool f32 = cpu::sdpa_flash_available(cpu::FlashPath::avx512_f32) && !(e && std::string(e) == "off");
    nlohmann::ordered_json j;
    j["name"] = "cpu";
    j["sdpa_f32"] = f32 ? "avx512_f32 (fp32 FMA register blocks)" : "portable (Eigen fp32 GEMMs)";
    j["sdpa_bf16"] = !bf16_allowed() ? j["sdpa_f32"]
                     : bf16_path() == cpu::FlashPath::amx_bf16
                         ? "amx_bf16 (AMX tiles, TDPBF16PS, fp32 accumulation)"
                         : "avx512_bf16 (VDPBF16PS, fp32 accumulation)";
    return j;
  }
  Support supports_output_gate(const OutputGateArgs& a) const override {
    (void)a;
    return Support::yes();
  }
  void output_gate(const OutputGateArgs& a) override { cpu::output_gate(a); }
  Support supports_attention_probs(const AttnProbsArgs& a) const override {
    if (a.sdpa.transform != ScoreTransform::softmax)
      return Support::no("cpu attention probabilities: softmax only");
    return Support::yes();
  }
  void attention_probs(const AttnProbsArgs& a) override { cpu::attention_probs(a); }
  std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) const override {
    // column_mass and materialize walk the transformed kernel's tiles.
    if (a.op == ProbsOp::apply) return std::nullopt;
    const double all = double(a.sdpa.shape.q_len) * double(a.sdpa.shape.kv_len);
    return all * cpu::sdpa_transformed_executed_fraction(a.sdpa.shape, a.sdpa.mask);
  }
  Support supports_scale_heads(const ScaleHeadsArgs& a) const override {
    (void)a;
    return Support::yes();
  }
  void scale_heads(const ScaleHeadsArgs& a) override {
    if (a.x.shape != a.out.shape || !a.factor)
      throw std::invalid_argument("scale_heads: x and out must have one shape, factor must be set");
    const int64_t H = a.x.shape[1], slice = a.x.shape[2] * a.x.shape[3];
    const int64_t units = a.x.shape[0] * H;
    const float* x = a.x.host_f32();
    float* out = a.out.host_f32();
    for (int64_t u = 0; u < units; ++u) {
      const float f = a.factor[u % H];
      for (int64_t e = 0; e < slice; ++e) out[u * slice + e] = x[u * slice + e] * f;
    }
  }
  Support supports_lse_blend(const LseBlendArgs& a) const override {
    (void)a;
    return Support::yes();
  }
  void lse_blend(const LseBlendArgs& a) override { cpu::lse_blend(a); }
  Support supports_linear_attention(const LinearAttnArgs& a) const override {
    const std::string why = cpu::linear_attention_refusal(a);
    return why.empty() ? Support::yes() : Support::no("cpu linear attention: " + why);
  }
  void linear_attention(const LinearAttnArgs& a) override { cpu::linear_attention(a); }

  IndexLists upload_indices(const std::vector<int32_t>& offsets,
                            const std::vector<int32_t>& indices) override {
    index_store_.push_back(offsets);
    const int32_t* off = index_store_.back().data();
    index_store_.push_back(indices);
    IndexLists l;
    l.offsets = off;
    l.indices = index_store_.back().data();
    l.lists = static_cast<int64_t>(offsets.size()) - 1;
    l.total = static_cast<int64_t>(indices.size());
    return l;
  }
  Support supports_gather_decode(const GatherDecodeArgs& a) const override {
    if (a.lists.on_device) return Support::no("cpu gather decode: index lists are on a device");
    if (a.lists.lists != int64_t(a.shape.batch) * a.shape.kv_heads)
      return Support::no("cpu gather decode: expected batch × kv_heads index lists");
    return Support::yes();
  }
  void gather_decode(const GatherDecodeArgs& a) override { cpu::gather_decode(a); }
  Support supports_sparse_prefill(const SparsePrefillArgs& a) const override {
    if (a.blocks.on_device || a.indices.on_device)
      return Support::no("cpu sparse prefill: the lists are on a device");
    return Support::yes();
  }
  void sparse_prefill(const SparsePrefillArgs& a) override { cpu::sparse_prefill(a); }

  // ---- Selection and estimation ops (core/ops_select.hpp) -----------------------------------
  // Index buffers as int32 vectors beside upload_indices' (released with them).
  IndexBuffer alloc_indices(int64_t n) override {
    index_store_.emplace_back(static_cast<size_t>(std::max<int64_t>(n, 1)));
    IndexBuffer b;
    b.data = index_store_.back().data();
    b.size = n;
    return b;
  }
  void upload_index_buffer(const std::vector<int32_t>& src, const IndexBuffer& dst) override {
    std::copy(src.begin(), src.begin() + std::min<int64_t>(int64_t(src.size()), dst.size), dst.data);
  }
  std::vector<int32_t> download_index_buffer(const IndexBuffer& src, int64_t count) override {
    return std::vector<int32_t>(src.data, src.data + count);
  }
  void free_indices(const IndexBuffer& b) override {
    index_store_.remove_if([&](const std::vector<int32_t>& v) { return v.data() == b.data; });
  }
  Support supports_pool(const PoolArgs& a) const override { return refusal("cpu pool", cpu_select::pool_refusal(a)); }
  void pool(const PoolArgs& a) override { cpu_select::pool(a); }
  Support supports_project(const ProjectArgs& a) const override {
    return refusal("cpu project", cpu_select::project_refusal(a));
  }
  void project(const ProjectArgs& a) override { cpu_select::project(a); }
  Support supports_scores(const ScoresArgs& a) const override {
    return refusal("cpu scores", cpu_select::scores_refusal(a));
  }
  void scores(const ScoresArgs& a) override { cpu_select::scores(a); }
  Support supports_select(const SelectArgs& a) const override {
    return refusal("cpu select", cpu_select::select_refusal(a));
  }
  void select(const SelectArgs& a) override { cpu_select::select(a); }
  Support supports_lse_merge(const LseMergeArgs& a) const override {
    return refusal("cpu lse_merge", cpu_select::lse_merge_refusal(a));
  }
  void lse_merge(const LseMergeArgs& a) override { cpu_select::lse_merge(a); }
  std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) const override {
    return cpu::sparse_prefill_executed_pairs(a);
  }
  // int4 tensors: values.data holds B·H packed row sets (cpu::Int4Rows) kept beside the buffers
  // (cpu_select_ops.hpp); the scales are an ordinary tensor.
  Int4Tensor alloc_int4(const Shape4& shape, int64_t block) override {
    int4_store_.emplace_back(static_cast<size_t>(std::max<int64_t>(shape[0] * shape[1], 1)));
    Int4Tensor t;
    t.shape = shape;
    t.block = block;
    t.values.data = int4_store_.back().data();
    t.values.shape = {shape[0], shape[1], 1, 1};
    t.scales = alloc({shape[0], shape[1], (shape[2] + block - 1) / std::max<int64_t>(block, 1), 1}, DType::f32);
    return t;
  }
  void free_int4(const Int4Tensor& t) override {
    int4_store_.remove_if([&](const std::vector<cpu::Int4Rows>& v) { return v.data() == t.values.data; });
    free(t.scales);
  }
  Support supports_quantize_int4(const QuantizeInt4Args& a) const override {
    return refusal("cpu quantize_int4", cpu_select::quantize_int4_refusal(a));
  }
  void quantize_int4(const QuantizeInt4Args& a) override { cpu_select::quantize_int4(a); }
  Support supports_int4_block_scan(const Int4BlockScanArgs& a) const override {
    return refusal("cpu int4_block_scan", cpu_select::int4_block_scan_refusal(a));
  }
  void int4_block_scan(const Int4BlockScanArgs& a) override { cpu_select::int4_block_scan(a); }
  // The CPU kernels run every geometry; only operands in device memory are refused here, and
  // malformed arguments throw when the op runs (as sparse_prefill).
  static Support refusal(const char* op, const std::string& why) {
    if (why.find("device memory") == std::string::npos) return Support::yes();
    return Support::no(std::string(op) + ": " + why);
  }
  // ---- end of the selection and estimation ops ------------------------------------------------



  // ---- Decode-time selection ops (core/ops_decode.hpp) ------------------------------------------
  Support supports_copy_rows(const CopyRowsArgs& a) const override { return decode_support(cpu_decode::copy_rows_refusal(a)); }
  void copy_rows(const CopyRowsArgs& a) override { cpu_decode::copy_rows(a); }
  Support supports_block_mean_keys(const BlockMeanKeysArgs& a) const override {
    return decode_support(cpu_decode::block_mean_keys_refusal(a));
  }
  void block_mean_keys(const BlockMeanKeysArgs& a) override { cpu_decode::block_mean_keys(a); }
  Support supports_fake_quantize(const FakeQuantizeArgs& a) const override {
    return decode_support(cpu_decode::fake_quantize_refusal(a));
  }
  void fake_quantize(const FakeQuantizeArgs& a) override { cpu_decode::fake_quantize(a); }
  Support supports_decode_scores(const DecodeScoresArgs& a) const override {
    return decode_support(cpu_decode::decode_scores_refusal(a));
  }
  void decode_scores(const DecodeScoresArgs& a) override { cpu_decode::decode_scores(a); }
  static Support decode_support(const std::string& why) { return why.empty() ? Support::yes() : Support::no(why); }
  // ---- end of the decode-time selection ops ---------------------------------------------------

 private:
  // Evict the caches by writing a buffer twice the last-level cache, at least 128 MiB (the
  // development box's Xeon reports a 300 MiB L3: a fixed 128 MiB left it warm).
  void flush_caches() {
    if (flush_.empty()) flush_.assign(std::max<size_t>(size_t(128) << 20, 2 * last_level_cache_bytes()) / 8, 1.0);
    double s = 0;
    for (size_t i = 0; i < flush_.size(); i += 8) {
      flush_[i] += 1.0;
      s += flush_[i];
    }
    sink_ = s;
  }
  std::list<std::vector<float>> buffers_;
  std::list<std::vector<int32_t>> index_store_;
  std::list<std::vector<cpu::Int4Rows>> int4_store_;
  std::vector<double> flush_;
  volatile double sink_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace ab
