#pragma once

// The public JSON shape of each resource (api/openapi.yaml is the contract).

#include "kvmfleet/controller/cluster_state.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <nlohmann/json.hpp>

namespace kvmfleet::api {

nlohmann::json vm_view(const Vm& vm);
// `data` supplies what a host view derives from its VMs (allocations).
nlohmann::json host_view(const Host& host, const ClusterState::Data& data);
nlohmann::json operation_view(const Operation& op);
nlohmann::json token_view(const TokenRecord& t);
nlohmann::json placement_view(const scheduler::Placement& p);

}  // namespace kvmfleet::api
