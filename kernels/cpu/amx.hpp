#pragma once
// Intel AMX (Advanced Matrix Extensions) on the CPU backend: whether this process may use its
// tiles, and the one tile configuration the kernels load. AMX needs the CPU's AMX-TILE
// (CPUID.7.0:EDX bit 24) plus the product type (AMX-INT8 bit 25, AMX-BF16 bit 22) and the
// kernel's permission for the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, process-wide,
// Linux 5.16+). ATTN_NO_AMX=1 turns every AMX path off (they fall back to AVX-512).
#include <cstdint>

namespace ab::cpu::amx {

bool int8_usable();
bool bf16_usable();

// Palette 1 with every tile used as 16 rows × 64 bytes: int8 16×64, bf16 16×32 (16 pairs),
// fp32 accumulators 16×16. Load it with _tile_loadconfig before the tile instructions of a
// call and _tile_release after: the configuration is per thread and other code may change it.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      rows[t] = 16;
      colsb[t] = 64;
    }
  }
};

}  // namespace ab::cpu::amx
