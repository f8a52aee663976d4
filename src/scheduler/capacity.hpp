#pragma once

#include <cmath>
#include <cstdint>

#include "kvmfleet/scheduler/scheduler.hpp"

namespace kvmfleet::scheduler {

// Capacity after overcommit, rounded down so that a ratio never grants a fraction of
// a MiB or of a vCPU. A ratio that is not a positive number grants nothing.
inline std::int64_t scaled(std::int64_t amount, double ratio) {
  if (!(ratio > 0) || !std::isfinite(ratio)) return 0;
  return static_cast<std::int64_t>(std::floor(static_cast<double>(amount) * ratio));
}

inline std::int64_t allocatable_memory_mib(const HostView& h, const Config& c) {
  return scaled(h.memory_total_mib, c.memory_overcommit) - c.reserved_memory_mib;
}

inline std::int64_t allocatable_vcpus(const HostView& h, const Config& c) {
  return scaled(h.cpus, c.cpu_overcommit);
}

// May be negative when a host holds more than it may (overcommit lowered since).
inline std::int64_t free_memory_mib(const HostView& h, const Config& c) {
  return allocatable_memory_mib(h, c) - h.allocated_memory_mib;
}

inline std::int64_t free_vcpus(const HostView& h, const Config& c) {
  return allocatable_vcpus(h, c) - h.allocated_vcpus;
}

// The hosts that no request can use, whatever it asks for.
inline bool statically_usable(const HostView& h) {
  return h.state == HostState::up && h.schedulable;
}

}  // namespace kvmfleet::scheduler
