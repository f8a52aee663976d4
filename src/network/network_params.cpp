#include "kvmfleet/network/network_params.hpp"

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

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
