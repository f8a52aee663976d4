#pragma once

// What the shared-storage operations share (internal to src/shared_storage): copies of
// the records they act on, re-read before each step, and where their LVM commands run.

#include "kvmfleet/core/operation_runner.hpp"
#include "kvmfleet/shared_storage/storage_params.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kvmfleet {

Result<StoragePool> load_pool(OpContext& ctx, const std::string& name);
Result<Volume> load_volume(OpContext& ctx, const std::string& id);
// Writes the record as `mutate` leaves it, stamping its update time.
Status save_pool(OpContext& ctx, const std::string& name,
                 const std::function<void(StoragePool&)>& mutate);
Status save_volume(OpContext& ctx, const std::string& id,
                   const std::function<void(Volume&)>& mutate);
// Hosts that are up and may use the pool now, in name order.
std::vector<Host> usable_hosts(OpContext& ctx, const StoragePool& pool);
Result<Host> any_usable_host(OpContext& ctx, const StoragePool& pool);
// The VM a volume is attached to, if any.
std::optional<Vm> attached_vm(OpContext& ctx, const Volume& vol);
// Whether the VM may hold its disks open (running, or not known to have stopped).
bool runs(const Vm& vm);
// Where LVM commands on a volume run: the host of its VM while the VM may hold the
// LV open (the LV's exclusive lock lives there), else any host that reaches the pool.
Result<Host> volume_host(OpContext& ctx, const Volume& vol, const StoragePool& pool);
// Pool size and free space as one host's LVM sees them now.
void refresh_pool_space(OpContext& ctx, const StoragePool& pool, const Host& host);
// The size LVM actually gave an LV (it rounds up to whole extents).
std::optional<std::uint64_t> lv_size(OpContext& ctx, const Host& host, const std::string& vg,
                                     const std::string& lv);

// The code of each operation kind (pool_operations.cpp, volume_operations.cpp,
// snapshot_operations.cpp).
Status create_pool(OpContext& ctx, const StoragePoolCreateParams& p, StoragePoolCreateResult& r);
Status connect_pool(OpContext& ctx, const StoragePoolConnectParams& p, StoragePoolConnectResult& r);
Status delete_pool(OpContext& ctx, const StoragePoolDeleteParams& p, StoragePoolDeleteResult& r);
Status create_volume(OpContext& ctx, const VolumeCreateParams& p, VolumeCreateResult& r);
Status grow_volume(OpContext& ctx, const VolumeGrowParams& p, VolumeGrowResult& r);
Status delete_volume(OpContext& ctx, const VolumeDeleteParams& p, VolumeDeleteResult& r);
Status create_snapshot(OpContext& ctx, const SnapshotCreateParams& p, SnapshotCreateResult& r);
Status create_vm_snapshot(OpContext& ctx, const VmSnapshotParams& p, VmSnapshotResult& r);
Status delete_snapshot(OpContext& ctx, const SnapshotDeleteParams& p, SnapshotDeleteResult& r);
Status revert_snapshot(OpContext& ctx, const SnapshotRevertParams& p, SnapshotRevertResult& r);

}  // namespace kvmfleet
