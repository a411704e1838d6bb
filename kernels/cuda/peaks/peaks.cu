#include "cuda/peaks/peaks.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <cuda_runtime_api.h>

#include "cuda/common/device_helpers.cuh"

namespace ab::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
}

// Independent accumulators per warp: one mma.sync's result is not an input of the next, so the
// tensor-core pipeline stays full (8 in flight covers its latency).
constexpr int kChains = 8;
constexpr int kWarpsPerBlock = 4;

__global__ void mma_peak_kernel(float* sink, int iterations) {
  const unsigned lane = threadIdx.x % 32;
  using T = __nv_bfloat16;
  // Non-zero, lane-dependent operands: the tensor cores' power (and so the clock they hold)
  // depends on the data, and zeros would flatter the rate.
  uint32_t a[4];
  for (int i = 0; i < 4; ++i) a[i] = dev::Elem<T>::pack(0.001f * (lane + i + 1), -0.002f * (lane + 2 * i + 1));
  const uint32_t b0 = dev::Elem<T>::pack(0.003f * (lane + 1), 0.001f);
  const uint32_t b1 = dev::Elem<T>::pack(-0.001f, 0.002f * (lane + 3));
  float acc[kChains][4] = {};
  for (int it = 0; it < iterations; ++it) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) dev::mma_16816<T>(acc[c], a, b0, b1);
  }
  float s = 0;
#pragma unroll
  for (int c = 0; c < kChains; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  sink[blockIdx.x * blockDim.x + threadIdx.x] = s;  // keeps the products live
}

__global__ void copy_kernel(const float4* __restrict__ src, float4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

template <class Launch>
float best_ms(int repetitions, Launch launch) {
  cudaEvent_t t0, t1;
  check(cudaEventCreate(&t0), "cudaEventCreate");
  check(cudaEventCreate(&t1), "cudaEventCreate");
  launch();  // warm-up (clocks ramp, code loads)
  check(cudaDeviceSynchronize(), "peak warm-up");
  float best = 1e30f;
  for (int r = 0; r < repetitions; ++r) {
    check(cudaEventRecord(t0), "cudaEventRecord");
    launch();
    check(cudaEventRecord(t1), "cudaEventRecord");
    check(cudaEventSynchronize(t1), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
    best = std::min(best, ms);
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  return best;
}

int sm_count() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace

GpuPeak measure_mma_bf16_tflops(int repetitions) {
  const int sms = sm_count();
  const int blocks = sms * 8;  // 32 warps per SM: every tensor core's scheduler has work
  const int threads = kWarpsPerBlock * 32;
  const int iterations = 4096;
  float* sink = nullptr;
  check(cudaMalloc(&sink, size_t(blocks) * threads * sizeof(float)), "cudaMalloc");
  const float ms = best_ms(repetitions, [&] {
    mma_peak_kernel<<<blocks, threads>>>(sink, iterations);
    check(cudaGetLastError(), "mma_peak_kernel launch");
  });
  cudaFree(sink);
  const double flops = 2.0 * 16 * 8 * 16 * kChains * double(iterations) * blocks * kWarpsPerBlock;
  return {flops / (ms * 1e-3) / 1e12,
          "bf16 mma.sync m16n8k16, fp32 accumulation, " + std::to_string(blocks) + " blocks x " +
              std::to_string(kWarpsPerBlock) + " warps on " + std::to_string(sms) + " SMs, best of " +
              std::to_string(repetitions) + " (wgmma, not used here, reaches more on Hopper)"};
}

GpuPeak measure_copy_gbps(size_t bytes_per_buffer, int repetitions) {
  const size_t n = bytes_per_buffer / sizeof(float4);
  float4 *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, n * sizeof(float4)), "cudaMalloc");
  check(cudaMalloc(&dst, n * sizeof(float4)), "cudaMalloc");
  check(cudaMemset(src, 0, n * sizeof(float4)), "cudaMemset");
  const int blocks = sm_count() * 4;
  const float ms = best_ms(repetitions, [&] {
    copy_kernel<<<blocks, 1024>>>(src, dst, n);
    check(cudaGetLastError(), "copy_kernel launch");
  });
  cudaFree(src);
  cudaFree(dst);
  const double bytes = 2.0 * double(n) * sizeof(float4);  // read once, written once
  return {bytes / (ms * 1e-3) / 1e9,
          "device copy of " + std::to_string(bytes_per_buffer >> 20) + " MiB (read + write counted), best of " +
              std::to_string(repetitions)};
}

}  // namespace ab::cuda
