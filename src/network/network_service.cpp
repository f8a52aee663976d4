#include "kvmfleet/network/network_service.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/network/network_params.hpp"

#include <limits>

namespace kvmfleet {

Result<Submitted> NetworkService::create(const Principal& who, Network network,
                                         const SubmitOptions& opts) {
  if (auto st = validate_network(network); !st) return st.take_error();
  network.hosts.clear();
  network.created_at = clock_.now();
  Operation op;
  op.kind = NetworkCreateParams::kind;
  op.target_type = "network";
  op.target_id = network.name;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation& next) -> Status {
        if (d.find_network(network.name))
          return conflict("a network with this name exists",
                          {{"network", network.name}, {"reason", "network_exists"}});
        for (const auto& [name, other] : d.networks) {
          // One bridge is one L2 segment: two networks on it would be one network.
          if (other.bridge == network.bridge)
            return conflict("bridge " + network.bridge + " belongs to network " + name,
                            {{"network", name}, {"reason", "bridge_in_use"}});
          if (network.vlan && other.vlan == network.vlan && other.uplink == network.uplink)
            return conflict("VLAN " + std::to_string(*network.vlan) + " on " + network.uplink +
                                " belongs to network " + name,
                            {{"network", name}, {"reason", "vlan_in_use"}});
        }
        std::vector<std::string> hosts;
        for (const auto& [name, h] : d.hosts)
          if (h.state == HostState::up) hosts.push_back(name);
        set_params(next, NetworkCreateParams{hosts});
        b.put_networks.push_back(network);
        return {};
      });
}

Status NetworkService::remove(const std::string& name) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (!d.find_network(name)) return not_found("no such network", {{"network", name}});
    nlohmann::json users = nlohmann::json::array();
    for (const auto& [_, vm] : d.vms)
      for (const auto& nic : vm.spec.nics)
        if (nic.network == name) users.push_back(vm.spec.name);
    if (!users.empty())
      return conflict("network " + name + " is used by VM NICs; remove them first",
                      {{"network", name}, {"vms", users}, {"reason", "network_in_use"}});
    if (const Operation* busy = d.active_operation_for(name))
      return conflict("network has an operation in progress",
                      {{"network", name}, {"operation", busy->id}, {"kind", busy->kind}});
    b.delete_networks.push_back(name);
    return {};
  });
}

Result<Network> parse_network_create(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"name", "bridge", "vlan", "uplink", "mtu"}); !st)
    return st.take_error();
  constexpr auto kLow = std::numeric_limits<std::int64_t>::min();
  constexpr auto kHigh = std::numeric_limits<std::int64_t>::max();
  // A value beyond int becomes one just out of the field's range, which
  // validate_network then refuses with the field's reason.
  auto narrow = [](std::int64_t v, int max) {
    return v < 0 ? -1 : v > max ? max + 1 : static_cast<int>(v);
  };
  Network n;
  auto name = get_string(body, "name", true);
  if (!name) return name.take_error();
  n.name = *name;
  auto bridge = get_string(body, "bridge", true);
  if (!bridge) return bridge.take_error();
  n.bridge = *bridge;
  auto uplink = get_string(body, "uplink", false);
  if (!uplink) return uplink.take_error();
  n.uplink = *uplink;
  if (body.contains("uplink") && n.uplink.empty())
    return invalid("uplink must not be empty",
                   {{"field", "uplink"}, {"reason", "invalid_interface_name"}});
  // Ranges are validate_network's to check, so that each has its stable reason.
  if (body.contains("vlan") && !body.at("vlan").is_null()) {
    auto vlan = get_int(body, "vlan", true, 0, kLow, kHigh);
    if (!vlan) return vlan.take_error();
    n.vlan = narrow(*vlan, kMaxVlan);
  }
  auto mtu = get_int(body, "mtu", false, kDefaultMtu, kLow, kHigh);
  if (!mtu) return mtu.take_error();
  n.mtu = narrow(*mtu, kMaxMtu);
  if (auto st = validate_network(n); !st) return st.take_error();
  return n;
}

nlohmann::json network_view(const Network& n, const ClusterState::Data& d) {
  nlohmann::json hosts = nlohmann::json::object();
  for (const auto& [name, h] : d.hosts) {
    std::string why = h.state == HostState::up ? network_unusable_reason(n, h.inventory.links)
                                               : "host is " + std::string(to_string(h.state));
    nlohmann::json e = {{"usable", why.empty()}};
    if (!why.empty()) e["reason"] = why;
    if (auto it = n.hosts.find(name); it != n.hosts.end()) {
      e["setup"] = it->second.ready ? "ready" : "failed";
      if (!it->second.error.empty()) e["setup_error"] = it->second.error;
    }
    hosts[name] = std::move(e);
  }
  return {{"name", n.name},
          {"bridge", n.bridge},
          {"vlan", n.vlan ? nlohmann::json(*n.vlan) : nlohmann::json(nullptr)},
          {"uplink", n.vlan ? nlohmann::json(n.uplink) : nlohmann::json(nullptr)},
          {"mtu", n.mtu},
          {"hosts", std::move(hosts)},
          {"created_at", format_time(n.created_at)}};
}

}  // namespace kvmfleet
