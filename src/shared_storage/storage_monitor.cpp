#include "kvmfleet/shared_storage/storage_monitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

namespace kvmfleet {

StorageMonitor::StorageMonitor(ClusterState& state, AgentApi& agents,
                               const ControllerConfig& config, const Clock& clock,
                               StorageService* service)
    : state_(state), agents_(agents), config_(config), clock_(clock), service_(service) {}

StorageMonitor::~StorageMonitor() {
  stop();
}

void StorageMonitor::start() {
  thread_ = std::thread([this] {
    do {
      refresh();
    } while (clock_.sleep_for(config_.storage_refresh_interval, stop_));
  });
}

void StorageMonitor::stop() {
  stop_.raise();
  if (thread_.joinable()) thread_.join();
}

namespace {

// Only the parts of an agent's storage inventory the controller shows, bounded: it is
// untrusted input that ends up in the host's record.
nlohmann::json storage_summary(const nlohmann::json& inv) {
  nlohmann::json out = nlohmann::json::object();
  for (const char* key : {"locks", "vgs", "iscsi_sessions", "multipath", "errors"}) {
    auto it = inv.find(key);
    if (it == inv.end()) continue;
    if ((std::string_view(key) == "locks") ? it->is_object() : it->is_array()) out[key] = *it;
  }
  if (out.dump().size() > 64 * 1024)
    return {{"error", "storage inventory larger than 64 KiB; not kept"}};
  return out;
}

// The VGs whose lockspace the host has started, from its inventory.
std::set<std::string> started_lockspaces(const nlohmann::json& inv) {
  std::set<std::string> out;
  auto it = inv.find("vgs");
  if (it == inv.end() || !it->is_array()) return out;
  for (const auto& vg : *it) {
    if (!vg.is_object()) continue;
    auto name = vg.find("name");
    auto started = vg.find("lockspace_started");
    if (name != vg.end() && name->is_string() && started != vg.end() && started->is_boolean() &&
        started->get<bool>())
      out.insert(name->get<std::string>());
  }
  return out;
}

std::string text_field(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Why an iSCSI pool's LUNs are not reachable on a host, from its inventory's sessions:
// no text when every target has a logged-in session, or when the inventory does not
// say. `recovering`: a session exists but is not logged in, which open-iscsi itself
// keeps reconnecting (a login would only find the session there).
struct SessionProblem {
  std::string text;
  bool recovering = false;
};
SessionProblem session_problem(const StoragePool& pool, const nlohmann::json& inv) {
  if (pool.type != PoolType::iscsi) return {};
  auto it = inv.find("iscsi_sessions");
  if (it == inv.end() || !it->is_array()) return {};
  for (const auto& t : pool.targets) {
    std::string state;
    for (const auto& s : *it) {
      if (!s.is_object() || text_field(s, "target") != t.iqn) continue;
      state = text_field(s, "state");
      if (state == "LOGGED_IN") break;
      if (state.empty()) state = "in an unknown state";
    }
    if (state.empty()) return {"no iSCSI session to " + t.iqn, false};
    if (state != "LOGGED_IN") return {"the iSCSI session to " + t.iqn + " is " + state, true};
  }
  return {};
}

}  // namespace

void StorageMonitor::refresh_hosts() {
  // Every up host that some ready pool lists, with the pools that know its devices
  // (connected now, or until a session was lost).
  struct Entry {
    Host host;
    std::vector<StoragePool> pools;
  };
  const auto entries = state_.read([](const ClusterState::Data& d) {
    std::vector<Entry> out;
    for (const auto& [name, h] : d.hosts) {
      if (h.state != HostState::up) continue;
      Entry e{h, {}};
      bool listed = false;
      for (const auto& [pname, p] : d.pools) {
        if (p.state != PoolState::ready) continue;
        auto it = p.hosts.find(name);
        if (it == p.hosts.end()) continue;
        listed = true;
        if (!it->second.devices.empty()) e.pools.push_back(p);
      }
      if (listed) out.push_back(std::move(e));
    }
    return out;
  });
  for (const auto& e : entries) {
    auto inv = agents_.storage_inventory(e.host);
    nlohmann::json summary;
    std::set<std::string> started;
    if (inv) {
      summary = storage_summary(*inv);
      started = started_lockspaces(*inv);
    } else {
      ++refresh_errors_;
      summary = {{"error", inv.error().brief()}};
    }
    summary["checked_at"] = format_time(clock_.now());
    // What the host reports is an observation: kept in memory, written with the next
    // change of the host's record.
    (void)state_.update(
        [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
          const Host* cur = d.find_host(e.host.name);
          if (!cur) return {};
          Host next = *cur;
          next.storage = summary;
          b.put_hosts.push_back(std::move(next));
          return {};
        },
        /*persist=*/false);
    if (!inv) continue;
    for (const auto& p : e.pools) {
      const std::string& pool = p.name;
      // A session that is gone or failing: its LUNs do not answer here, whatever LVM
      // last saw. open-iscsi may recover it; a reconnect logs in again otherwise.
      const auto problem = session_problem(p, *inv);
      const std::string& lost = problem.text;
      const bool now_connected = lost.empty();
      if (problem.recovering)
        sessions_recovering_.insert(pool + "/" + e.host.name);
      else
        sessions_recovering_.erase(pool + "/" + e.host.name);
      bool now_started = now_connected && started.count(pool) > 0;
      std::string error = lost;
      if (now_connected && !now_started) {
        // A lockspace that stopped (the host rebooted, lvmlockd restarted) is started
        // again; until then the host is not usable for the pool.
        const std::string op_id =
            "monitor-lockstart:" + pool + ":" +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                               clock_.now().time_since_epoch())
                               .count());
        auto st = agents_.vg_lockstart(e.host, op_id, pool);
        if (st) {
          now_started = true;
          spdlog::info("storage pool {}: lockspace started again on {}", pool, e.host.name);
        } else {
          error = "lockstart: " + st.error().brief();
        }
      }
      auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        const StoragePool* cur = d.find_pool(pool);
        if (!cur) return {};
        auto it = cur->hosts.find(e.host.name);
        if (it == cur->hosts.end()) return {};
        if (it->second.connected == now_connected && it->second.lockspace_started == now_started &&
            it->second.error == error)
          return {};
        StoragePool next = *cur;
        auto& hs = next.hosts[e.host.name];
        if (hs.connected && !now_connected) {
          ++sessions_lost_;
          spdlog::warn("storage pool {}: host {}: {}", pool, e.host.name, lost);
        }
        const bool was_usable = hs.connected && hs.lockspace_started;
        if (was_usable != (now_connected && now_started))
          spdlog::warn("storage pool {}: host {} is {} usable", pool, e.host.name,
                       was_usable ? "no longer" : "again");
        hs.connected = now_connected;
        hs.lockspace_started = now_started;
        hs.error = error;
        hs.checked_at = clock_.now();
        next.updated_at = clock_.now();
        b.put_pools.push_back(std::move(next));
        return {};
      });
      if (!st)
        spdlog::warn("storage pool {}: cannot record {}'s lockspace: {}", pool, e.host.name,
                     st.error().message);
    }
  }
}

void StorageMonitor::connect_new_hosts() {
  if (!service_) return;
  struct Join {
    std::string pool;
    std::vector<std::string> hosts;
  };
  const auto joins = state_.read([](const ClusterState::Data& d) {
    std::vector<Join> out;
    for (const auto& [pname, p] : d.pools) {
      // One connect at a time per pool; a host the pool lists (its connect failed, say)
      // is left to the API.
      if (!p.all_hosts || p.state != PoolState::ready || d.active_operation_for(pname)) continue;
      Join j{pname, {}};
      for (const auto& [hname, h] : d.hosts)
        if (h.state == HostState::up && !p.hosts.count(hname)) j.hosts.push_back(hname);
      if (!j.hosts.empty()) out.push_back(std::move(j));
    }
    return out;
  });
  const Principal monitor{"", "storage-monitor", Role::admin, ""};
  for (const auto& j : joins) {
    // A host this connect fails for is tried again after storage_reconnect_interval.
    for (const auto& h : j.hosts) reconnect_tried_[j.pool + "/" + h] = clock_.steady_now();
    auto s = service_->connect_pool(monitor, j.pool, j.hosts, {});
    std::string names;
    for (const auto& h : j.hosts) names += (names.empty() ? "" : ", ") + h;
    if (s) {
      ++connects_;
      spdlog::info("storage pool {}: connecting {} (operation {})", j.pool, names, s->operation.id);
    } else {
      spdlog::info("storage pool {}: not connecting {} now: {}", j.pool, names, s.error().brief());
    }
  }
}

void StorageMonitor::reconnect_unusable_hosts() {
  if (!service_) return;
  const auto now = clock_.steady_now();
  struct Retry {
    std::string pool;
    std::vector<std::string> hosts;
  };
  std::vector<Retry> retries;
  state_.read([&](const ClusterState::Data& d) {
    for (const auto& [pname, p] : d.pools) {
      if (p.state != PoolState::ready || d.active_operation_for(pname)) continue;
      Retry r{pname, {}};
      for (const auto& [hname, _] : p.hosts) {
        const Host* h = d.find_host(hname);
        if (!h || h->state != HostState::up || p.usable_on(hname)) continue;
        if (sessions_recovering_.count(pname + "/" + hname)) continue;  // open-iscsi's to do
        auto it = reconnect_tried_.find(pname + "/" + hname);
        if (it != reconnect_tried_.end() && now - it->second < config_.storage_reconnect_interval)
          continue;
        r.hosts.push_back(hname);
      }
      if (!r.hosts.empty()) retries.push_back(std::move(r));
    }
  });
  const Principal monitor{"", "storage-monitor", Role::admin, ""};
  for (const auto& r : retries) {
    for (const auto& h : r.hosts) reconnect_tried_[r.pool + "/" + h] = now;
    auto s = service_->connect_pool(monitor, r.pool, r.hosts, {});
    std::string names;
    for (const auto& h : r.hosts) names += (names.empty() ? "" : ", ") + h;
    if (s) {
      ++reconnects_;
      spdlog::info("storage pool {}: connecting {} again (operation {})", r.pool, names,
                   s->operation.id);
    } else {
      spdlog::info("storage pool {}: not connecting {} again now: {}", r.pool, names,
                   s.error().brief());
    }
  }
}

namespace {

bool stopped(const Vm& vm) {
  return vm.state == VmState::stopped || vm.state == VmState::crashed;
}

// A volume whose VM's LVs may be let go of on `host`: the VM is recorded stopped or
// crashed there, and neither it nor the volume has an operation that may be about to
// activate it (a start, a snapshot, a revert).
bool idle_on(const ClusterState::Data& d, const Volume& v, const std::string& host) {
  const Vm* vm = d.find_vm(v.attached_to);
  return vm && stopped(*vm) && vm->host == host && !d.active_operation_for(vm->id) &&
         !d.active_operation_for(v.id);
}

}  // namespace

void StorageMonitor::deactivate_stopped_volumes() {
  struct Idle {
    std::string volume_id, volume, vm, lv;
  };
  // (host, VG) → the volumes to look at there.
  std::map<std::pair<std::string, std::string>, std::vector<Idle>> by_host;
  std::map<std::string, Host> hosts;
  state_.read([&](const ClusterState::Data& d) {
    for (const auto& [_, v] : d.volumes) {
      if (v.state != VolumeState::ready || v.attached_to.empty()) continue;
      const Vm* vm = d.find_vm(v.attached_to);
      if (!vm || vm->host.empty() || !idle_on(d, v, vm->host)) continue;
      const Host* h = d.find_host(vm->host);
      const StoragePool* p = d.find_pool(v.pool);
      if (!h || h->state != HostState::up || !p || p->state != PoolState::ready) continue;
      hosts[h->name] = *h;
      by_host[{h->name, p->vg()}].push_back({v.id, v.name, vm->spec.name, v.lv()});
    }
  });
  for (const auto& [key, idle] : by_host) {
    const auto& [host_name, vg] = key;
    const Host& host = hosts.at(host_name);
    auto lvs = agents_.lv_list(host, vg);
    if (!lvs) {
      ++refresh_errors_;
      spdlog::warn("storage pool {}: cannot list LVs on {}: {}", vg, host_name,
                   lvs.error().message);
      continue;
    }
    for (const auto& v : idle) {
      const bool active = std::any_of(lvs->begin(), lvs->end(), [&](const AgentLv& l) {
        return l.name == v.lv && l.activation != LvMode::inactive;
      });
      if (!active) {
        deactivate_failed_.erase(v.volume_id);
        continue;
      }
      // Read again just before the call: an operation that started meanwhile owns the
      // volume now. (LVM itself refuses to deactivate an LV a guest holds open.)
      const bool still = state_.read([&](const ClusterState::Data& d) {
        const Volume* cur = d.find_volume(v.volume_id);
        return cur && idle_on(d, *cur, host_name);
      });
      if (!still) continue;
      const std::string op_id =
          "monitor-deactivate:" + v.volume_id + ":" +
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
                  .count());
      auto st = agents_.lv_activate(host, op_id, vg, v.lv, LvMode::inactive);
      if (st) {
        ++deactivations_;
        deactivate_failed_.erase(v.volume_id);
        spdlog::info("volume {} was still active on {} after VM {} stopped; deactivated", v.volume,
                     host_name, v.vm);
      } else {
        ++deactivation_failures_;
        if (deactivate_failed_.insert(v.volume_id).second)
          spdlog::warn(
              "volume {} is still active on {} after VM {} stopped and cannot be "
              "deactivated: {}",
              v.volume, host_name, v.vm, st.error().brief());
      }
    }
  }
}

void StorageMonitor::refresh() {
  refresh_hosts();
  connect_new_hosts();
  reconnect_unusable_hosts();
  deactivate_stopped_volumes();
  auto pools = state_.read([](const ClusterState::Data& d) {
    std::vector<StoragePool> out;
    for (const auto& [_, p] : d.pools)
      if (p.state == PoolState::ready) out.push_back(p);
    return out;
  });
  for (const auto& p : pools) refresh_pool(p);
}

void StorageMonitor::refresh_pool(const StoragePool& pool) {
  // One host that reaches the pool for its space, plus every host where a volume
  // with snapshots is in use (its snapshots are active there, and only there).
  struct Plan {
    std::vector<Host> hosts;
    std::vector<Volume> volumes;  // with snapshots
  };
  const Plan plan = state_.read([&](const ClusterState::Data& d) {
    Plan out;
    auto add = [&](const Host* h) {
      if (!h || h->state != HostState::up || !pool.usable_on(h->name)) return;
      for (const auto& x : out.hosts)
        if (x.name == h->name) return;
      out.hosts.push_back(*h);
    };
    for (const auto& [_, v] : d.volumes) {
      if (v.pool != pool.name || v.snapshots.empty()) continue;
      out.volumes.push_back(v);
      if (const Vm* vm = d.find_vm(v.attached_to); vm && !vm->host.empty())
        add(d.find_host(vm->host));
    }
    for (const auto& [name, h] : d.hosts) {
      if (!out.hosts.empty()) break;
      add(&h);
    }
    return out;
  });
  if (plan.hosts.empty()) return;

  std::optional<AgentVg> space;
  std::map<std::string, AgentLv> seen;  // LV name → the report that knows most of it
  bool listed = false;
  for (const auto& h : plan.hosts) {
    if (!space) {
      if (auto vg = agents_.vg_get(h, pool.vg())) space = *vg;
    }
    auto lvs = agents_.lv_list(h, pool.vg());
    if (!lvs) {
      ++refresh_errors_;
      spdlog::warn("storage pool {}: cannot list LVs on {}: {}", pool.name, h.name,
                   lvs.error().message);
      continue;
    }
    listed = true;
    for (auto& lv : *lvs) {
      auto [it, fresh] = seen.try_emplace(lv.name, lv);
      if (!fresh && !it->second.data_percent && lv.data_percent) it->second = lv;
    }
  }

  // Snapshots to grow: (host, volume, snapshot, new size).
  struct Grow {
    Host host;
    std::string volume_name;
    Snapshot snap;
    std::uint64_t new_size;
  };
  std::vector<Grow> grows;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (const StoragePool* cur = d.find_pool(pool.name);
        cur && space &&
        (cur->size_bytes != space->size_bytes || cur->free_bytes != space->free_bytes)) {
      StoragePool next = *cur;
      next.size_bytes = space->size_bytes;
      next.free_bytes = space->free_bytes;
      next.updated_at = clock_.now();
      b.put_pools.push_back(std::move(next));
    }
    if (!listed) return {};
    for (const auto& planned : plan.volumes) {
      const Volume* cur = d.find_volume(planned.id);
      if (!cur) continue;
      Volume next = *cur;
      bool changed = false;
      for (auto& s : next.snapshots) {
        auto it = seen.find(s.lv);
        if (it == seen.end()) {
          // A merge that was pending has completed: the snapshot is gone for good.
          if (s.merge_pending) {
            s.id.clear();
            changed = true;
          }
          continue;
        }
        const AgentLv& lv = it->second;
        if (lv.snapshot_invalid != s.invalid) {
          s.invalid = lv.snapshot_invalid;
          changed = true;
          if (s.invalid)
            spdlog::error(
                "snapshot {} of volume {} overflowed and is invalid; only deleting it "
                "is left",
                s.name, next.name);
        }
        if (lv.data_percent && lv.data_percent != s.fill_percent) {
          s.fill_percent = lv.data_percent;
          changed = true;
        }
        if (lv.size_bytes != s.size_bytes) {
          s.size_bytes = lv.size_bytes;
          changed = true;
        }
        const double fill = s.fill_percent.value_or(0);
        if (fill >= config_.snapshot_warn_percent && !s.invalid) {
          if (warned_.insert(s.id).second) {
            ++warnings_;
            spdlog::warn("snapshot {} of volume {} is {:.1f}% full (COW room {} bytes)", s.name,
                         next.name, fill, s.size_bytes);
          }
        } else {
          warned_.erase(s.id);
        }
        const int threshold = config_.snapshot_autoextend_threshold_percent;
        if (threshold > 0 && fill >= threshold && !s.invalid && lv.activation != LvMode::inactive) {
          std::uint64_t more =
              s.size_bytes * static_cast<std::uint64_t>(config_.snapshot_autoextend_percent) / 100;
          more = (more + 511) / 512 * 512;
          for (const auto& h : plan.hosts) {
            // The snapshot is active on exactly one of the listed hosts: its VM's.
            const Vm* vm = d.find_vm(next.attached_to);
            if (vm && vm->host == h.name) grows.push_back({h, next.name, s, s.size_bytes + more});
          }
        }
      }
      std::erase_if(next.snapshots, [](const Snapshot& s) { return s.id.empty(); });
      if (changed) {
        next.updated_at = clock_.now();
        b.put_volumes.push_back(std::move(next));
      }
    }
    return {};
  });
  if (!st)
    spdlog::warn("storage pool {}: cannot record what was read: {}", pool.name, st.error().message);

  for (const auto& g : grows) {
    const std::string op_id = "autoextend:" + g.snap.id + ":" + std::to_string(g.new_size);
    auto r = agents_.lv_grow(g.host, op_id, pool.vg(), g.snap.lv, g.new_size);
    if (r) {
      ++autoextends_;
      spdlog::info("snapshot {} of volume {} grown to {} bytes ({:.1f}% full)", g.snap.name,
                   g.volume_name, g.new_size, g.snap.fill_percent.value_or(0));
    } else {
      ++autoextend_failures_;
      spdlog::warn("snapshot {} of volume {} could not be grown: {}", g.snap.name, g.volume_name,
                   r.error().message);
    }
  }
}

std::string StorageMonitor::metrics() const {
  struct Counter {
    const char* name;
    const char* help;
    const std::atomic<std::uint64_t>& value;
  };
  const Counter counters[] = {
      {"kvmfleet_snapshot_fill_warnings_total", "Snapshots that crossed snapshot_warn_percent.",
       warnings_},
      {"kvmfleet_snapshot_autoextends_total", "Snapshots grown by the auto-extend threshold.",
       autoextends_},
      {"kvmfleet_snapshot_autoextend_failures_total", "Auto-extends the host refused.",
       autoextend_failures_},
      {"kvmfleet_storage_refresh_errors_total", "Failed reads of a pool's LVs from a host.",
       refresh_errors_},
      {"kvmfleet_storage_pool_connects_total",
       "storage_pool.connect operations the monitor submitted for hosts that joined after "
       "their pool was made.",
       connects_},
      {"kvmfleet_volume_deactivations_total",
       "Volumes deactivated on the host of a VM that stopped by itself.", deactivations_},
      {"kvmfleet_volume_deactivation_failures_total", "Such deactivations the host refused.",
       deactivation_failures_},
      {"kvmfleet_storage_sessions_lost_total",
       "Pool hosts found without a logged-in iSCSI session to the pool's target.", sessions_lost_},
      {"kvmfleet_storage_pool_reconnects_total",
       "storage_pool.connect operations the monitor submitted for listed hosts that could not "
       "use their pool.",
       reconnects_},
  };
  std::ostringstream out;
  for (const auto& c : counters)
    out << "# HELP " << c.name << " " << c.help << "\n# TYPE " << c.name << " counter\n"
        << c.name << " " << c.value.load() << "\n";
  return out.str();
}

}  // namespace kvmfleet
