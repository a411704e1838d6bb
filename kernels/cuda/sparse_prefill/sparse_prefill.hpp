#pragma once
// Sparse prefill SDPA on the GPU (op 2, core/ops_sparse.hpp): every query row attends to the
// keys its CSR list names — key blocks of one query block, or key indices of one query group
// (contiguous rows or an explicit row list) — with FlashAttention-2's online softmax on the
// same mma.sync m16n8k16 tiles, swizzled shared memory and cp.async pipeline as the dense
// prefill kernel, and a resumable (m, ℓ, acc) state. Host-visible interface only.
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/mask_program.hpp"
#include "cuda/sdpa_prefill/sdpa_prefill.hpp"

namespace ab::cuda {

// The tile shape of the sparse kernel, in one place beside prefill_tile_policy. A CTA is two
// warps of 32 query rows (each K/V fragment feeds two m16 tiles, as in the dense kernel) and
// never spans two query groups, so 64 rows waste little on the 64-row blocks and groups the
// selection methods use (a 128-row CTA would run half empty on them). A key tile is 64
// consecutive entries of the list's key stream (a block list is a stream of k_block keys per
// block), gathered row by row, so blocks smaller than a tile share one and larger blocks span
// several. K and V are single-buffered (FA2's schedule): 48 KB of shared memory at d = 128,
// four CTAs (eight warps) per SM, the dense kernel's warp count.
struct SparsePrefillTile {
  int block_m;  // query rows per CTA
  int block_n;  // list entries (keys) per tile
  int warps;
};
constexpr SparsePrefillTile sparse_prefill_tile_policy() { return SparsePrefillTile{64, 64, 2}; }

enum class SparseListKind : int { key_blocks = 0, key_indices = 1 };

// Contiguous tensors as in PrefillParams; the lists and rows in device memory.
struct SparsePrefillParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;       // may be null when !finalize
  float* lse = nullptr;    // may be null
  int batch = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  int64_t q_len = 0, kv_len = 0;
  float scale_log2 = 0;    // softmax scale × log2(e)
  bool causal = false;     // bottom-right aligned: a row at position qpos sees keys j <= qpos
  SparseListKind kind = SparseListKind::key_blocks;
  int list_heads = 1;      // Hq (a list per query head) or 1 (shared by every head)
  int64_t groups = 0;      // lists per (batch, list head): query blocks or query groups
  int64_t group_rows = 0;  // q_block or q_group (contiguous groups)
  int64_t k_block = 1;     // keys per block entry (1 for index lists)
  int k_block_shift = 0;   // log2(k_block) when a power of two, else -1
  const int32_t* offsets = nullptr;
  const int32_t* entries = nullptr;    // block ids or key indices
  const int32_t* q_offsets = nullptr;  // explicit rows (index lists only), or null
  const int32_t* q_rows = nullptr;
  int chunk_ctas = 1;      // CTAs per group; each takes every chunk_ctas-th 64-row chunk
  // The online-softmax state (natural-log m), fp32, (B, Hq, Nq, 1) and (B, Hq, Nq, Dv); null
  // pointers: start empty / do not write it.
  const float* m_in = nullptr;
  const float* l_in = nullptr;
  const float* acc_in = nullptr;
  float* m_out = nullptr;
  float* l_out = nullptr;
  float* acc_out = nullptr;
  bool finalize = true;
  ElemType elem = ElemType::bf16;
  // Lists made from a mask predicate (build_mask_block_lists): one set for every batch entry
  // (list index without the batch term), block ids with kPartialBlock set where the block is
  // partial, and the predicate tested per element on those blocks (k_block = block_n then).
  bool lists_per_batch = true;
  bool flagged = false;
  MaskProgram prog;
};

constexpr int32_t kPartialBlock = 1 << 30;

// Block lists of a mask predicate on the sparse kernel's tiles (block_m query rows x block_n
// keys), in device memory, computed on the device: list qb holds the non-empty key blocks of
// query block qb, ascending, with kPartialBlock on the partial ones. offsets: q_blocks + 1,
// entries: q_blocks x k_blocks capacity, counts: q_blocks scratch. Query block qb covers rows
// [qb·block_m, ...) at absolute positions + (kv_len - q_len).
cudaError_t build_mask_block_lists(const MaskProgram& prog, int64_t q_len, int64_t kv_len, int32_t* offsets,
                                   int32_t* entries, int32_t* counts, cudaStream_t stream);

using SparsePrefillLaunchFn = cudaError_t (*)(const SparsePrefillParams&, cudaStream_t stream);

// The dispatch over (dtype, head_dim); nullptr and `why` when no kernel fits.
SparsePrefillLaunchFn sparse_prefill_select(ElemType elem, int head_dim, int v_dim, std::string* why);

}  // namespace ab::cuda
