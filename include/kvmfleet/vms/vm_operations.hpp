#pragma once

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

// Registers the code of the VM lifecycle's operation kinds (vm.create, vm.start,
// vm.stop, vm.reboot, vm.destroy, vm.delete) with the runner.
void register_vm_operations(OperationRunner& runner);

}  // namespace kvmfleet
