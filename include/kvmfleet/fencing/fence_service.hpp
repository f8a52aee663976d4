#pragma once

// Fencing (docs/fencing.md): proving that a host runs nothing any more, so that its VMs
// may run elsewhere. A host is `fenced` only when one of its fence devices powered it
// off and the device's status then reported it off, or when an admin confirmed it down;
// a host that merely stopped heartbeating is never enough.
//
// - Per-host fence devices (PUT/GET /v1/hosts/{name}/fencing): ordered, each a fence
//   agent and its options; secret options are write-only, sealed by the store, shown
//   only as {"set": true}, never logged.
// - host.fence, an operation: the host turns `fencing`; each device in order gets `off`,
//   then `status` until it reports off; the first that confirms makes the host `fenced`
//   with its ProvenDown. When none does, the host goes back to its state before, the
//   operation fails naming each device's error, and (for a host down by liveness) the
//   controller tries again later with backoff.
// - Automatically, on the controller's tick: a host that turned `down` by liveness and
//   has fence devices is fenced, unless the liveness guard is active.
// - confirm-down: an admin's word, audited; refused for a host that is up.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operation_runner.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/fencing/fence_agent.hpp"
#include "kvmfleet/fencing/fence_params.hpp"
#include "kvmfleet/hosts/host_service.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kvmfleet::fencing {

using namespace std::chrono_literals;

inline constexpr std::size_t kMaxDevices = 8;
inline constexpr std::size_t kMaxReasonBytes = 512;

struct FencingTimings {
  std::chrono::milliseconds agent_timeout = 60s;  // one run of a fence agent
  int status_checks = 5;                          // status calls after an `off`
  std::chrono::milliseconds status_backoff = 1s;  // before the first; doubles
  int rounds = 3;                                 // over all devices, in one operation
  std::chrono::milliseconds round_backoff = 5s;   // between rounds; doubles
  // Between automatic operations for a host none of whose devices fenced it.
  std::chrono::milliseconds retry_backoff = 30s;
  std::chrono::milliseconds retry_backoff_max = 10min;
  std::chrono::milliseconds monitor_interval = 60s;  // monitor of each device
};

// PUT /v1/hosts/{name}/fencing: {"devices": [{"agent", "options": {key: string | integer |
// boolean}}]}, at most kMaxDevices. A secret option given as {"set": true} keeps the value
// stored for the same key of the device at the same place with the same agent (what GET
// shows can be put back). Errors: invalid_argument with details.field and details.reason.
struct DeviceInput {
  std::string agent;
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> secrets;
  std::vector<std::string> kept;  // secret keys given as {"set": true}
};
Result<std::vector<DeviceInput>> parse_fencing(const nlohmann::json& body);
// The devices with their secrets shown as {"set": true}.
nlohmann::json devices_view(const std::vector<FenceDevice>& devices);
// POST confirm-down: {"reason": non-empty, at most kMaxReasonBytes, no control character}.
Result<std::string> parse_confirm_down(const nlohmann::json& body);

class FenceService {
 public:
  FenceService(ClusterState& state, Operations& operations, OperationRunner& runner,
               HostService& hosts, FenceAgent& agent, const Clock& clock,
               FencingTimings timings = {});

  // Replaces the host's devices (each agent must exist here); returns the new view.
  Result<nlohmann::json> set_devices(const std::string& host, std::vector<DeviceInput> devices);
  Result<nlohmann::json> get_devices(const std::string& host) const;
  // host.fence for `host` (not_found; conflict when it has no devices or another
  // operation of it runs).
  Result<Submitted> fence(const Principal& who, const std::string& host, const SubmitOptions& opts,
                          const std::string& trigger = "admin");
  // The admin's word that the host runs nothing: `fenced` with ProvenDown
  // {confirm_down, reason, principal}. conflict for a host that is up.
  Status confirm_down(const Principal& who, const std::string& host, const std::string& reason);
  ~FenceService();
  // A thread that runs monitor_all() at once, then every monitor_interval on the clock.
  void start();
  void stop();
  // Periodic: fences the hosts that turned down by liveness (unless the guard holds).
  void tick();
  // Monitors every device of every host once (`monitor`, then `status`), recording
  // whether the host is fenceable. Runs fence agents: not for the tick's thread.
  void monitor_all();
  // The host view's "fencing": devices, fenceable, last monitor, last fence error.
  nlohmann::json summary(const Host& host) const;

  // The code of host.fence (registered with the runner by the constructor).
  Status run_fence(OpContext& ctx, const HostFenceParams& p, HostFenceResult& r);

 private:
  struct HostFencing {
    int failures = 0;                     // operations that failed in a row
    Clock::steady_time_point next_try{};  // when the next automatic one may start
    std::string last_error;               // of the last operation that failed
    std::optional<Clock::time_point> monitored_at;
    std::optional<bool> fenceable;     // every... at least one device answered
    std::vector<std::string> monitor;  // per device: "ok" or why not
  };
  // One device: off, then status until off. Empty when it fenced the host, else why not.
  std::optional<std::string> fence_with(OpContext& ctx, std::size_t index,
                                        const FenceDevice& device, Clock::time_point& confirmed);
  void note_failure(const std::string& host, const std::string& why);
  void note_success(const std::string& host);

  ClusterState& state_;
  Operations& operations_;
  HostService& hosts_;
  FenceAgent& agent_;
  const Clock& clock_;
  FencingTimings timings_;
  mutable std::mutex mu_;  // never held while calling into ClusterState
  std::map<std::string, HostFencing> runtime_;
  Interrupt stop_monitor_;
  std::thread monitor_;
};

}  // namespace kvmfleet::fencing
