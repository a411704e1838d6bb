#pragma once
// CPU implementations of op 1 (dense SDPA) and its float64 reference.
#include <cstdint>
#include <vector>

#include "core/ops.hpp"

namespace ab::cpu {

// Tiled online-softmax attention (flash-style): memory O(N·d), never N×N. Threads over (batch,
// head, query tile) with OpenMP; empty mask blocks are skipped. a.q/k/v/o/lse are host fp32
// tensors; lse may be null. The products run on one of three paths, the softmax always in fp32:
//   portable     fp32 Eigen GEMMs, any CPU: the reference path
//   avx512_f32   fp32 FMAs in AVX-512 register blocks on K and V packed once per call
//   avx512_bf16  bf16 × bf16 → fp32 dot products (AVX512_BF16's VDPBF16PS): Q, K, V and P rounded
//                to bf16 (nearest-even; bf16 inputs read exactly), as GPU flash kernels do
//   amx_bf16     the same products on AMX tiles (TDPBF16PS), the same rounding
// The ISA-specific code is compiled for its ISA whatever -march says and selected at run time.
enum class FlashPath { portable, avx512_f32, avx512_bf16, amx_bf16 };
const char* flash_path_name(FlashPath path);
bool sdpa_flash_available(FlashPath path);
// Whether a packed path pays for packing K and V once per call: enough query rows per key
// (q_len × Hq/Hkv). Decode does not.
bool sdpa_flash_packing_pays(const AttnShape& s);
// The fp32 kernel: avx512_f32 where the CPU has it and packing pays (ATTN_CPU_SIMD=off keeps
// the portable path), else portable.
void sdpa_flash(const SdpaArgs& a);
// On the given path; throws std::invalid_argument where this CPU cannot run it.
void sdpa_flash(const SdpaArgs& a, FlashPath path);

// Executed score blocks of sdpa_flash on `path` for a mask, at its tile size: the fraction of
// (query, key) pairs inside non-empty tiles, narrowed to the keys some row sees in partial
// tiles (per tile; per 32-row block on the AMX path). Used for executed FLOPs.
double sdpa_flash_executed_fraction(const AttnShape& s, const Mask& m, FlashPath path = FlashPath::portable);

}  // namespace ab::cpu
