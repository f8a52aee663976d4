// volume.create, volume.grow, volume.delete.
#include "storage_steps.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {

Status create_volume(OpContext& ctx, const VolumeCreateParams&, VolumeCreateResult& r) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  if (vol->state == VolumeState::ready) return {};
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  auto host = any_usable_host(ctx, *pool);
  if (!host) return host.take_error();

  auto forget = [&](Error e) -> Status {
    (void)ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      if (d.find_volume(vol->id)) b.delete_volumes.push_back(vol->id);
      return {};
    });
    e.details["rolled_back"] = true;
    return e;
  };
  ctx.progress(20, "creating LV " + pool->vg() + "/" + vol->lv() + " on " + host->name);
  const bool exists = lv_size(ctx, *host, pool->vg(), vol->lv()).has_value();
  if (!exists) {
    auto st = ctx.with_retry([&] {
      return ctx.agents().lv_create(*host, ctx.step_id("create"), pool->vg(), vol->lv(),
                                    vol->size_bytes);
    });
    if (!st) return forget(st.take_error());
  }
  // Made active here so that LVM zeroed its start; a volume is inactive until a VM
  // starts on it.
  ctx.progress(70, "deactivating the new LV");
  auto off = ctx.with_retry([&] {
    return ctx.agents().lv_activate(*host, ctx.step_id("deactivate"), pool->vg(), vol->lv(),
                                    LvMode::inactive);
  });
  const auto size = lv_size(ctx, *host, pool->vg(), vol->lv());
  auto st = save_volume(ctx, vol->id, [&](Volume& v) {
    v.state = VolumeState::ready;
    if (size) v.size_bytes = *size;
  });
  if (!st) return st;
  refresh_pool_space(ctx, *pool, *host);
  r.volume_id = vol->id;
  if (!off) {
    Error e = off.take_error();
    e.message = "volume created but left active on " + host->name + ": " + e.message;
    e.details["volume_id"] = vol->id;
    e.details["remains"] = {{"host", host->name}, {"active", vol->lv()}};
    return e;
  }
  return {};
}

Status grow_volume(OpContext& ctx, const VolumeGrowParams& p, VolumeGrowResult& r) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const std::uint64_t target = p.size_bytes;
  if (vol->size_bytes >= target) return {};  // grown already (a resumed run)
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  // A running VM's LV is active exclusively on its host, where lvextend must run (and
  // where the device-mapper table then grows); QEMU is told afterwards.
  const auto vm = attached_vm(ctx, *vol);
  const bool live = vm && runs(*vm);
  if (live && vm->state != VmState::running)
    return conflict("volume " + vol->name + " belongs to VM " + vm->spec.name + ", which is " +
                        std::string(to_string(vm->state)) +
                        "; grow it when the VM runs or is stopped",
                    {{"volume", vol->name}, {"vm", vm->spec.name}});
  auto host = volume_host(ctx, *vol, *pool);
  if (!host) return host.take_error();
  ctx.progress(30, "growing LV " + pool->vg() + "/" + vol->lv() + " on " + host->name);
  auto st = ctx.with_retry([&] {
    return ctx.agents().lv_grow(*host, ctx.step_id("grow"), pool->vg(), vol->lv(), target);
  });
  if (!st) return st;
  const auto size = lv_size(ctx, *host, pool->vg(), vol->lv()).value_or(target);
  Status told;
  if (live) {
    ctx.progress(70, "telling VM " + vm->spec.name + " on " + host->name + " its disk grew");
    told = ctx.with_retry([&] {
      return ctx.agents().block_resize(*host, ctx.step_id("resize"), vm->id, vol->device(), size);
    });
  }
  if (auto s = save_volume(ctx, vol->id, [&](Volume& v) { v.size_bytes = size; }); !s) return s;
  refresh_pool_space(ctx, *pool, *host);
  r.size_bytes = size;
  if (live) r.vm_resized = told.ok();
  if (!told) {
    Error e = told.take_error();
    e.message = "volume " + vol->name + " grew to " + std::to_string(size) + " bytes, but VM " +
                vm->spec.name + " still sees the old size until it restarts: " + e.message;
    e.details["volume"] = vol->name;
    e.details["size_bytes"] = size;
    e.details["remains"] = {{"vm", vm->spec.name}, {"sees_new_size", false}};
    return e;
  }
  return {};
}

Status delete_volume(OpContext& ctx, const VolumeDeleteParams&, VolumeDeleteResult&) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) {
    if (vol.error().code == ErrorCode::not_found) return {};  // gone: deleting twice is harmless
    return vol.take_error();
  }
  if (!vol->attached_to.empty())
    return conflict("volume " + vol->name + " is attached to a VM", {{"vm", vol->attached_to}});
  if (!vol->snapshots.empty())
    return conflict("volume " + vol->name + " has snapshots; delete them first",
                    {{"snapshots", nlohmann::json(vol->snapshots.size())}});
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  auto host = any_usable_host(ctx, *pool);
  if (!host) return host.take_error();
  ctx.progress(30, "removing LV " + pool->vg() + "/" + vol->lv());
  if (lv_size(ctx, *host, pool->vg(), vol->lv())) {
    auto st = ctx.with_retry([&] {
      return ctx.agents().lv_delete(*host, ctx.step_id("delete"), pool->vg(), vol->lv());
    });
    if (!st) return st;
  }
  if (auto st = ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        if (d.find_volume(vol->id)) b.delete_volumes.push_back(vol->id);
        return {};
      });
      !st)
    return st;
  refresh_pool_space(ctx, *pool, *host);
  return {};
}

}  // namespace kvmfleet
