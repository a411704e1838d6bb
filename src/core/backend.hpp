#pragma once
// The op table of a backend (docs/architecture.md, "Backends"); its memory, timing and clocks
// are core/device_services.hpp.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <optional>

#include "core/ops.hpp"
#include "core/ops_decode.hpp"
#include "core/ops_linear.hpp"
#include "core/ops_select.hpp"
#include "core/ops_sparse.hpp"
#include "core/device_services.hpp"
#include "core/tensor.hpp"

namespace ab {

// A backend implements the op table below and owns the memory and timing of its device
// (DeviceServices). Ops it lacks answer Support::no with a reason, so a variant that needs them
// becomes a `skipped` case.
class Backend : public DeviceServices {
 public:
  // Ops.
  virtual Support supports_sdpa(const SdpaArgs& a) const = 0;
  virtual void sdpa(const SdpaArgs& a) = 0;
  // (query, key) pairs op 1 computes scores for with these arguments, per (batch, query head)
  // on average, as this backend's kernel tiles them: a masked pair inside a visited tile is
  // computed and counted (executed FLOPs = 2·pairs·(D + Dv) per head, docs/metrics.md). Only
  // the shape, mask and transform of `a` are read. nullopt: the backend does not say; the cost
  // then counts the pairs the mask allows.
  virtual std::optional<double> sdpa_executed_pairs(const SdpaArgs& a) const {
    (void)a; return std::nullopt;
  }

  // Index lists for gather ops, copied where the kernels read them; valid until release_all().
  virtual IndexLists upload_indices(const std::vector<int32_t>& offsets,
                                    const std::vector<int32_t>& indices) = 0;
  virtual Support supports_gather_decode(const GatherDecodeArgs& a) const {
    (void)a; return Support::no(name() + ": token-gather decode is not implemented");
  }
  virtual void gather_decode(const GatherDecodeArgs& a) { (void)a; }

  // Op 2: sparse prefill SDPA over key-block or key-index lists (core/ops_sparse.hpp).
  virtual Support supports_sparse_prefill(const SparsePrefillArgs& a) const {
    (void)a; return Support::no(name() + ": sparse prefill SDPA is not implemented");
  }
  virtual void sparse_prefill(const SparsePrefillArgs& a) { (void)a; }

  // Op 4: chunked linear attention (core/ops_linear.hpp).
  virtual Support supports_linear_attention(const LinearAttnArgs& a) const {
    (void)a; return Support::no(name() + ": linear attention is not implemented");
  }
  virtual void linear_attention(const LinearAttnArgs& a) { (void)a; }
  // Sigmoid output gate after op 1.
  virtual Support supports_output_gate(const OutputGateArgs& a) const {
    (void)a; return Support::no(name() + ": the output gate is not implemented");
  }
  virtual void output_gate(const OutputGateArgs& a) { (void)a; }
  // Op 1's probabilities: column mass, materialised P, P·V.
  virtual Support supports_attention_probs(const AttnProbsArgs& a) const {
    (void)a; return Support::no(name() + ": attention probabilities are not implemented");
  }
  virtual void attention_probs(const AttnProbsArgs& a) { (void)a; }
  // (query, key) score pairs attention_probs computes per (batch, query head), as this
  // backend tiles them (column_mass, materialize); nullopt: not said.
  virtual std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) const {
    (void)a; return std::nullopt;
  }
  // Per-head scaling of rows (core/ops.hpp, ScaleHeadsArgs).
  virtual Support supports_scale_heads(const ScaleHeadsArgs& a) const {
    (void)a; return Support::no(name() + ": scale_heads is not implemented");
  }
  virtual void scale_heads(const ScaleHeadsArgs& a) { (void)a; }
  // Blend of two softmax results by their LSE (core/ops.hpp, LseBlendArgs).
  virtual Support supports_lse_blend(const LseBlendArgs& a) const {
    (void)a; return Support::no(name() + ": lse_blend is not implemented");
  }
  virtual void lse_blend(const LseBlendArgs& a) { (void)a; }

  // ---- Selection and estimation ops (core/ops_select.hpp) -----------------------------------
  // int32 buffers in backend memory for index lists (select's output, op 2's input). The
  // defaults store them in alloc()'d tensors of 4-byte elements (f32 storage holding int32
  // bit patterns), moved bit for bit by upload/download; a backend may keep them natively.
  virtual IndexBuffer alloc_indices(int64_t n) {
    IndexBuffer b;
    b.storage = alloc({1, 1, 1, std::max<int64_t>(n, 1)}, DType::f32);
    b.data = static_cast<int32_t*>(b.storage.data);
    b.size = n;
    b.on_device = b.storage.on_device;
    return b;
  }
  // Writes the first min(src.size(), dst.size) entries; the rest keeps its contents.
  virtual void upload_index_buffer(const std::vector<int32_t>& src, const IndexBuffer& dst) {
    const int64_t cap = dst.storage.shape[3];
    const size_t n = std::min<size_t>(src.size(), size_t(std::max<int64_t>(dst.size, 0)));
    HostTensor h = int64_t(n) >= cap ? HostTensor({1, 1, 1, cap}) : download(dst.storage);
    std::memcpy(h.ptr(), src.data(), sizeof(int32_t) * n);
    upload(h, dst.storage);
  }
  // The first `count` entries.
  virtual std::vector<int32_t> download_index_buffer(const IndexBuffer& src, int64_t count) {
    const HostTensor h = download(src.storage);
    std::vector<int32_t> out(static_cast<size_t>(count));
    std::memcpy(out.data(), h.ptr(), sizeof(int32_t) * out.size());
    return out;
  }
  virtual void free_indices(const IndexBuffer& b) { free(b.storage); }

  virtual Support supports_pool(const PoolArgs& a) const {
    (void)a; return Support::no(name() + ": the pool op is not implemented");
  }
  virtual void pool(const PoolArgs& a) { (void)a; }
  virtual Support supports_project(const ProjectArgs& a) const {
    (void)a; return Support::no(name() + ": the project op is not implemented");
  }
  virtual void project(const ProjectArgs& a) { (void)a; }
  virtual Support supports_scores(const ScoresArgs& a) const {
    (void)a; return Support::no(name() + ": the scores op is not implemented");
  }
  virtual void scores(const ScoresArgs& a) { (void)a; }
  virtual Support supports_select(const SelectArgs& a) const {
    (void)a; return Support::no(name() + ": the select op is not implemented");
  }
  virtual void select(const SelectArgs& a) { (void)a; }
  virtual Support supports_lse_merge(const LseMergeArgs& a) const {
    (void)a; return Support::no(name() + ": the LSE merge op is not implemented");
  }
  virtual void lse_merge(const LseMergeArgs& a) { (void)a; }
  // (query, key) pairs op 2 computes scores for with these arguments, over every batch and
  // head, as this backend's kernel tiles them (executed FLOPs = 2·pairs·(D + Dv)). The lists
  // in `a` are host copies (the plan's bookkeeping). nullopt: the backend does not say; the
  // caller then counts the selected pairs.
  virtual std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) const {
    (void)a; return std::nullopt;
  }
  // int4 estimation (SALE §8). An Int4Tensor for x of `shape`; the default stores the values one
  // int8 per element, four per 4-byte word, (B, H, N, ceil(D / 4)), and the scales in an alloc()'d
  // tensor. Valid until release_all() or free_int4().
  virtual Int4Tensor alloc_int4(const Shape4& shape, int64_t block) {
    Int4Tensor t;
    t.shape = shape;
    t.block = block;
    t.values = alloc({shape[0], shape[1], shape[2], (shape[3] + 3) / 4}, DType::f32);
    t.scales = alloc({shape[0], shape[1], (shape[2] + block - 1) / std::max<int64_t>(block, 1), 1}, DType::f32);
    return t;
  }
  virtual void free_int4(const Int4Tensor& t) {
    free(t.values);
    free(t.scales);
  }
  virtual Support supports_quantize_int4(const QuantizeInt4Args& a) const {
    (void)a; return Support::no(name() + ": the quantize_int4 op is not implemented");
  }
  virtual void quantize_int4(const QuantizeInt4Args& a) { (void)a; }
  virtual Support supports_int4_block_scan(const Int4BlockScanArgs& a) const {
    (void)a; return Support::no(name() + ": the int4_block_scan op is not implemented");
  }
  virtual void int4_block_scan(const Int4BlockScanArgs& a) { (void)a; }
  // ---- end of the selection and estimation ops ------------------------------------------------



  // ---- Decode-time selection ops (core/ops_decode.hpp) ------------------------------------------
  // Row copy along the sequence axis (the step loop's query gather and output store).
  virtual Support supports_copy_rows(const CopyRowsArgs& a) const {
    (void)a; return Support::no(name() + ": copy_rows is not implemented");
  }
  virtual void copy_rows(const CopyRowsArgs& a) { (void)a; }
  // Block-mean keys.
  virtual Support supports_block_mean_keys(const BlockMeanKeysArgs& a) const {
    (void)a; return Support::no(name() + ": block_mean_keys is not implemented");
  }
  virtual void block_mean_keys(const BlockMeanKeysArgs& a) { (void)a; }
  // Symmetric fake quantisation of rows.
  virtual Support supports_fake_quantize(const FakeQuantizeArgs& a) const {
    (void)a; return Support::no(name() + ": fake_quantize is not implemented");
  }
  virtual void fake_quantize(const FakeQuantizeArgs& a) { (void)a; }
  // Scores of kv groups' query rows against cache ranges or gathered keys, with epilogues.
  virtual Support supports_decode_scores(const DecodeScoresArgs& a) const {
    (void)a; return Support::no(name() + ": decode_scores is not implemented");
  }
  virtual void decode_scores(const DecodeScoresArgs& a) { (void)a; }
  // ---- end of the decode-time selection ops ---------------------------------------------------
};

}  // namespace ab
