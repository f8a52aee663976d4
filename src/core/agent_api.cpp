#include "kvmfleet/core/agent_api.hpp"

#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet {
namespace {

namespace proto = agent_protocol;

void substitute(std::string& path, std::string_view key, const std::string& value) {
  if (auto pos = path.find(key); pos != std::string::npos) path.replace(pos, key.size(), value);
}

// `uuid` fills {uuid}; `vg` and `lv` fill {vg} and {lv} (LVM names: no escaping needed).
std::string url_for(const Host& host, const proto::Call& call, const std::string& uuid = {},
                    const std::string& vg = {}, const std::string& lv = {}) {
  std::string path(call.path);
  substitute(path, "{uuid}", uuid);
  substitute(path, "{vg}", vg);
  substitute(path, "{lv}", lv);
  std::string base = host.agent_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + path;
}

Result<nlohmann::json> invoke(http::Client& client, const Host& host, const proto::Call& call,
                              const std::string& uuid, const nlohmann::json* body,
                              const std::string& vg = {}, const std::string& lv = {}) {
  auto r = http::call_json(client, call.method, url_for(host, call, uuid, vg, lv),
                           host.agent_secret, body, proto::timeout_for(call.timeout));
  if (!r) {
    Error e = r.take_error();
    e.details["host"] = host.name;
    e.details["agent_call"] = std::string(call.name);
    return e;
  }
  return r;
}

template <typename T>
Result<T> decode(Result<nlohmann::json> r) {
  if (!r) return r.take_error();
  try {
    return r->get<T>();
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer: ") + e.what());
  }
}

Result<DomainStatus> action(http::Client& client, const Host& host, const proto::Call& call,
                            const std::string& op_id, const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  return decode<DomainStatus>(invoke(client, host, call, uuid, &body));
}

// A storage call that answers {} on success.
Status storage_call(http::Client& client, const Host& host, const proto::Call& call,
                    const nlohmann::json& body, const std::string& vg = {},
                    const std::string& lv = {}) {
  auto r = invoke(client, host, call, {}, &body, vg, lv);
  if (!r) return r.take_error();
  return {};
}

nlohmann::json iscsi_body(const std::string& op_id, const IscsiPoolTarget& t) {
  nlohmann::json body = {{"op_id", op_id}, {"target", t.iqn}, {"portal", t.portal}};
  return body;
}

std::optional<LvMode> lv_mode_from(std::string_view s) {
  if (s == "inactive") return LvMode::inactive;
  if (s == "exclusive") return LvMode::exclusive;
  if (s == "shared") return LvMode::shared;
  return std::nullopt;
}

}  // namespace

std::string_view to_string(LvMode m) {
  switch (m) {
    case LvMode::inactive:
      return "inactive";
    case LvMode::exclusive:
      return "exclusive";
    case LvMode::shared:
      return "shared";
  }
  return "inactive";
}

Result<HostInventory> HttpAgentApi::inventory(const Host& host) {
  return decode<HostInventory>(invoke(client_, host, proto::kInventory, {}, nullptr));
}

Result<DomainStatus> HttpAgentApi::get_domain(const Host& host, const std::string& uuid) {
  return decode<DomainStatus>(invoke(client_, host, proto::kDomainGet, uuid, nullptr));
}

Result<DomainStatus> HttpAgentApi::define(const Host& host, const std::string& op_id,
                                          const DomainSpec& spec) {
  const nlohmann::json body = {{"op_id", op_id}, {"spec", spec}};
  return decode<DomainStatus>(invoke(client_, host, proto::kDefine, {}, &body));
}

Result<DomainStatus> HttpAgentApi::start(const Host& host, const std::string& op_id,
                                         const std::string& uuid) {
  return action(client_, host, proto::kStart, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::shutdown(const Host& host, const std::string& op_id,
                                            const std::string& uuid) {
  return action(client_, host, proto::kShutdown, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::reboot(const Host& host, const std::string& op_id,
                                          const std::string& uuid) {
  return action(client_, host, proto::kReboot, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::destroy(const Host& host, const std::string& op_id,
                                           const std::string& uuid) {
  return action(client_, host, proto::kDestroy, op_id, uuid);
}

Status HttpAgentApi::undefine(const Host& host, const std::string& op_id, const std::string& uuid,
                              bool remove_volumes) {
  const nlohmann::json body = {{"op_id", op_id}, {"remove_volumes", remove_volumes}};
  auto r = invoke(client_, host, proto::kUndefine, uuid, &body);
  if (!r) return r.take_error();
  return {};
}

Result<MigrationStatus> HttpAgentApi::migrate(const Host& source, const std::string& uuid,
                                              const MigrationRequest& request) {
  nlohmann::json body = request.policy;
  body["op_id"] = request.op_id;
  body["destination_uri"] = request.destination_uri;
  body["migrate_uri"] = request.migrate_uri;
  if (!request.media.cdrom.empty()) body["cdrom_path"] = request.media.cdrom;
  if (!request.media.seed.empty()) body["seed_path"] = request.media.seed;
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigrate, uuid, &body));
}

Result<MigrationStatus> HttpAgentApi::migration_status(const Host& source,
                                                       const std::string& uuid) {
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigration, uuid, nullptr));
}

Result<MigrationStatus> HttpAgentApi::abort_migration(const Host& source, const std::string& op_id,
                                                      const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigrationAbort, uuid, &body));
}

Result<DomainStatus> HttpAgentApi::attach_nic(const Host& host, const std::string& op_id,
                                              const std::string& uuid, const DomainNic& nic,
                                              std::int64_t generation) {
  const nlohmann::json body = {{"op_id", op_id}, {"nic", nic}, {"generation", generation}};
  return decode<DomainStatus>(invoke(client_, host, proto::kNicAttach, uuid, &body));
}

Result<DomainStatus> HttpAgentApi::detach_nic(const Host& host, const std::string& op_id,
                                              const std::string& uuid, const std::string& mac,
                                              std::int64_t generation) {
  const nlohmann::json body = {{"op_id", op_id}, {"mac", mac}, {"generation", generation}};
  return decode<DomainStatus>(invoke(client_, host, proto::kNicDetach, uuid, &body));
}

Result<MigrationMedia> HttpAgentApi::prepare_media(const Host& host, const std::string& op_id,
                                                   const DomainSpec& spec) {
  const nlohmann::json body = {{"op_id", op_id}, {"spec", spec}};
  auto r = invoke(client_, host, proto::kMediaPrepare, spec.uuid, &body);
  if (!r) return r.take_error();
  MigrationMedia m;
  try {
    m.cdrom = r->value("cdrom", std::string());
    m.seed = r->value("seed", std::string());
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer: ") + e.what());
  }
  if ((spec.cdrom.has_value() != !m.cdrom.empty()) ||
      (spec.cloud_init.has_value() != !m.seed.empty()))
    return internal_error("the agent did not prepare the domain's CD-ROMs",
                          {{"host", host.name}, {"agent_call", "media_prepare"}});
  return m;
}

Status HttpAgentApi::remove_media(const Host& host, const std::string& op_id,
                                  const std::string& uuid, const std::string& cdrom_sha256) {
  nlohmann::json body = {{"op_id", op_id}};
  if (!cdrom_sha256.empty()) body["cdrom_sha256"] = cdrom_sha256;
  auto r = invoke(client_, host, proto::kMediaRemove, uuid, &body);
  if (!r) return r.take_error();
  return {};
}

Result<int> HttpAgentApi::fs_freeze(const Host& host, const std::string& op_id,
                                    const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  auto r = invoke(client_, host, proto::kFsFreeze, uuid, &body);
  if (!r) return r.take_error();
  if (!r->is_object() || !r->contains("frozen") || !r->at("frozen").is_number_integer())
    return internal_error("malformed agent answer to fsfreeze");
  return r->at("frozen").get<int>();
}

Result<int> HttpAgentApi::fs_thaw(const Host& host, const std::string& op_id,
                                  const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  auto r = invoke(client_, host, proto::kFsThaw, uuid, &body);
  if (!r) return r.take_error();
  if (!r->is_object() || !r->contains("thawed") || !r->at("thawed").is_number_integer())
    return internal_error("malformed agent answer to fsthaw");
  return r->at("thawed").get<int>();
}

Status HttpAgentApi::block_resize(const Host& host, const std::string& op_id,
                                  const std::string& uuid, const std::string& device,
                                  std::uint64_t size_bytes) {
  const nlohmann::json body = {{"op_id", op_id}, {"device", device}, {"size_bytes", size_bytes}};
  auto r = invoke(client_, host, proto::kBlockResize, uuid, &body);
  if (!r) return r.take_error();
  return {};
}

Result<nlohmann::json> HttpAgentApi::storage_inventory(const Host& host) {
  auto r = invoke(client_, host, proto::kStorageInventory, {}, nullptr);
  if (!r) return r.take_error();
  if (!r->is_object()) return internal_error("malformed agent answer to storage inventory");
  return r;
}

Result<std::vector<std::string>> HttpAgentApi::iscsi_discover(const Host& host,
                                                              const std::string& op_id,
                                                              const std::string& portal) {
  const nlohmann::json body = {{"op_id", op_id}, {"portal", portal}};
  auto r = invoke(client_, host, proto::kIscsiDiscover, {}, &body);
  if (!r) return r.take_error();
  std::vector<std::string> out;
  try {
    for (const auto& t : r->at("targets")) out.push_back(t.at("iqn").get<std::string>());
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer to iscsi discover: ") + e.what());
  }
  return out;
}

Result<std::string> HttpAgentApi::iscsi_login(const Host& host, const std::string& op_id,
                                              const IscsiPoolTarget& t) {
  nlohmann::json body = iscsi_body(op_id, t);
  body["lun"] = t.lun;
  if (!t.chap_username.empty())
    body["chap"] = {{"username", t.chap_username}, {"password", t.chap_password}};
  auto r = invoke(client_, host, proto::kIscsiLogin, {}, &body);
  if (!r) return r.take_error();
  if (!r->is_object() || !r->contains("device") || !r->at("device").is_string())
    return internal_error("malformed agent answer to iscsi login (no device)");
  return r->at("device").get<std::string>();
}

Status HttpAgentApi::iscsi_logout(const Host& host, const std::string& op_id,
                                  const IscsiPoolTarget& t) {
  return storage_call(client_, host, proto::kIscsiLogout, iscsi_body(op_id, t));
}

Result<std::vector<std::string>> HttpAgentApi::fc_attach(const Host& host, const std::string& op_id,
                                                         const std::vector<std::string>& wwids) {
  const nlohmann::json body = {{"op_id", op_id}, {"wwids", wwids}};
  auto r = invoke(client_, host, proto::kFcAttach, {}, &body);
  if (!r) return r.take_error();
  std::vector<std::string> out;
  try {
    for (const auto& d : r->at("devices")) out.push_back(d.at("device").get<std::string>());
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer to fc attach: ") + e.what());
  }
  if (out.size() != wwids.size())
    return internal_error("malformed agent answer to fc attach: " + std::to_string(out.size()) +
                          " devices for " + std::to_string(wwids.size()) + " WWIDs");
  return out;
}

Status HttpAgentApi::vg_create(const Host& host, const std::string& op_id, const std::string& vg,
                               const std::vector<std::string>& devices) {
  return storage_call(client_, host, proto::kVgCreate,
                      {{"op_id", op_id}, {"vg", vg}, {"devices", devices}});
}

Status HttpAgentApi::vg_lockstart(const Host& host, const std::string& op_id,
                                  const std::string& vg) {
  return storage_call(client_, host, proto::kVgLockStart, {{"op_id", op_id}}, vg);
}

Status HttpAgentApi::vg_lockstop(const Host& host, const std::string& op_id,
                                 const std::string& vg) {
  return storage_call(client_, host, proto::kVgLockStop, {{"op_id", op_id}}, vg);
}

Result<AgentVg> HttpAgentApi::vg_get(const Host& host, const std::string& vg) {
  auto r = invoke(client_, host, proto::kVgGet, {}, nullptr, vg);
  if (!r) return r.take_error();
  try {
    return AgentVg{r->at("size_bytes").get<std::uint64_t>(),
                   r->at("free_bytes").get<std::uint64_t>()};
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer to vg get: ") + e.what());
  }
}

Result<std::vector<AgentLv>> HttpAgentApi::lv_list(const Host& host, const std::string& vg) {
  auto r = invoke(client_, host, proto::kLvList, {}, nullptr, vg);
  if (!r) return r.take_error();
  std::vector<AgentLv> out;
  try {
    for (const auto& j : r->at("lvs")) {
      AgentLv lv;
      lv.name = j.at("name").get<std::string>();
      lv.size_bytes = j.at("size_bytes").get<std::uint64_t>();
      auto mode = lv_mode_from(j.at("activation").get<std::string>());
      if (!mode) return internal_error("malformed agent answer to lv list (activation)");
      lv.activation = *mode;
      lv.origin = j.value("origin", std::string{});
      if (j.contains("data_percent") && j.at("data_percent").is_number())
        lv.data_percent = j.at("data_percent").get<double>();
      lv.snapshot_invalid = j.value("snapshot_invalid", false);
      lv.merging = j.value("merging", false);
      out.push_back(std::move(lv));
    }
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer to lv list: ") + e.what());
  }
  return out;
}

Status HttpAgentApi::lv_create(const Host& host, const std::string& op_id, const std::string& vg,
                               const std::string& lv, std::uint64_t size_bytes) {
  // Activated (exclusively, here) while it is made so that LVM zeroes its start: a new
  // volume must not show a deleted one's old data. The caller deactivates it.
  return storage_call(
      client_, host, proto::kLvCreate,
      {{"op_id", op_id}, {"lv", lv}, {"size_bytes", size_bytes}, {"activate_exclusive", true}}, vg);
}

Status HttpAgentApi::lv_grow(const Host& host, const std::string& op_id, const std::string& vg,
                             const std::string& lv, std::uint64_t size_bytes) {
  return storage_call(client_, host, proto::kLvGrow, {{"op_id", op_id}, {"size_bytes", size_bytes}},
                      vg, lv);
}

Status HttpAgentApi::lv_delete(const Host& host, const std::string& op_id, const std::string& vg,
                               const std::string& lv) {
  return storage_call(client_, host, proto::kLvDelete, {{"op_id", op_id}}, vg, lv);
}

Status HttpAgentApi::lv_activate(const Host& host, const std::string& op_id, const std::string& vg,
                                 const std::string& lv, LvMode mode) {
  return storage_call(client_, host, proto::kLvActivate,
                      {{"op_id", op_id}, {"mode", std::string(to_string(mode))}}, vg, lv);
}

Status HttpAgentApi::lv_snapshot(const Host& host, const std::string& op_id, const std::string& vg,
                                 const std::string& origin, const std::string& snapshot,
                                 std::uint64_t size_bytes) {
  return storage_call(client_, host, proto::kLvSnapshot,
                      {{"op_id", op_id}, {"snapshot", snapshot}, {"size_bytes", size_bytes}}, vg,
                      origin);
}

Status HttpAgentApi::lv_merge(const Host& host, const std::string& op_id, const std::string& vg,
                              const std::string& snapshot) {
  return storage_call(client_, host, proto::kLvMerge, {{"op_id", op_id}}, vg, snapshot);
}

Result<std::vector<std::string>> HttpAgentApi::network_ensure(const Host& host,
                                                              const std::string& op_id,
                                                              const Network& n) {
  nlohmann::json body = {{"op_id", op_id}, {"bridge", n.bridge}, {"mtu", n.mtu}};
  if (n.vlan) {
    body["vlan"] = *n.vlan;
    body["uplink"] = n.uplink;
  }
  auto r = invoke(client_, host, proto::kNetworkEnsure, {}, &body);
  if (!r) return r.take_error();
  try {
    return r->at("created").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer: ") + e.what());
  }
}

}  // namespace kvmfleet
