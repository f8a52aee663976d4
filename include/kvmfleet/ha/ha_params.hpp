#pragma once

// The params and result of vm.ha_restart, as stored and shown by the API
// (api/openapi.yaml, components/schemas/VmHaRestartParams and VmHaRestartResult).

#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/strict_json.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace kvmfleet {

// Why an HA restart happens.
inline constexpr std::string_view kHostFailed = "host_failed";  // its host is proven down
inline constexpr std::string_view kCrashed = "crashed";         // it crashed on its healthy host

struct VmHaRestartParams {
  static constexpr std::string_view kind = op_kind::vm_ha_restart;
  std::string reason = std::string(kHostFailed);
  std::string from_host;    // the host the VM is recorded on
  std::string target_host;  // where it restarts: another host, or from_host for a crash
  // What allowed it: why from_host cannot run it any more (host_failed), or the crash
  // its agent reported (kind "crashed").
  ProvenDown evidence;
};
struct VmHaRestartResult {
  std::optional<std::string> host;  // where it is defined anew, once it is
  bool started = false;
};

void to_json(nlohmann::json& j, const VmHaRestartParams& p);
void from_json(const nlohmann::json& j, VmHaRestartParams& p);
void to_json(nlohmann::json& j, const VmHaRestartResult& r);
void from_json(const nlohmann::json& j, VmHaRestartResult& r);

}  // namespace kvmfleet
