#pragma once

#include "kvmfleet/core/agent_api.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace kvmfleet::doubles {

// AgentApi double: an in-memory "libvirt" per host, with a call log and injectable
// failures. shutdown() leaves the domain running unless `acpi_works` is set.
// Shared storage is one in-memory cluster-wide LVM with lvmlockd's rules: an LV is
// active exclusively on one host or shared on several, never both; a domain whose
// block disk is not active on its host does not start, and a migration fails unless
// the destination has the LV active.
class FakeAgentApi final : public AgentApi {
 public:
  struct Call {
    std::string host, name, op_id, uuid;
  };

  Result<HostInventory> inventory(const Host& h) override {
    std::lock_guard lk(mu_);
    HostInventory inv;
    inv.stamp = next_stamp_locked(h.name);  // before it looks, as the agent's is
    inv.hostname = h.name;
    for (auto& [uuid, d] : domains_[h.name]) inv.domains.push_back(d);
    inv.links = links_[h.name];
    return inv;
  }
  Result<DomainStatus> get_domain(const Host& h, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    return stamped_locked(h.name, it->second);
  }
  // Each host's agent stamps its answers as the real one does (one run per host): a
  // test takes a stamp to make a report observed at that point.
  ReportStamp next_stamp(const std::string& host) {
    std::lock_guard lk(mu_);
    return next_stamp_locked(host);
  }
  Result<DomainStatus> define(const Host& h, const std::string& op, const DomainSpec& s) override {
    std::lock_guard lk(mu_);
    log(h, "define", op, s.uuid);
    if (auto e = injected("define")) return *e;
    auto& d = domains_[h.name][s.uuid];
    d.uuid = s.uuid;
    d.name = s.name;
    if (d.state.empty()) d.state = "stopped";
    d.managed = true;
    d.generation = s.generation;
    specs_[s.uuid] = s;
    return stamped_locked(h.name, d);
  }
  Result<DomainStatus> start(const Host& h, const std::string& op,
                             const std::string& uuid) override {
    {
      std::lock_guard lk(mu_);
      if (auto e = block_disks_inactive(h.name, uuid)) {
        log(h, "start", op, uuid);
        return *e;
      }
    }
    return act(h, "start", op, uuid, "running");
  }
  Result<DomainStatus> shutdown(const Host& h, const std::string& op,
                                const std::string& uuid) override {
    return act(h, "shutdown", op, uuid, acpi_works ? "stopped" : "");
  }
  Result<DomainStatus> reboot(const Host& h, const std::string& op,
                              const std::string& uuid) override {
    return act(h, "reboot", op, uuid, "running");
  }
  Result<DomainStatus> destroy(const Host& h, const std::string& op,
                               const std::string& uuid) override {
    return act(h, "destroy", op, uuid, "stopped");
  }
  Status undefine(const Host& h, const std::string& op, const std::string& uuid, bool) override {
    std::lock_guard lk(mu_);
    log(h, "undefine", op, uuid);
    if (auto e = injected("undefine")) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it != m.end() && it->second.state == "running") return conflict("domain is running");
    m.erase(uuid);
    return {};
  }

  // Migration completes at once unless `hold_migrations`; the destination is found
  // by the address in the URI (see `address_of`).
  Result<MigrationStatus> migrate(const Host& src, const std::string& uuid,
                                  const MigrationRequest& req) override {
    std::lock_guard lk(mu_);
    log(src, "migrate", req.op_id, uuid);
    if (auto e = injected("migrate")) return *e;
    auto& m = domains_[src.name];
    if (!m.count(uuid)) return not_found("no domain");
    requests_[uuid] = req;
    auto& st = migrations_[uuid];
    st = MigrationStatus{};
    st.op_id = req.op_id;
    st.state = MigrationState::running;
    st.data_total = 64 << 20;
    pending_dest_[uuid] = {src.name, req.destination_uri};
    if (!hold_migrations) complete_locked(uuid);
    return st;
  }
  Result<MigrationStatus> migration_status(const Host& h, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    MigrationStatus st = migrations_[uuid];
    st.stamp = next_stamp_locked(h.name);
    return st;
  }
  Result<MigrationStatus> abort_migration(const Host& src, const std::string& op,
                                          const std::string& uuid) override {
    std::lock_guard lk(mu_);
    log(src, "abort_migration", op, uuid);
    auto& st = migrations_[uuid];
    if (st.state == MigrationState::running) st.state = MigrationState::cancelled;
    return st;
  }
  // NICs: the domain's spec (as last defined) takes or loses the NIC, its generation
  // set; `detach_pending` answers a detach on a running domain as a guest that has not
  // let the NIC go.
  Result<DomainStatus> attach_nic(const Host& h, const std::string& op, const std::string& uuid,
                                  const DomainNic& nic, std::int64_t generation) override {
    std::lock_guard lk(mu_);
    log(h, "attach_nic", op, uuid);
    if (auto e = injected("attach_nic")) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    auto& nics = specs_[uuid].nics;
    if (std::none_of(nics.begin(), nics.end(),
                     [&](const DomainNic& n) { return n.mac == nic.mac; }))
      nics.push_back(nic);
    it->second.generation = generation;
    return stamped_locked(h.name, it->second);
  }
  Result<DomainStatus> detach_nic(const Host& h, const std::string& op, const std::string& uuid,
                                  const std::string& mac, std::int64_t generation) override {
    std::lock_guard lk(mu_);
    log(h, "detach_nic", op, uuid);
    if (auto e = injected("detach_nic")) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    if (detach_pending && it->second.state == "running")
      return Error(ErrorCode::conflict, "the guest has not let the NIC go",
                   {{"reason", "detach_pending"}, {"mac", mac}});
    std::erase_if(specs_[uuid].nics, [&](const DomainNic& n) { return n.mac == mac; });
    it->second.generation = generation;
    return stamped_locked(h.name, it->second);
  }
  bool detach_pending = false;

  // Boot media: what each host holds, by uuid (paths under /pool of that host).
  Result<MigrationMedia> prepare_media(const Host& h, const std::string& op,
                                       const DomainSpec& s) override {
    std::lock_guard lk(mu_);
    log(h, "prepare_media", op, s.uuid);
    if (auto e = injected("prepare_media")) return *e;
    MigrationMedia m;
    if (s.cdrom) m.cdrom = "/" + h.name + "/pool/cache/" + s.cdrom->image_sha256 + ".img";
    if (s.cloud_init) m.seed = "/" + h.name + "/pool/" + s.uuid + "-seed.iso";
    media_[h.name][s.uuid] = m;
    return m;
  }
  Status remove_media(const Host& h, const std::string& op, const std::string& uuid,
                      const std::string&) override {
    std::lock_guard lk(mu_);
    log(h, "remove_media", op, uuid);
    if (auto e = injected("remove_media")) return *e;
    if (domains_[h.name].count(uuid)) return conflict("domain is defined on this host");
    media_[h.name].erase(uuid);
    return {};
  }
  // The media a host holds for a domain (none: empty).
  MigrationMedia media_on(const std::string& host, const std::string& uuid) {
    std::lock_guard lk(mu_);
    auto it = media_[host].find(uuid);
    return it == media_[host].end() ? MigrationMedia{} : it->second;
  }
  // The last migration request sent for a domain.
  MigrationRequest last_migration_request(const std::string& uuid) {
    std::lock_guard lk(mu_);
    return requests_[uuid];
  }

  void complete_migration(const std::string& uuid) {
    std::lock_guard lk(mu_);
    complete_locked(uuid);
  }
  // The source agent restarted: it no longer knows the migration (state none).
  void forget_migration(const std::string& uuid) {
    std::lock_guard lk(mu_);
    migrations_[uuid] = MigrationStatus{};
  }
  std::map<std::string, std::string> address_of;  // migration address → host name
  bool hold_migrations = false;

  // --- shared storage
  struct FakeLv {
    std::uint64_t size = 0;
    std::string origin;
    double fill = 0;
    std::map<std::string, LvMode> active;  // host → mode
  };
  struct FakeVg {
    std::uint64_t size = 0;
    std::set<std::string> lockstarted;
    std::map<std::string, FakeLv> lvs;
    std::uint64_t used() const {
      std::uint64_t u = 0;
      for (auto& [_, l] : lvs) u += l.size;
      return u;
    }
  };
  std::uint64_t lun_bytes = std::uint64_t{10} << 30;
  std::map<std::string, FakeVg> vgs;
  std::map<std::string, std::set<std::string>> sessions;  // host → "iqn|lun"
  bool guest_agent = true;
  int frozen = 0;  // filesystems frozen now, over all guests

  Result<int> fs_freeze(const Host& h, const std::string& op, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    log(h, "fs_freeze", op, uuid);
    if (auto e = injected("fs_freeze")) return *e;
    if (!guest_agent)
      return conflict("QEMU guest agent is not connected", {{"reason", "guest_agent_unavailable"}});
    frozen += 2;
    return 2;
  }
  Result<int> fs_thaw(const Host& h, const std::string& op, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    log(h, "fs_thaw", op, uuid);
    if (auto e = injected("fs_thaw")) return *e;
    const int n = frozen;
    frozen = 0;
    return n;
  }
  // Whether each host's lock daemons run (default: yes).
  std::map<std::string, bool> lock_daemons_down;
  Result<nlohmann::json> storage_inventory(const Host& h) override {
    std::lock_guard lk(mu_);
    log(h, "storage_inventory", "", "");
    if (auto e = injected("storage_inventory")) return *e;
    const bool down = lock_daemons_down[h.name];
    nlohmann::json vgs = nlohmann::json::array();
    for (auto& [name, g] : vgs_of_host(h.name))
      vgs.push_back(
          {{"name", name}, {"lockspace_started", !down && g->lockstarted.count(h.name) > 0}});
    nlohmann::json iscsi = nlohmann::json::array();
    for (const auto& key : sessions[h.name]) {
      const std::string iqn = key.substr(0, key.find('|'));
      iscsi.push_back({{"target", iqn},
                       {"portal", "10.77.0.1:3260"},
                       {"state", failed_sessions[h.name].count(iqn) ? "FAILED" : "LOGGED_IN"},
                       {"disks", nlohmann::json::array()}});
    }
    return nlohmann::json{{"locks", {{"wdmd", !down}, {"sanlock", !down}, {"lvmlockd", !down}}},
                          {"vgs", vgs},
                          {"iscsi_sessions", iscsi},
                          {"errors", nlohmann::json::array()}};
  }
  // host → IQNs whose session the inventory reports FAILED (the target went away).
  std::map<std::string, std::set<std::string>> failed_sessions;
  // A host lost its lockspaces (a reboot, say).
  void drop_lockspaces(const std::string& host) {
    std::lock_guard lk(mu_);
    for (auto& [_, g] : vgs) g.lockstarted.erase(host);
  }
  // What each portal offers (portal → IQNs); a portal not listed offers every IQN.
  std::map<std::string, std::vector<std::string>> portal_targets;
  std::map<std::string, std::set<std::string>> discovered;  // host → portals
  Result<std::vector<std::string>> iscsi_discover(const Host& h, const std::string& op,
                                                  const std::string& portal) override {
    std::lock_guard lk(mu_);
    log(h, "iscsi_discover", op, portal);
    discovered[h.name].insert(portal);
    auto it = portal_targets.find(portal);
    if (it != portal_targets.end()) return it->second;
    std::vector<std::string> all;
    for (const auto& [_, ts] : portal_targets) all.insert(all.end(), ts.begin(), ts.end());
    all.push_back("iqn.2026-01.io.kvmfleet:lun1");
    all.push_back("iqn.2026-01.io.kvmfleet:lun2");
    return all;
  }
  Result<std::string> iscsi_login(const Host& h, const std::string& op,
                                  const IscsiPoolTarget& t) override {
    std::lock_guard lk(mu_);
    log(h, "iscsi_login", op, t.iqn);
    if (auto e = injected("iscsi_login")) return *e;
    if (auto e = injected("iscsi_login:" + h.name)) return *e;
    // Like iscsiadm: no node record for a target never discovered.
    if (!discovered[h.name].count(t.portal)) return not_found("iscsiadm: No records found");
    sessions[h.name].insert(t.iqn + "|" + std::to_string(t.lun));
    return device_of(t);
  }
  Status iscsi_logout(const Host& h, const std::string& op, const IscsiPoolTarget& t) override {
    std::lock_guard lk(mu_);
    log(h, "iscsi_logout", op, t.iqn);
    sessions[h.name].erase(t.iqn + "|" + std::to_string(t.lun));
    return {};
  }
  Result<std::vector<std::string>> fc_attach(const Host& h, const std::string& op,
                                             const std::vector<std::string>& wwids) override {
    std::lock_guard lk(mu_);
    log(h, "fc_attach", op, "");
    std::vector<std::string> out;
    for (const auto& w : wwids) {
      auto it = std::find_if(fc[h.name].begin(), fc[h.name].end(),
                             [&](const auto& l) { return l.first == w; });
      if (it == fc[h.name].end()) return not_found("this host sees no FC LUN with WWID " + w);
      out.push_back(it->second);
    }
    return out;
  }
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> fc;  // host → (wwid, dev)

  Status vg_create(const Host& h, const std::string& op, const std::string& vg,
                   const std::vector<std::string>& devices) override {
    std::lock_guard lk(mu_);
    log(h, "vg_create", op, vg);
    if (auto e = injected("vg_create")) return *e;
    if (vgs.count(vg)) return conflict("VG exists");
    vgs[vg].size = lun_bytes * devices.size();
    vgs[vg].lockstarted.insert(h.name);
    return {};
  }
  Status vg_lockstart(const Host& h, const std::string& op, const std::string& vg) override {
    std::lock_guard lk(mu_);
    log(h, "vg_lockstart", op, vg);
    if (auto e = injected("vg_lockstart:" + h.name)) return *e;
    if (lock_daemons_down[h.name]) return unavailable("lvmlockd is not running");
    if (!vgs.count(vg)) return not_found("no VG " + vg);
    vgs[vg].lockstarted.insert(h.name);
    return {};
  }
  Status vg_lockstop(const Host& h, const std::string& op, const std::string& vg) override {
    std::lock_guard lk(mu_);
    log(h, "vg_lockstop", op, vg);
    if (!vgs.count(vg)) return {};
    for (auto& [_, l] : vgs[vg].lvs)
      if (l.active.count(h.name)) return conflict("LVs of the VG are active on " + h.name);
    vgs[vg].lockstarted.erase(h.name);
    return {};
  }
  Result<AgentVg> vg_get(const Host& h, const std::string& vg) override {
    std::lock_guard lk(mu_);
    auto it = vgs.find(vg);
    if (it == vgs.end()) return not_found("no VG " + vg);
    (void)h;
    return AgentVg{it->second.size, it->second.size - it->second.used()};
  }
  Result<std::vector<AgentLv>> lv_list(const Host& h, const std::string& vg) override {
    std::lock_guard lk(mu_);
    auto it = vgs.find(vg);
    if (it == vgs.end()) return not_found("no VG " + vg);
    std::vector<AgentLv> out;
    for (auto& [name, l] : it->second.lvs) {
      AgentLv a;
      a.name = name;
      a.size_bytes = l.size;
      a.origin = l.origin;
      auto m = l.active.find(h.name);
      a.activation = m == l.active.end() ? LvMode::inactive : m->second;
      if (!l.origin.empty()) a.data_percent = l.fill;
      out.push_back(a);
    }
    return out;
  }
  Status lv_create(const Host& h, const std::string& op, const std::string& vg,
                   const std::string& lv, std::uint64_t size) override {
    std::lock_guard lk(mu_);
    log(h, "lv_create", op, vg + "/" + lv);
    if (auto e = injected("lv_create")) return *e;
    auto* g = lockstarted_vg(h.name, vg);
    if (!g) return conflict("lockspace not started");
    if (g->lvs.count(lv)) return conflict("LV exists");
    size = (size + (4 << 20) - 1) / (4 << 20) * (4 << 20);  // whole 4 MiB extents
    if (g->used() + size > g->size) return Error(ErrorCode::insufficient_capacity, "no space");
    g->lvs[lv].size = size;
    g->lvs[lv].active[h.name] = LvMode::exclusive;
    return {};
  }
  Status lv_grow(const Host& h, const std::string& op, const std::string& vg, const std::string& lv,
                 std::uint64_t size) override {
    std::lock_guard lk(mu_);
    log(h, "lv_grow", op, vg + "/" + lv);
    if (auto e = injected("lv_grow")) return *e;
    auto* l = find_lv(vg, lv);
    if (!l) return not_found("no LV");
    // lvmlockd: lvextend needs the LV's lock in ex mode, which another host's
    // activation, or a shared one, holds.
    for (auto& [host, m] : l->active) {
      if (host != h.name) return conflict("LV locked by other host " + host);
      if (m == LvMode::shared) return conflict("LV is active shared");
    }
    if (size < l->size) return invalid("not larger");
    l->size = size;  // equal: a retried grow finds it done
    return {};
  }
  // What block_resize told each running domain: uuid → device → bytes.
  std::map<std::string, std::map<std::string, std::uint64_t>> disk_sizes;
  Status block_resize(const Host& h, const std::string& op, const std::string& uuid,
                      const std::string& device, std::uint64_t size) override {
    std::lock_guard lk(mu_);
    log(h, "block_resize", op, uuid);
    if (auto e = injected("block_resize")) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    if (it->second.state != "running") return conflict("domain " + uuid + " is not running");
    disk_sizes[uuid][device] = size;
    return {};
  }
  Status lv_delete(const Host& h, const std::string& op, const std::string& vg,
                   const std::string& lv) override {
    std::lock_guard lk(mu_);
    log(h, "lv_delete", op, vg + "/" + lv);
    auto* l = find_lv(vg, lv);
    if (!l) return not_found("no LV");
    for (auto& [host, m] : l->active)
      if (host != h.name) return conflict("LV locked by other host " + host);
    for (auto& [name, other] : vgs[vg].lvs)
      if (other.origin == lv) return conflict("LV has snapshots");
    vgs[vg].lvs.erase(lv);
    return {};
  }
  Status lv_activate(const Host& h, const std::string& op, const std::string& vg,
                     const std::string& lv, LvMode mode) override {
    std::lock_guard lk(mu_);
    log(h, std::string("lv_activate:") + std::string(to_string(mode)), op, vg + "/" + lv);
    if (auto e = injected("lv_activate")) return *e;
    if (!lockstarted_vg(h.name, vg)) return conflict("lockspace not started on " + h.name);
    auto* l = find_lv(vg, lv);
    if (!l) return not_found("no LV");
    if (mode == LvMode::inactive) {
      l->active.erase(h.name);
      for (auto& [_, s] : vgs[vg].lvs)
        if (s.origin == lv) s.active.erase(h.name);
      return {};
    }
    for (auto& [host, m] : l->active) {
      if (host == h.name) continue;
      if (mode == LvMode::exclusive || m == LvMode::exclusive)
        return conflict("LV locked by other host " + host);
    }
    if (mode == LvMode::shared)
      for (auto& [_, s] : vgs[vg].lvs)
        if (s.origin == lv) return conflict("cannot share an origin with snapshots");
    l->active[h.name] = mode;
    return {};
  }
  Status lv_snapshot(const Host& h, const std::string& op, const std::string& vg,
                     const std::string& origin, const std::string& snap,
                     std::uint64_t size) override {
    std::lock_guard lk(mu_);
    log(h, "lv_snapshot", op, vg + "/" + origin);
    if (auto e = injected("lv_snapshot")) return *e;
    auto* o = find_lv(vg, origin);
    if (!o) return not_found("no origin");
    auto m = o->active.find(h.name);
    if (m == o->active.end() || m->second != LvMode::exclusive)
      return conflict("origin not active exclusively here");
    if (vgs[vg].used() + size > vgs[vg].size)
      return Error(ErrorCode::insufficient_capacity, "Volume group has insufficient free space");
    auto& s = vgs[vg].lvs[snap];
    s.size = size;
    s.origin = origin;
    s.active[h.name] = LvMode::exclusive;
    return {};
  }
  Status lv_merge(const Host& h, const std::string& op, const std::string& vg,
                  const std::string& snap) override {
    std::lock_guard lk(mu_);
    log(h, "lv_merge", op, vg + "/" + snap);
    auto* s = find_lv(vg, snap);
    if (!s || s->origin.empty()) return not_found("no snapshot");
    // Nothing holds the origin open here (the controller reverts stopped VMs only): the
    // merge is done at once.
    vgs[vg].lvs.erase(snap);
    return {};
  }
  // Networks: each host's links as the double keeps them; ensure makes what a real
  // agent would (VLAN sub-interface and bridge) and refuses a plain network whose
  // bridge the host lacks.
  Result<std::vector<std::string>> network_ensure(const Host& h, const std::string& op,
                                                  const Network& n) override {
    std::lock_guard lk(mu_);
    log(h, "network_ensure", op, n.name);
    if (auto e = injected("network_ensure:" + h.name)) return *e;
    auto& links = links_[h.name];
    auto find = [&](const std::string& name) -> HostLink* {
      for (auto& l : links)
        if (l.name == name) return &l;
      return nullptr;
    };
    std::vector<std::string> created;
    if (!n.vlan) {
      HostLink* br = find(n.bridge);
      if (!br || br->kind != LinkKind::bridge) return not_found("no bridge " + n.bridge);
      br->up = true;
      br->mtu = n.mtu;
      return created;
    }
    if (!find(n.uplink)) return not_found("no link " + n.uplink);
    const std::string sub = n.vlan_interface();
    if (!find(sub)) {
      links.push_back({sub, LinkKind::vlan, n.mtu, true, n.vlan, n.uplink, ""});
      created.push_back(sub);
    }
    if (!find(n.bridge)) {
      links.push_back({n.bridge, LinkKind::bridge, n.mtu, true, std::nullopt, "", ""});
      created.push_back(n.bridge);
    }
    find(sub)->master = n.bridge;
    find(sub)->up = find(n.bridge)->up = true;
    find(sub)->mtu = find(n.bridge)->mtu = n.mtu;
    return created;
  }
  // A host's links, as its inventory would report them.
  std::vector<HostLink> links_of(const std::string& host) {
    std::lock_guard lk(mu_);
    return links_[host];
  }
  void set_links(const std::string& host, std::vector<HostLink> links) {
    std::lock_guard lk(mu_);
    links_[host] = std::move(links);
  }

  // Who holds the LV, by host.
  std::map<std::string, LvMode> holders(const std::string& vg, const std::string& lv) {
    std::lock_guard lk(mu_);
    auto* l = find_lv(vg, lv);
    return l ? l->active : std::map<std::string, LvMode>{};
  }

  // `host` lost power: its domains are gone and, once its storage lease has expired,
  // lvmlockd no longer counts its LV locks (what sanlock tells the other hosts).
  void power_off(const std::string& host) {
    std::lock_guard lk(mu_);
    for (auto& [uuid, d] : domains_[host]) d.state = "stopped";
  }
  void lease_expired(const std::string& host) {
    std::lock_guard lk(mu_);
    for (auto& [vg_name, vg] : vgs)
      for (auto& [lv_name, lv] : vg.lvs) lv.active.erase(host);
  }
  // The domain `uuid` as `host`'s libvirt has it (nullopt: not defined there).
  std::optional<DomainStatus> domain_on(const std::string& host, const std::string& uuid) {
    std::lock_guard lk(mu_);
    auto& m = domains_[host];
    auto it = m.find(uuid);
    return it == m.end() ? std::nullopt : std::optional<DomainStatus>(it->second);
  }

  // Test controls
  void fail_next(const std::string& call, Error e, int times = 1) {
    std::lock_guard lk(mu_);
    for (int i = 0; i < times; ++i) failures_[call].push_back(e);
  }
  std::vector<Call> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  // The spec a domain was last defined with (empty when never).
  DomainSpec spec_of(const std::string& uuid) {
    std::lock_guard lk(mu_);
    auto it = specs_.find(uuid);
    return it == specs_.end() ? DomainSpec{} : it->second;
  }
  int count(const std::string& name) {
    std::lock_guard lk(mu_);
    int n = 0;
    for (auto& c : calls_) n += c.name == name;
    return n;
  }
  void set_state(const std::string& host, const std::string& uuid, const std::string& state) {
    std::lock_guard lk(mu_);
    domains_[host][uuid].state = state;
  }
  bool acpi_works = true;

 private:
  Result<DomainStatus> act(const Host& h, const char* name, const std::string& op,
                           const std::string& uuid, const std::string& next) {
    std::lock_guard lk(mu_);
    log(h, name, op, uuid);
    if (auto e = injected(name)) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    if (!next.empty()) it->second.state = next;
    return stamped_locked(h.name, it->second);
  }
  ReportStamp next_stamp_locked(const std::string& host) {
    return {"agent-" + host, ++report_seq_[host]};
  }
  DomainStatus stamped_locked(const std::string& host, DomainStatus d) {
    d.stamp = next_stamp_locked(host);
    return d;
  }
  void log(const Host& h, const std::string& name, const std::string& op, const std::string& uuid) {
    calls_.push_back({h.name, name, op, uuid});
  }
  std::optional<Error> injected(const std::string& name) {
    auto& q = failures_[name];
    if (q.empty()) return std::nullopt;
    Error e = q.front();
    q.erase(q.begin());
    return e;
  }

  static std::string device_of(const IscsiPoolTarget& t) {
    return "/dev/disk/by-path/ip-" + t.portal + "-iscsi-" + t.iqn + "-lun-" + std::to_string(t.lun);
  }
  std::vector<std::pair<std::string, FakeVg*>> vgs_of_host(const std::string& host) {
    std::vector<std::pair<std::string, FakeVg*>> out;
    if (sessions[host].empty()) return out;  // sees no LUN
    for (auto& [name, g] : vgs) out.emplace_back(name, &g);
    return out;
  }
  FakeVg* lockstarted_vg(const std::string& host, const std::string& vg) {
    auto it = vgs.find(vg);
    if (it == vgs.end() || !it->second.lockstarted.count(host)) return nullptr;
    return &it->second;
  }
  FakeLv* find_lv(const std::string& vg, const std::string& lv) {
    auto it = vgs.find(vg);
    if (it == vgs.end()) return nullptr;
    auto l = it->second.lvs.find(lv);
    return l == it->second.lvs.end() ? nullptr : &l->second;
  }
  // conflict when a block disk of the domain is not active on `host`.
  std::optional<Error> block_disks_inactive(const std::string& host, const std::string& uuid) {
    auto it = specs_.find(uuid);
    if (it == specs_.end()) return std::nullopt;
    for (const auto& d : it->second.disks) {
      if (d.block_device.empty()) continue;
      // /dev/VG/LV
      const auto rest = d.block_device.substr(5);
      const auto slash = rest.find('/');
      auto* l = find_lv(rest.substr(0, slash), rest.substr(slash + 1));
      if (!l || !l->active.count(host))
        return conflict("Cannot access storage file '" + d.block_device + "' on " + host);
    }
    return std::nullopt;
  }

  std::map<std::string, std::map<std::string, MigrationMedia>> media_;  // host → uuid →
  std::map<std::string, MigrationRequest> requests_;                    // by uuid

  void complete_locked(const std::string& uuid) {
    auto [src, uri] = pending_dest_[uuid];
    std::string dest;
    for (auto& [addr, host] : address_of)
      if (uri.find("//" + addr + "/") != std::string::npos) dest = host;
    auto& st = migrations_[uuid];
    if (dest.empty()) {
      st.state = MigrationState::failed;
      st.error = unavailable("unknown destination " + uri);
      return;
    }
    if (auto e = block_disks_inactive(dest, uuid)) {
      st.state = MigrationState::failed;
      st.error = *e;
      return;
    }
    // CD-ROMs: QEMU on the destination opens the files the request names, which its
    // agent must have made.
    if (auto sp = specs_.find(uuid);
        sp != specs_.end() && (sp->second.cdrom || sp->second.cloud_init)) {
      const MigrationMedia& asked = requests_[uuid].media;
      auto made = media_[dest].find(uuid);
      if (made == media_[dest].end() || made->second != asked) {
        st.state = MigrationState::failed;
        st.error = internal_error("Cannot access storage file of a CD-ROM on " + dest);
        return;
      }
    }
    domains_[dest][uuid] = domains_[src][uuid];
    domains_[src].erase(uuid);
    st.state = MigrationState::completed;
    st.data_processed = st.data_total;
  }

  std::mutex mu_;
  std::map<std::string, MigrationStatus> migrations_;
  std::map<std::string, std::uint64_t> report_seq_;  // host → its agent's last stamp
  std::map<std::string, std::pair<std::string, std::string>> pending_dest_;
  std::map<std::string, std::map<std::string, DomainStatus>> domains_;
  std::map<std::string, std::vector<HostLink>> links_;
  std::map<std::string, DomainSpec> specs_;
  std::map<std::string, std::vector<Error>> failures_;
  std::vector<Call> calls_;
};

}  // namespace kvmfleet::doubles
