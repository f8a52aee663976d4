#pragma once

// HA restart decisions, as pure functions over the controller's data (no I/O): which
// VMs of failed hosts restart now, where, and which wait and why. The HA service runs
// them every pass and submits a vm.ha_restart operation per restart; the operation
// checks the same rules again against fresh state before it acts.
//
// The rule that may never break: a VM restarts elsewhere only when its recorded host
// provably cannot run it any more — the host is `fenced` (a fence device powered it off
// and confirmed it, or an admin confirmed it down: Host::proven_down). A host that
// merely stopped heartbeating (unreachable, down) is never enough.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/error.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet::ha {

// HaPolicy::max_restarts counts the restarts within this window.
inline constexpr std::chrono::hours kRestartWindow{1};

// Why an HA VM of a failed host is not restarted now (stable codes, shown by the API).
namespace wait_reason {
inline constexpr std::string_view restart_limit = "restart_limit";  // max_restarts reached
inline constexpr std::string_view local_disks = "local_disks";  // a disk lived on the failed host
inline constexpr std::string_view pinned = "pinned";            // pinned to the failed host
inline constexpr std::string_view double_run = "suspected_double_run";
inline constexpr std::string_view no_capacity = "no_capacity";  // no host can take it now
inline constexpr std::string_view backoff = "backoff";          // a failed attempt; retried later
}  // namespace wait_reason

// One VM to restart now, and where.
struct Restart {
  std::string reason;  // kHostFailed (elsewhere) or kCrashed (in place)
  std::string vm;      // id
  std::string name;
  std::string from_host;
  std::string target_host;
  int priority = 0;
  ProvenDown evidence;  // why its host cannot run it any more
};

// An HA VM of a failed host that is not restarted now.
struct Waiting {
  std::string vm;
  std::string name;
  std::string host;
  std::string reason;  // a wait_reason
  std::string message;
  bool operator==(const Waiting&) const = default;
};

struct Plan {
  std::vector<Restart> restarts;  // in priority order
  std::vector<Waiting> waiting;
  // The VMs of fenced hosts run nowhere: recorded stopped (their desired state kept).
  WriteBatch settle;
};

// Whether `host` is proven to run nothing any more.
bool proven_down(const Host& host);

// HA restarts of `vm` within the window before `now`.
int recent_restarts(const Vm& vm, Clock::time_point now);

// Whether `vm`, recorded on a proven-down host, may be restarted elsewhere at all (its
// policy, its restarts, its disks): nothing when it may, else why not.
std::optional<Waiting> restart_refusal(const ClusterState::Data& d, const Vm& vm,
                                       Clock::time_point now);

// Whether `vm` is an HA VM that crashed on its host (which is up) and is meant to run.
bool crashed_in_place(const ClusterState::Data& d, const Vm& vm);

// The HA VMs of proven-down hosts, placed in priority order (higher first, then the
// older VM) through the scheduler, each seeing the ones placed before it and the
// restarts already underway; and the VMs of `crashed` (ids) that crashed_in_place(),
// restarted where they are. VMs with another operation in flight are left to it; VMs
// in `hold` wait (backing off after a failed attempt); every one counts against its
// max_restarts within the hour.
Plan plan(const ClusterState::Data& d, const scheduler::Config& config, Clock::time_point now,
          const std::set<std::string>& hold = {}, const std::set<std::string>& crashed = {});

}  // namespace kvmfleet::ha
