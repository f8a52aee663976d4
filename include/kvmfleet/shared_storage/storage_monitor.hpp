#pragma once

// Keeps the controller's picture of shared storage current: every interval it asks
// the hosts for each ready pool's size and free space and for its snapshots' COW fill
// (from the host where a snapshot is active, since only there does LVM know it), warns
// about snapshots filling up, and grows those past the auto-extend threshold. A
// snapshot that overflows is invalid in LVM; it is marked so, never silently dropped.
// It also reads each pool host's storage inventory (lock daemons, lockspaces, iSCSI
// sessions) into the host's record: a host whose lockspace stopped (a reboot) is no
// longer usable for the pool, and the monitor starts the lockspace again.
// An iSCSI pool's host whose session to the pool's target is gone or not logged in is
// no longer connected (the scheduler stops placing VMs that use the pool there); a
// failing session is left to open-iscsi's own recovery, a missing one is logged in
// again by a reconnect.
// With a StorageService, a pool made for every host gets a storage_pool.connect
// operation for each host that is up and not yet listed (one registered later), and
// a host a pool lists but cannot use gets one every storage_reconnect_interval.
// A volume whose VM is recorded stopped or crashed, with no operation on either, is
// deactivated on the VM's host if it is still active there: a guest that powered
// itself off leaves its LVs active, since no vm.stop ran.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/agent_api.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/shared_storage/storage_service.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace kvmfleet {

class StorageMonitor {
 public:
  // Without `service`, no pool is connected to hosts that join later.
  StorageMonitor(ClusterState& state, AgentApi& agents, const ControllerConfig& config,
                 const Clock& clock, StorageService* service = nullptr);
  ~StorageMonitor();

  void start();
  void stop();
  // One pass over every ready pool (what the thread runs each interval).
  void refresh();
  // Prometheus exposition text of the monitor's own counters.
  std::string metrics() const;

 private:
  void refresh_pool(const StoragePool& pool);
  void refresh_hosts();
  void connect_new_hosts();
  void reconnect_unusable_hosts();
  void deactivate_stopped_volumes();

  ClusterState& state_;
  AgentApi& agents_;
  const ControllerConfig& config_;
  const Clock& clock_;
  StorageService* service_;
  Interrupt stop_;  // raised once, by stop()
  std::thread thread_;
  std::set<std::string> warned_;  // snapshot ids above the warn level now
  std::atomic<std::uint64_t> warnings_{0};
  std::atomic<std::uint64_t> autoextends_{0};
  std::atomic<std::uint64_t> autoextend_failures_{0};
  std::atomic<std::uint64_t> refresh_errors_{0};
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::uint64_t> deactivations_{0};
  std::atomic<std::uint64_t> deactivation_failures_{0};
  std::set<std::string> deactivate_failed_;  // volume ids whose last deactivation failed
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> sessions_lost_{0};
  std::map<std::string, Clock::steady_time_point> reconnect_tried_;  // "pool/host" → last try
  std::set<std::string> sessions_recovering_;  // "pool/host": session there, not logged in
};

}  // namespace kvmfleet
