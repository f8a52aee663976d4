// /v1/networks and /v1/vms/{vm}/nics (docs/api.md, "Networks"; api/openapi.yaml is the
// contract).
#include "handlers.hpp"

#include "kvmfleet/network/network_service.hpp"

namespace kvmfleet::api {

void list_networks(Controller& svc, Call& c) {
  json items = svc.state().read([](const ClusterState::Data& d) {
    json a = json::array();
    for (const auto& [_, n] : d.networks) a.push_back(network_view(n, d));
    return a;
  });
  c.ok(HttpStatus::ok, {{"items", std::move(items)}});
}

void create_network(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto network = parse_network_create(*body);
  if (!network) return c.fail(network.error());
  answer_submitted(svc, c, svc.networks().create(*c.who, std::move(*network), submit_options(c)));
}

void get_network(Controller& svc, Call& c) {
  const std::string& name = c.param("network");
  auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
    const Network* n = d.find_network(name);
    return n ? std::optional<json>(network_view(*n, d)) : std::nullopt;
  });
  if (!view) return c.fail(not_found("no such network", {{"network", name}}));
  c.ok(HttpStatus::ok, *view);
}

void delete_network(Controller& svc, Call& c) {
  if (auto st = svc.networks().remove(c.param("network")); !st) return c.fail(st.error());
  c.ok(HttpStatus::ok, json::object());
}

// A NIC joins or leaves a VM (vm.nic_add / vm.nic_remove): checked here, done by the
// VM's host.
void add_vm_nic(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto nic = parse_nic(*body);
  if (!nic) return c.fail(nic.error());
  answer_submitted(svc, c, svc.networks().add_nic(*c.who, c.param("vm"), *nic, submit_options(c)));
}

void remove_vm_nic(Controller& svc, Call& c) {
  answer_submitted(
      svc, c, svc.networks().remove_nic(*c.who, c.param("vm"), c.param("mac"), submit_options(c)));
}

}  // namespace kvmfleet::api
