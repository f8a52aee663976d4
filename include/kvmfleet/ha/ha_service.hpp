#pragma once

// HA: the periodic pass that restarts the HA VMs of failed hosts elsewhere, and those
// that crashed on a healthy host where they are. Each pass
// plans (ha_planning.hpp: only hosts proven down count, priority order, capacity,
// anti-affinity, pools and networks through the scheduler), records the VMs of fenced
// hosts as stopped, and submits one vm.ha_restart per placed VM. A restart that fails is
// retried with backoff; a VM that cannot be placed waits and is placed when a host can
// take it. While the liveness mass-failure guard is active nothing is restarted.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/ha/ha_planning.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace kvmfleet {

struct HaStatus {
  bool held_by_guard = false;  // the last pass restarted nothing: the guard was active
  std::vector<ha::Waiting> waiting;
  std::uint64_t submitted = 0;  // vm.ha_restart operations submitted
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
};

class HaService {
 public:
  // `guard_active`: whether liveness' mass-failure guard holds (HostService).
  HaService(ClusterState& state, Operations& operations, const ControllerConfig& config,
            const Clock& clock, std::function<bool()> guard_active);

  // One pass (the controller's ticker calls it every second).
  void tick();

  HaStatus status() const;
  // GET /v1/ha: the guard, the VMs waiting and why, the counters.
  nlohmann::json view() const;
  // Prometheus exposition text: restarts by result, waiting VMs by reason, and the time
  // from a failed host's last heartbeat to its VM running again (histogram).
  std::string metrics() const;

  // The backoff after `failures` failed attempts at restarting one VM.
  static std::chrono::milliseconds backoff(int failures);

 private:
  struct Attempt {
    std::string op_id;
    int failures = 0;
    Clock::time_point retry_at{};
  };
  // Follows the operations submitted before: counts their results, sets backoffs.
  void follow(const ClusterState::Data& d, Clock::time_point now);

  ClusterState& state_;
  Operations& operations_;
  const ControllerConfig& config_;
  const Clock& clock_;
  std::function<bool()> guard_active_;

  mutable std::mutex mu_;
  std::map<std::string, Attempt> attempts_;  // VM id → its latest restart attempt
  std::set<std::string> crashed_;            // HA VMs recorded crashed
  bool scanned_ = false;                     // crashed_ filled from the records once
  HaStatus status_;
  std::map<std::pair<std::string, std::string>, bool> logged_;  // (VM id, reason) logged
  // Seconds from the failed host's last heartbeat to the VM running elsewhere.
  std::vector<double> buckets_{5, 10, 15, 30, 60, 120, 300, 600};
  std::vector<std::uint64_t> bucket_counts_ = std::vector<std::uint64_t>(8, 0);
  std::uint64_t recovery_count_ = 0;
  double recovery_sum_ = 0;
};

}  // namespace kvmfleet
