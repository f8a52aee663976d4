#pragma once

// Hosts: registration (with the host's own agent credential), whether the scheduler
// may use them, and what their agents report — heartbeats and lifecycle events — folded
// into the cluster state by the reconciler; hosts that fall silent become unreachable,
// then down.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operations.hpp"

#include <string>
#include <utility>
#include <vector>

namespace kvmfleet {

struct DomainEvent {
  std::string uuid;
  std::string name;
  std::string state;
  std::string reason;
};

class HostService {
 public:
  HostService(ClusterState& state, const ControllerConfig& config, const Clock& clock);

  // Returns the host and its agent's token (shown once).
  Result<std::pair<Host, std::string>> register_host(const std::string& name,
                                                     const std::string& agent_url);
  Status set_schedulable(const std::string& name, bool schedulable);
  Status delete_host(const std::string& name);
  // An agent speaks only for its own host: `who` must be that host's agent.
  Status heartbeat(const Principal& who, const std::string& host, const std::string& agent_url,
                   const HostInventory& inventory);
  Status domain_events(const Principal& who, const std::string& host,
                       const std::vector<DomainEvent>& events);
  // Hosts whose heartbeats stopped: up → unreachable → down (periodic).
  void check_liveness();

 private:
  ClusterState& state_;
  const ControllerConfig& config_;
  const Clock& clock_;
  // When this controller started: the reconciler acts on what hosts report only once
  // every up host has heartbeated since (see reconciler.hpp).
  Clock::time_point started_at_;
};

}  // namespace kvmfleet
