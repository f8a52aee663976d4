#pragma once

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

// Registers vm.migrate (live or cold, under the per-host migration budgets) and
// host.maintenance (a drain) with the runner.
void register_migration_operations(OperationRunner& runner);

}  // namespace kvmfleet
