// The fake device backend (fake_device_backend.hpp): memory behind a PROT_NONE address range,
// values in a side table, every op run by the CPU backend on host scratch copies.
//
// Adding an op: one `visit` overload naming every device field of its argument struct with
// its role (read, or written: written fields are copied back after the op), then the two
// one-line overrides `supports_<op>` / `<op>` in FakeDeviceBackend that call check()/exec().
//
// int4 tensors (core/ops_select.hpp): the CPU backend's Int4Tensor.values is an opaque handle
// to its host-side packed rows. The fake's alloc_int4 gives out a device handle (values, B·H
// words of its own memory) and its own scales tensor, and keeps a side table from the handle
// to a CPU-backend Int4Tensor; the int4 ops run on that one, with the fake's scales in place
// of the CPU's (quantize_int4 writes them there, so they are copied back like any output).
#include "backends/fake/fake_device_backend.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"

namespace ab {
namespace {

constexpr uintptr_t kAlign = 256;  // of every allocation's address (cudaMalloc's)
constexpr uintptr_t kGuard = 256;  // unused addresses after each allocation

uintptr_t round_up(uintptr_t x, uintptr_t a) { return (x + a - 1) / a * a; }

// One allocation: `elems` values of `elem_bytes` each on the device, kept as fp32 words.
struct Buffer {
  uintptr_t base = 0;
  uintptr_t span = 0;  // addresses owned (>= elems · elem_bytes, at least one element)
  int elem_bytes = 4;
  std::vector<float> words;
};

// The device's memory: a reserved PROT_NONE range handed out first-fit, and the side table.
class DeviceMemory {
 public:
  DeviceMemory() {
    for (uintptr_t size : {uintptr_t(1) << 40, uintptr_t(1) << 36, uintptr_t(1) << 32}) {
      void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p != MAP_FAILED) {
        lo_ = reinterpret_cast<uintptr_t>(p);
        size_ = size;
        break;
      }
    }
    if (!lo_) throw std::runtime_error("fake device: could not reserve an address range (mmap PROT_NONE)");
    next_ = lo_;
  }
  ~DeviceMemory() { munmap(reinterpret_cast<void*>(lo_), size_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  bool in_range(const void* p) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    return a >= lo_ && a < lo_ + size_;
  }

  Buffer& allocate(int64_t elems, int elem_bytes) {
    const uintptr_t span =
        round_up(uintptr_t(std::max<int64_t>(elems, 1)) * uintptr_t(elem_bytes), kAlign);
    const uintptr_t base = place(span);
    Buffer& b = buffers_[base];
    b.base = base;
    b.span = span;
    b.elem_bytes = elem_bytes;
    b.words.assign(size_t(std::max<int64_t>(elems, 0)), std::numeric_limits<float>::quiet_NaN());
    return b;
  }

  // The buffer holding address p and p's element index in it; null when p is no live address.
  Buffer* find(const void* p, int64_t* elem) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    auto it = buffers_.upper_bound(a);
    if (it == buffers_.begin()) return nullptr;
    --it;
    Buffer& b = it->second;
    if (a >= b.base + b.span) return nullptr;
    if ((a - b.base) % uintptr_t(b.elem_bytes) != 0) return nullptr;
    *elem = int64_t((a - b.base) / uintptr_t(b.elem_bytes));
    return &b;
  }
  const Buffer* find(const void* p, int64_t* elem) const { return const_cast<DeviceMemory*>(this)->find(p, elem); }

  void release(const void* p) { buffers_.erase(reinterpret_cast<uintptr_t>(p)); }
  void clear() { buffers_.clear(); }

 private:
  // Fresh addresses while they last, across release_all() too (a freed address is not reused
  // soon, so a stale pointer finds no buffer), then the first gap that fits.
  uintptr_t place(uintptr_t span) {
    if (next_ + span + kGuard <= lo_ + size_) {
      const uintptr_t base = next_;
      next_ += span + kGuard;
      return base;
    }
    uintptr_t cursor = lo_;
    for (const auto& [base, b] : buffers_) {
      if (cursor + span + kGuard <= base) return cursor;
      cursor = base + b.span + kGuard;
    }
    if (cursor + span + kGuard <= lo_ + size_) return cursor;
    throw std::runtime_error("fake device: out of address space (" + std::to_string(span) + " bytes asked)");
  }

  uintptr_t lo_ = 0, size_ = 0, next_ = 0;
  std::map<uintptr_t, Buffer> buffers_;
};

enum class Role { read, write };

// Device handle (the fake's values address) -> the CPU backend's Int4Tensor behind it.
using Int4Table = std::map<uintptr_t, Int4Tensor>;

// Host scratch of a buffer, 64-byte aligned like every device allocation, so that the CPU
// kernels' vector paths (which peel to alignment) see the same layout on every call.
class AlignedFloats {
 public:
  void assign(const std::vector<float>& v) {
    n_ = v.size();
    p_.reset(static_cast<float*>(std::aligned_alloc(64, round_up(std::max<size_t>(n_, 1) * sizeof(float), 64))));
    if (!p_) throw std::bad_alloc();
    std::copy(v.begin(), v.end(), p_.get());
  }
  float* data() { return p_.get(); }
  const float* begin() const { return p_.get(); }
  const float* end() const { return p_.get() + n_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> p_;
  size_t n_ = 0;
};

// One op call's translation: every device field of the argument struct becomes a pointer into
// a host scratch copy of its buffer (one copy per buffer, so aliased fields stay aliased);
// after the op, the copies of buffers the op writes go back to the side table. A field that
// is not live memory of this device records why (the first reason is kept).
class Translation {
 public:
  Translation(DeviceMemory& mem, std::string op, const Int4Table* int4 = nullptr)
      : mem_(mem), op_(std::move(op)), int4_(int4) {}

  bool ok() const { return why_.empty(); }
  const std::string& why() const { return why_; }

  // A tensor: null data is left alone (variants ask supports() before allocating).
  void tensor(TensorRef& t, Role r, const char* field) {
    if (!t.data) return;
    if (!t.on_device) return fail(field, "is host memory, not memory of the fake device");
    int64_t elem = 0;
    float* p = host_of(t.data, r, field, &elem, int64_t(t.numel()));
    if (!p) return;
    t.data = p;
    t.on_device = false;
  }
  void index_buffer(IndexBuffer& b, Role r, const char* field) {
    if (!b.data) return;
    if (!b.on_device || !b.storage.on_device)
      return fail(field, "is a host index buffer, not memory of the fake device");
    int64_t elem = 0;
    float* p = host_of(b.data, r, field, &elem, b.size);
    if (!p) return;
    b.data = reinterpret_cast<int32_t*>(p);
    b.on_device = false;
    tensor(b.storage, r, field);
  }
  // A raw list pointer with its buffer's on_device flag (read only: op inputs).
  void list_ptr(const int32_t*& p, bool on_device, const char* field) {
    if (!p) return;
    if (!on_device) return fail(field, "is host memory (lists of another backend?), not memory of the fake device");
    int64_t elem = 0;
    float* h = host_of(p, Role::read, field, &elem, 0);
    if (h) p = reinterpret_cast<const int32_t*>(h);
  }
  void lists(IndexLists& l, const char* field) {
    list_ptr(l.offsets, l.on_device, field);
    list_ptr(l.indices, l.on_device, field);
    l.on_device = false;
  }
  // An int4 tensor of this device: becomes the CPU backend's tensor behind its handle, with
  // the shape and block of the argument and this device's scales (their host copy, written
  // back after the op when the role is write).
  void int4(Int4Tensor& t, Role r, const char* field) {
    if (!t.values.data) return;
    if (!t.values.on_device) return fail(field, "is a host int4 tensor, not memory of the fake device");
    const auto it = int4_ ? int4_->find(reinterpret_cast<uintptr_t>(t.values.data)) : Int4Table::const_iterator{};
    if (!int4_ || it == int4_->end())
      return fail(field, "is no live int4 tensor of the fake device (made by its alloc_int4, not freed)");
    TensorRef scales = t.scales;
    tensor(scales, r, field);
    if (!ok()) return;
    Int4Tensor h = it->second;
    h.shape = t.shape;
    h.block = t.block;
    h.scales = scales;
    t = h;
  }
  // Host-memory fields (head maps, slopes, decode items) must not point at the device.
  void host(const void* p, const char* field) {
    if (p && mem_.in_range(p)) fail(field, "must be host memory but points into the fake device");
  }

  void write_back() {
    for (auto& [base, s] : scratch_)
      if (s.written) std::copy(s.data.begin(), s.data.end(), s.buf->words.begin());
  }

 private:
  struct Scratch {
    Buffer* buf = nullptr;
    AlignedFloats data;
    bool written = false;
  };

  void fail(const char* field, const std::string& what) {
    if (why_.empty()) why_ = "fake " + op_ + ": " + field + " " + what;
  }

  float* host_of(const void* p, Role r, const char* field, int64_t* elem, int64_t need) {
    if (!mem_.in_range(p)) {
      fail(field, "is marked as device memory but is not an address of this fake device");
      return nullptr;
    }
    Buffer* b = mem_.find(p, elem);
    if (!b) {
      fail(field, "is no live allocation of the fake device (freed, released or misaligned)");
      return nullptr;
    }
    if (*elem + need > int64_t(b->words.size())) {
      fail(field, "reaches past the end of its allocation");
      return nullptr;
    }
    Scratch& s = scratch_[b->base];
    if (!s.buf) {
      s.buf = b;
      s.data.assign(b->words);
    }
    if (r == Role::write) s.written = true;
    return s.data.data() + *elem;
  }

  DeviceMemory& mem_;
  std::string op_;
  const Int4Table* int4_ = nullptr;
  std::string why_;
  std::map<uintptr_t, Scratch> scratch_;
};

// ---- The device fields of each op's arguments, with their roles ------------------------------
void visit(SdpaArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.v, Role::read, "v");
  x.tensor(a.o, Role::write, "o");
  x.tensor(a.lse, Role::write, "lse");
  x.host(a.head_map, "head_map");
}
void visit(GatherDecodeArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.v, Role::read, "v");
  x.tensor(a.o, Role::write, "o");
  x.tensor(a.lse, Role::write, "lse");
  x.lists(a.lists, "lists");
}
void visit(SoftmaxState& s, Role r, Translation& x, const char* m, const char* l, const char* acc) {
  x.tensor(s.m, r, m);
  x.tensor(s.l, r, l);
  x.tensor(s.acc, r, acc);
}
void visit(SparsePrefillArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.v, Role::read, "v");
  x.list_ptr(a.blocks.offsets, a.blocks.on_device, "blocks.offsets");
  x.list_ptr(a.blocks.blocks, a.blocks.on_device, "blocks.blocks");
  a.blocks.on_device = false;
  x.list_ptr(a.indices.offsets, a.indices.on_device, "indices.offsets");
  x.list_ptr(a.indices.indices, a.indices.on_device, "indices.indices");
  x.list_ptr(a.indices.q_offsets, a.indices.on_device, "indices.q_offsets");
  x.list_ptr(a.indices.q_rows, a.indices.on_device, "indices.q_rows");
  a.indices.on_device = false;
  visit(a.state_in, Role::read, x, "state_in.m", "state_in.l", "state_in.acc");
  visit(a.state_out, Role::write, x, "state_out.m", "state_out.l", "state_out.acc");
  x.tensor(a.o, Role::write, "o");
  x.tensor(a.lse, Role::write, "lse");
}
void visit(LinearAttnArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.v, Role::read, "v");
  x.tensor(a.o, Role::write, "o");
  x.host(a.slopes, "slopes");
  x.tensor(a.state_in.kv, Role::read, "state_in.kv");
  x.tensor(a.state_in.ksum, Role::read, "state_in.ksum");
  x.tensor(a.state_in.vsum, Role::read, "state_in.vsum");
  x.tensor(a.state_out.kv, Role::write, "state_out.kv");
  x.tensor(a.state_out.ksum, Role::write, "state_out.ksum");
  x.tensor(a.state_out.vsum, Role::write, "state_out.vsum");
}
void visit(OutputGateArgs& a, Translation& x) {
  x.tensor(a.o, Role::write, "o");
  x.tensor(a.gate, Role::read, "gate");
}
void visit(AttnProbsArgs& a, Translation& x) {
  visit(a.sdpa, x);  // sdpa.lse is read by column_mass; written fields are copied in first
  x.tensor(a.probs, Role::write, "probs");
  x.tensor(a.column, Role::write, "column");
}
void visit(LseBlendArgs& a, Translation& x) {
  x.tensor(a.o, Role::write, "o");  // rows without both parts keep o: copied in first
  x.tensor(a.o_s, Role::read, "o_s");
  x.tensor(a.lse_s, Role::read, "lse_s");
  x.tensor(a.o_n, Role::read, "o_n");
  x.tensor(a.lse_n, Role::read, "lse_n");
}
void visit(ScaleHeadsArgs& a, Translation& x) {
  x.tensor(a.x, Role::read, "x");
  x.tensor(a.out, Role::write, "out");
  x.host(a.factor, "factor");
}
void visit(PoolArgs& a, Translation& x) {
  x.tensor(a.in, Role::read, "in");
  x.tensor(a.out, Role::write, "out");
  x.index_buffer(a.bounds, Role::read, "bounds");
  x.index_buffer(a.col_limits, Role::read, "col_limits");
}
void visit(ProjectArgs& a, Translation& x) {
  x.tensor(a.x, Role::read, "x");
  x.tensor(a.proj, Role::read, "proj");
  x.tensor(a.out, Role::write, "out");
  x.index_buffer(a.code, Role::read, "code");
  x.index_buffer(a.codes, Role::write, "codes");
}
void visit(CsrOut& c, Translation& x) {
  x.index_buffer(c.offsets, Role::write, "lists.offsets");
  x.index_buffer(c.entries, Role::write, "lists.entries");
}
void visit(ScoresArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.out, Role::write, "out");
  x.tensor(a.thr, Role::read, "thr");
  x.index_buffer(a.col_limits, Role::read, "col_limits");
  visit(a.lists, x);
}
void visit(SelectArgs& a, Translation& x) {
  x.tensor(a.scores, Role::read, "scores");
  x.index_buffer(a.col_map, Role::read, "col_map");
  x.index_buffer(a.rules, Role::read, "rules");
  visit(a.lists, x);
}
void visit(LseMergeArgs& a, Translation& x) {
  x.tensor(a.o, Role::write, "o");
  x.tensor(a.lse, Role::write, "lse");
  x.tensor(a.o2, Role::read, "o2");
  x.tensor(a.lse2, Role::read, "lse2");
  x.tensor(a.row_offset, Role::read, "row_offset");
}
void visit(QuantizeInt4Args& a, Translation& x) {
  x.tensor(a.x, Role::read, "x");
  x.tensor(a.center, Role::read, "center");
  x.int4(a.out, Role::write, "out");
}
void visit(Int4BlockScanArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.int4(a.q4, Role::read, "q4");
  x.int4(a.k4, Role::read, "k4");
  x.tensor(a.k_center, Role::read, "k_center");
  visit(a.lists, x);
}
void visit(CopyRowsArgs& a, Translation& x) {
  x.tensor(a.src, Role::read, "src");
  x.tensor(a.dst, Role::write, "dst");
}
void visit(BlockMeanKeysArgs& a, Translation& x) {
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.out, Role::write, "out");
}
void visit(FakeQuantizeArgs& a, Translation& x) {
  x.tensor(a.x, Role::read, "x");
  x.tensor(a.out, Role::write, "out");
}
void visit(DecodeScoresArgs& a, Translation& x) {
  x.tensor(a.q, Role::read, "q");
  x.tensor(a.k, Role::read, "k");
  x.tensor(a.v, Role::read, "v");
  x.tensor(a.out, Role::write, "out");
  x.lists(a.key_lists, "key_lists");
  x.host(a.items, "items");
}

class FakeDeviceBackend final : public Backend {
 public:
  FakeDeviceBackend() : cpu_(make_cpu_backend()) {}

  std::string name() const override { return "fake"; }

  // ---- Memory ----------------------------------------------------------------------------
  TensorRef alloc(const Shape4& shape, DType dtype) override {
    const Buffer& b = mem_.allocate(ab::numel(shape), dtype_bytes(dtype));
    TensorRef t;
    t.data = reinterpret_cast<void*>(b.base);
    t.dtype = dtype;
    t.shape = shape;
    t.on_device = true;
    return t;
  }
  // Host fp32 -> the tensor's dtype, round-to-nearest-even (core/dtype.hpp), as on CUDA.
  void upload(const HostTensor& src, const TensorRef& dst) override {
    float* d = words(dst, "upload", src.numel());
    const float* s = src.ptr();
    if (dst.dtype == DType::f32) std::copy(s, s + src.numel(), d);
    else
      for (int64_t i = 0; i < src.numel(); ++i) d[i] = round_to(dst.dtype, s[i]);
  }
  HostTensor download(const TensorRef& src) override {
    HostTensor h(src.shape);
    const float* s = words(src, "download", h.numel());
    std::copy(s, s + h.numel(), h.ptr());
    return h;
  }
  void poison(const TensorRef& t) override {
    float* d = words(t, "poison", t.numel());
    std::fill(d, d + t.numel(), std::numeric_limits<float>::quiet_NaN());
  }
  void free(const TensorRef& t) override {
    if (t.on_device && t.data) mem_.release(t.data);
  }
  void release_all() override {
    mem_.clear();
    int4_.clear();
    cpu_->release_all();
  }

  // The CPU's clock (steady clock around fn; cold flushes the host caches first).
  double time(const std::function<void()>& fn, CacheMode mode) override { return cpu_->time(fn, mode); }
  // A simulated counter, so that the energy metric's arithmetic is tested off a GPU: a constant
  // kFakeWatts since the backend was made, wrapping like a RAPL counter every 64 J so the wrap
  // is exercised too. Its source says it is simulated; never a measurement.
  static constexpr double kFakeWatts = 50.0, kFakeWrapJoules = 64.0;
  std::optional<EnergyReading> read_energy(std::string* why) override {
    (void)why;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - born_).count();
    EnergyReading r;
    r.joules = {std::fmod(kFakeWatts * s, kFakeWrapJoules)};
    r.wraps_at = {kFakeWrapJoules};
    r.source = "simulated: fake device, constant 50 W (not a measurement)";
    return r;
  }
  nlohmann::ordered_json device_info() const override {
    nlohmann::ordered_json j;
    j["backend"] = "fake";
    j["name"] = "fake device (host memory behind a PROT_NONE range; ops run by the CPU backend)";
    j["ops"] = cpu_->device_info();
    return j;
  }

  // ---- Index lists and buffers -----------------------------------------------------------
  IndexLists upload_indices(const std::vector<int32_t>& offsets, const std::vector<int32_t>& indices) override {
    IndexLists l;
    l.offsets = static_cast<const int32_t*>(put_ints(offsets));
    l.indices = static_cast<const int32_t*>(put_ints(indices));
    l.lists = int64_t(offsets.size()) - 1;
    l.total = int64_t(indices.size());
    l.on_device = true;
    return l;
  }
  IndexBuffer alloc_indices(int64_t n) override {
    IndexBuffer b;
    b.storage = alloc({1, 1, 1, std::max<int64_t>(n, 1)}, DType::f32);
    b.data = static_cast<int32_t*>(b.storage.data);
    b.size = n;
    b.on_device = true;
    return b;
  }
  // Bit for bit (no rounding): the words hold int32 patterns.
  void upload_index_buffer(const std::vector<int32_t>& src, const IndexBuffer& dst) override {
    const int64_t n = std::min<int64_t>(int64_t(src.size()), dst.size);
    float* d = words(dst.storage, "upload_index_buffer", n);
    std::memcpy(d, src.data(), sizeof(int32_t) * size_t(n));
  }
  std::vector<int32_t> download_index_buffer(const IndexBuffer& src, int64_t count) override {
    const float* s = words(src.storage, "download_index_buffer", count);
    std::vector<int32_t> out(size_t(std::max<int64_t>(count, 0)));
    std::memcpy(out.data(), s, sizeof(int32_t) * out.size());
    return out;
  }
  void free_indices(const IndexBuffer& b) override { free(b.storage); }

  // ---- Ops: the CPU backend's, on host copies ------------------------------------------------
  Support supports_sdpa(const SdpaArgs& a) const override {
    return check("sdpa", a, [&](const SdpaArgs& h) { return cpu_->supports_sdpa(h); });
  }
  void sdpa(const SdpaArgs& a) override { exec("sdpa", a, [&](const SdpaArgs& h) { cpu_->sdpa(h); }); }
  // The CPU kernels' tile walks: these read only the shape, mask and transform (no memory).
  std::optional<double> sdpa_executed_pairs(const SdpaArgs& a) const override { return cpu_->sdpa_executed_pairs(a); }
  std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) const override {
    return cpu_->attention_probs_executed_pairs(a);
  }
  Support supports_gather_decode(const GatherDecodeArgs& a) const override {
    return check("gather_decode", a, [&](const GatherDecodeArgs& h) { return cpu_->supports_gather_decode(h); });
  }
  void gather_decode(const GatherDecodeArgs& a) override {
    exec("gather_decode", a, [&](const GatherDecodeArgs& h) { cpu_->gather_decode(h); });
  }
  Support supports_sparse_prefill(const SparsePrefillArgs& a) const override {
    return check("sparse_prefill", a, [&](const SparsePrefillArgs& h) { return cpu_->supports_sparse_prefill(h); });
  }
  void sparse_prefill(const SparsePrefillArgs& a) override {
    exec("sparse_prefill", a, [&](const SparsePrefillArgs& h) { cpu_->sparse_prefill(h); });
  }
  Support supports_linear_attention(const LinearAttnArgs& a) const override {
    return check("linear_attention", a, [&](const LinearAttnArgs& h) { return cpu_->supports_linear_attention(h); });
  }
  void linear_attention(const LinearAttnArgs& a) override {
    exec("linear_attention", a, [&](const LinearAttnArgs& h) { cpu_->linear_attention(h); });
  }
  Support supports_output_gate(const OutputGateArgs& a) const override {
    return check("output_gate", a, [&](const OutputGateArgs& h) { return cpu_->supports_output_gate(h); });
  }
  void output_gate(const OutputGateArgs& a) override {
    exec("output_gate", a, [&](const OutputGateArgs& h) { cpu_->output_gate(h); });
  }
  Support supports_attention_probs(const AttnProbsArgs& a) const override {
    return check("attention_probs", a, [&](const AttnProbsArgs& h) { return cpu_->supports_attention_probs(h); });
  }
  void attention_probs(const AttnProbsArgs& a) override {
    exec("attention_probs", a, [&](const AttnProbsArgs& h) { cpu_->attention_probs(h); });
  }
  Support supports_scale_heads(const ScaleHeadsArgs& a) const override {
    return check("scale_heads", a, [&](const ScaleHeadsArgs& h) { return cpu_->supports_scale_heads(h); });
  }
  void scale_heads(const ScaleHeadsArgs& a) override {
    exec("scale_heads", a, [&](const ScaleHeadsArgs& h) { cpu_->scale_heads(h); });
  }
  Support supports_lse_blend(const LseBlendArgs& a) const override {
    return check("lse_blend", a, [&](const LseBlendArgs& h) { return cpu_->supports_lse_blend(h); });
  }
  void lse_blend(const LseBlendArgs& a) override {
    exec("lse_blend", a, [&](const LseBlendArgs& h) { cpu_->lse_blend(h); });
  }
  Support supports_pool(const PoolArgs& a) const override {
    return check("pool", a, [&](const PoolArgs& h) { return cpu_->supports_pool(h); });
  }
  void pool(const PoolArgs& a) override { exec("pool", a, [&](const PoolArgs& h) { cpu_->pool(h); }); }
  Support supports_project(const ProjectArgs& a) const override {
    return check("project", a, [&](const ProjectArgs& h) { return cpu_->supports_project(h); });
  }
  void project(const ProjectArgs& a) override { exec("project", a, [&](const ProjectArgs& h) { cpu_->project(h); }); }
  Support supports_scores(const ScoresArgs& a) const override {
    return check("scores", a, [&](const ScoresArgs& h) { return cpu_->supports_scores(h); });
  }
  void scores(const ScoresArgs& a) override { exec("scores", a, [&](const ScoresArgs& h) { cpu_->scores(h); }); }
  Support supports_select(const SelectArgs& a) const override {
    return check("select", a, [&](const SelectArgs& h) { return cpu_->supports_select(h); });
  }
  void select(const SelectArgs& a) override { exec("select", a, [&](const SelectArgs& h) { cpu_->select(h); }); }
  Support supports_lse_merge(const LseMergeArgs& a) const override {
    return check("lse_merge", a, [&](const LseMergeArgs& h) { return cpu_->supports_lse_merge(h); });
  }
  void lse_merge(const LseMergeArgs& a) override {
    exec("lse_merge", a, [&](const LseMergeArgs& h) { cpu_->lse_merge(h); });
  }
  // The lists are the plan's host copies by contract; lists in this device are read too.
  std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) const override {
    SparsePrefillArgs h = a;
    Translation x(mem_, "sparse_prefill_executed_pairs");
    auto maybe = [&](const int32_t*& p, bool on_device, const char* field) {
      if (on_device || mem_.in_range(p)) x.list_ptr(p, true, field);
    };
    maybe(h.blocks.offsets, h.blocks.on_device, "blocks.offsets");
    maybe(h.blocks.blocks, h.blocks.on_device, "blocks.blocks");
    maybe(h.indices.offsets, h.indices.on_device, "indices.offsets");
    maybe(h.indices.indices, h.indices.on_device, "indices.indices");
    maybe(h.indices.q_offsets, h.indices.on_device, "indices.q_offsets");
    maybe(h.indices.q_rows, h.indices.on_device, "indices.q_rows");
    h.blocks.on_device = h.indices.on_device = false;
    if (!x.ok()) throw std::invalid_argument(x.why());
    return cpu_->sparse_prefill_executed_pairs(h);
  }
  // int4 tensors: a device handle and scales here, the packed rows in the CPU backend (int4_).
  Int4Tensor alloc_int4(const Shape4& shape, int64_t block) override {
    Int4Tensor t;
    t.shape = shape;
    t.block = block;
    t.values = alloc({shape[0], shape[1], 1, 1}, DType::f32);
    t.scales = alloc({shape[0], shape[1], (shape[2] + block - 1) / std::max<int64_t>(block, 1), 1}, DType::f32);
    int4_[reinterpret_cast<uintptr_t>(t.values.data)] = cpu_->alloc_int4(shape, block);
    return t;
  }
  void free_int4(const Int4Tensor& t) override {
    if (!t.values.on_device) return;
    const auto it = int4_.find(reinterpret_cast<uintptr_t>(t.values.data));
    if (it != int4_.end()) {
      cpu_->free_int4(it->second);
      int4_.erase(it);
    }
    free(t.values);
    free(t.scales);
  }
  Support supports_quantize_int4(const QuantizeInt4Args& a) const override {
    return check("quantize_int4", a, [&](const QuantizeInt4Args& h) { return cpu_->supports_quantize_int4(h); });
  }
  void quantize_int4(const QuantizeInt4Args& a) override {
    exec("quantize_int4", a, [&](const QuantizeInt4Args& h) { cpu_->quantize_int4(h); });
  }
  Support supports_int4_block_scan(const Int4BlockScanArgs& a) const override {
    return check("int4_block_scan", a, [&](const Int4BlockScanArgs& h) { return cpu_->supports_int4_block_scan(h); });
  }
  void int4_block_scan(const Int4BlockScanArgs& a) override {
    exec("int4_block_scan", a, [&](const Int4BlockScanArgs& h) { cpu_->int4_block_scan(h); });
  }
  Support supports_copy_rows(const CopyRowsArgs& a) const override {
    return check("copy_rows", a, [&](const CopyRowsArgs& h) { return cpu_->supports_copy_rows(h); });
  }
  void copy_rows(const CopyRowsArgs& a) override {
    exec("copy_rows", a, [&](const CopyRowsArgs& h) { cpu_->copy_rows(h); });
  }
  Support supports_block_mean_keys(const BlockMeanKeysArgs& a) const override {
    return check("block_mean_keys", a, [&](const BlockMeanKeysArgs& h) { return cpu_->supports_block_mean_keys(h); });
  }
  void block_mean_keys(const BlockMeanKeysArgs& a) override {
    exec("block_mean_keys", a, [&](const BlockMeanKeysArgs& h) { cpu_->block_mean_keys(h); });
  }
  Support supports_fake_quantize(const FakeQuantizeArgs& a) const override {
    return check("fake_quantize", a, [&](const FakeQuantizeArgs& h) { return cpu_->supports_fake_quantize(h); });
  }
  void fake_quantize(const FakeQuantizeArgs& a) override {
    exec("fake_quantize", a, [&](const FakeQuantizeArgs& h) { cpu_->fake_quantize(h); });
  }
  Support supports_decode_scores(const DecodeScoresArgs& a) const override {
    return check("decode_scores", a, [&](const DecodeScoresArgs& h) { return cpu_->supports_decode_scores(h); });
  }
  void decode_scores(const DecodeScoresArgs& a) override {
    exec("decode_scores", a, [&](const DecodeScoresArgs& h) { cpu_->decode_scores(h); });
  }

 private:
  // supports_*: what the CPU answers for the host copies, or why the arguments are not this
  // device's memory. The copies are read (the CPU checks list contents) and never written back.
  template <class Args, class Fn>
  Support check(const char* op, const Args& a, Fn&& fn) const {
    Args h = a;
    Translation x(mem_, op, &int4_);
    visit(h, x);
    if (!x.ok()) return Support::no(x.why());
    Support s = fn(h);
    if (!s.ok) s.reason = "fake (" + s.reason + ")";
    return s;
  }
  // The op: translate, run the CPU's op, copy the written buffers back.
  template <class Args, class Fn>
  void exec(const char* op, const Args& a, Fn&& fn) {
    Args h = a;
    Translation x(mem_, op, &int4_);
    visit(h, x);
    if (!x.ok()) throw std::invalid_argument(x.why());
    fn(h);
    x.write_back();
  }

  // The side-table words of a whole tensor (or its first n elements).
  float* words(const TensorRef& t, const char* what, int64_t n) {
    if (n <= 0) return nullptr;
    int64_t elem = 0;
    Buffer* b = t.on_device ? mem_.find(t.data, &elem) : nullptr;
    if (!b) throw std::invalid_argument(std::string("fake ") + what + ": the tensor is no live allocation of the fake device");
    if (elem + n > int64_t(b->words.size()))
      throw std::invalid_argument(std::string("fake ") + what + ": " + std::to_string(n) +
                                  " elements reach past the end of the allocation");
    return b->words.data() + elem;
  }
  void* put_ints(const std::vector<int32_t>& v) {
    Buffer& b = mem_.allocate(int64_t(v.size()), 4);
    if (!v.empty()) std::memcpy(b.words.data(), v.data(), sizeof(int32_t) * v.size());
    return reinterpret_cast<void*>(b.base);
  }

  std::unique_ptr<Backend> cpu_;
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
  mutable DeviceMemory mem_;  // supports_*() read it through a Translation
  Int4Table int4_;            // alloc_int4's handles -> the CPU backend's int4 tensors
};

}  // namespace

std::unique_ptr<Backend> make_fake_device_backend() { return std::make_unique<FakeDeviceBackend>(); }

}  // namespace ab
