#include "kvmfleet/shared_storage/storage_service.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/shared_storage/storage_params.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace kvmfleet {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
// The smallest COW room a snapshot gets (one default LVM extent).
constexpr std::uint64_t kMinSnapshotBytes = 4 * kMiB;

Status refuse_busy(const ClusterState::Data& d, const Volume& v) {
  if (const Operation* busy = d.active_operation_for(v.id))
    return conflict("volume " + v.name + " has an operation in progress",
                    {{"volume", v.name}, {"operation", busy->id}, {"kind", busy->kind}});
  if (!v.attached_to.empty()) {
    if (const Operation* busy = d.active_operation_for(v.attached_to))
      return conflict("the VM of volume " + v.name + " has an operation in progress",
                      {{"volume", v.name}, {"operation", busy->id}, {"kind", busy->kind}});
  }
  return {};
}

Result<const Volume*> ready_volume(const ClusterState::Data& d, const std::string& id_or_name) {
  const Volume* v = d.find_volume(id_or_name);
  if (!v) return not_found("no such volume", {{"volume", id_or_name}});
  if (v->state != VolumeState::ready)
    return conflict("volume is " + std::string(to_string(v->state)), {{"volume", v->name}});
  return v;
}

std::string vm_name(const ClusterState::Data& d, const std::string& id) {
  const Vm* vm = d.find_vm(id);
  return vm ? vm->spec.name : id;
}

}  // namespace

Result<Submitted> StorageService::create_pool(const Principal& who, StoragePool pool,
                                              std::vector<std::string> hosts,
                                              const SubmitOptions& opts) {
  pool.state = PoolState::creating;
  pool.all_hosts = hosts.empty();
  pool.created_at = pool.updated_at = clock_.now();
  Operation op;
  op.kind = StoragePoolCreateParams::kind;
  op.target_type = "storage_pool";
  op.target_id = pool.name;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation& next) -> Status {
        if (d.find_pool(pool.name))
          return conflict("a storage pool with this name exists", {{"name", pool.name}});
        // One LUN belongs to one pool: two VGs on it would destroy each other.
        for (const auto& [name, other] : d.pools) {
          for (const auto& t : pool.targets)
            for (const auto& o : other.targets)
              if (t.iqn == o.iqn && t.lun == o.lun)
                return conflict("LUN " + std::to_string(t.lun) + " of " + t.iqn +
                                    " already belongs to storage pool " + name,
                                {{"pool", name}});
          for (const auto& w : pool.wwids)
            if (std::find(other.wwids.begin(), other.wwids.end(), w) != other.wwids.end())
              return conflict("FC LUN " + w + " already belongs to storage pool " + name,
                              {{"pool", name}});
        }
        if (hosts.empty()) {
          for (const auto& [name, h] : d.hosts)
            if (h.state == HostState::up) hosts.push_back(name);
          if (hosts.empty()) return conflict("no host is up to connect the pool to");
        } else {
          for (const auto& h : hosts)
            if (!d.find_host(h)) return not_found("no such host", {{"host", h}});
        }
        set_params(next, StoragePoolCreateParams{hosts, pool.type});
        b.put_pools.push_back(pool);
        return {};
      });
}

Result<Submitted> StorageService::connect_pool(const Principal& who, const std::string& name,
                                               std::vector<std::string> hosts,
                                               const SubmitOptions& opts) {
  // Each host once, in the order given.
  std::vector<std::string> unique;
  for (auto& h : hosts)
    if (std::find(unique.begin(), unique.end(), h) == unique.end()) unique.push_back(std::move(h));
  Operation op;
  set_params(op, StoragePoolConnectParams{unique});
  op.target_type = "storage_pool";
  op.target_id = name;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation&) -> Status {
        const StoragePool* p = d.find_pool(name);
        if (!p) return not_found("no such storage pool", {{"pool", name}});
        if (unique.empty()) return invalid("name at least one host", {{"field", "hosts"}});
        for (const auto& h : unique)
          if (!d.find_host(h)) return not_found("no such host", {{"host", h}});
        if (p->state != PoolState::ready)
          return conflict("storage pool is " + std::string(to_string(p->state)), {{"pool", name}});
        if (const Operation* busy = d.active_operation_for(name))
          return conflict("storage pool has an operation in progress",
                          {{"pool", name}, {"operation", busy->id}, {"kind", busy->kind}});
        for (const auto& h : unique) {
          const Host* host = d.find_host(h);
          if (host->state != HostState::up)
            return conflict("host " + h + " is " + std::string(to_string(host->state)),
                            {{"host", h}, {"state", std::string(to_string(host->state))}});
        }
        return {};
      });
}

Result<Submitted> StorageService::delete_pool(const Principal& who, const std::string& name,
                                              const SubmitOptions& opts) {
  Operation op;
  set_params(op, StoragePoolDeleteParams{});
  op.target_type = "storage_pool";
  op.target_id = name;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation&) -> Status {
        const StoragePool* p = d.find_pool(name);
        if (!p) return not_found("no such storage pool", {{"pool", name}});
        if (const Operation* busy = d.active_operation_for(name))
          return conflict("storage pool has an operation in progress",
                          {{"pool", name}, {"operation", busy->id}});
        nlohmann::json volumes = nlohmann::json::array();
        for (const auto& [_, v] : d.volumes)
          if (v.pool == name) volumes.push_back(v.name);
        if (!volumes.empty())
          return conflict("storage pool " + name + " still has volumes; delete them first",
                          {{"pool", name}, {"volumes", volumes}});
        return {};
      });
}

Result<Submitted> StorageService::create_volume(const Principal& who, const std::string& name,
                                                const std::string& pool_name,
                                                std::uint64_t size_bytes,
                                                const SubmitOptions& opts) {
  Volume vol;
  vol.id = new_uuid();
  vol.name = name;
  vol.pool = pool_name;
  vol.size_bytes = size_bytes;
  vol.state = VolumeState::creating;
  vol.created_at = vol.updated_at = clock_.now();
  Operation op;
  set_params(op, VolumeCreateParams{name, pool_name, size_bytes});
  op.target_type = "volume";
  op.target_id = vol.id;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation&) -> Status {
        if (d.volume_ids.count(name))
          return conflict("a volume with this name exists", {{"name", name}});
        const StoragePool* p = d.find_pool(pool_name);
        if (!p) return not_found("no such storage pool", {{"pool", pool_name}});
        if (p->state != PoolState::ready)
          return conflict("storage pool is " + std::string(to_string(p->state)),
                          {{"pool", pool_name}});
        // Free space as last seen, less what volumes being made will take.
        std::uint64_t promised = 0;
        for (const auto& [_, v] : d.volumes)
          if (v.pool == pool_name && v.state == VolumeState::creating) promised += v.size_bytes;
        const std::uint64_t free = p->free_bytes > promised ? p->free_bytes - promised : 0;
        if (size_bytes > free)
          return Error(ErrorCode::insufficient_capacity,
                       "storage pool " + pool_name + " has " + std::to_string(free) +
                           " bytes free, the volume needs " + std::to_string(size_bytes),
                       {{"pool", pool_name}, {"free_bytes", free}, {"size_bytes", size_bytes}});
        b.put_volumes.push_back(vol);
        return {};
      });
}

Result<Submitted> StorageService::grow_volume(const Principal& who, const std::string& id_or_name,
                                              std::uint64_t size_bytes, const SubmitOptions& opts) {
  Operation op;
  op.kind = VolumeGrowParams::kind;
  op.target_type = "volume";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        auto v = ready_volume(d, id_or_name);
        if (!v) return v.take_error();
        const Volume& vol = **v;
        if (auto st = refuse_busy(d, vol); !st) return st;
        if (size_bytes <= vol.size_bytes)
          return invalid("volumes only grow: size_bytes must exceed the current " +
                             std::to_string(vol.size_bytes),
                         {{"field", "size_bytes"}, {"size_bytes", vol.size_bytes}});
        // A running VM's disk grows live (the guest sees the new size at once); a VM in
        // between states, or on a host that is not up, waits.
        if (const Vm* vm = d.find_vm(vol.attached_to);
            vm && vm->state != VmState::stopped && vm->state != VmState::pending) {
          if (vm->state != VmState::running)
            return conflict("volume " + vol.name + " belongs to VM " + vm->spec.name +
                                ", which is " + std::string(to_string(vm->state)) +
                                "; grow it when the VM runs or is stopped",
                            {{"volume", vol.name}, {"vm", vm->spec.name}});
          const Host* h = d.find_host(vm->host);
          if (!h || h->state != HostState::up)
            return conflict("host " + vm->host + " of VM " + vm->spec.name + " is not up",
                            {{"volume", vol.name}, {"vm", vm->spec.name}, {"host", vm->host}});
        }
        const StoragePool* p = d.find_pool(vol.pool);
        const std::uint64_t more = size_bytes - vol.size_bytes;
        if (p && more > p->free_bytes)
          return Error(ErrorCode::insufficient_capacity,
                       "storage pool " + vol.pool + " has " + std::to_string(p->free_bytes) +
                           " bytes free, growing needs " + std::to_string(more),
                       {{"pool", vol.pool}, {"free_bytes", p->free_bytes}});
        next.target_id = vol.id;
        set_params(next, VolumeGrowParams{size_bytes});
        return {};
      });
}

Result<Submitted> StorageService::delete_volume(const Principal& who, const std::string& id_or_name,
                                                const SubmitOptions& opts) {
  Operation op;
  op.kind = VolumeDeleteParams::kind;
  op.target_type = "volume";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Volume* v = d.find_volume(id_or_name);
        if (!v) return not_found("no such volume", {{"volume", id_or_name}});
        if (auto st = refuse_busy(d, *v); !st) return st;
        if (!v->attached_to.empty())
          return conflict("volume " + v->name + " is a disk of VM " + vm_name(d, v->attached_to) +
                              "; delete the VM first",
                          {{"volume", v->name}, {"vm", vm_name(d, v->attached_to)}});
        if (!v->snapshots.empty()) {
          nlohmann::json names = nlohmann::json::array();
          for (const auto& s : v->snapshots) names.push_back(s.name);
          return conflict("volume " + v->name + " has snapshots; delete them first",
                          {{"volume", v->name}, {"snapshots", names}});
        }
        next.target_id = v->id;
        set_params(next, VolumeDeleteParams{v->name});
        return {};
      });
}

namespace {

std::uint64_t snapshot_bytes(const Volume& vol, std::uint64_t size_bytes, double ratio) {
  if (size_bytes != 0) return size_bytes;
  auto bytes = static_cast<std::uint64_t>(std::ceil(static_cast<double>(vol.size_bytes) * ratio));
  return std::max(kMinSnapshotBytes, (bytes + 511) / 512 * 512);
}

}  // namespace

Result<Submitted> StorageService::create_vm_snapshot(const Principal& who,
                                                     const std::string& vm_ref,
                                                     const std::string& name,
                                                     std::uint64_t size_bytes, double ratio,
                                                     bool quiesce, const SubmitOptions& opts) {
  Operation op;
  op.kind = VmSnapshotParams::kind;
  op.target_type = "vm";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Vm* vm = d.find_vm(vm_ref);
        if (!vm) return not_found("no such VM", {{"vm", vm_ref}});
        if (const Operation* busy = d.active_operation_for(vm->id))
          return conflict("VM has an operation in progress",
                          {{"vm", vm->spec.name}, {"operation", busy->id}, {"kind", busy->kind}});
        if (vm->spec.disks.empty()) return conflict("VM has no disks", {{"vm", vm->spec.name}});
        for (std::size_t i = 0; i < vm->spec.disks.size(); ++i)
          if (vm->spec.disks[i].volume.empty())
            return conflict("disk " + std::to_string(i) + " of VM " + vm->spec.name +
                                " is in its host's local image pool; only shared volumes have LV "
                                "snapshots",
                            {{"vm", vm->spec.name}, {"disk", i}});
        std::vector<VmSnapshotDisk> snaps;
        std::map<std::string, std::uint64_t> needed;  // by pool
        for (const Volume* vol : d.volumes_of(*vm)) {
          if (vol->state != VolumeState::ready)
            return conflict("volume " + vol->name + " is " + std::string(to_string(vol->state)));
          if (auto st = refuse_busy(d, *vol); !st) return st;
          if (vol->find_snapshot(name))
            return conflict("volume " + vol->name + " has a snapshot with this name",
                            {{"volume", vol->name}, {"name", name}});
          const auto bytes = snapshot_bytes(*vol, size_bytes, ratio);
          needed[vol->pool] += bytes;
          snaps.push_back({vol->id, new_uuid(), bytes});
        }
        for (const auto& [pool, bytes] : needed) {
          const StoragePool* p = d.find_pool(pool);
          if (p && bytes > p->free_bytes)
            return Error(ErrorCode::insufficient_capacity,
                         "storage pool " + pool + " has " + std::to_string(p->free_bytes) +
                             " bytes free, the snapshots need " + std::to_string(bytes),
                         {{"pool", pool}, {"free_bytes", p->free_bytes}, {"size_bytes", bytes}});
        }
        next.target_id = vm->id;
        set_params(next, VmSnapshotParams{name, quiesce, std::move(snaps)});
        return {};
      });
}

Result<Submitted> StorageService::create_snapshot(const Principal& who, const std::string& volume,
                                                  const std::string& name, std::uint64_t size_bytes,
                                                  double ratio, bool quiesce,
                                                  const SubmitOptions& opts) {
  Operation op;
  op.kind = SnapshotCreateParams::kind;
  op.target_type = "volume";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        auto v = ready_volume(d, volume);
        if (!v) return v.take_error();
        const Volume& vol = **v;
        if (auto st = refuse_busy(d, vol); !st) return st;
        if (vol.find_snapshot(name))
          return conflict("volume " + vol.name + " has a snapshot with this name",
                          {{"name", name}});
        const std::uint64_t bytes = snapshot_bytes(vol, size_bytes, ratio);
        const StoragePool* p = d.find_pool(vol.pool);
        if (p && bytes > p->free_bytes)
          return Error(ErrorCode::insufficient_capacity,
                       "storage pool " + vol.pool + " has " + std::to_string(p->free_bytes) +
                           " bytes free, the snapshot needs " + std::to_string(bytes),
                       {{"pool", vol.pool}, {"free_bytes", p->free_bytes}, {"size_bytes", bytes}});
        next.target_id = vol.id;
        set_params(next, SnapshotCreateParams{new_uuid(), name, bytes, quiesce});
        return {};
      });
}

Result<Submitted> StorageService::snapshot_action(const Principal& who, const std::string& volume,
                                                  const std::string& snapshot,
                                                  std::string_view kind,
                                                  const SubmitOptions& opts) {
  Operation op;
  op.kind = std::string(kind);
  op.target_type = "volume";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Volume* v = d.find_volume(volume);
        if (!v) return not_found("no such volume", {{"volume", volume}});
        const Snapshot* s = v->find_snapshot(snapshot);
        if (!s) return not_found("no such snapshot", {{"volume", v->name}, {"snapshot", snapshot}});
        if (auto st = refuse_busy(d, *v); !st) return st;
        if (kind == op_kind::snapshot_revert) {
          if (const Vm* vm = d.find_vm(v->attached_to);
              vm && vm->state != VmState::stopped && vm->state != VmState::pending)
            return conflict("volume " + v->name + " is in use by VM " + vm->spec.name + " (" +
                                std::string(to_string(vm->state)) + "); stop the VM to revert it",
                            {{"volume", v->name}, {"vm", vm->spec.name}});
        }
        next.target_id = v->id;
        if (kind == op_kind::snapshot_revert)
          set_params(next, SnapshotRevertParams{s->id, s->name});
        else
          set_params(next, SnapshotDeleteParams{s->id, s->name});
        return {};
      });
}

}  // namespace kvmfleet
