#pragma once

// Operations on logical networks: network.create; and on VMs' NICs: vm.nic_add,
// vm.nic_remove (registered with them).

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

void register_network_operations(OperationRunner& runner);
void register_vm_nic_operations(OperationRunner& runner);

}  // namespace kvmfleet
