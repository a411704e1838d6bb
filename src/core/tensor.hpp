#pragma once
// Host tensors (fp32 storage, row-major) and backend tensor references.
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace ab {

using Shape4 = std::array<int64_t, 4>;

inline int64_t numel(const Shape4& s) { return s[0] * s[1] * s[2] * s[3]; }

// A host tensor in fp32 whatever the case's dtype: values are rounded to the dtype on
// creation (round_to), so every backend sees identical input values.
struct HostTensor {
  Shape4 shape{0, 0, 0, 0};
  std::vector<float> data;

  HostTensor() = default;
  explicit HostTensor(Shape4 s) : shape(s), data(static_cast<size_t>(ab::numel(s)), 0.0f) {}
  int64_t numel() const { return ab::numel(shape); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  // Pointer to the start of row (b, h, n), contiguous over the last dim.
  float* row(int64_t b, int64_t h, int64_t n) {
    return data.data() + ((b * shape[1] + h) * shape[2] + n) * shape[3];
  }
  const float* row(int64_t b, int64_t h, int64_t n) const {
    return data.data() + ((b * shape[1] + h) * shape[2] + n) * shape[3];
  }
};

// A tensor owned by a backend: host fp32 memory on the CPU, device memory of `dtype` on CUDA
// and the fake device (on_device). Always contiguous in the order of `shape`.
struct TensorRef {
  void* data = nullptr;
  DType dtype = DType::f32;
  Shape4 shape{0, 0, 0, 0};
  bool on_device = false;
  int64_t numel() const { return ab::numel(shape); }
  int64_t bytes() const { return numel() * (on_device ? dtype_bytes(dtype) : 4); }
  // The host fp32 values; device memory has none (read it with Backend::download).
  float* host_f32() const {
    if (on_device) throw std::logic_error("TensorRef::host_f32(): the tensor is in device memory");
    return static_cast<float*>(data);
  }
};

}  // namespace ab
