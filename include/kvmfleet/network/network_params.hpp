#pragma once

// The params and result of network.create, as stored and shown by the API
// (api/openapi.yaml, components/schemas/NetworkCreateResult).

#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/strict_json.hpp"
#include "kvmfleet/model/vm.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

struct NetworkCreateParams {
  static constexpr std::string_view kind = op_kind::network_create;
  std::vector<std::string> hosts;  // the hosts up when the network was created
};
struct NetworkCreateResult {
  std::optional<std::string> network;
  std::optional<std::map<std::string, std::string>> hosts;  // "ready", or why not
  std::optional<int> hosts_ready;
  std::optional<int> hosts_total;
};

// vm.nic_add: the NIC as it joins the VM, resolved when it was asked for (its MAC,
// the network's bridge and MTU).
struct VmNicAddParams {
  static constexpr std::string_view kind = op_kind::vm_nic_add;
  NicSpec nic;
};
// vm.nic_remove: the MAC of the NIC that leaves.
struct VmNicRemoveParams {
  static constexpr std::string_view kind = op_kind::vm_nic_remove;
  std::string mac;
};
// Both: the host that changed the domain, and whether the running guest changed too
// (false: only its definition, for its next start).
struct VmNicResult {
  std::optional<std::string> mac;
  std::optional<std::string> host;
  std::optional<bool> live;
};

void to_json(nlohmann::json& j, const VmNicAddParams& p);
void from_json(const nlohmann::json& j, VmNicAddParams& p);
void to_json(nlohmann::json& j, const VmNicRemoveParams& p);
void from_json(const nlohmann::json& j, VmNicRemoveParams& p);
void to_json(nlohmann::json& j, const VmNicResult& r);
void from_json(const nlohmann::json& j, VmNicResult& r);

void to_json(nlohmann::json& j, const NetworkCreateParams& p);
void from_json(const nlohmann::json& j, NetworkCreateParams& p);
void to_json(nlohmann::json& j, const NetworkCreateResult& r);
void from_json(const nlohmann::json& j, NetworkCreateResult& r);

}  // namespace kvmfleet
