// Energy between two readings of a device's cumulative counters (core/device_services.hpp).
#include <cmath>

#include "core/device_services.hpp"

namespace ab {

std::optional<double> energy_between(const EnergyReading& before, const EnergyReading& after) {
  if (before.joules.empty() || before.joules.size() != after.joules.size() ||
      before.wraps_at.size() != before.joules.size() || after.wraps_at.size() != after.joules.size())
    return std::nullopt;
  double sum = 0;
  for (size_t i = 0; i < before.joules.size(); ++i) {
    double d = after.joules[i] - before.joules[i];
    // A counter that passed its range restarted at 0 (RAPL's energy_uj does, every few minutes
    // to hours at package power); one wrap at most between readings a measurement apart.
    if (d < 0) {
      if (before.wraps_at[i] <= 0) return std::nullopt;
      d += before.wraps_at[i];
    }
    if (!std::isfinite(d) || d < 0) return std::nullopt;
    sum += d;
  }
  return sum;
}

}  // namespace ab
