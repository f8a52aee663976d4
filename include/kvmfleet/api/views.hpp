#pragma once

// The public JSON shape of each resource (api/openapi.yaml is the contract).

#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <nlohmann/json.hpp>

namespace kvmfleet::api {

nlohmann::json vm_view(const Vm& vm);

// What a host's view is made of: the host and what the data derives from its VMs,
// copied under the state's read lock so that the JSON is built outside it.
struct HostFacts {
  Host host;
  ClusterState::HostUsage usage;
  std::vector<bool> domain_known;  // per inventory domain: a VM the controller has
};
HostFacts host_facts(const Host& host, const ClusterState::Data& data);
nlohmann::json host_view(const HostFacts& facts);
// `data` supplies what a host view derives from its VMs (allocations).
nlohmann::json host_view(const Host& host, const ClusterState::Data& data);
nlohmann::json operation_view(const Operation& op);
nlohmann::json token_view(const TokenRecord& t);
nlohmann::json placement_view(const scheduler::Placement& p);
// CHAP passwords are never shown.
nlohmann::json pool_view(const StoragePool& p, const ClusterState::Data& data);
// `data` supplies the name of the VM a volume is attached to.
nlohmann::json volume_view(const Volume& v, const ClusterState::Data& data);
nlohmann::json snapshot_view(const Snapshot& s, const Volume& v);

}  // namespace kvmfleet::api
