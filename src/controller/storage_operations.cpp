#include "kvmfleet/controller/storage_operations.hpp"

#include "kvmfleet/model/json.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

namespace kvmfleet {
namespace {

// The agent remembers an op id per call path and refuses the same id with another
// body, so every step of an operation that may call one path twice gets its own id.
std::string step_id(OpContext& ctx, std::string_view tag) {
  return ctx.op().id + ":" + std::string(tag);
}

Result<StoragePool> load_pool(OpContext& ctx, const std::string& name) {
  auto p = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<StoragePool> {
    const StoragePool* pool = d.find_pool(name);
    return pool ? std::optional<StoragePool>(*pool) : std::nullopt;
  });
  if (!p) return not_found("storage pool no longer exists", {{"pool", name}});
  return *p;
}

Result<Volume> load_volume(OpContext& ctx, const std::string& id) {
  auto v = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Volume> {
    const Volume* vol = d.find_volume(id);
    return vol ? std::optional<Volume>(*vol) : std::nullopt;
  });
  if (!v) return not_found("volume no longer exists", {{"volume", id}});
  return *v;
}

Status save_pool(OpContext& ctx, const std::string& name,
                 const std::function<void(StoragePool&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const StoragePool* cur = d.find_pool(name);
    if (!cur) return not_found("storage pool no longer exists", {{"pool", name}});
    StoragePool next = *cur;
    mutate(next);
    next.updated_at = ctx.clock().now();
    b.put_pools.push_back(std::move(next));
    return {};
  });
}

Status save_volume(OpContext& ctx, const std::string& id,
                   const std::function<void(Volume&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Volume* cur = d.find_volume(id);
    if (!cur) return not_found("volume no longer exists", {{"volume", id}});
    Volume next = *cur;
    mutate(next);
    next.updated_at = ctx.clock().now();
    b.put_volumes.push_back(std::move(next));
    return {};
  });
}

// Hosts that are up and may use the pool now, in name order.
std::vector<Host> usable_hosts(OpContext& ctx, const StoragePool& pool) {
  return ctx.state().read([&](const ClusterState::Data& d) {
    std::vector<Host> out;
    for (const auto& [name, h] : d.hosts)
      if (h.state == HostState::up && pool.usable_on(name)) out.push_back(h);
    return out;
  });
}

Result<Host> any_usable_host(OpContext& ctx, const StoragePool& pool) {
  auto hosts = usable_hosts(ctx, pool);
  if (hosts.empty())
    return unavailable("no host that is up reaches storage pool " + pool.name,
                       {{"pool", pool.name}});
  return hosts.front();
}

// The VM a volume is attached to, if any.
std::optional<Vm> attached_vm(OpContext& ctx, const Volume& vol) {
  if (vol.attached_to.empty()) return std::nullopt;
  return ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* vm = d.find_vm(vol.attached_to);
    return vm ? std::optional<Vm>(*vm) : std::nullopt;
  });
}

std::optional<Host> host_named(OpContext& ctx, const std::string& name) {
  return ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Host> {
    const Host* h = d.find_host(name);
    return h ? std::optional<Host>(*h) : std::nullopt;
  });
}

bool runs(const Vm& vm) {
  return vm.state == VmState::running || vm.state == VmState::paused ||
         vm.state == VmState::shutting_down || vm.state == VmState::unknown;
}

// Where LVM commands on a volume run: the host of its VM while the VM may hold the
// LV open (the LV's exclusive lock lives there), else any host that reaches the pool.
Result<Host> volume_host(OpContext& ctx, const Volume& vol, const StoragePool& pool) {
  if (auto vm = attached_vm(ctx, vol); vm && runs(*vm) && !vm->host.empty()) {
    auto h = host_named(ctx, vm->host);
    if (!h) return conflict("the VM's host " + vm->host + " is not registered");
    if (h->state != HostState::up)
      return unavailable("host " + h->name + ", where the volume's VM runs, is " +
                             std::string(to_string(h->state)),
                         {{"host", h->name}});
    return *h;
  }
  return any_usable_host(ctx, pool);
}

// Pool size and free space as one host's LVM sees them now.
void refresh_pool_space(OpContext& ctx, const StoragePool& pool, const Host& host) {
  auto vg = ctx.agents().vg_get(host, pool.vg());
  if (!vg) {
    spdlog::warn("pool {}: cannot read VG size from {}: {}", pool.name, host.name,
                 vg.error().message);
    return;
  }
  (void)save_pool(ctx, pool.name, [&](StoragePool& p) {
    p.size_bytes = vg->size_bytes;
    p.free_bytes = vg->free_bytes;
  });
}

// ---- storage_pool.create ---------------------------------------------------------

// Connects one host to the pool's LUNs: logs in (iSCSI) or finds them (FC).
PoolHostStatus connect_host(OpContext& ctx, const StoragePool& pool, const Host& host) {
  PoolHostStatus s;
  s.checked_at = ctx.clock().now();
  if (host.state != HostState::up) {
    s.error = "host is " + std::string(to_string(host.state));
    return s;
  }
  if (pool.type == PoolType::iscsi) {
    for (std::size_t i = 0; i < pool.targets.size(); ++i) {
      const auto& t = pool.targets[i];
      // Discovery records the node a login needs, and tells whether the portal offers
      // the target at all.
      auto offered = ctx.with_retry([&] {
        return ctx.agents().iscsi_discover(host, step_id(ctx, "discover" + std::to_string(i)),
                                           t.portal);
      });
      if (!offered) {
        s.error = "discovery at " + t.portal + ": " + offered.error().brief();
        return s;
      }
      if (std::find(offered->begin(), offered->end(), t.iqn) == offered->end()) {
        s.error = "portal " + t.portal + " does not offer target " + t.iqn;
        return s;
      }
      auto dev = ctx.with_retry([&] {
        return ctx.agents().iscsi_login(host, step_id(ctx, "login" + std::to_string(i)), t);
      });
      if (!dev) {
        s.error = "login to " + t.iqn + " at " + t.portal + ": " + dev.error().brief();
        return s;
      }
      s.devices.push_back(*dev);
    }
  } else {
    // The agent finds each WWID's device and lets LVM see it.
    auto devices = ctx.with_retry(
        [&] { return ctx.agents().fc_attach(host, step_id(ctx, "fc-attach"), pool.wwids); });
    if (!devices) {
      s.error = "attaching FC LUNs: " + devices.error().brief();
      return s;
    }
    s.devices = std::move(*devices);
  }
  s.connected = true;
  return s;
}

// Starts the VG's lockspace on a connected host (sanlock's host_id lease, 20-60 s);
// a failure stays in the host's status and leaves it unusable for the pool.
void start_lockspace(OpContext& ctx, const StoragePool& pool, const Host& host, PoolHostStatus& s) {
  auto st = ctx.with_retry(
      [&] { return ctx.agents().vg_lockstart(host, step_id(ctx, "lockstart"), pool.vg()); });
  if (st)
    s.lockspace_started = true;
  else
    s.error = "lockstart: " + st.error().brief();
}

// What pool creation does on every host but the one that makes the VG: connect to the
// LUNs, then start the lockspace.
PoolHostStatus join_host(OpContext& ctx, const StoragePool& pool, const Host& host) {
  PoolHostStatus s = connect_host(ctx, pool, host);
  if (s.connected) start_lockspace(ctx, pool, host, s);
  return s;
}

// Undoes the iSCSI logins of a pool that could not be made (FC needs no undoing).
void disconnect_hosts(OpContext& ctx, const StoragePool& pool, const std::vector<Host>& hosts,
                      nlohmann::json& remains) {
  if (pool.type != PoolType::iscsi) return;
  for (const auto& h : hosts) {
    for (std::size_t i = 0; i < pool.targets.size(); ++i) {
      auto st = ctx.with_retry([&] {
        return ctx.agents().iscsi_logout(h, step_id(ctx, "logout" + std::to_string(i)),
                                         pool.targets[i]);
      });
      if (!st)
        remains.push_back({{"host", h.name}, {"iscsi_session", pool.targets[i].iqn},
                           {"error", st.error().brief()}});
    }
  }
}

Status create_pool(OpContext& ctx) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.take_error();
  if (pool->state == PoolState::ready) return {};  // a resumed run that had finished
  std::vector<std::string> names = ctx.op().params.value("hosts", std::vector<std::string>{});
  std::vector<Host> hosts;
  for (const auto& n : names)
    if (auto h = host_named(ctx, n)) hosts.push_back(*h);
  if (hosts.empty()) return conflict("no registered host to connect the pool to");

  ctx.progress(10, "connecting " + std::to_string(hosts.size()) + " hosts to the pool's LUNs");
  std::map<std::string, PoolHostStatus> statuses;
  std::vector<Host> connected;
  for (const auto& h : hosts) {
    auto s = connect_host(ctx, *pool, h);
    if (s.connected) connected.push_back(h);
    statuses[h.name] = std::move(s);
  }
  if (auto st = save_pool(ctx, pool->name, [&](StoragePool& p) { p.hosts = statuses; }); !st)
    return st;

  // A pool nobody can reach, or whose VG cannot be made, is rolled back: the logins
  // are undone and the record goes; what could not be undone is named in the error.
  auto roll_back = [&](Error e) -> Status {
    nlohmann::json remains = nlohmann::json::array();
    disconnect_hosts(ctx, *pool, connected, remains);
    (void)ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      if (d.find_pool(pool->name)) b.delete_pools.push_back(pool->name);
      return {};
    });
    nlohmann::json per_host = nlohmann::json::object();
    for (const auto& [n, s] : statuses)
      per_host[n] = s.connected ? nlohmann::json("connected") : nlohmann::json(s.error);
    e.details["hosts"] = per_host;
    e.details["rolled_back"] = remains.empty();
    if (!remains.empty()) e.details["remains"] = remains;
    return e;
  };
  if (connected.empty()) return roll_back(unavailable("no host could connect to the pool's LUNs"));

  const Host& creator = connected.front();
  ctx.progress(40, "creating shared VG " + pool->vg() + " on " + creator.name);
  // The VG may be there already: a resumed run, or a pool detached and made again on
  // the same LUNs (adopted as it is, its LVs untouched).
  bool made = false;
  if (!ctx.agents().vg_get(creator, pool->vg())) {
    auto st = ctx.agents().vg_create(creator, step_id(ctx, "vgcreate"), pool->vg(),
                                     statuses[creator.name].devices);
    if (!st) return roll_back(st.take_error());
    made = true;  // vgcreate --shared started the lockspace on the creator
  } else {
    ctx.result()["adopted_existing_vg"] = true;
  }
  int started = 0;
  if (made) {
    statuses[creator.name].lockspace_started = true;
    started = 1;
  }

  ctx.progress(60, "starting the VG's lockspace on the hosts");
  for (const auto& h : connected) {
    if (made && h.name == creator.name) continue;
    start_lockspace(ctx, *pool, h, statuses[h.name]);
    started += statuses[h.name].lockspace_started ? 1 : 0;
  }
  auto vg = ctx.agents().vg_get(creator, pool->vg());
  auto st = save_pool(ctx, pool->name, [&](StoragePool& p) {
    p.hosts = statuses;
    p.state = PoolState::ready;
    if (vg) {
      p.size_bytes = vg->size_bytes;
      p.free_bytes = vg->free_bytes;
    }
  });
  if (!st) return st;
  ctx.result()["pool"] = pool->name;
  ctx.result()["hosts_usable"] = started;
  ctx.result()["hosts_total"] = static_cast<int>(hosts.size());
  ctx.progress(100, "pool ready on " + std::to_string(started) + " of " +
                        std::to_string(hosts.size()) + " hosts");
  return {};
}

// storage_pool.connect: hosts join a ready pool (a host registered after the pool was
// made, or one that failed before), each as a host that did not make the VG. A host
// that fails keeps its error in the pool; the pool itself is never rolled back.
Status connect_pool(OpContext& ctx) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.take_error();
  if (pool->state != PoolState::ready)
    return conflict("storage pool is " + std::string(to_string(pool->state)),
                    {{"pool", pool->name}});
  const auto names = ctx.op().params.value("hosts", std::vector<std::string>{});
  nlohmann::json per_host = nlohmann::json::object();
  int usable = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    ctx.progress(10 + static_cast<int>(80 * i / names.size()), "connecting " + name + " to the pool");
    auto h = host_named(ctx, name);
    if (!h) {
      per_host[name] = "host is not registered";  // it left the cluster meanwhile
      continue;
    }
    PoolHostStatus s = join_host(ctx, *pool, *h);
    const bool ok = s.connected && s.lockspace_started;
    if (ok) {
      ++usable;
      spdlog::info("storage pool {}: host {} connected", pool->name, name);
    } else {
      spdlog::warn("storage pool {}: host {} could not be connected: {}", pool->name, name, s.error);
    }
    per_host[name] = ok ? nlohmann::json("usable") : nlohmann::json(s.error);
    if (auto st = save_pool(ctx, pool->name, [&](StoragePool& p) { p.hosts[name] = s; }); !st)
      return st;
  }
  ctx.result()["pool"] = pool->name;
  ctx.result()["hosts"] = per_host;
  ctx.result()["hosts_usable"] = usable;
  ctx.result()["hosts_total"] = static_cast<int>(names.size());
  if (usable == 0)
    return unavailable("no host could be connected to storage pool " + pool->name,
                       {{"pool", pool->name}, {"hosts", per_host}});
  ctx.progress(100, "connected " + std::to_string(usable) + " of " +
                        std::to_string(names.size()) + " hosts");
  return {};
}

// A pool without volumes leaves the cluster: its lockspace stops and its sessions end
// on every host; the VG stays on the LUNs. Hosts that cannot be reached keep theirs
// and are named; the record goes only once every host has let go.
Status delete_pool(OpContext& ctx) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.error().code == ErrorCode::not_found ? Status{} : pool.take_error();
  nlohmann::json remains = nlohmann::json::array();
  std::vector<Host> released;
  for (const auto& [name, status] : pool->hosts) {
    auto h = host_named(ctx, name);
    if (!h) continue;  // the host left the cluster
    if (status.lockspace_started) {
      auto st = ctx.with_retry(
          [&] { return ctx.agents().vg_lockstop(*h, step_id(ctx, "lockstop"), pool->vg()); });
      if (!st) {
        remains.push_back({{"host", name}, {"error", "lockstop: " + st.error().brief()}});
        continue;
      }
    }
    released.push_back(*h);
  }
  disconnect_hosts(ctx, *pool, released, remains);
  if (!remains.empty())
    return Error(ErrorCode::unavailable, "storage pool " + pool->name + " is still attached on some hosts",
                 {{"pool", pool->name}, {"remains", remains}});
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_pool(pool->name)) b.delete_pools.push_back(pool->name);
    return {};
  });
}

// ---- volume.* -------------------------------------------------------------------

// The size LVM actually gave an LV (it rounds up to whole extents).
std::optional<std::uint64_t> lv_size(OpContext& ctx, const Host& host, const std::string& vg,
                                     const std::string& lv) {
  auto lvs = ctx.agents().lv_list(host, vg);
  if (!lvs) return std::nullopt;
  for (const auto& l : *lvs)
    if (l.name == lv) return l.size_bytes;
  return std::nullopt;
}

Status create_volume(OpContext& ctx) {
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
      return ctx.agents().lv_create(*host, step_id(ctx, "create"), pool->vg(), vol->lv(),
                                    vol->size_bytes);
    });
    if (!st) return forget(st.take_error());
  }
  // Made active here so that LVM zeroed its start; a volume is inactive until a VM
  // starts on it.
  ctx.progress(70, "deactivating the new LV");
  auto off = ctx.with_retry([&] {
    return ctx.agents().lv_activate(*host, step_id(ctx, "deactivate"), pool->vg(), vol->lv(),
                                    LvMode::inactive);
  });
  const auto size = lv_size(ctx, *host, pool->vg(), vol->lv());
  auto st = save_volume(ctx, vol->id, [&](Volume& v) {
    v.state = VolumeState::ready;
    if (size) v.size_bytes = *size;
  });
  if (!st) return st;
  refresh_pool_space(ctx, *pool, *host);
  ctx.result()["volume_id"] = vol->id;
  if (!off) {
    Error e = off.take_error();
    e.message = "volume created but left active on " + host->name + ": " + e.message;
    e.details["volume_id"] = vol->id;
    e.details["remains"] = {{"host", host->name}, {"active", vol->lv()}};
    return e;
  }
  return {};
}

Status grow_volume(OpContext& ctx) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const auto target = ctx.op().params.value("size_bytes", std::uint64_t{0});
  if (vol->size_bytes >= target) return {};  // grown already (a resumed run)
  auto pool = load_pool(ctx, vol->pool);
  if (!pool) return pool.take_error();
  // A running VM's LV is active exclusively on its host, where lvextend must run (and
  // where the device-mapper table then grows); QEMU is told afterwards.
  const auto vm = attached_vm(ctx, *vol);
  const bool live = vm && runs(*vm);
  if (live && vm->state != VmState::running)
    return conflict("volume " + vol->name + " belongs to VM " + vm->spec.name + ", which is " +
                        std::string(to_string(vm->state)) + "; grow it when the VM runs or is stopped",
                    {{"volume", vol->name}, {"vm", vm->spec.name}});
  auto host = volume_host(ctx, *vol, *pool);
  if (!host) return host.take_error();
  ctx.progress(30, "growing LV " + pool->vg() + "/" + vol->lv() + " on " + host->name);
  auto st = ctx.with_retry([&] {
    return ctx.agents().lv_grow(*host, step_id(ctx, "grow"), pool->vg(), vol->lv(), target);
  });
  if (!st) return st;
  const auto size = lv_size(ctx, *host, pool->vg(), vol->lv()).value_or(target);
  Status told;
  if (live) {
    ctx.progress(70, "telling VM " + vm->spec.name + " on " + host->name + " its disk grew");
    told = ctx.with_retry([&] {
      return ctx.agents().block_resize(*host, step_id(ctx, "resize"), vm->id, vol->device(), size);
    });
  }
  if (auto s = save_volume(ctx, vol->id, [&](Volume& v) { v.size_bytes = size; }); !s) return s;
  refresh_pool_space(ctx, *pool, *host);
  ctx.result()["size_bytes"] = size;
  if (live) ctx.result()["vm_resized"] = told.ok();
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

Status delete_volume(OpContext& ctx) {
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
      return ctx.agents().lv_delete(*host, step_id(ctx, "delete"), pool->vg(), vol->lv());
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

// ---- snapshot.* -------------------------------------------------------------------

// One COW snapshot to take: of which volume, as what.
struct SnapTarget {
  Volume vol;
  Snapshot snap;
};

// Takes the snapshots together: a guest that runs is frozen (QEMU guest agent) once,
// for the instant of all of them, when it can be; otherwise they are crash-consistent
// and say so. `vm` is the VM the volumes are disks of, if any. Snapshots already
// recorded (a resumed run) are skipped.
Status take_snapshots(OpContext& ctx, std::vector<SnapTarget> targets, const std::optional<Vm>& vm,
                      bool quiesce) {
  std::erase_if(targets, [](const SnapTarget& t) { return t.vol.find_snapshot(t.snap.id) != nullptr; });
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
    auto f = ctx.agents().fs_freeze(hosts.front(), step_id(ctx, "freeze"), vm->id);
    if (f) {
      frozen = true;
      ctx.result()["frozen_filesystems"] = *f;
    } else {
      ctx.result()["quiesce_error"] = f.error().brief();
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
      made = ctx.agents().lv_snapshot(host, step_id(ctx, "snapshot" + tag), vg, t.vol.lv(), t.snap.lv,
                                      t.snap.size_bytes);
    } else {
      // The origin is active only where its VM runs; for the snapshot it is activated
      // exclusively here and deactivated after (which deactivates the snapshot too).
      made = ctx.agents().lv_activate(host, step_id(ctx, "activate" + tag), vg, t.vol.lv(),
                                      LvMode::exclusive);
      if (made)
        made = ctx.agents().lv_snapshot(host, step_id(ctx, "snapshot" + tag), vg, t.vol.lv(),
                                        t.snap.lv, t.snap.size_bytes);
      auto off = ctx.with_retry([&] {
        return ctx.agents().lv_activate(host, step_id(ctx, "deactivate" + tag), vg, t.vol.lv(),
                                        LvMode::inactive);
      });
      if (!off) ctx.result()["deactivate_error"] = off.error().brief();
    }
    if (made) done.push_back(i);
  }
  if (frozen) {
    // Thawed whatever happened: a guest left frozen is an outage.
    auto t = ctx.with_retry(
        [&] { return ctx.agents().fs_thaw(hosts.front(), step_id(ctx, "thaw"), vm->id); });
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
        return ctx.agents().lv_delete(hosts[i], step_id(ctx, "undo" + std::to_string(i)),
                                      pools[i].vg(), targets[i].snap.lv);
      });
      if (!st) remains.push_back(pools[i].vg() + "/" + targets[i].snap.lv);
    }
    Error e = made.take_error();
    e.details["rolled_back"] = remains.empty();
    if (!remains.empty()) e.details["remains"] = remains;
    return e;
  }
  nlohmann::json ids = nlohmann::json::array();
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
    if (auto st = save_volume(ctx, targets[i].vol.id, [&](Volume& v) { v.snapshots.push_back(snap); });
        !st)
      return st;
    refresh_pool_space(ctx, pools[i], hosts[i]);
    ids.push_back(snap.id);
  }
  ctx.result()["snapshot_ids"] = ids;
  ctx.result()["consistency"] = std::string(to_string(consistency));
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

Status create_snapshot(OpContext& ctx) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const auto& p = ctx.op().params;
  Snapshot snap = new_snapshot(ctx, *vol, p.at("snapshot_id").get<std::string>(),
                               p.at("name").get<std::string>(), p.at("size_bytes").get<std::uint64_t>());
  ctx.result()["snapshot_id"] = snap.id;
  return take_snapshots(ctx, {SnapTarget{*vol, snap}}, attached_vm(ctx, *vol),
                        p.value("quiesce", true));
}

// vm.snapshot: every shared volume of the VM at one instant (one freeze for all).
Status create_vm_snapshot(OpContext& ctx) {
  const auto vm = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* v = d.find_vm(ctx.op().target_id);
    return v ? std::optional<Vm>(*v) : std::nullopt;
  });
  if (!vm) return not_found("VM no longer exists", {{"vm", ctx.op().target_id}});
  const auto& p = ctx.op().params;
  std::vector<SnapTarget> targets;
  for (const auto& s : p.at("snapshots")) {
    auto vol = load_volume(ctx, s.at("volume_id").get<std::string>());
    if (!vol) return vol.take_error();
    Snapshot snap = new_snapshot(ctx, *vol, s.at("snapshot_id").get<std::string>(),
                                 p.at("name").get<std::string>(), s.at("size_bytes").get<std::uint64_t>());
    targets.push_back({*vol, snap});
  }
  return take_snapshots(ctx, std::move(targets), vm, p.value("quiesce", true));
}

Status delete_snapshot(OpContext& ctx) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const std::string sid = ctx.op().params.value("snapshot_id", "");
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
        [&] { return ctx.agents().lv_delete(*host, step_id(ctx, "delete"), pool->vg(), lv); });
    if (!st) return st;
  }
  if (auto st = save_volume(ctx, vol->id, [&](Volume& v) {
        std::erase_if(v.snapshots, [&](const Snapshot& s) { return s.id == sid; });
      });
      !st)
    return st;
  refresh_pool_space(ctx, *pool, *host);
  return {};
}

// Reverts a volume to a snapshot (lvconvert --merge). The origin is activated here so
// that the merge runs now, and the operation waits for it; if it does not end in time
// it stays pending in LVM and completes at the origin's next activation.
Status revert_snapshot(OpContext& ctx) {
  auto vol = load_volume(ctx, ctx.op().target_id);
  if (!vol) return vol.take_error();
  const std::string sid = ctx.op().params.value("snapshot_id", "");
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
        return ctx.agents().lv_activate(*host, step_id(ctx, "activate"), pool->vg(), vol->lv(),
                                        LvMode::exclusive);
      });
      !st)
    return st;
  ctx.progress(40, "merging snapshot " + lv + " into " + vol->lv());
  auto merged = ctx.with_retry(
      [&] { return ctx.agents().lv_merge(*host, step_id(ctx, "merge"), pool->vg(), lv); });
  bool pending = false;
  if (merged) {
    pending = true;
    for (int round = 0; round < 300 && pending; ++round) {  // up to 5 minutes
      auto lvs = ctx.agents().lv_list(*host, pool->vg());
      if (lvs) {
        pending = std::any_of(lvs->begin(), lvs->end(),
                              [&](const AgentLv& l) { return l.name == lv; });
      }
      if (pending && !ctx.sleep_for(std::chrono::seconds(1))) break;
    }
  }
  auto off = ctx.with_retry([&] {
    return ctx.agents().lv_activate(*host, step_id(ctx, "deactivate"), pool->vg(), vol->lv(),
                                    LvMode::inactive);
  });
  if (!merged) return merged;
  if (auto st = save_volume(ctx, vol->id, [&](Volume& v) {
        if (pending) {
          for (auto& s : v.snapshots)
            if (s.id == sid) s.merge_pending = true;
        } else {
          std::erase_if(v.snapshots, [&](const Snapshot& s) { return s.id == sid; });
        }
      });
      !st)
    return st;
  refresh_pool_space(ctx, *pool, *host);
  ctx.result()["merge_pending"] = pending;
  if (!off) ctx.result()["deactivate_error"] = off.error().brief();
  return {};
}

}  // namespace

std::vector<VmVolume> vm_volumes(const ClusterState::Data& d, const Vm& vm) {
  std::vector<VmVolume> out;
  for (const Volume* v : d.volumes_of(vm)) {
    VmVolume x{v->id, v->name, v->pool, v->lv(), {}};
    for (const auto& s : v->snapshots) x.snapshots.push_back(s.name);
    out.push_back(std::move(x));
  }
  return out;
}

Status set_volume_activation(OpContext& ctx, const std::vector<VmVolume>& volumes,
                             const Host& host, LvMode mode, std::string_view tag,
                             bool undo_on_failure) {
  const std::string op_id = step_id(ctx, tag);
  std::vector<const VmVolume*> done;
  for (const auto& v : volumes) {
    auto st = ctx.with_retry([&] { return ctx.agents().lv_activate(host, op_id, v.vg, v.lv, mode); });
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
