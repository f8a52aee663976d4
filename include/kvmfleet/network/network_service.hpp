#pragma once

// Logical networks (docs/api.md, "Networks"): requests check what the cluster state
// holds and record the network with its operation in one write; network.create makes
// it usable on each host that is up (network_operations.hpp).

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operations.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace kvmfleet {

class NetworkService {
 public:
  NetworkService(Operations& operations, ClusterState& state, const Clock& clock,
                 std::string mac_prefix = "52:54:00")
      : operations_(operations), state_(state), clock_(clock), mac_prefix_(std::move(mac_prefix)) {}

  // Records `network` (validated: validate_network) and starts network.create on every
  // host that is up. conflict: the name is taken, or another network uses the bridge
  // or the same VLAN on the same uplink.
  Result<Submitted> create(const Principal& who, Network network, const SubmitOptions& opts);
  // Forgets a network no VM NIC uses (conflict otherwise, or while its creation runs).
  // Links made on hosts stay: VMs outside kvmfleet may use them.
  Status remove(const std::string& name);

  // NIC hot plug (docs/api.md, "NICs of a VM"). vm.nic_add: `nic` (parse_nic) is checked
  // as a create checks its NICs (the network exists: 404 unknown_network; its MAC, given
  // or allocated, is not taken: 409 mac_in_use; at most 16) and must be usable on the
  // VM's host as the scheduler sees it (409 network_unusable_on_host). The VM must be
  // running or stopped on a host that is up, with no other operation (409).
  Result<Submitted> add_nic(const Principal& who, const std::string& vm, const NicSpec& nic,
                            const SubmitOptions& opts);
  // vm.nic_remove: the VM must have a NIC with `mac` (404 unknown_nic); same VM checks.
  Result<Submitted> remove_nic(const Principal& who, const std::string& vm, const std::string& mac,
                               const SubmitOptions& opts);

 private:
  Operations& operations_;
  ClusterState& state_;
  const Clock& clock_;
  std::string mac_prefix_;
};

// POST /v1/vms/{vm}/nics: one NIC as in a create's "nics" ({"network", "mac"?, "model"?}),
// with the same errors (details.field without the "nics[0]." prefix).
Result<NicSpec> parse_nic(const nlohmann::json& body);

// POST /v1/networks: {"name", "bridge", "vlan"?: 1-4094, "uplink"? (with vlan),
// "mtu"?: 576-9216 (1500)}, checked strictly (validate_network); errors are
// invalid_argument with details.field and a stable details.reason.
Result<Network> parse_network_create(const nlohmann::json& body);

// The network as the API shows it: its fields, and per host whether it is usable now
// (from the host's last report) with the result of its last setup there.
nlohmann::json network_view(const Network& n, const ClusterState::Data& d);

}  // namespace kvmfleet
