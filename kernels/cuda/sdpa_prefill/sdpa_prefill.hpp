#pragma once
// Dense SDPA forward on the GPU (FlashAttention-2's algorithm, Dao 2023, with mma.sync
// m16n8k16 tensor-core tiles): O and LSE for a query-head -> kv-head map h -> h / group and a
// structured mask (causal, sliding window + sinks). Host-visible interface: the params struct
// that crosses into the kernel and the one dispatch that answers both "is this
// supported?" and "which kernel?".
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/mask_tiles.hpp"

namespace ab::cuda {

enum class ElemType { bf16, f16 };

// The score transforms besides softmax (core/ops.hpp's ScoreTransform): softcap keeps the online
// softmax of cap·tanh(scale·q·k / cap); sigmoid and relu weigh each key on its own,
// w = σ(scale·q·k + bias) or max(scale·q·k, 0), O = Σ w v (divided by Σ w + 1e-8 with
// `normalize`), LSE = log Σ w.
enum class PrefillTransform : int { softmax = 0, softcap = 1, sigmoid = 2, relu = 3 };

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
  PrefillTransform transform = PrefillTransform::softmax;
  float scale = 0;     // the scale itself (the transforms other than softmax)
  float bias = 0;      // sigmoid: added to scale·q·k
  float cap = 0;       // softcap: the cap (> 0)
  bool normalize = false;  // sigmoid, relu
  ElemType elem = ElemType::bf16;
};

// The tile sizes of the prefill kernel, in one place.
struct PrefillTile {
  int block_m;    // query rows per CTA (4 warps × 32 rows)
  int block_n;    // keys per tile
  int kv_stages;  // 1: FA2's single K/V buffers; 2: double-buffered K/V
  int warps;
};
// Measured on the H200 (132 SMs, 1980 MHz), bf16, B=1, H=32, N=16384, cold L2, CUDA events,
// median TFLOP/s (attn_cuda_bench, 2026-11-28). block_m = 128 with 4 warps (32 rows a warp)
// throughout: 16 rows a warp doubles the ldmatrix traffic per MMA.
//   d=128 non-causal: 64x2 332.6 | 64x1 328.4 | 32x2 310.2 (no spills, but 2x the barriers)
//   d=128 causal:     64x1 312.9 | 64x2 296.9 | 32x2 297.7
//   d=64  non-causal: 128x1 331.8 | 128x2 331.7 | 64x2 308.1
//   d=64  causal:     128x1 310.7 | 128x2 292.2 | 64x2 278.4
//   d=128 causal window 1024 + 4 sinks: 64x1 249.4 | 64x2 234.3
// (block_n x kv_stages.) Rejected: 128x128 at d=128 (256 accumulator + score registers per
// thread exceed the 255 limit); one CTA per SM (no second CTA to cover the softmax phase).
constexpr PrefillTile prefill_tile_policy(int head_dim, bool masked) {
  if (head_dim == 64) return PrefillTile{128, 128, 1, 4};
  return masked ? PrefillTile{128, 64, 1, 4} : PrefillTile{128, 64, 2, 4};
}

// Launches on `stream`; returns the launch's error (cudaGetLastError), cudaSuccess when fine.
using PrefillLaunchFn = cudaError_t (*)(const PrefillParams&, cudaStream_t stream);

// The dispatch over (dtype, head_dim, masked, softmax or another transform). Returns nullptr
// and sets `why` when no kernel fits the request. Softmax has its own instantiations; the other
// transforms share one per (dtype, head_dim, masked), choosing at run time (a warp-uniform
// branch), so the softmax kernel keeps its registers.
PrefillLaunchFn prefill_select(ElemType elem, int head_dim, int v_dim, bool masked, PrefillTransform transform,
                               std::string* why);

// cudaSuccess when this binary holds machine code (or PTX) the current device can run; the
// probe asks this so that a build for another architecture reports why it cannot run.
cudaError_t prefill_image_check();

}  // namespace ab::cuda
