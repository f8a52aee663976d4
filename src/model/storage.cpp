#include "kvmfleet/model/storage.hpp"

#include "kvmfleet/model/json.hpp"

#include <stdexcept>

namespace kvmfleet {
namespace {

using nlohmann::json;

template <typename E, typename F>
E enum_from(const json& j, const char* key, F parse, E fallback) {
  if (!j.contains(key)) return fallback;
  auto v = parse(j.at(key).template get<std::string>());
  if (!v) throw std::invalid_argument(std::string("bad value for ") + key);
  return *v;
}

Clock::time_point time_from(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return {};
  auto t = parse_time(j.at(key).get<std::string>());
  if (!t) throw std::invalid_argument(std::string("bad time in ") + key);
  return *t;
}

}  // namespace

std::string_view to_string(PoolType t) {
  return t == PoolType::fc ? "fc" : "iscsi";
}
std::optional<PoolType> pool_type_from_string(std::string_view s) {
  if (s == "iscsi") return PoolType::iscsi;
  if (s == "fc") return PoolType::fc;
  return std::nullopt;
}

std::string_view to_string(PoolState s) {
  switch (s) {
    case PoolState::creating:
      return "creating";
    case PoolState::ready:
      return "ready";
    case PoolState::failed:
      return "failed";
  }
  return "failed";
}
std::optional<PoolState> pool_state_from_string(std::string_view s) {
  if (s == "creating") return PoolState::creating;
  if (s == "ready") return PoolState::ready;
  if (s == "failed") return PoolState::failed;
  return std::nullopt;
}

std::string_view to_string(VolumeState s) {
  switch (s) {
    case VolumeState::creating:
      return "creating";
    case VolumeState::ready:
      return "ready";
    case VolumeState::deleting:
      return "deleting";
  }
  return "deleting";
}
std::optional<VolumeState> volume_state_from_string(std::string_view s) {
  if (s == "creating") return VolumeState::creating;
  if (s == "ready") return VolumeState::ready;
  if (s == "deleting") return VolumeState::deleting;
  return std::nullopt;
}

std::string_view to_string(SnapshotConsistency c) {
  return c == SnapshotConsistency::quiesced ? "quiesced" : "crash-consistent";
}
std::optional<SnapshotConsistency> snapshot_consistency_from_string(std::string_view s) {
  if (s == "quiesced") return SnapshotConsistency::quiesced;
  if (s == "crash-consistent") return SnapshotConsistency::crash_consistent;
  return std::nullopt;
}

std::string snapshot_lv_name(const std::string& volume, const std::string& snapshot) {
  return volume + ".snap." + snapshot;
}

// --- the store's JSON form (the API's views are in api/views.cpp) ---------------

void to_json(json& j, const IscsiPoolTarget& t) {
  j = {{"portal", t.portal}, {"iqn", t.iqn}, {"lun", t.lun}};
  if (!t.chap_username.empty())
    j["chap"] = {{"username", t.chap_username}, {"password", t.chap_password}};
}
void from_json(const json& j, IscsiPoolTarget& t) {
  t.portal = j.at("portal").get<std::string>();
  t.iqn = j.at("iqn").get<std::string>();
  t.lun = j.value("lun", 1);
  if (j.contains("chap") && j.at("chap").is_object()) {
    t.chap_username = j.at("chap").at("username").get<std::string>();
    t.chap_password = j.at("chap").at("password").get<std::string>();
  }
}

void to_json(json& j, const PoolHostStatus& s) {
  j = {{"connected", s.connected},
       {"devices", s.devices},
       {"lockspace_started", s.lockspace_started},
       {"error", s.error},
       {"checked_at", format_time(s.checked_at)}};
}
void from_json(const json& j, PoolHostStatus& s) {
  s.connected = j.value("connected", false);
  s.devices = j.value("devices", std::vector<std::string>{});
  s.lockspace_started = j.value("lockspace_started", false);
  s.error = j.value("error", std::string{});
  s.checked_at = time_from(j, "checked_at");
}

void to_json(json& j, const StoragePool& p) {
  j = {{"name", p.name},
       {"type", std::string(to_string(p.type))},
       {"targets", p.targets},
       {"wwids", p.wwids},
       {"state", std::string(to_string(p.state))},
       {"size_bytes", p.size_bytes},
       {"free_bytes", p.free_bytes},
       {"hosts", p.hosts},
       {"all_hosts", p.all_hosts},
       {"created_at", format_time(p.created_at)},
       {"updated_at", format_time(p.updated_at)}};
}
void from_json(const json& j, StoragePool& p) {
  p.name = j.at("name").get<std::string>();
  p.type = enum_from(j, "type", pool_type_from_string, PoolType::iscsi);
  p.targets = j.value("targets", std::vector<IscsiPoolTarget>{});
  p.wwids = j.value("wwids", std::vector<std::string>{});
  p.state = enum_from(j, "state", pool_state_from_string, PoolState::failed);
  p.size_bytes = j.value("size_bytes", std::uint64_t{0});
  p.free_bytes = j.value("free_bytes", std::uint64_t{0});
  p.hosts = j.value("hosts", std::map<std::string, PoolHostStatus>{});
  p.all_hosts = j.value("all_hosts", false);  // pools recorded before the field: as named
  p.created_at = time_from(j, "created_at");
  p.updated_at = time_from(j, "updated_at");
}

void to_json(json& j, const Snapshot& s) {
  j = {{"id", s.id},
       {"name", s.name},
       {"lv", s.lv},
       {"size_bytes", s.size_bytes},
       {"consistency", std::string(to_string(s.consistency))},
       {"fill_percent", s.fill_percent ? json(*s.fill_percent) : json(nullptr)},
       {"invalid", s.invalid},
       {"merge_pending", s.merge_pending},
       {"created_at", format_time(s.created_at)}};
}
void from_json(const json& j, Snapshot& s) {
  s.id = j.at("id").get<std::string>();
  s.name = j.at("name").get<std::string>();
  s.lv = j.at("lv").get<std::string>();
  s.size_bytes = j.value("size_bytes", std::uint64_t{0});
  s.consistency = enum_from(j, "consistency", snapshot_consistency_from_string,
                            SnapshotConsistency::crash_consistent);
  if (j.contains("fill_percent") && j.at("fill_percent").is_number())
    s.fill_percent = j.at("fill_percent").get<double>();
  s.invalid = j.value("invalid", false);
  s.merge_pending = j.value("merge_pending", false);
  s.created_at = time_from(j, "created_at");
}

void to_json(json& j, const Volume& v) {
  j = {{"id", v.id},
       {"name", v.name},
       {"pool", v.pool},
       {"size_bytes", v.size_bytes},
       {"state", std::string(to_string(v.state))},
       {"attached_to", v.attached_to},
       {"snapshots", v.snapshots},
       {"created_at", format_time(v.created_at)},
       {"updated_at", format_time(v.updated_at)}};
}
void from_json(const json& j, Volume& v) {
  v.id = j.at("id").get<std::string>();
  v.name = j.at("name").get<std::string>();
  v.pool = j.at("pool").get<std::string>();
  v.size_bytes = j.value("size_bytes", std::uint64_t{0});
  v.state = enum_from(j, "state", volume_state_from_string, VolumeState::ready);
  v.attached_to = j.value("attached_to", std::string{});
  v.snapshots = j.value("snapshots", std::vector<Snapshot>{});
  v.created_at = time_from(j, "created_at");
  v.updated_at = time_from(j, "updated_at");
}

}  // namespace kvmfleet
