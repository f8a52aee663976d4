// storage_pool.create, storage_pool.connect, storage_pool.delete.
#include "storage_steps.hpp"

#include <algorithm>
#include <map>

#include <spdlog/spdlog.h>

namespace kvmfleet {

namespace {

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
        return ctx.agents().iscsi_discover(host, ctx.step_id("discover" + std::to_string(i)),
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
        return ctx.agents().iscsi_login(host, ctx.step_id("login" + std::to_string(i)), t);
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
        [&] { return ctx.agents().fc_attach(host, ctx.step_id("fc-attach"), pool.wwids); });
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
      [&] { return ctx.agents().vg_lockstart(host, ctx.step_id("lockstart"), pool.vg()); });
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
        return ctx.agents().iscsi_logout(h, ctx.step_id("logout" + std::to_string(i)),
                                         pool.targets[i]);
      });
      if (!st)
        remains.push_back({{"host", h.name},
                           {"iscsi_session", pool.targets[i].iqn},
                           {"error", st.error().brief()}});
    }
  }
}

}  // namespace

Status create_pool(OpContext& ctx, const StoragePoolCreateParams& p, StoragePoolCreateResult& r) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.take_error();
  if (pool->state == PoolState::ready) return {};  // a resumed run that had finished
  std::vector<Host> hosts;
  for (const auto& n : p.hosts)
    if (auto h = ctx.state().host(n)) hosts.push_back(*h);
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
    auto st = ctx.agents().vg_create(creator, ctx.step_id("vgcreate"), pool->vg(),
                                     statuses[creator.name].devices);
    if (!st) return roll_back(st.take_error());
    made = true;  // vgcreate --shared started the lockspace on the creator
  } else {
    r.adopted_existing_vg = true;
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
  r.pool = pool->name;
  r.hosts_usable = started;
  r.hosts_total = static_cast<int>(hosts.size());
  ctx.progress(100, "pool ready on " + std::to_string(started) + " of " +
                        std::to_string(hosts.size()) + " hosts");
  return {};
}

// storage_pool.connect: hosts join a ready pool (a host registered after the pool was
// made, or one that failed before), each as a host that did not make the VG. A host
// that fails keeps its error in the pool; the pool itself is never rolled back.
Status connect_pool(OpContext& ctx, const StoragePoolConnectParams& p,
                    StoragePoolConnectResult& r) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.take_error();
  if (pool->state != PoolState::ready)
    return conflict("storage pool is " + std::string(to_string(pool->state)),
                    {{"pool", pool->name}});
  const auto& names = p.hosts;
  std::map<std::string, std::string> per_host;
  int usable = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    ctx.progress(10 + static_cast<int>(80 * i / names.size()),
                 "connecting " + name + " to the pool");
    auto h = ctx.state().host(name);
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
      spdlog::warn("storage pool {}: host {} could not be connected: {}", pool->name, name,
                   s.error);
    }
    per_host[name] = ok ? "usable" : s.error;
    if (auto st = save_pool(ctx, pool->name, [&](StoragePool& p) { p.hosts[name] = s; }); !st)
      return st;
  }
  r.pool = pool->name;
  r.hosts = per_host;
  r.hosts_usable = usable;
  r.hosts_total = static_cast<int>(names.size());
  if (usable == 0)
    return unavailable("no host could be connected to storage pool " + pool->name,
                       {{"pool", pool->name}, {"hosts", per_host}});
  ctx.progress(100, "connected " + std::to_string(usable) + " of " + std::to_string(names.size()) +
                        " hosts");
  return {};
}

// A pool without volumes leaves the cluster: its lockspace stops and its sessions end
// on every host; the VG stays on the LUNs. Hosts that cannot be reached keep theirs
// and are named; the record goes only once every host has let go.
Status delete_pool(OpContext& ctx, const StoragePoolDeleteParams&, StoragePoolDeleteResult&) {
  auto pool = load_pool(ctx, ctx.op().target_id);
  if (!pool) return pool.error().code == ErrorCode::not_found ? Status{} : pool.take_error();
  nlohmann::json remains = nlohmann::json::array();
  std::vector<Host> released;
  for (const auto& [name, status] : pool->hosts) {
    auto h = ctx.state().host(name);
    if (!h) continue;  // the host left the cluster
    if (status.lockspace_started) {
      auto st = ctx.with_retry(
          [&] { return ctx.agents().vg_lockstop(*h, ctx.step_id("lockstop"), pool->vg()); });
      if (!st) {
        remains.push_back({{"host", name}, {"error", "lockstop: " + st.error().brief()}});
        continue;
      }
    }
    released.push_back(*h);
  }
  disconnect_hosts(ctx, *pool, released, remains);
  if (!remains.empty())
    return Error(ErrorCode::unavailable,
                 "storage pool " + pool->name + " is still attached on some hosts",
                 {{"pool", pool->name}, {"remains", remains}});
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_pool(pool->name)) b.delete_pools.push_back(pool->name);
    return {};
  });
}

}  // namespace kvmfleet
