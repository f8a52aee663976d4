#pragma once

// Operations on logical networks: network.create.

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

void register_network_operations(OperationRunner& runner);

}  // namespace kvmfleet
