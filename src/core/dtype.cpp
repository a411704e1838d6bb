#include "core/dtype.hpp"

#include <cmath>

namespace ab {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::f32;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::f16;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  return std::nullopt;
}

int dtype_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

uint16_t float_to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float bf16_bits_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// GCC >= 12 on x86-64 has _Float16 with IEEE round-to-nearest-even conversions.
uint16_t float_to_f16_bits(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

float f16_bits_to_float(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

float round_to(DType t, float x) {
  switch (t) {
    case DType::f32: return x;
    case DType::f16: return f16_bits_to_float(float_to_f16_bits(x));
    case DType::bf16: return bf16_bits_to_float(float_to_bf16_bits(x));
  }
  return x;
}

Tolerance tolerance_for(DType t, bool gpu) {
  if (!gpu && t != DType::bf16) {
    // CPU: fp32 arithmetic on rounded inputs; measured errors at N=32768 stay below 2e-6.
    return {2e-4, 1e-4};
  }
  // CPU bf16: where the CPU has bf16 dot products, softmax attention runs them with P rounded
  // to bf16 as on the GPU (cpu/sdpa.hpp, sdpa_flash_bf16), so the GPU's bf16 bound applies.
  // GPU: P is rounded to the input type before P·V (as FlashAttention does), so the error
  // scales with the type's unit roundoff (bf16 2^-8, fp16 2^-11), following FA's rule of
  // 2x a same-precision naive reference plus a floor.
  switch (t) {
    case DType::f32: return {2e-4, 1e-4};
    case DType::f16: return {4e-3, 2e-3};
    case DType::bf16: return {3e-2, 1.6e-2};
  }
  return {0, 0};
}

}  // namespace ab
