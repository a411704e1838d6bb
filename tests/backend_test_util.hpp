#pragma once
// Helpers of the tests that run on every backend (test_backend_conformance.cpp,
// test_variants_every_backend.cpp): which backends this build and machine offer, the op names
// of the Backend interface, and host/backend tensor helpers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <list>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backends/backends.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "backends/fake/fake_device_backend.hpp"
#include "core/backend.hpp"

namespace bt {

using namespace ab;

inline uint32_t test_seed() {
  if (const char* s = std::getenv("ATTN_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

// The backends these tests run on, the CPU first (the one the others are compared with):
// cpu, fake, and cuda when the build has it and a usable GPU is present. `skipped` receives
// "name: why" for each backend left out.
inline std::vector<std::string> backend_names(std::vector<std::string>* skipped = nullptr) {
  std::vector<std::string> names = {"cpu", "fake"};
  std::string why;
  if (cuda_available(&why)) names.push_back("cuda");
  else if (skipped) skipped->push_back("cuda: " + why);
  return names;
}
inline std::unique_ptr<Backend> make_named(const std::string& name) {
  std::string note;
  return make_backend(name, &note);
}

// The ops of the Backend interface (core/backend.hpp), one name per op: each `virtual` member
// that computes or moves op data, named as its method (supports_<op> belongs to <op>). KEEP IN
// SYNC with core/backend.hpp and its base core/device_services.hpp: test_backend_conformance.cpp
// fails when a member declared there is neither here nor in backend_non_op_members(), and when
// an op here has no conformance entry.
inline const std::vector<std::string>& op_names() {
  static const std::vector<std::string> names = {
      // op 1 and its companions
      "sdpa", "sdpa_executed_pairs", "output_gate", "attention_probs", "attention_probs_executed_pairs",
      "scale_heads", "lse_blend",
      // op 2, op 3, op 4
      "sparse_prefill", "sparse_prefill_executed_pairs", "gather_decode", "linear_attention",
      // index lists and buffers
      "upload_indices", "alloc_indices", "upload_index_buffer", "download_index_buffer", "free_indices",
      // selection and estimation (core/ops_select.hpp)
      "pool", "project", "scores", "select", "lse_merge",
      "alloc_int4", "free_int4", "quantize_int4", "int4_block_scan",
      // decode-time selection (core/ops_decode.hpp)
      "copy_rows", "block_mean_keys", "fake_quantize", "decode_scores",
      // memory, as the ops' inputs and outputs see it
      "alloc", "upload", "download", "poison", "free", "view_host"};
  return names;
}
// Members of Backend that are no op: identity, lifetime, timing and facts.
inline const std::vector<std::string>& backend_non_op_members() {
  static const std::vector<std::string> names = {"name",    "release_all",      "time",      "synchronize",
                                                 "rotation_copies", "read_clocks", "read_energy", "device_info",
                                                 "measure_peaks"};
  return names;
}
// The virtual members a header declares (supports_<op> counted as <op>), read from the source
// so that a new op cannot be added without a conformance entry; the conformance test reads
// core/backend.hpp and core/device_services.hpp (Backend's base).
inline std::set<std::string> declared_backend_members(const std::string& header) {
  std::ifstream f(header);
  REQUIRE_MESSAGE(f.good(), "cannot read " << header);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::set<std::string> out;
  const std::regex decl(R"(virtual\s+[^;{()]*?\b([A-Za-z_][A-Za-z0-9_]*)\s*\()");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), decl); it != std::sregex_iterator(); ++it) {
    std::string name = (*it)[1];
    if (name.rfind("supports_", 0) == 0) name = name.substr(9);
    if (name == "Backend" || name == "DeviceServices") continue;  // the destructors
    out.insert(name);
  }
  return out;
}

// The CPU backend's ops on 64-byte-aligned host memory: what the bit-for-bit comparisons of the
// fake device use as the CPU. The CPU kernels' vector paths (Eigen's packet loops, OpenMP simd
// loops calling libmvec) peel scalar iterations up to an aligned address, so the last bits of
// exp/sigmoid/normalisation results depend on buffer addresses mod 64; CpuBackend keeps its
// tensors in std::vector (16-byte aligned, heap-dependent) and views host inputs in place, so
// two CPU runs of one op can differ in the last bit. The fake device's host copies are 64-byte
// aligned, and so is every tensor here (view_host copies instead of viewing): the same kernels
// on the same layout, deterministically. Every op is forwarded to a CpuBackend.
class AlignedCpu final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  TensorRef alloc(const Shape4& shape, DType dtype) override {
    const size_t bytes = (size_t(std::max<int64_t>(ab::numel(shape), 1)) * 4 + 63) / 64 * 64;
    blocks_.emplace_back(static_cast<float*>(std::aligned_alloc(64, bytes)));
    TensorRef t;
    t.data = blocks_.back().get();
    t.dtype = dtype;
    t.shape = shape;
    return t;
  }
  void upload(const HostTensor& src, const TensorRef& dst) override { cpu_->upload(src, dst); }
  HostTensor download(const TensorRef& src) override { return cpu_->download(src); }
  void poison(const TensorRef& t) override { cpu_->poison(t); }
  void free(const TensorRef& t) override {
    blocks_.remove_if([&](const std::unique_ptr<float, Free>& b) { return b.get() == t.data; });
  }
  void release_all() override {
    blocks_.clear();
    cpu_->release_all();
  }
  double time(const std::function<void()>& fn, CacheMode mode) override { return cpu_->time(fn, mode); }
  nlohmann::ordered_json device_info() const override { return cpu_->device_info(); }
  IndexLists upload_indices(const std::vector<int32_t>& o, const std::vector<int32_t>& i) override {
    return cpu_->upload_indices(o, i);
  }
  IndexBuffer alloc_indices(int64_t n) override { return cpu_->alloc_indices(n); }
  void upload_index_buffer(const std::vector<int32_t>& s, const IndexBuffer& d) override { cpu_->upload_index_buffer(s, d); }
  std::vector<int32_t> download_index_buffer(const IndexBuffer& s, int64_t n) override {
    return cpu_->download_index_buffer(s, n);
  }
  void free_indices(const IndexBuffer& b) override { cpu_->free_indices(b); }
  std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) const override {
    return cpu_->sparse_prefill_executed_pairs(a);
  }
  std::optional<double> sdpa_executed_pairs(const SdpaArgs& a) const override { return cpu_->sdpa_executed_pairs(a); }
  std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) const override {
    return cpu_->attention_probs_executed_pairs(a);
  }
  // The CPU's int4 tensors (values: its packed rows; scales: a CpuBackend tensor).
  Int4Tensor alloc_int4(const Shape4& shape, int64_t block) override { return cpu_->alloc_int4(shape, block); }
  void free_int4(const Int4Tensor& t) override { cpu_->free_int4(t); }
#define BT_FORWARD(op, Args)                                                             \
  Support supports_##op(const Args& a) const override { return cpu_->supports_##op(a); } \
  void op(const Args& a) override { cpu_->op(a); }
  BT_FORWARD(sdpa, SdpaArgs)
  BT_FORWARD(gather_decode, GatherDecodeArgs)
  BT_FORWARD(sparse_prefill, SparsePrefillArgs)
  BT_FORWARD(linear_attention, LinearAttnArgs)
  BT_FORWARD(output_gate, OutputGateArgs)
  BT_FORWARD(attention_probs, AttnProbsArgs)
  BT_FORWARD(scale_heads, ScaleHeadsArgs)
  BT_FORWARD(lse_blend, LseBlendArgs)
  BT_FORWARD(pool, PoolArgs)
  BT_FORWARD(project, ProjectArgs)
  BT_FORWARD(scores, ScoresArgs)
  BT_FORWARD(select, SelectArgs)
  BT_FORWARD(lse_merge, LseMergeArgs)
  BT_FORWARD(quantize_int4, QuantizeInt4Args)
  BT_FORWARD(int4_block_scan, Int4BlockScanArgs)
  BT_FORWARD(copy_rows, CopyRowsArgs)
  BT_FORWARD(block_mean_keys, BlockMeanKeysArgs)
  BT_FORWARD(fake_quantize, FakeQuantizeArgs)
  BT_FORWARD(decode_scores, DecodeScoresArgs)
#undef BT_FORWARD

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<Backend> cpu_ = make_cpu_backend();
  std::list<std::unique_ptr<float, Free>> blocks_;
};

inline HostTensor random_tensor(const Shape4& s, std::mt19937& rng, float sd = 1.0f, float mean = 0.0f) {
  HostTensor t(s);
  std::normal_distribution<float> n(mean, sd);
  for (float& e : t.data) e = n(rng);
  return t;
}
// Values of t rounded to dtype (what a case of that dtype feeds every backend).
inline HostTensor rounded(HostTensor t, DType dtype) {
  for (float& e : t.data) e = round_to(dtype, e);
  return t;
}
inline TensorRef put(Backend& be, const HostTensor& h, DType dtype = DType::f32) {
  TensorRef t = be.alloc(h.shape, dtype);
  be.upload(h, t);
  return t;
}
// An output tensor, NaN-poisoned so unwritten elements show.
inline TensorRef out_tensor(Backend& be, const Shape4& s, DType dtype = DType::f32) {
  TensorRef t = be.alloc(s, dtype);
  be.poison(t);
  return t;
}
inline IndexBuffer put_indices(Backend& be, const std::vector<int32_t>& v) {
  IndexBuffer b = be.alloc_indices(int64_t(v.size()));
  be.upload_index_buffer(v, b);
  return b;
}

// Bit-for-bit equality of two float arrays (NaNs of one pattern are equal, -0 ≠ +0); `where`
// receives the first differing index.
inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b, size_t* where = nullptr) {
  if (a.size() != b.size()) {
    if (where) *where = std::min(a.size(), b.size());
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      if (where) *where = i;
      return false;
    }
  return true;
}

}  // namespace bt
