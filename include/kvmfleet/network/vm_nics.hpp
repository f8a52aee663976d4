#pragma once

// VM NICs (docs/api.md, "Networks"): how a create request names them, and how the
// controller resolves them against the networks and the MACs already taken.

#include "kvmfleet/core/cluster_state.hpp"

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace kvmfleet {

// "nics": [{"network", "mac"?, "model"?: virtio|e1000|rtl8139}], at most 16. MACs are
// normalized to lowercase; a MAC given twice is refused. Errors are invalid_argument
// with details.field and details.reason (invalid_mac, duplicate_mac,
// invalid_nic_model, invalid_name).
Result<std::vector<NicSpec>> parse_nics(const nlohmann::json& nics);

// Every MAC the VMs of `d` use.
std::set<std::string> macs_in_use(const ClusterState::Data& d);

// Fills in each NIC of `vm` the network's bridge and MTU, and a MAC for those without
// one (under `mac_prefix`, cluster-unique). not_found with reason "unknown_network" for
// a network that does not exist; conflict with reason "mac_in_use" for a MAC another
// VM has.
Status resolve_nics(const ClusterState::Data& d, Vm& vm, const std::string& mac_prefix);

// The networks a VM's NICs need, each once.
std::vector<std::string> networks_of(const VmSpec& spec);

}  // namespace kvmfleet
