#pragma once

// The params and result of network.create, as stored and shown by the API
// (api/openapi.yaml, components/schemas/NetworkCreateResult).

#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/strict_json.hpp"

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

void to_json(nlohmann::json& j, const NetworkCreateParams& p);
void from_json(const nlohmann::json& j, NetworkCreateParams& p);
void to_json(nlohmann::json& j, const NetworkCreateResult& r);
void from_json(const nlohmann::json& j, NetworkCreateResult& r);

}  // namespace kvmfleet
