#include "kvmfleet/storage/storage_inventory.hpp"

namespace kvmfleet::storage {

nlohmann::json StorageInventory::to_json() const {
  nlohmann::json sess = nlohmann::json::array();
  for (const auto& s : sessions) {
    nlohmann::json disks = nlohmann::json::array();
    for (const auto& l : s.luns) {
      if (!l.disk.empty()) disks.push_back({{"lun", l.lun}, {"disk", l.disk}, {"state", l.state}});
    }
    sess.push_back(
        {{"target", s.target}, {"portal", s.portal}, {"state", s.session_state}, {"disks", disks}});
  }
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& vg : vgs) {
    groups.push_back({{"name", vg.name},
                      {"size_bytes", vg.size_bytes},
                      {"free_bytes", vg.free_bytes},
                      {"shared", vg.shared},
                      {"lock_type", vg.lock_type},
                      {"lockspace_started", locks.vg_started(vg.name)}});
  }
  nlohmann::json maps = nlohmann::json::array();
  for (const auto& m : multipath) {
    nlohmann::json failed = nlohmann::json::array();
    nlohmann::json states = nlohmann::json::array();
    for (const auto& p : m.paths) {
      if (!p.healthy()) failed.push_back(p.dev);
      states.push_back({{"dev", p.dev},
                        {"healthy", p.healthy()},
                        {"dm_state", p.dm_state},
                        {"dev_state", p.dev_state},
                        {"checker_state", p.checker_state}});
    }
    maps.push_back({{"name", m.name},
                    {"device", m.device()},
                    {"paths", m.paths.size()},
                    {"healthy_paths", m.healthy_paths()},
                    {"degraded", m.degraded()},
                    {"path_faults", m.path_faults},
                    {"failed_paths", failed},
                    {"path_states", states}});
  }
  return {{"locks", locks.to_json()},
          {"iscsi_sessions", sess},
          {"vgs", groups},
          {"multipath", maps},
          {"errors", errors}};
}

StorageInventory collect_storage_inventory(IscsiInitiator* iscsi, VolumeManager* lvm,
                                           LockDaemons* locks, Multipath* multipath) {
  StorageInventory inv;
  auto note = [&](const char* part, const Error& e) {
    inv.errors.push_back(std::string(part) + ": " + e.brief());
  };
  if (locks != nullptr) {
    auto st = locks->check();
    if (st.ok()) {
      inv.locks = std::move(*st);
    } else {
      note("lock daemons", st.error());
    }
  }
  if (iscsi != nullptr) {
    auto s = iscsi->sessions();
    if (s.ok()) {
      inv.sessions = std::move(*s);
    } else {
      note("iscsi sessions", s.error());
    }
  }
  if (lvm != nullptr) {
    auto v = lvm->list_vgs();
    if (v.ok()) {
      inv.vgs = std::move(*v);
    } else {
      note("volume groups", v.error());
    }
  }
  if (multipath != nullptr) {
    auto m = multipath->maps();
    if (m.ok()) {
      inv.multipath = std::move(*m);
    } else {
      note("multipath", m.error());
    }
  }
  return inv;
}

}  // namespace kvmfleet::storage
