#pragma once
// Measured peaks of the GPU for the roofline (docs/figures.md, "Roofline"): the tensor-core
// rate of bf16 mma.sync m16n8k16 with fp32 accumulation (the instruction the attention kernels
// here are built on) on every SM, and the device-memory bandwidth of a streaming copy. Both
// are best-of-N over CUDA-event timings. On Hopper, wgmma reaches a higher rate than
// mma.sync; the method string says which instruction the roof is.
#include <string>

namespace ab::cuda {

struct GpuPeak {
  double value = 0;  // TFLOP/s or GB/s
  std::string method;
};

GpuPeak measure_mma_bf16_tflops(int repetitions = 10);
GpuPeak measure_copy_gbps(size_t bytes_per_buffer = size_t{1} << 30, int repetitions = 10);

}  // namespace ab::cuda
