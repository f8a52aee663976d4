#include "kvmfleet/shared_storage/storage_operations.hpp"

#include "storage_steps.hpp"

namespace kvmfleet {

void register_storage_operations(OperationRunner& runner) {
  runner.register_kind(std::string(op_kind::pool_create), create_pool);
  runner.register_kind(std::string(op_kind::pool_delete), delete_pool);
  runner.register_kind(std::string(op_kind::pool_connect), connect_pool);
  runner.register_kind(std::string(op_kind::volume_create), create_volume);
  runner.register_kind(std::string(op_kind::volume_grow), grow_volume);
  runner.register_kind(std::string(op_kind::volume_delete), delete_volume);
  runner.register_kind(std::string(op_kind::snapshot_create), create_snapshot);
  runner.register_kind(std::string(op_kind::vm_snapshot), create_vm_snapshot);
  runner.register_kind(std::string(op_kind::snapshot_delete), delete_snapshot);
  runner.register_kind(std::string(op_kind::snapshot_revert), revert_snapshot);
}

}  // namespace kvmfleet
