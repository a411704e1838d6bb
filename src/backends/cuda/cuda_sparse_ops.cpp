// Op 2 on the CUDA backend (kernels/cuda/sparse_prefill): argument checks, launch, executed pairs.
#include "backends/cuda/cuda_sparse_ops.hpp"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cuda/cuda_mask_program.hpp"
#include "cuda/sparse_prefill/sparse_prefill.hpp"

namespace ab::cuda_ops {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool blocks_layout(const SparsePrefillArgs& a) { return a.layout == SparseLayout::key_blocks; }

int list_heads(const SparsePrefillArgs& a) {
  return blocks_layout(a) ? a.blocks.list_heads : a.indices.list_heads;
}

int64_t groups(const SparsePrefillArgs& a) {
  return blocks_layout(a) ? ceil_div(a.shape.q_len, std::max<int64_t>(1, a.blocks.q_block)) : a.indices.n_groups;
}

Support check_state(const char* what, const SoftmaxState& st, const AttnShape& s) {
  if (!st.present()) return Support::yes();
  for (const TensorRef* t : {&st.m, &st.l, &st.acc})
    if (!t->data || !t->on_device || t->dtype != DType::f32)
      return Support::no(std::string("cuda sparse prefill: ") + what +
                         " must be fp32 tensors of the cuda backend (m, l and acc)");
  if (st.m.numel() != int64_t(s.batch) * s.q_heads * s.q_len || st.l.numel() != st.m.numel() ||
      st.acc.numel() != st.m.numel() * s.v_dim)
    return Support::no(std::string("cuda sparse prefill: ") + what + " has the wrong size");
  return Support::yes();
}

// The chunk CTAs per group. Contiguous groups: exactly their 64-row chunks. Listed rows (sizes
// known only on the device): twice the mean group's chunks, the rest looped by each CTA.
int chunk_ctas(const SparsePrefillArgs& a, int64_t n_groups) {
  const int64_t bm = cuda::sparse_prefill_tile_policy().block_m;
  const int64_t all = std::max<int64_t>(1, ceil_div(a.shape.q_len, bm));
  if (!blocks_layout(a) && a.indices.q_rows) {
    const int64_t mean = ceil_div(2 * a.shape.q_len, std::max<int64_t>(1, n_groups) * bm);
    return int(std::clamp<int64_t>(mean, 1, all));
  }
  const int64_t rows = blocks_layout(a) ? a.blocks.q_block : a.indices.q_group;
  return int(std::clamp<int64_t>(ceil_div(std::min(rows, a.shape.q_len), bm), 1, all));
}

// The tensors, the shape and the scale, as both op 2 and op 1 with a predicate pass them.
cuda::SparsePrefillParams tensor_params(const AttnShape& s, const TensorRef& q, const TensorRef& k,
                                        const TensorRef& v, const TensorRef& o, const TensorRef& lse, float scale) {
  cuda::SparsePrefillParams p;
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
  p.scale_log2 = scale * 1.4426950408889634f;
  p.elem = s.dtype == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16;
  return p;
}

}  // namespace

Support sparse_prefill_support(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  const std::string p = "cuda sparse prefill";
  if (s.dtype != DType::bf16 && s.dtype != DType::f16)
    return Support::no(p + ": dtype " + std::string(dtype_name(s.dtype)) + " has no CUDA kernel (bf16, f16)");
  std::string why;
  if (!cuda::sparse_prefill_select(s.dtype == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16,
                                   s.head_dim, s.v_dim, &why))
    return Support::no(why);
  for (const TensorRef* t : {&a.q, &a.k, &a.v, &a.o}) {
    if (!t->data) continue;
    if (!t->on_device) return Support::no(p + ": tensors must be allocated by the cuda backend");
    if (t->dtype != s.dtype) return Support::no(p + ": q/k/v/o must all have the problem's dtype");
  }
  if (a.lse.data && (!a.lse.on_device || a.lse.dtype != DType::f32))
    return Support::no(p + ": lse must be an fp32 tensor of the cuda backend");
  if (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0) return Support::no(p + ": q_heads must be a multiple of kv_heads");
  if (s.kv_len >= (int64_t(1) << 31) || s.q_len >= (int64_t(1) << 31))
    return Support::no(p + ": sequence lengths must stay below 2^31");
  if (s.batch > 65535 || s.q_heads > 65535) return Support::no(p + ": batch or heads exceed the grid limit (65535)");
  const int lh = list_heads(a);
  const bool has_lists = blocks_layout(a) ? a.blocks.offsets != nullptr : a.indices.offsets != nullptr;
  if (has_lists && lh != 1 && lh != s.q_heads) return Support::no(p + ": list_heads must be 1 or q_heads");
  if (blocks_layout(a)) {
    if (a.blocks.offsets && !a.blocks.on_device)
      return Support::no(p + ": the block lists must be in device memory (alloc_indices / upload_index_buffer)");
    // Variants ask before their lists exist (no offsets yet): the list geometry is checked
    // once there is a list.
    if (a.blocks.offsets && (a.blocks.q_block < 1 || a.blocks.k_block < 1 || a.blocks.k_block >= (int64_t(1) << 31)))
      return Support::no(p + ": q_block and k_block must be positive");
  } else {
    if (a.indices.offsets && !a.indices.on_device)
      return Support::no(p + ": the index lists must be in device memory (alloc_indices / upload_index_buffer)");
    if (a.indices.offsets && !a.indices.q_rows && a.indices.q_group < 1)
      return Support::no(p + ": q_group must be positive");
  }
  for (const auto& [what, st] : {std::pair<const char*, const SoftmaxState*>{"state_in", &a.state_in},
                                 {"state_out", &a.state_out}})
    if (Support r = check_state(what, *st, s); !r.ok) return r;
  if (a.finalize && !a.o.data && a.q.data) return Support::no(p + ": finalize needs o");
  return Support::yes();
}

void sparse_prefill(const SparsePrefillArgs& a, cudaStream_t stream) {
  if (Support r = sparse_prefill_support(a); !r.ok) throw std::runtime_error(r.reason);
  const AttnShape& s = a.shape;
  if (s.batch == 0 || s.q_heads == 0 || s.q_len == 0) return;
  const bool blocks = blocks_layout(a);
  if (!(blocks ? a.blocks.offsets : a.indices.offsets))
    throw std::runtime_error("cuda sparse prefill: no lists (offsets is null)");
  cuda::SparsePrefillParams p = tensor_params(s, a.q, a.k, a.v, a.o, a.lse, a.effective_scale());
  p.causal = s.causal;
  p.kind = blocks ? cuda::SparseListKind::key_blocks : cuda::SparseListKind::key_indices;
  p.list_heads = list_heads(a);
  p.groups = groups(a);
  if (blocks) {
    p.group_rows = a.blocks.q_block;
    p.k_block = a.blocks.k_block;
    p.k_block_shift = (a.blocks.k_block & (a.blocks.k_block - 1)) == 0 ? __builtin_ctzll(uint64_t(a.blocks.k_block)) : -1;
    p.offsets = a.blocks.offsets;
    p.entries = a.blocks.blocks;
  } else {
    p.group_rows = a.indices.q_group;
    p.k_block = 1;
    p.k_block_shift = 0;
    p.offsets = a.indices.offsets;
    p.entries = a.indices.indices;
    p.q_offsets = a.indices.q_rows ? a.indices.q_offsets : nullptr;
    p.q_rows = a.indices.q_rows;
  }
  p.chunk_ctas = chunk_ctas(a, p.groups);
  if (a.state_in.present()) {
    p.m_in = static_cast<const float*>(a.state_in.m.data);
    p.l_in = static_cast<const float*>(a.state_in.l.data);
    p.acc_in = static_cast<const float*>(a.state_in.acc.data);
  }
  if (a.state_out.present()) {
    p.m_out = static_cast<float*>(a.state_out.m.data);
    p.l_out = static_cast<float*>(a.state_out.l.data);
    p.acc_out = static_cast<float*>(a.state_out.acc.data);
  }
  p.finalize = a.finalize;
  std::string why;
  const cuda::SparsePrefillLaunchFn fn = cuda::sparse_prefill_select(p.elem, s.head_dim, s.v_dim, &why);
  const cudaError_t err = fn(p, stream);
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in sparse prefill launch: ") + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

std::optional<double> sparse_prefill_executed_pairs(const SparsePrefillArgs& a) {
  const bool blocks = blocks_layout(a);
  const int32_t* offsets = blocks ? a.blocks.offsets : a.indices.offsets;
  const int32_t* entries = blocks ? a.blocks.blocks : a.indices.indices;
  if (!offsets || (blocks ? a.blocks.on_device : a.indices.on_device)) return std::nullopt;
  const AttnShape& s = a.shape;
  const cuda::SparsePrefillTile tile = cuda::sparse_prefill_tile_policy();
  const int64_t bm = tile.block_m, bn = tile.block_n;
  const int64_t kb = blocks ? a.blocks.k_block : 1;
  const int64_t q_off = s.kv_len - s.q_len;
  const int lh_count = list_heads(a);
  const int64_t n_groups = groups(a);
  double pairs = 0;
  std::vector<int64_t> rows;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h) {
      const int64_t list0 = (int64_t(b) * lh_count + (lh_count == 1 ? 0 : h)) * n_groups;
      for (int64_t g = 0; g < n_groups; ++g) {
        const int64_t r = list0 + g;
        const int32_t* e = entries + offsets[r];
        const int64_t len_pos = (int64_t(offsets[r + 1]) - offsets[r]) * kb;
        const auto key_at = [&](int64_t pos) { return blocks ? int64_t(e[pos / kb]) * kb + pos % kb : int64_t(e[pos]); };
        rows.clear();
        if (!blocks && a.indices.q_rows) {
          for (int64_t i = a.indices.q_offsets[r]; i < a.indices.q_offsets[r + 1]; ++i) rows.push_back(a.indices.q_rows[i]);
        } else {
          const int64_t size = blocks ? a.blocks.q_block : a.indices.q_group;
          for (int64_t i = g * size; i < std::min(s.q_len, (g + 1) * size); ++i) rows.push_back(i);
        }
        for (size_t c0 = 0; c0 < rows.size(); c0 += size_t(bm)) {
          int64_t qmax = -1;
          for (size_t i = c0; i < std::min(rows.size(), c0 + size_t(bm)); ++i)
            if (rows[i] >= 0 && rows[i] < s.q_len) qmax = std::max(qmax, rows[i] + q_off);
          if (qmax < 0) continue;
          const int64_t last_key = s.causal ? std::min(qmax, s.kv_len - 1) : s.kv_len - 1;
          int64_t lo = 0, hi = ceil_div(len_pos, bn);
          while (lo < hi) {
            const int64_t mid = (lo + hi) / 2;
            if (key_at(mid * bn) <= last_key) lo = mid + 1;
            else hi = mid;
          }
          pairs += double(bm) * double(bn) * double(lo);
        }
      }
    }
  return pairs;
}

namespace {

int64_t q_blocks_of(const AttnShape& s) { return ceil_div(s.q_len, cuda::sparse_prefill_tile_policy().block_m); }
int64_t k_blocks_of(const AttnShape& s) { return ceil_div(s.kv_len, cuda::sparse_prefill_tile_policy().block_n); }

}  // namespace

Support predicate_sdpa_support(const SdpaArgs& a) {
  const AttnShape& s = a.shape;
  const std::string name = a.mask.extra ? a.mask.extra->name : "none";
  cuda::MaskProgram prog;
  if (!mask_program_of(a.mask, prog))
    return Support::no("cuda sdpa: mask predicate '" + name +
                       "' has no device form (the mask library's primitives and their compositions have one)");
  if (a.transform != ScoreTransform::softmax)
    return Support::no("cuda sdpa: mask predicate '" + name + "' runs with softmax only");
  if (a.head_map)
    for (int h = 0; h < s.q_heads; ++h)
      if (a.head_map[h] != h / std::max(1, s.group()))
        return Support::no("cuda sdpa: only the head map h -> h / group has a kernel");
  if (q_blocks_of(s) * k_blocks_of(s) >= (int64_t(1) << 31))
    return Support::no("cuda sdpa: mask predicate '" + name + "': too many blocks for 32-bit lists");
  SparsePrefillArgs sp;
  sp.shape = s;
  sp.q = a.q;
  sp.k = a.k;
  sp.v = a.v;
  sp.o = a.o;
  sp.lse = a.lse;
  sp.blocks.list_heads = 1;
  sp.blocks.q_block = cuda::sparse_prefill_tile_policy().block_m;
  sp.blocks.k_block = cuda::sparse_prefill_tile_policy().block_n;
  Support r = sparse_prefill_support(sp);
  if (!r.ok) r.reason = "cuda sdpa with mask predicate '" + name + "': " + r.reason;
  return r;
}

size_t predicate_sdpa_workspace_ints(const SdpaArgs& a) {
  const int64_t qb = q_blocks_of(a.shape), kb = k_blocks_of(a.shape);
  return size_t(2 * qb + 1 + qb * kb);
}

void predicate_sdpa(const SdpaArgs& a, int32_t* workspace, cudaStream_t stream) {
  if (Support r = predicate_sdpa_support(a); !r.ok) throw std::runtime_error(r.reason);
  const AttnShape& s = a.shape;
  if (s.batch == 0 || s.q_heads == 0 || s.q_len == 0) return;
  cuda::MaskProgram prog;
  mask_program_of(a.mask, prog);
  const int64_t qb = q_blocks_of(s);
  int32_t* offsets = workspace;
  int32_t* counts = workspace + qb + 1;
  int32_t* entries = counts + qb;
  if (cudaError_t e = cuda::build_mask_block_lists(prog, s.q_len, s.kv_len, offsets, entries, counts, stream);
      e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in mask block lists: ") + cudaGetErrorName(e));
  const cuda::SparsePrefillTile tile = cuda::sparse_prefill_tile_policy();
  cuda::SparsePrefillParams p = tensor_params(s, a.q, a.k, a.v, a.o, a.lse, a.effective_scale());
  p.causal = a.mask.causal;
  p.kind = cuda::SparseListKind::key_blocks;
  p.list_heads = 1;
  p.groups = qb;
  p.group_rows = tile.block_m;
  p.k_block = tile.block_n;
  p.k_block_shift = __builtin_ctz(unsigned(tile.block_n));
  p.offsets = offsets;
  p.entries = entries;
  p.chunk_ctas = 1;
  p.finalize = true;
  p.lists_per_batch = false;
  p.flagged = true;
  p.prog = prog;
  std::string why;
  const cuda::SparsePrefillLaunchFn fn = cuda::sparse_prefill_select(p.elem, s.head_dim, s.v_dim, &why);
  if (cudaError_t e = fn(p, stream); e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in sdpa (mask predicate) launch: ") + cudaGetErrorName(e) +
                             " (" + cudaGetErrorString(e) + ")");
}

}  // namespace ab::cuda_ops
