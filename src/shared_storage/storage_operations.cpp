#include "kvmfleet/shared_storage/storage_operations.hpp"

#include "storage_steps.hpp"

#include "kvmfleet/core/typed_operation.hpp"

namespace kvmfleet {

void register_storage_operations(OperationRunner& runner) {
  register_operation(runner, create_pool);
  register_operation(runner, delete_pool);
  register_operation(runner, connect_pool);
  register_operation(runner, create_volume);
  register_operation(runner, grow_volume);
  register_operation(runner, delete_volume);
  register_operation(runner, create_snapshot);
  register_operation(runner, create_vm_snapshot);
  register_operation(runner, delete_snapshot);
  register_operation(runner, revert_snapshot);
}

}  // namespace kvmfleet
