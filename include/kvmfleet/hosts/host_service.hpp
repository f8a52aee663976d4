#pragma once

// Hosts: registration (with the host's own agent credential), whether the scheduler
// may use them, and what their agents report — heartbeats and lifecycle events — folded
// into the cluster state by the reconciler; hosts that fall silent become unreachable,
// then down, by the rules of liveness.hpp.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/hosts/liveness.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace kvmfleet {

struct DomainEvent {
  std::string uuid;
  std::string name;
  std::string state;
  std::string reason;
  ReportStamp stamp;  // empty from an agent that does not stamp
};

// When a request reached the controller, on both of the clock's readings: taken as early
// as the API has it, before authentication, parsing or any lock.
struct Arrival {
  Clock::time_point wall;
  Clock::steady_time_point steady;
  static Arrival now(const Clock& clock) { return {clock.now(), clock.steady_now()}; }
};

// What liveness knows of itself, for /metrics and /v1/healthz.
struct LivenessStatus {
  double lag_seconds = 0;           // largest lag seen in the last periodic pass
  double lag_total_seconds = 0;     // time spent behind, not counted against hosts
  bool holding = false;             // behind (or within the grace): declares nothing
  bool guard_active = false;        // mass-failure guard
  std::uint64_t guard_trips = 0;    // times the guard tripped
  int unknown_managed_domains = 0;  // kvmfleet-managed domains the controller has no VM for
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
  // The heartbeat counts for `arrived`, when the request reached the controller; the
  // overload without it takes the time at its start.
  Status heartbeat(const Principal& who, const std::string& host, const std::string& agent_url,
                   const HostInventory& inventory);
  Status heartbeat(const Principal& who, const std::string& host, const std::string& agent_url,
                   const HostInventory& inventory, const Arrival& arrived);
  Status domain_events(const Principal& who, const std::string& host,
                       const std::vector<DomainEvent>& events);
  // Hosts whose heartbeats stopped: up → unreachable → down (periodic).
  void check_liveness();
  // The periodic pass that was due at `due` runs at `ran` (the controller's ticker tells):
  // how late it is, is the controller's lag.
  void observe_tick(Clock::steady_time_point due, Clock::steady_time_point ran);

  // While true, hosts that turned unreachable are taken to be cut off by a controller or
  // network failure, not failed: nothing may be fenced or restarted elsewhere on their
  // account (HA and fencing consult this), and none of them becomes down. May be called
  // from within a ClusterState plan.
  bool liveness_guard_active() const;
  LivenessStatus liveness_status() const;
  // Prometheus exposition text of liveness_status().
  std::string liveness_metrics() const;
  // The /v1/healthz details of liveness: healthy, lag_seconds, guard_active.
  nlohmann::json liveness_health() const;

 private:
  // Puts back, into `b` (memory only), the VMs of `host` that turned unknown in memory
  // when it turned unreachable and that it now reports as they were. Takes mu_.
  void restore_vms(const ClusterState::Data& d, const std::string& host,
                   const std::vector<DomainStatus>& domains, WriteBatch& b);
  // Logs each managed domain of no known VM once per (host, uuid).
  void note_unknown_domains(const std::string& host,
                            const std::vector<const DomainStatus*>& unknown);
  // How long `host` has not been heard, net of the controller's lag since. Needs mu_.
  Clock::duration silence_of(const std::string& host, Clock::steady_time_point now) const;

  ClusterState& state_;
  const ControllerConfig& config_;
  const Clock& clock_;
  // When this controller started: the reconciler acts on what hosts report only once
  // every up host has heartbeated since (see reconciler.hpp).
  Clock::time_point started_at_;
  Clock::steady_time_point started_steady_;

  // Liveness bookkeeping, in memory only. Lock order: a ClusterState plan may take mu_;
  // nothing holding mu_ calls into ClusterState.
  mutable std::mutex mu_;
  // Arrival of each host's latest heartbeat, for the hosts heard since the start.
  std::map<std::string, Clock::steady_time_point> heard_;
  ControllerLag lag_;
  ArrivalGaps gaps_;
  MassFailureGuard guard_;
  // The VMs of unreachable hosts as the store holds them (host → VM id → record), while
  // memory has them unknown: a host that flaps costs no store write (see check_liveness).
  // By host, so that a heartbeat looks only at its own host's.
  std::map<std::string, std::map<std::string, Vm>> hidden_;
  // Managed domains unknown to the controller, logged once each: (host, uuid).
  std::set<std::pair<std::string, std::string>> unknown_logged_;
};

}  // namespace kvmfleet
