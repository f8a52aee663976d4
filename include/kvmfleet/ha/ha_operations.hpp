#pragma once

// The HA operations: vm.ha_restart (src/ha/ha_restart.cpp).

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

void register_ha_operations(OperationRunner& runner);

}  // namespace kvmfleet
