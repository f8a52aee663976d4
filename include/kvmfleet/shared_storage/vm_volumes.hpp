#pragma once

// A VM's shared volumes, as the VM and migration operations use them: claimed by a
// new VM, activated on the host where it runs and nowhere else, released when it goes.

#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operation_runner.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

// One shared volume of a VM, as the agents name it.
struct VmVolume {
  std::string id;
  std::string name;
  std::string vg;
  std::string lv;
  std::vector<std::string> snapshots;  // names of its COW snapshots
};
std::vector<VmVolume> vm_volumes(const ClusterState::Data& d, const Vm& vm);
// The same, read now.
std::vector<VmVolume> vm_volumes(OpContext& ctx, const Vm& vm);

// Resolves a new VM's volume disks (by id or name) to the volumes, in disk order: each
// must exist (400), be ready, free and without an operation (409), and be used once
// (400).
Result<std::vector<const Volume*>> free_volumes_of(const ClusterState::Data& d, const VmSpec& spec);
// Claims a new VM's volume disks for `vm` in batch `b` (see free_volumes_of), and
// records each disk by the volume's id and device.
Status claim_volumes(const ClusterState::Data& d, Vm& vm, WriteBatch& b);
// The VM record `vm_id` is gone: its volumes are free again.
void release_volumes(const ClusterState::Data& d, WriteBatch& b, const std::string& vm_id);

// Activates every shared volume of `vm` on `host` in `mode`, one agent call each,
// with op id "<operation>:<tag>". Exclusive is the split-brain guard: lvmlockd refuses
// it (conflict) while another host holds the LV. With `undo_on_failure` (for hosts
// where the VM does not run yet), when one volume fails the ones this call activated
// are deactivated again before the error is returned.
Status set_volume_activation(OpContext& ctx, const std::vector<VmVolume>& volumes, const Host& host,
                             LvMode mode, std::string_view tag, bool undo_on_failure = false);

}  // namespace kvmfleet
