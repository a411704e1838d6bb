#pragma once
// Dense SDPA forward on the GPU (FlashAttention-2's algorithm, Dao 2023, with mma.sync
// m16n8k16 tensor-core tiles): O and LSE for a query-head -> kv-head map h -> h / group and a
// structured mask (causal, sliding window + sinks). Host-visible interface: the params struct
// that crosses into the kernel (STYLE.md §5) and the one dispatch that answers both "is this
// supported?" and "which kernel?" (STYLE.md §2).
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/mask_tiles.hpp"

namespace ab::cuda {

enum class ElemType { bf16, f16 };

// Contiguous tensors: q (B,Hq,Nq,D), k/v (B,Hkv,Nkv,D), o (B,Hq,Nq,D), lse (B,Hq,Nq) fp32.
struct PrefillParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // may be null
  int batch = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  int64_t q_len = 0, kv_len = 0;
  float scale_log2 = 0;  // softmax scale × log2(e): scores go through exp2
  MaskDesc mask;
  ElemType elem = ElemType::bf16;
};

// The tile sizes of the prefill kernel, in one place (STYLE.md §6). Measured numbers are in
// the comment above the definition in sdpa_prefill.cu.
struct PrefillTile {
  int block_m;  // query rows per CTA (4 warps × 32 rows)
  int block_n;  // keys per tile
  int warps;
};
constexpr PrefillTile prefill_tile_policy(int head_dim) {
  // See sdpa_prefill.cu for the measurements behind these numbers.
  return head_dim == 64 ? PrefillTile{128, 128, 4} : PrefillTile{128, 64, 4};
}

// Launches on `stream`; returns the launch's error (cudaGetLastError), cudaSuccess when fine.
using PrefillLaunchFn = cudaError_t (*)(const PrefillParams&, cudaStream_t stream);

// The dispatch over (dtype, head_dim, masked). Returns nullptr and sets `why` when no kernel
// fits the request.
PrefillLaunchFn prefill_select(ElemType elem, int head_dim, int v_dim, bool masked,
                               std::string* why);

// cudaSuccess when this binary holds machine code (or PTX) the current device can run; the
// probe asks this so that a build for another architecture reports why it cannot run.
cudaError_t prefill_image_check();

}  // namespace ab::cuda
