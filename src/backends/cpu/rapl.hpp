#pragma once
// The CPU's package energy counters, from Linux's powercap interface to RAPL (Intel RAPL and
// AMD's, both under /sys/class/powercap/intel-rapl:N): the energy metric's source on the CPU.
#include <optional>
#include <string>

#include "core/device_services.hpp"

namespace ab::cpu {

// Every package domain (intel-rapl:N whose `name` starts with "package") under `root`; nullopt
// and *why when there is none or one cannot be read (energy_uj is often readable by root only).
std::optional<EnergyReading> read_rapl_packages(std::string* why,
                                                const std::string& root = "/sys/class/powercap");

}  // namespace ab::cpu
