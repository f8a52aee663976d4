#include "kvmfleet/network/network_params.hpp"

#include "kvmfleet/model/json.hpp"

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

void to_json(json& j, const VmNicAddParams& p) {
  j = {{"nic", p.nic}};
}
void from_json(const json& j, VmNicAddParams& p) {
  expect_object(j, {"nic"});
  const auto it = j.find("nic");
  if (it == j.end() || !it->is_object()) fail("nic", "an object");
  expect_object(*it, {"network", "mac", "model", "bridge", "mtu"});
  p.nic = it->get<NicSpec>();
}
void to_json(json& j, const VmNicRemoveParams& p) {
  j = {{"mac", p.mac}};
}
void from_json(const json& j, VmNicRemoveParams& p) {
  expect_object(j, {"mac"});
  p.mac = get<std::string>(j, "mac");
}
void to_json(json& j, const VmNicResult& r) {
  j = json::object();
  put_optional(j, "mac", r.mac);
  put_optional(j, "host", r.host);
  put_optional(j, "live", r.live);
}
void from_json(const json& j, VmNicResult& r) {
  expect_object(j, {"mac", "host", "live"});
  r.mac = get_optional<std::string>(j, "mac");
  r.host = get_optional<std::string>(j, "host");
  r.live = get_optional<bool>(j, "live");
}

void to_json(json& j, const NetworkCreateParams& p) {
  j = {{"hosts", p.hosts}};
}
void from_json(const json& j, NetworkCreateParams& p) {
  expect_object(j, {"hosts"});
  p.hosts = get<std::vector<std::string>>(j, "hosts");
}

void to_json(json& j, const NetworkCreateResult& r) {
  j = json::object();
  put_optional(j, "network", r.network);
  put_optional(j, "hosts", r.hosts);
  put_optional(j, "hosts_ready", r.hosts_ready);
  put_optional(j, "hosts_total", r.hosts_total);
}
void from_json(const json& j, NetworkCreateResult& r) {
  expect_object(j, {"network", "hosts", "hosts_ready", "hosts_total"});
  r.network = get_optional<std::string>(j, "network");
  r.hosts = get_optional<std::map<std::string, std::string>>(j, "hosts");
  r.hosts_ready = get_optional<int>(j, "hosts_ready");
  r.hosts_total = get_optional<int>(j, "hosts_total");
}

}  // namespace kvmfleet
