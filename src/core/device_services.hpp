#pragma once
// A backend's device services (docs/architecture.md, "Backends"): memory, timing and clocks.
// The op table is class Backend (core/backend.hpp), which derives from this.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace ab {

enum class CacheMode { hot, cold };

struct ClockReading {
  double sm_mhz = 0;       // current SM clock
  double temperature_c = 0;
};

// A peak rate of the device measured by a microbenchmark (attn-bench peaks; the roofline's
// roof, docs/figures.md): the value and what was run to get it.
struct MeasuredPeak {
  double value = 0;    // TFLOP/s or GB/s (1e9 bytes per second)
  std::string method;
};
struct MeasuredPeaks {
  MeasuredPeak tflops;  // dense matrix-product rate
  MeasuredPeak gbps;    // memory bandwidth
};

// The device's cumulative energy counters at one moment (the energy metric, docs/metrics.md):
// one per domain (a GPU board; a CPU package), in joules, each wrapping to 0 past wraps_at
// (0: never wraps).
struct EnergyReading {
  std::vector<double> joules;
  std::vector<double> wraps_at;
  std::string source;  // what is counted, e.g. "NVML total energy (GPU board)"
};
// Joules spent between two readings of the same counters (one wrap per domain at most: the
// caller reads often enough); nullopt when the readings do not match.
std::optional<double> energy_between(const EnergyReading& before, const EnergyReading& after);

// The device half of a backend: memory, timing and clocks. Everything that moves data or
// measures time goes through it; the ops (class Backend below) compute on what it holds.
class DeviceServices {
 public:
  virtual ~DeviceServices() = default;
  virtual std::string name() const = 0;  // "cpu" | "cuda" | "fake"

  // Memory. Tensors stay valid until release_all(). `dtype` is the element type on the device;
  // the CPU backend always stores fp32.
  virtual TensorRef alloc(const Shape4& shape, DType dtype) = 0;
  virtual void upload(const HostTensor& src, const TensorRef& dst) = 0;
  virtual HostTensor download(const TensorRef& src) = 0;
  // Fill with NaN so a kernel that skips writing an element is caught by the accuracy check.
  virtual void poison(const TensorRef& t) = 0;
  virtual void release_all() = 0;
  // A read-only view of a host tensor when the backend computes on host memory (the CPU), so
  // inputs are not held twice (the memory bound of docs/architecture.md); nullopt: alloc + upload instead.
  virtual std::optional<TensorRef> view_host(const HostTensor& t, DType dtype) const {
    (void)t; (void)dtype; return std::nullopt;
  }
  // Free one tensor made by alloc() (metrics that run many trials free as they go).
  virtual void free(const TensorRef& t) { (void)t; }

  // Timing of one call of fn, in seconds, measured the backend's way (steady clock on the
  // CPU; CUDA events on the GPU). cold: caches are flushed first, outside the timed region.
  virtual double time(const std::function<void()>& fn, CacheMode mode) = 0;
  virtual void synchronize() {}
  // How many copies of the inputs to rotate through so that successive samples do not find
  // them in cache (docs/architecture.md: rotate past 2x L2). The CPU backend answers 1.
  virtual int rotation_copies(int64_t input_bytes, CacheMode mode) const {
    (void)input_bytes; (void)mode; return 1;
  }
  // SM clock and temperature, when the backend can read them (NVML); nullopt otherwise.
  virtual std::optional<ClockReading> read_clocks() { return std::nullopt; }
  // The device's energy counters now; nullopt (and *why) when it has none it can read.
  virtual std::optional<EnergyReading> read_energy(std::string* why) {
    if (why) *why = "the " + name() + " backend has no energy counter";
    return std::nullopt;
  }
  // The device's peak compute and bandwidth, measured now (seconds of work); nullopt when the
  // backend has no such microbenchmark.
  virtual std::optional<MeasuredPeaks> measure_peaks() { return std::nullopt; }
  // Facts for the report's meta.devices (name, SMs, memory, driver, runtime, clocks).
  virtual nlohmann::ordered_json device_info() const { return nlohmann::ordered_json::object(); }
};

}  // namespace ab
