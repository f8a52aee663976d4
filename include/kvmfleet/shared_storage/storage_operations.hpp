#pragma once

// Operations on shared storage (docs/storage.md): pools, volumes, snapshots.

#include "kvmfleet/core/operation_runner.hpp"

namespace kvmfleet {

// Registers storage_pool.*, volume.*, snapshot.* and vm.snapshot with the runner.
void register_storage_operations(OperationRunner& runner);

}  // namespace kvmfleet
