#pragma once

#include "kvmfleet/controller/operation_runner.hpp"

namespace kvmfleet {

// Registers the code of every vm.* operation kind with the runner.
void register_vm_operations(OperationRunner& runner);

// Maps a libvirt-level domain state name (as agents report it) onto VmState.
VmState vm_state_from_domain(const std::string& domain_state);

}  // namespace kvmfleet
