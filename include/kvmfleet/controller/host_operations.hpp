#pragma once

#include "kvmfleet/controller/operation_runner.hpp"

namespace kvmfleet {

// Registers the code of every host.* operation kind with the runner.
void register_host_operations(OperationRunner& runner);

}  // namespace kvmfleet
