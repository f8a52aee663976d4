// snapshot.create, vm.snapshot, snapshot.delete, snapshot.revert.
#include "storage_steps.hpp"

#include "kvmfleet/common/ids.hpp"

#include <algorithm>
#include <map>

#include <spdlog/spdlog.h>

namespace kvmfleet {

namespace {

// One COW snapshot to take: of which volume, as what.
struct SnapTarget {
  Volume vol;
  Snapshot snap;
};

// Takes the snapshots together: a guest that runs is frozen (QEMU guest agent) once,
// for the instant of all of them, when it can be; otherwise they are crash-consistent
// and say so. `vm` is the VM the volumes are disks of, if any. Snapshots already
// recorded (a resumed run) are skipped. What happened is recorded in `taken`.
Status take_snapshots(OpContext& ctx, std::vector<SnapTarget> targets, const std::optional<Vm>& vm,
                      bool quiesce, SnapshotsTaken& taken) {
  std::erase_if(targets,
                [](const SnapTarget& t) { return t.vol.find_snapshot(t.snap.id) != nullptr; });
  if (targets.empty()) return {};
  const bool live = vm && runs(*vm);
  // Where each snapshot is made: the VM's host while it runs, else any host of the pool.
  std::vector<Host> hosts;
  std::vector<StoragePool> pools;
  for (const auto& t : targets) {
    auto pool = load_pool(ctx, t.vol.pool);
    if (!pool) return pool.take_error();
    auto host = volume_host(ctx, t.vol, *pool);
    if (!host) return host.take_error();
    pools.push_back(*pool);
    hosts.push_back(*host);
  }
  bool frozen = false;
  if (live && quiesce) {
    ctx.progress(20, "freezing the guest's filesystems");
    auto f = ctx.agents().fs_freeze(hosts.front(), ctx.step_id("freeze"), vm->id);
    if (f) {
      frozen = true;
      taken.frozen_filesystems = *f;
    } else {
      taken.quiesce_error = f.error().brief();
    }
  }
  const auto consistency =
      frozen ? SnapshotConsistency::quiesced : SnapshotConsistency::crash_consistent;

  Status made;
  std::vector<std::size_t> done;
  for (std::size_t i = 0; i < targets.size() && made; ++i) {
    const auto& t = targets[i];
    const std::string vg = pools[i].vg();
    const Host& host = hosts[i];
    const std::string tag = std::to_string(i);
    ctx.progress(30 + static_cast<int>(50 * i / targets.size()),
                 "creating COW snapshot " + t.snap.lv + " on " + host.name);
    if (live) {
      made = ctx.agents().lv_snapshot(host, ctx.step_id("snapshot" + tag), vg, t.vol.lv(),
                                      t.snap.lv, t.snap.size_bytes);
    } else {
      // The origin is active only where its VM runs; for the snapshot it is activated
      // exclusively here and deactivated after (which deactivates the snapshot too).
      made = ctx.agents().lv_activate(host, ctx.step_id("activate" + tag), vg, t.vol.lv(),
                                      LvMode::exclusive);
      if (made)
        made = ctx.agents().lv_snapshot(host, ctx.step_id("snapshot" + tag), vg, t.vol.lv(),
                                        t.snap.lv, t.snap.size_bytes);
      auto off = ctx.with_retry([&] {
        return ctx.agents().lv_activate(host, ctx.step_id("deactivate" + tag), vg, t.vol.lv(),
                                        LvMode::inactive);
      });
      if (!off) taken.deactivate_error = off.error().brief();
    }
    if (made) done.push_back(i);
  }
  if (frozen) {
    // Thawed whatever happened: a guest left frozen is an outage.
    auto t = ctx.with_retry(
        [&] { return ctx.agents().fs_thaw(hosts.front(), ctx.step_id("thaw"), vm->id); });
    if (!t) {
      Error e = t.take_error();
      e.message = "the guest could not be thawed after the snapshot: " + e.message;
      e.details["vm"] = vm->spec.name;
      return e;
    }
  }
  if (!made) {
    // All of them or none: the snapshots made before the failure are removed again.
    nlohmann::json remains = nlohmann::json::array();
    for (std::size_t i : done) {
      auto st = ctx.with_retry([&] {
        return ctx.agents().lv_delete(hosts[i], ctx.step_id("undo" + std::to_string(i)),
                                      pools[i].vg(), targets[i].snap.lv);
      });
      if (!st) remains.push_back(pools[i].vg() + "/" + targets[i].snap.lv);
    }
    Error e = made.take_error();
    e.details["rolled_back"] = remains.empty();
    if (!remains.empty()) e.details["remains"] = remains;
    return e;
  }
  std::vector<std::string> ids;
  // One LV listing per host and VG, however many of the snapshots it holds.
  std::map<std::pair<std::string, std::string>, Result<std::vector<AgentLv>>> listed;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    Snapshot snap = targets[i].snap;
    snap.consistency = consistency;
    const auto key = std::pair{hosts[i].name, pools[i].vg()};
    auto it = listed.find(key);
    if (it == listed.end())
      it = listed.emplace(key, ctx.agents().lv_list(hosts[i], pools[i].vg())).first;
    if (const auto& lvs = it->second) {
      for (const auto& l : *lvs)
        if (l.name == snap.lv) {
          snap.size_bytes = l.size_bytes;
          snap.fill_percent = l.data_percent;
        }
    }
    if (auto st =
            save_volume(ctx, targets[i].vol.id, [&](Volume& v) { v.snapshots.push_back(snap); });
        !st)
      return st;
    refresh_pool_space(ctx, pools[i], hosts[i]);
    ids.push_back(snap.id);
  }
  taken.snapshot_ids = std::move(ids);
  taken.consistency = consistency;
  return {};
}

Snapshot new_snapshot(OpContext& ctx, const Volume& vol, const std::string& id,
                      const std::string& name, std::uint64_t size_bytes) {
  Snapshot snap;
  snap.id = id;
  snap.name = name;
  snap.lv = snapshot_lv_name(vol.name, name);
  snap.size_bytes = size_bytes;
  snap.created_at = ctx.clock().now();
  return snap;
}

}  // namespace

Status create_snapshot(OpContext& ctx, const SnapshotCreateParams& p, SnapshotCreateResult& r) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  Snapshot snap = new_snapshot(ctx, *vol, p.snapshot_id, p.name, p.size_bytes);
  r.snapshot_id = snap.id;
  return take_snapshots(ctx, {SnapTarget{*vol, snap}}, attached_vm(ctx, *vol), p.quiesce, r);
}

// vm.snapshot: every shared volume of the VM at one instant (one freeze for all).
Status create_vm_snapshot(OpContext& ctx, const VmSnapshotParams& p, VmSnapshotResult& r) {
  const auto vm = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* v = d.find_vm(ctx.op().target_id);
    return v ? std::optional<Vm>(*v) : std::nullopt;
  });
  if (!vm) return not_found("VM no longer exists", {{"vm", ctx.op().target_id}});
  std::vector<SnapTarget> targets;
  for (const auto& s : p.snapshots) {
    auto vol = load_volume(ctx, s.volume_id);
    if (!vol) return vol.take_error();
    Snapshot snap = new_snapshot(ctx, *vol, s.snapshot_id, p.name, s.size_bytes);
    targets.push_back({*vol, snap});
  }
  return take_snapshots(ctx, std::move(targets), vm, p.quiesce, r);
}

Status delete_snapshot(OpContext& ctx, const SnapshotDeleteParams& p, SnapshotDeleteResult&) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const std::string& sid = p.snapshot_id;
  const Snapshot* snap = vol->find_snapshot(sid);
  if (!snap) return {};  // gone already
  const std::string lv = snap->lv;
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  auto host = volume_host(ctx, *vol, *pool);
  if (!host) return host.take_error();
  ctx.progress(30, "removing snapshot LV " + lv);
  if (lv_size(ctx, *host, pool->vg(), lv)) {
    auto st = ctx.with_retry(
        [&] { return ctx.agents().lv_delete(*host, ctx.step_id("delete"), pool->vg(), lv); });
    if (!st) return st;
  }
  if (auto st = save_volume(ctx, vol->id,
                            [&](Volume& v) {
                              std::erase_if(v.snapshots,
                                            [&](const Snapshot& s) { return s.id == sid; });
                            });
      !st)
    return st;
  refresh_pool_space(ctx, *pool, *host);
  return {};
}

// Reverts a volume to a snapshot (lvconvert --merge). The origin is activated here so
// that the merge runs now, and the operation waits for it; if it does not end in time
// it stays pending in LVM and completes at the origin's next activation.
Status revert_snapshot(OpContext& ctx, const SnapshotRevertParams& p, SnapshotRevertResult& r) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const std::string& sid = p.snapshot_id;
  const Snapshot* snap = vol->find_snapshot(sid);
  if (!snap) return not_found("snapshot no longer exists", {{"snapshot", sid}});
  const std::string lv = snap->lv;
  if (auto vm = attached_vm(ctx, *vol); vm && runs(*vm))
    return conflict("volume " + vol->name + " is in use by running VM " + vm->spec.name +
                        "; stop the VM to revert it",
                    {{"vm", vm->spec.name}});
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  auto host = any_usable_host(ctx, *pool);
  if (!host) return host.take_error();

  ctx.progress(20, "activating the origin on " + host->name);
  if (auto st = ctx.with_retry([&] {
        return ctx.agents().lv_activate(*host, ctx.step_id("activate"), pool->vg(), vol->lv(),
                                        LvMode::exclusive);
      });
      !st)
    return st;
  ctx.progress(40, "merging snapshot " + lv + " into " + vol->lv());
  auto merged = ctx.with_retry(
      [&] { return ctx.agents().lv_merge(*host, ctx.step_id("merge"), pool->vg(), lv); });
  bool pending = false;
  if (merged) {
    pending = true;
    for (int round = 0; round < 300 && pending; ++round) {  // up to 5 minutes
      auto lvs = ctx.agents().lv_list(*host, pool->vg());
      if (lvs) {
        pending =
            std::any_of(lvs->begin(), lvs->end(), [&](const AgentLv& l) { return l.name == lv; });
      }
      if (pending && !ctx.sleep_for(std::chrono::seconds(1))) break;
    }
  }
  auto off = ctx.with_retry([&] {
    return ctx.agents().lv_activate(*host, ctx.step_id("deactivate"), pool->vg(), vol->lv(),
                                    LvMode::inactive);
  });
  if (!merged) return merged;
  if (auto st = save_volume(ctx, vol->id,
                            [&](Volume& v) {
                              if (pending) {
                                for (auto& s : v.snapshots)
                                  if (s.id == sid) s.merge_pending = true;
                              } else {
                                std::erase_if(v.snapshots,
                                              [&](const Snapshot& s) { return s.id == sid; });
                              }
                            });
      !st)
    return st;
  refresh_pool_space(ctx, *pool, *host);
  r.merge_pending = pending;
  if (!off) r.deactivate_error = off.error().brief();
  return {};
}

}  // namespace kvmfleet
