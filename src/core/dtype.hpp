#pragma once
// Element types a case can ask for. The CPU backend stores every tensor in fp32 and rounds
// inputs to the requested type first, so that CPU and GPU see the same input values.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace ab {

enum class DType { f32, f16, bf16 };

std::string_view dtype_name(DType t);
std::optional<DType> parse_dtype(std::string_view s);
int dtype_bytes(DType t);

// Round-to-nearest-even conversions, bit-exact with the CUDA intrinsics.
uint16_t float_to_bf16_bits(float x);
float bf16_bits_to_float(uint16_t h);
uint16_t float_to_f16_bits(float x);
float f16_bits_to_float(uint16_t h);
// Round x to the nearest value representable in t (identity for f32).
float round_to(DType t, float x);

// Accuracy tolerance per input dtype, in one table. Inputs are rounded to the
// dtype before both the kernel and the float64 reference see them, so the tolerance covers
// only the kernel's own arithmetic: fp32 accumulation on the CPU, bf16/fp16 operands of P·V
// plus fp32 accumulation on the GPU. `max_abs` bounds |o - o*| elementwise; `rel` bounds
// ||o - o*|| / ||o*|| over the sampled rows.
struct Tolerance {
  double max_abs;
  double rel;
};
Tolerance tolerance_for(DType t, bool gpu);

}  // namespace ab
