#pragma once

// Doubles of the storage backends (include/kvmfleet/storage) for agent and
// controller tests. A FakeSharedStorage stands for the SAN plus lvmlockd: one per
// test, shared by the FakeVolumeManager of every host, so that locks behave
// across hosts as tests/kernel-lab/kernel_lab_storage_test.cpp saw them behave:
// exclusive on one host refuses any activation elsewhere, shared on several
// hosts refuses exclusive, locks convert in place (ex<->sh) when no other host
// holds one, an origin with COW snapshots is never shared across hosts, and
// nothing changes in a VG whose lockspace the host has not started.

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvmfleet/storage/iscsi_initiator.hpp"
#include "kvmfleet/storage/storage_names.hpp"
#include "kvmfleet/storage/volume_manager.hpp"

namespace kvmfleet::doubles {

class FakeSharedStorage {
 public:
  struct Lv {
    std::uint64_t size = 0;
    std::string origin;                            // set for a COW snapshot
    std::map<int, storage::LvActivation> holders;  // host_id -> lock held
  };
  struct Vg {
    std::uint64_t size = 0;
    std::uint64_t extent = 4u << 20;
    std::set<int> lockspace;  // hosts that started it
    std::map<std::string, Lv> lvs;
  };

  // Devices of the SAN: path -> bytes. create_shared_vg takes them.
  void add_device(const std::string& path, std::uint64_t bytes) {
    std::lock_guard lk(mu_);
    devices_[path] = bytes;
  }
  // The next call of `op` ("create_lv", "activate", ...) on any host fails with `e`.
  void fail_next(const std::string& op, Error e) {
    std::lock_guard lk(mu_);
    failures_[op].push_back(std::move(e));
  }
  std::optional<Vg> vg(const std::string& name) const {
    std::lock_guard lk(mu_);
    auto it = vgs_.find(name);
    if (it == vgs_.end()) return std::nullopt;
    return it->second;
  }

 private:
  friend class FakeVolumeManager;
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> devices_;
  std::map<std::string, Vg> vgs_;
  std::map<std::string, std::vector<Error>> failures_;
};

class FakeVolumeManager final : public storage::VolumeManager {
 public:
  using Activation = storage::LvActivation;

  FakeVolumeManager(FakeSharedStorage& san, int host_id) : san_(san), host_(host_id) {}

  Status add_device(std::string_view path) override {
    added_devices.emplace_back(path);
    return {};
  }
  std::vector<std::string> added_devices;

  Result<std::vector<storage::PhysicalVolume>> list_pvs() override {
    return std::vector<storage::PhysicalVolume>{};
  }
  Result<std::vector<storage::VolumeGroup>> list_vgs() override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("list_vgs")) return *e;
    std::vector<storage::VolumeGroup> out;
    for (const auto& [name, vg] : san_.vgs_) out.push_back(describe(name, vg));
    return out;
  }
  Result<storage::VolumeGroup> get_vg(std::string_view vg) override {
    std::lock_guard lk(san_.mu_);
    if (auto s = storage::check_vg_name(vg); !s) return s.take_error();
    auto it = san_.vgs_.find(std::string(vg));
    if (it == san_.vgs_.end())
      return not_found("vgs: Volume group \"" + std::string(vg) + "\" not found");
    return describe(it->first, it->second);
  }
  Result<std::vector<storage::LogicalVolume>> list_lvs(std::string_view vg) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("list_lvs")) return *e;
    auto v = find_vg(vg);
    if (!v.ok()) return v.take_error();
    std::vector<storage::LogicalVolume> out;
    for (const auto& [name, lv] : (*v)->lvs) out.push_back(describe(std::string(vg), name, **v));
    return out;
  }
  Result<storage::LogicalVolume> get_lv(std::string_view vg, std::string_view lv) override {
    std::lock_guard lk(san_.mu_);
    auto v = find_vg(vg);
    if (!v.ok()) return v.take_error();
    if (!(*v)->lvs.count(std::string(lv))) {
      return not_found("lvs: Failed to find logical volume \"" + std::string(vg) + "/" +
                       std::string(lv) + "\"");
    }
    return describe(std::string(vg), std::string(lv), **v);
  }
  Status create_shared_vg(std::string_view vg, const std::vector<std::string>& devices) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("create_shared_vg")) return *e;
    if (auto s = storage::check_vg_name(vg); !s) return s;
    if (devices.empty()) return invalid("a VG needs at least one device");
    if (san_.vgs_.count(std::string(vg)))
      return conflict("vgcreate: /dev/" + std::string(vg) + ": already exists");
    FakeSharedStorage::Vg v;
    for (const auto& d : devices) {
      auto it = san_.devices_.find(d);
      if (it == san_.devices_.end()) return not_found("vgcreate: Couldn't find device " + d);
      v.size += it->second - (std::uint64_t{1} << 30);  // the lvmlock LV takes 1 GiB
    }
    v.lockspace.insert(host_);
    san_.vgs_[std::string(vg)] = std::move(v);
    return ok_status();
  }
  Status lock_start(std::string_view vg) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("lock_start")) return *e;
    auto it = san_.vgs_.find(std::string(vg));
    if (it == san_.vgs_.end())
      return not_found("vgchange: Volume group \"" + std::string(vg) + "\" not found");
    it->second.lockspace.insert(host_);
    return ok_status();
  }
  Status lock_stop(std::string_view vg) override {
    std::lock_guard lk(san_.mu_);
    auto v = find_vg(vg);
    if (!v.ok()) return v.take_error();
    for (const auto& [_, lv] : (*v)->lvs) {
      if (lv.holders.count(host_))
        return conflict("vgchange: VG stop failed: LVs must first be deactivated");
    }
    (*v)->lockspace.erase(host_);
    return ok_status();
  }
  Status create_lv(std::string_view vg, std::string_view lv, std::uint64_t size_bytes,
                   const storage::LvCreateOptions& options) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("create_lv")) return *e;
    if (auto s = storage::check_lv_name(lv); !s) return s;
    if (auto s = storage::check_size_bytes("size", size_bytes); !s) return s;
    auto v = locked_vg(vg);
    if (!v.ok()) return v.take_error();
    if ((*v)->lvs.count(std::string(lv)))
      return conflict("lvcreate: Logical Volume \"" + std::string(lv) + "\" already exists");
    auto size = round_up(size_bytes, (*v)->extent);
    if (size > free_of(**v))
      return Error(ErrorCode::insufficient_capacity, "lvcreate: insufficient free space");
    FakeSharedStorage::Lv l;
    l.size = size;
    if (options.activate_exclusive) l.holders[host_] = Activation::exclusive;
    (*v)->lvs[std::string(lv)] = std::move(l);
    return ok_status();
  }
  Status extend_lv(std::string_view vg, std::string_view lv, std::uint64_t new_size) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("extend_lv")) return *e;
    if (auto s = storage::check_size_bytes("new size", new_size); !s) return s;
    auto l = locked_lv(vg, lv);
    if (!l.ok()) return l.take_error();
    auto& vgr = san_.vgs_.at(std::string(vg));
    auto size = round_up(new_size, vgr.extent);
    if (size == (*l)->size) return ok_status();
    if (size < (*l)->size) return invalid("lvextend: New size not larger than existing size");
    if (size - (*l)->size > free_of(vgr))
      return Error(ErrorCode::insufficient_capacity, "lvextend: Insufficient free space");
    (*l)->size = size;
    return ok_status();
  }
  Status remove_lv(std::string_view vg, std::string_view lv) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("remove_lv")) return *e;
    auto l = locked_lv(vg, lv);
    if (!l.ok()) return l.take_error();
    auto& lvs = san_.vgs_.at(std::string(vg)).lvs;
    for (const auto& [_, other] : lvs) {
      if (other.origin == lv) return conflict("LV has snapshots; remove or merge them first");
    }
    if ((*l)->holders.count(host_))
      return conflict("LV is active on this host; deactivate it first");
    if (!(*l)->holders.empty()) return conflict("lvremove: LV locked by other host");
    lvs.erase(std::string(lv));
    return ok_status();
  }
  Status activate(std::string_view vg, std::string_view lv, Activation mode) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("activate")) return *e;
    auto l = locked_lv(vg, lv);
    if (!l.ok()) return l.take_error();
    auto& holders = (*l)->holders;
    if (mode == Activation::inactive) {
      holders.erase(host_);
      return ok_status();
    }
    const auto& lvs = san_.vgs_.at(std::string(vg)).lvs;
    bool has_snapshots =
        std::any_of(lvs.begin(), lvs.end(), [&](const auto& kv) { return kv.second.origin == lv; });
    for (const auto& [host, held] : holders) {
      if (host == host_) continue;
      if (mode == Activation::exclusive || held == Activation::exclusive || has_snapshots) {
        return conflict("lvchange: LV locked by other host: " + std::string(vg) + "/" +
                        std::string(lv));
      }
    }
    holders[host_] = mode;
    return ok_status();
  }
  Status create_snapshot(std::string_view vg, std::string_view origin, std::string_view snapshot,
                         std::uint64_t cow_bytes) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("create_snapshot")) return *e;
    if (auto s = storage::check_lv_name(snapshot); !s) return s;
    if (auto s = storage::check_size_bytes("snapshot size", cow_bytes); !s) return s;
    auto o = locked_lv(vg, origin);
    if (!o.ok()) return o.take_error();
    for (const auto& [host, _] : (*o)->holders) {
      if (host != host_) return conflict("lvcreate: LV locked by other host");
    }
    auto& v = san_.vgs_.at(std::string(vg));
    if (v.lvs.count(std::string(snapshot))) return conflict("lvcreate: already exists");
    auto size = round_up(cow_bytes, v.extent);
    if (size > free_of(v))
      return Error(ErrorCode::insufficient_capacity, "lvcreate: insufficient free space");
    FakeSharedStorage::Lv s;
    s.size = size;
    s.origin = std::string(origin);
    s.holders = (*o)->holders;
    v.lvs[std::string(snapshot)] = std::move(s);
    return ok_status();
  }
  Status merge_snapshot(std::string_view vg, std::string_view snapshot) override {
    std::lock_guard lk(san_.mu_);
    if (auto e = injected("merge_snapshot")) return *e;
    auto s = locked_lv(vg, snapshot);
    if (!s.ok()) return s.take_error();
    if ((*s)->origin.empty()) return invalid("LV " + std::string(snapshot) + " is not a snapshot");
    san_.vgs_.at(std::string(vg)).lvs.erase(std::string(snapshot));
    return ok_status();
  }

 private:
  static std::uint64_t round_up(std::uint64_t v, std::uint64_t unit) {
    return (v + unit - 1) / unit * unit;
  }
  static std::uint64_t free_of(const FakeSharedStorage::Vg& vg) {
    std::uint64_t used = 0;
    for (const auto& [_, lv] : vg.lvs) used += lv.size;
    return vg.size > used ? vg.size - used : 0;
  }
  std::optional<Error> injected(const std::string& op) {
    auto it = san_.failures_.find(op);
    if (it == san_.failures_.end() || it->second.empty()) return std::nullopt;
    Error e = it->second.front();
    it->second.erase(it->second.begin());
    return e;
  }
  Result<FakeSharedStorage::Vg*> find_vg(std::string_view vg) {
    if (auto s = storage::check_vg_name(vg); !s) return s.take_error();
    auto it = san_.vgs_.find(std::string(vg));
    if (it == san_.vgs_.end())
      return not_found("Volume group \"" + std::string(vg) + "\" not found");
    return &it->second;
  }
  // A VG this host may change: its lockspace must be started here.
  Result<FakeSharedStorage::Vg*> locked_vg(std::string_view vg) {
    auto v = find_vg(vg);
    if (!v.ok()) return v;
    if (!(*v)->lockspace.count(host_)) {
      return unavailable("Cannot access VG " + std::string(vg) + " due to failed lock");
    }
    return v;
  }
  Result<FakeSharedStorage::Lv*> locked_lv(std::string_view vg, std::string_view lv) {
    if (auto s = storage::check_lv_name(lv); !s) return s.take_error();
    auto v = locked_vg(vg);
    if (!v.ok()) return v.take_error();
    auto it = (*v)->lvs.find(std::string(lv));
    if (it == (*v)->lvs.end()) {
      return not_found("Failed to find logical volume \"" + std::string(vg) + "/" +
                       std::string(lv) + "\"");
    }
    return &it->second;
  }
  storage::VolumeGroup describe(const std::string& name, const FakeSharedStorage::Vg& v) const {
    storage::VolumeGroup out;
    out.name = name;
    out.size_bytes = v.size;
    out.free_bytes = free_of(v);
    out.extent_bytes = v.extent;
    out.lock_type = "sanlock";
    out.shared = true;
    out.pv_count = 1;
    out.lv_count = static_cast<int>(v.lvs.size());
    for (const auto& [_, lv] : v.lvs) out.snap_count += lv.origin.empty() ? 0 : 1;
    return out;
  }
  storage::LogicalVolume describe(const std::string& vg, const std::string& name,
                                  const FakeSharedStorage::Vg& v) const {
    const auto& lv = v.lvs.at(name);
    storage::LogicalVolume out;
    out.name = name;
    out.vg_name = vg;
    out.uuid = vg + "-" + name;
    out.size_bytes = lv.size;
    out.path = "/dev/" + vg + "/" + name;
    out.origin = lv.origin;
    out.is_snapshot = !lv.origin.empty();
    out.is_origin = std::any_of(v.lvs.begin(), v.lvs.end(),
                                [&](const auto& kv) { return kv.second.origin == name; });
    if (out.is_snapshot) out.data_percent = 0.0;
    auto held = lv.holders.find(host_);
    out.active = held != lv.holders.end();
    out.activation = out.active ? held->second : Activation::inactive;
    out.attr = std::string(out.is_snapshot ? "s"
                           : out.is_origin ? "o"
                                           : "-") +
               "wi-" + (out.active ? "a" : "-") + "-----";
    return out;
  }

  FakeSharedStorage& san_;
  int host_;
};

// IscsiInitiator double: portals advertise targets; login needs a discovered
// target and, where set, the right CHAP credentials (else invalid_argument).
class FakeIscsiInitiator final : public storage::IscsiInitiator {
 public:
  void add_target(const std::string& portal, const std::string& iqn,
                  std::optional<storage::ChapCredentials> chap = std::nullopt) {
    portals_[portal].push_back(iqn);
    if (chap) chap_[iqn] = *chap;
  }
  Result<std::vector<storage::IscsiTarget>> discover(std::string_view portal) override {
    auto p = storage::normalize_portal(portal);
    if (!p.ok()) return p.take_error();
    auto it = portals_.find(*p);
    if (it == portals_.end())
      return unavailable("iscsiadm discovery: cannot make connection to " + *p);
    std::vector<storage::IscsiTarget> out;
    for (const auto& iqn : it->second) {
      out.push_back({iqn, *p, 1});
      discovered_.insert({iqn, *p});
    }
    return out;
  }
  Status login(std::string_view iqn, std::string_view portal,
               const std::optional<storage::ChapCredentials>& chap) override {
    if (auto s = storage::check_iscsi_name(iqn); !s) return s;
    auto p = storage::normalize_portal(portal);
    if (!p.ok()) return p.take_error();
    std::pair<std::string, std::string> key{std::string(iqn), *p};
    if (!discovered_.count(key)) return not_found("iscsiadm: No records found");
    auto need = chap_.find(key.first);
    if (need != chap_.end() && (!chap || chap->username != need->second.username ||
                                chap->password != need->second.password)) {
      return invalid(
          "iscsiadm -m node failed (exit 24): authorization failure (CHAP credentials missing or "
          "wrong)");
    }
    if (!sessions_.count(key)) sessions_[key] = next_sid_++;
    return ok_status();
  }
  Status logout(std::string_view iqn, std::string_view portal) override {
    auto p = storage::normalize_portal(portal);
    if (!p.ok()) return p.take_error();
    sessions_.erase({std::string(iqn), *p});
    return ok_status();
  }
  Result<std::vector<storage::IscsiSession>> sessions() override {
    std::vector<storage::IscsiSession> out;
    for (const auto& [key, sid] : sessions_) {
      storage::IscsiSession s;
      s.sid = sid;
      s.target = key.first;
      s.portal = key.second;
      s.connection_state = "LOGGED IN";
      s.session_state = "LOGGED_IN";
      s.luns = {{0, "", ""},
                {1, "/dev/sd" + std::string(1, static_cast<char>('a' + sid - 1)), "running"}};
      out.push_back(std::move(s));
    }
    return out;
  }
  Status rescan() override { return ok_status(); }
  Result<std::string> lun_device(std::string_view iqn, std::string_view portal, int lun) override {
    auto p = storage::normalize_portal(portal);
    if (!p.ok()) return p.take_error();
    if (!sessions_.count({std::string(iqn), *p}) || lun != 1) return not_found("no such LUN");
    return storage::iscsi_by_path(iqn, *p, lun);
  }

 private:
  std::map<std::string, std::vector<std::string>> portals_;
  std::map<std::string, storage::ChapCredentials> chap_;
  std::set<std::pair<std::string, std::string>> discovered_;
  std::map<std::pair<std::string, std::string>, int> sessions_;
  int next_sid_ = 1;
};

}  // namespace kvmfleet::doubles
