#include "kvmfleet/shared_storage/vm_volumes.hpp"

#include <algorithm>

namespace kvmfleet {

Result<std::vector<const Volume*>> free_volumes_of(const ClusterState::Data& d,
                                                   const VmSpec& spec) {
  std::vector<const Volume*> out;
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& disk = spec.disks[i];
    if (disk.volume.empty()) continue;
    const std::string field = "disks[" + std::to_string(i) + "].volume";
    const Volume* v = d.find_volume(disk.volume);
    if (!v) return invalid("no volume named " + disk.volume, {{"field", field}});
    if (std::find(out.begin(), out.end(), v) != out.end())
      return invalid("volume " + v->name + " is given twice", {{"field", field}});
    if (v->state != VolumeState::ready)
      return conflict("volume " + v->name + " is " + std::string(to_string(v->state)),
                      {{"field", field}, {"volume", v->name}});
    if (!v->attached_to.empty()) {
      const Vm* owner = d.find_vm(v->attached_to);
      return conflict("volume " + v->name + " is already a disk of VM " +
                          (owner ? owner->spec.name : v->attached_to),
                      {{"field", field}, {"volume", v->name}});
    }
    if (const Operation* busy = d.active_operation_for(v->id))
      return conflict("volume " + v->name + " has an operation in progress",
                      {{"field", field}, {"operation", busy->id}});
    out.push_back(v);
  }
  return out;
}

Status claim_volumes(const ClusterState::Data& d, Vm& vm, WriteBatch& b) {
  auto vols = free_volumes_of(d, vm.spec);
  if (!vols) return vols.take_error();
  std::size_t next = 0;
  for (auto& disk : vm.spec.disks) {
    if (disk.volume.empty()) continue;
    const Volume* v = (*vols)[next++];
    disk.volume = v->id;
    disk.device = v->device();
    constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
    disk.size_gib = static_cast<std::int64_t>((v->size_bytes + kGiB - 1) / kGiB);
    Volume claimed = *v;
    claimed.attached_to = vm.id;
    b.put_volumes.push_back(std::move(claimed));
  }
  return {};
}

void release_volumes(const ClusterState::Data& d, WriteBatch& b, const std::string& vm_id) {
  for (const auto& [id, v] : d.volumes) {
    if (v.attached_to != vm_id) continue;
    Volume next = v;
    next.attached_to.clear();
    b.put_volumes.push_back(std::move(next));
  }
}

std::vector<VmVolume> vm_volumes(const ClusterState::Data& d, const Vm& vm) {
  std::vector<VmVolume> out;
  for (const Volume* v : d.volumes_of(vm)) {
    VmVolume x{v->id, v->name, v->pool, v->lv(), {}};
    for (const auto& s : v->snapshots) x.snapshots.push_back(s.name);
    out.push_back(std::move(x));
  }
  return out;
}

Status set_volume_activation(OpContext& ctx, const std::vector<VmVolume>& volumes, const Host& host,
                             LvMode mode, std::string_view tag, bool undo_on_failure) {
  const std::string op_id = ctx.step_id(tag);
  std::vector<const VmVolume*> done;
  for (const auto& v : volumes) {
    auto st =
        ctx.with_retry([&] { return ctx.agents().lv_activate(host, op_id, v.vg, v.lv, mode); });
    if (!st) {
      Error e = st.take_error();
      e.details["volume"] = v.name;
      e.details["host"] = host.name;
      e.details["mode"] = std::string(to_string(mode));
      if (undo_on_failure && mode != LvMode::inactive) {
        const std::string undo = op_id + "-undo";
        for (const VmVolume* u : done)
          (void)ctx.agents().lv_activate(host, undo, u->vg, u->lv, LvMode::inactive);
      }
      return e;
    }
    done.push_back(&v);
  }
  return {};
}

std::vector<VmVolume> vm_volumes(OpContext& ctx, const Vm& vm) {
  return ctx.state().read([&](const ClusterState::Data& d) { return vm_volumes(d, vm); });
}

}  // namespace kvmfleet
