#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/error.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace kvmfleet {

enum class OpState { pending, running, succeeded, failed, cancelled };
std::string_view to_string(OpState s);
std::optional<OpState> op_state_from_string(std::string_view s);
inline bool is_terminal(OpState s) {
  return s == OpState::succeeded || s == OpState::failed || s == OpState::cancelled;
}

// Operation kinds, as they appear in the API ("vm.create", ...).
namespace op_kind {
inline constexpr std::string_view vm_create = "vm.create";
inline constexpr std::string_view vm_start = "vm.start";
inline constexpr std::string_view vm_stop = "vm.stop";
inline constexpr std::string_view vm_reboot = "vm.reboot";
inline constexpr std::string_view vm_destroy = "vm.destroy";
inline constexpr std::string_view vm_delete = "vm.delete";
inline constexpr std::string_view vm_migrate = "vm.migrate";
inline constexpr std::string_view vm_snapshot = "vm.snapshot";
inline constexpr std::string_view host_maintenance = "host.maintenance";
inline constexpr std::string_view pool_create = "storage_pool.create";
inline constexpr std::string_view pool_delete = "storage_pool.delete";
inline constexpr std::string_view pool_connect = "storage_pool.connect";
inline constexpr std::string_view volume_create = "volume.create";
inline constexpr std::string_view volume_grow = "volume.grow";
inline constexpr std::string_view volume_delete = "volume.delete";
inline constexpr std::string_view snapshot_create = "snapshot.create";
inline constexpr std::string_view snapshot_delete = "snapshot.delete";
inline constexpr std::string_view snapshot_revert = "snapshot.revert";
inline constexpr std::string_view network_create = "network.create";
inline constexpr std::string_view vm_ha_restart = "vm.ha_restart";
inline constexpr std::string_view vm_nic_add = "vm.nic_add";
inline constexpr std::string_view vm_nic_remove = "vm.nic_remove";
}  // namespace op_kind

// An asynchronous piece of work. It is persisted before it starts so that a
// controller restart finds and finishes (or fails) it.
struct Operation {
  std::string id;
  std::string kind;
  std::string target_type;  // "vm" | "host"
  std::string target_id;
  OpState state = OpState::pending;
  int progress = 0;  // percent
  std::string step;  // human-readable current step
  std::optional<Error> error;
  nlohmann::json params = nlohmann::json::object();
  nlohmann::json result = nlohmann::json::object();
  std::string idempotency_key;  // empty when the request carried none
  std::string request_hash;     // of the request that made it, to refuse a reused key
  std::string requested_by;     // token name
  std::string requester_id;     // token id: the scope of idempotency keys
  int attempts = 0;             // how many times execution (re)started
  Clock::time_point created_at{};
  std::optional<Clock::time_point> started_at;
  std::optional<Clock::time_point> finished_at;
};

}  // namespace kvmfleet
