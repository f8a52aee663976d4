#pragma once

// The params and result of host.fence, as stored and shown by the API
// (api/openapi.yaml, components/schemas/HostFenceResult).

#include "kvmfleet/model/strict_json.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet::fencing {

inline constexpr std::string_view kHostFence = "host.fence";

struct HostFenceParams {
  static constexpr std::string_view kind = kHostFence;
  // "admin": POST /v1/hosts/{name}/fence; "liveness": the host turned down.
  std::string trigger = "admin";
};

struct HostFenceResult {
  std::optional<std::string> host;
  // The host's state before fencing began, put back when no device fenced it.
  std::optional<std::string> previous_state;
  std::optional<bool> fenced;
  // The device that fenced it, e.g. "device 1 (fence_ipmilan)".
  std::optional<std::string> device;
  std::optional<int> rounds;  // rounds over the devices so far
  // What each device did in the last round, in order: "fenced" or why not.
  std::optional<std::vector<std::string>> devices;
  // Why nothing was done (e.g. the host was heard again).
  std::optional<std::string> note;
};

void to_json(nlohmann::json& j, const HostFenceParams& p);
void from_json(const nlohmann::json& j, HostFenceParams& p);
void to_json(nlohmann::json& j, const HostFenceResult& r);
void from_json(const nlohmann::json& j, HostFenceResult& r);

}  // namespace kvmfleet::fencing
