#include "cpu/amx.hpp"

#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ab::cpu::amx {
namespace {

#if defined(__x86_64__)
// CPUID.7.0:EDX bits: AMX-BF16 22, AMX-TILE 24, AMX-INT8 25.
bool cpu_has(unsigned edx_bit) {
  unsigned ea, eb, ec, ed;
  if (!__get_cpuid_count(7, 0, &ea, &eb, &ec, &ed)) return false;
  return (ed & (1u << 24)) && (ed & (1u << edx_bit));
}

// The permission is requested once; it holds for every thread of the process.
bool permitted() {
  static const bool ok = [] {
    if (std::getenv("ATTN_NO_AMX")) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}
#endif

}  // namespace

bool int8_usable() {
#if defined(__x86_64__)
  static const bool ok = cpu_has(25) && permitted();
  return ok;
#else
  return false;
#endif
}

bool bf16_usable() {
#if defined(__x86_64__)
  static const bool ok = cpu_has(22) && permitted();
  return ok;
#else
  return false;
#endif
}

}  // namespace ab::cpu::amx
