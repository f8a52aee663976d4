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
  NetworkService(Operations& operations, ClusterState& state, const Clock& clock)
      : operations_(operations), state_(state), clock_(clock) {}

  // Records `network` (validated: validate_network) and starts network.create on every
  // host that is up. conflict: the name is taken, or another network uses the bridge
  // or the same VLAN on the same uplink.
  Result<Submitted> create(const Principal& who, Network network, const SubmitOptions& opts);
  // Forgets a network no VM NIC uses (conflict otherwise, or while its creation runs).
  // Links made on hosts stay: VMs outside kvmfleet may use them.
  Status remove(const std::string& name);

 private:
  Operations& operations_;
  ClusterState& state_;
  const Clock& clock_;
};

// POST /v1/networks: {"name", "bridge", "vlan"?: 1-4094, "uplink"? (with vlan),
// "mtu"?: 576-9216 (1500)}, checked strictly (validate_network); errors are
// invalid_argument with details.field and a stable details.reason.
Result<Network> parse_network_create(const nlohmann::json& body);

// The network as the API shows it: its fields, and per host whether it is usable now
// (from the host's last report) with the result of its last setup there.
nlohmann::json network_view(const Network& n, const ClusterState::Data& d);

}  // namespace kvmfleet
