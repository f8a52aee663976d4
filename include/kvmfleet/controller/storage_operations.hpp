#pragma once

// Operations on shared storage (docs/storage.md): pools, volumes, snapshots, and the
// LV activation that follows a VM from host to host.

#include "kvmfleet/controller/operation_runner.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

// Registers storage_pool.*, volume.* and snapshot.* with the runner.
void register_storage_operations(OperationRunner& runner);

// One shared volume of a VM, as the agents name it.
struct VmVolume {
  std::string id;
  std::string name;
  std::string vg;
  std::string lv;
  std::vector<std::string> snapshots;  // names of its COW snapshots
};
std::vector<VmVolume> vm_volumes(const ClusterState::Data& d, const Vm& vm);

// Activates every shared volume of `vm` on `host` in `mode`, one agent call each,
// with op id "<operation>:<tag>". Exclusive is the split-brain guard: lvmlockd refuses
// it (conflict) while another host holds the LV. With `undo_on_failure` (for hosts
// where the VM does not run yet), when one volume fails the ones this call activated
// are deactivated again before the error is returned.
Status set_volume_activation(OpContext& ctx, const std::vector<VmVolume>& volumes,
                             const Host& host, LvMode mode, std::string_view tag,
                             bool undo_on_failure = false);

}  // namespace kvmfleet
