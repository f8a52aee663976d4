#pragma once

#include "kvmfleet/controller/cluster_state.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace kvmfleet {

// Level-triggered reconciliation, as pure functions over the controller's data:
// each returns the writes that bring recorded state in line with what was observed.
// Observed changes are reflected, never fought: a VM stopped or started outside
// kvmfleet takes that as its new desired state; a VM with an operation in flight is
// left to that operation.

// A heartbeat from `host` listing what libvirt has there.
WriteBatch reconcile_host(const ClusterState::Data& data, const std::string& host,
                          const std::vector<DomainStatus>& domains, Clock::time_point now);

// Hosts whose heartbeats stopped: up → unreachable → down, and their VMs' state
// becomes unknown (nobody may assume they stopped).
WriteBatch reconcile_liveness(const ClusterState::Data& data, Clock::time_point now,
                              std::chrono::milliseconds unreachable_after,
                              std::chrono::milliseconds down_after);

}  // namespace kvmfleet
