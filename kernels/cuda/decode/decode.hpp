#pragma once
// Split-KV decode (flash-decoding, Dao et al. 2023) and token-gather decode on the GPU.
// A few query rows (q_len small) per query head attend to a long KV cache. Work unit: one
// (batch, kv head, key range): all query rows of the kv head's group (G heads × q_len rows,
// padded to m16 tiles) go through the tensor cores together, so the cache is read once per
// group (MHA/GQA/MQA alike). Each unit writes a partial (O, LSE) to a workspace; a second pass
// merges the key ranges by LSE.
// Token-gather decode is the same kernel with key rows fetched through a per-(batch, kv head)
// index list (CSR offsets/indices) instead of a contiguous range.
#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/mask_tiles.hpp"
#include "cuda/sdpa_prefill/sdpa_prefill.hpp"  // ElemType

namespace ab::cuda {

// Contiguous tensors: q (B,Hq,Nq,D), k/v (B,Hkv,Nkv,D), o (B,Hq,Nq,D), lse (B,Hq,Nq) fp32.
struct DecodeParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // may be null
  int batch = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  int64_t q_len = 0, kv_len = 0;
  float scale_log2 = 0;
  MaskDesc mask;  // dense decode only; gather decode attends to exactly its list
  // Score transform (as PrefillParams; dense decode only): softcap keeps the online softmax of
  // cap·tanh(scale·q·k / cap); sigmoid and relu weigh keys on their own (each split's
  // workspace O is then Σ w v / Σ w and its LSE log2 Σ w, merged as softmax splits are, and
  // the combine multiplies by Σ w unless `normalize`).
  PrefillTransform transform = PrefillTransform::softmax;
  float scale = 0, bias = 0, cap = 0;
  bool normalize = false;
  // Token gather: list r = b*Hkv + kvh holds keys indices[offsets[r] .. offsets[r+1]).
  const int32_t* offsets = nullptr;
  const int32_t* indices = nullptr;
  int64_t max_list_len = 0;  // longest list (host-known), sizes the split
  // Split-KV plan (decode_plan) and its workspace (decode_workspace_bytes).
  int splits = 1;
  int64_t tiles_per_split = 0;
  float* ws_o = nullptr;    // (B*Hq*Nq, splits, D)
  float* ws_lse = nullptr;  // (B*Hq*Nq, splits), log2 units
  ElemType elem = ElemType::bf16;
};

// Keys per tile and pipeline depth of the split kernel (measurements in decode.cu).
struct DecodeTile {
  int block_n;  // keys per tile (4 warps × 16)
  int stages;   // cp.async stages in flight
};
constexpr DecodeTile decode_tile_policy(int head_dim) {
  return head_dim == 64 ? DecodeTile{64, 4} : DecodeTile{64, 3};
}

// Largest q_len the decode kernels take; longer queries go to the prefill kernel.
constexpr int64_t kDecodeMaxQLen = 16;

// Fills splits / tiles_per_split for a GPU with `num_sms` multiprocessors.
void decode_plan(DecodeParams& p, bool gather, int num_sms);
size_t decode_workspace_bytes(const DecodeParams& p);

using DecodeLaunchFn = cudaError_t (*)(const DecodeParams&, cudaStream_t stream);
// The dispatch over (dtype, head_dim, gather, softmax or another transform); nullptr and `why`
// when unsupported. Transforms other than softmax: dense decode only, one instantiation per
// (dtype, head_dim) choosing at run time, as in the prefill kernel.
DecodeLaunchFn decode_select(ElemType elem, int head_dim, int v_dim, bool gather,
                             PrefillTransform transform, std::string* why);

}  // namespace ab::cuda
