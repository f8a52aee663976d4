// The handlers of the shared-storage calls (protocol.hpp; docs/storage.md, "Agent
// API"): one backend call each. Names and sizes are the storage library's to check.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "call_handlers.hpp"
#include "kvmfleet/agent/storage_devices.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/storage/storage_inventory.hpp"
#include "kvmfleet/storage/storage_names.hpp"

namespace kvmfleet::agent::calls {
namespace {

using nlohmann::json;

// --- views -----------------------------------------------------------------------

json to_json_value(const storage::IscsiTarget& t) {
  return {{"iqn", t.iqn}, {"portal", t.portal}, {"tpgt", t.tpgt}};
}

json to_json_value(const storage::FcLun& l) {
  return {{"wwid", l.wwid}, {"device", l.device}};
}

json to_json_value(const storage::IscsiSession& s) {
  json luns = json::array();
  for (const auto& l : s.luns)
    luns.push_back({{"lun", l.lun}, {"disk", l.disk}, {"state", l.state}});
  return {{"sid", s.sid},
          {"target", s.target},
          {"portal", s.portal},
          {"initiator_name", s.initiator_name},
          {"connection_state", s.connection_state},
          {"session_state", s.session_state},
          {"luns", std::move(luns)}};
}

json to_json_value(const storage::VolumeGroup& vg) {
  return {{"name", vg.name},
          {"uuid", vg.uuid},
          {"size_bytes", vg.size_bytes},
          {"free_bytes", vg.free_bytes},
          {"extent_bytes", vg.extent_bytes},
          {"lock_type", vg.lock_type},
          {"shared", vg.shared},
          {"pv_count", vg.pv_count},
          {"lv_count", vg.lv_count},
          {"snap_count", vg.snap_count}};
}

json to_json_value(const storage::LogicalVolume& lv) {
  return {{"name", lv.name},
          {"vg", lv.vg_name},
          {"uuid", lv.uuid},
          {"size_bytes", lv.size_bytes},
          {"attr", lv.attr},
          {"path", lv.path},
          {"active", lv.active},
          {"activation", std::string(storage::to_string(lv.activation))},
          {"origin", lv.origin},
          {"is_snapshot", lv.is_snapshot},
          {"is_origin", lv.is_origin},
          {"data_percent", lv.data_percent ? json(*lv.data_percent) : json(nullptr)},
          {"snapshot_invalid", lv.snapshot_invalid},
          {"merging", lv.merging}};
}

template <typename T>
http::Response reply_list(const Result<std::vector<T>>& r, const char* key) {
  if (!r) return http::error_response(r.error());
  json items = json::array();
  for (const auto& item : r.value()) items.push_back(to_json_value(item));
  return ok_json({{key, std::move(items)}});
}

template <typename T>
http::Response reply_view(const Result<T>& r) {
  if (!r) return http::error_response(r.error());
  return ok_json(to_json_value(r.value()));
}

// --- body readers ----------------------------------------------------------------

Result<storage::LvActivation> parse_activation(const json& body) {
  auto mode = get_string(body, "mode", true);
  if (!mode) return mode.take_error();
  if (*mode == "exclusive") return storage::LvActivation::exclusive;
  if (*mode == "shared") return storage::LvActivation::shared;
  if (*mode == "inactive") return storage::LvActivation::inactive;
  return invalid("mode must be exclusive, shared or inactive", {{"field", "mode"}});
}

Result<std::vector<std::string>> get_devices(const json& body) {
  auto it = body.find("devices");
  if (it == body.end() || it->is_null())
    return invalid("devices is required", {{"field", "devices"}});
  if (!it->is_array())
    return invalid("devices must be an array of device paths", {{"field", "devices"}});
  std::vector<std::string> out;
  for (const auto& d : *it) {
    if (!d.is_string())
      return invalid("devices must be an array of device paths", {{"field", "devices"}});
    out.push_back(d.get<std::string>());
  }
  return out;
}

// A pool's WWIDs: 1 to 16, each checked, none twice.
Result<std::vector<std::string>> get_wwids(const json& body) {
  auto it = body.find("wwids");
  if (it == body.end() || !it->is_array() || it->empty() || it->size() > 16)
    return invalid("wwids must be an array of 1 to 16 WWIDs", {{"field", "wwids"}});
  std::vector<std::string> out;
  for (const auto& w : *it) {
    if (!w.is_string()) return invalid("wwids must be strings", {{"field", "wwids"}});
    const auto& s = w.get_ref<const std::string&>();
    if (auto st = storage::check_wwid(s); !st)
      return invalid(st.error().message, {{"field", "wwids"}});
    if (std::find(out.begin(), out.end(), s) != out.end())
      return invalid("wwids repeats " + s, {{"field", "wwids"}});
    out.push_back(s);
  }
  return out;
}

Result<std::optional<storage::ChapCredentials>> get_chap(const json& body) {
  auto it = body.find("chap");
  if (it == body.end() || it->is_null()) return std::optional<storage::ChapCredentials>{};
  if (!it->is_object()) return invalid("chap must be an object", {{"field", "chap"}});
  if (auto st = check_known_fields(*it, {"username", "password"}, "chap"); !st) {
    auto e = st.take_error();
    e.details["field"] = "chap." + e.details.value("field", std::string{});
    return e;
  }
  auto user = get_string(*it, "username", true);
  if (!user)
    return invalid("chap.username is required and must be a string", {{"field", "chap.username"}});
  auto password = get_string(*it, "password", true);
  if (!password)
    return invalid("chap.password is required and must be a string", {{"field", "chap.password"}});
  return std::optional<storage::ChapCredentials>{
      storage::ChapCredentials{std::move(*user), std::move(*password)}};
}

struct IscsiTargetArgs {
  std::string target;
  std::string portal;
};

Result<IscsiTargetArgs> get_target(const json& body) {
  auto target = get_string(body, "target", true);
  if (!target) return target.take_error();
  auto portal = get_string(body, "portal", true);
  if (!portal) return portal.take_error();
  return IscsiTargetArgs{std::move(*target), std::move(*portal)};
}

// SCSI LUN numbers as the kernel and iscsiadm use them (flat space addressing).
constexpr std::int64_t kMaxLun = 16'383;

// --- waits and answers -----------------------------------------------------------

// The block device of a LUN just logged in to: the kernel attaches the LUN's disk
// after the login returns, so it is looked for until it shows up or time runs out.
// `waited`: how long it looked.
Result<std::string> wait_for_lun_device(StorageBackend& st, const std::string& target,
                                        const std::string& portal, int lun,
                                        std::chrono::milliseconds& waited) {
  waited = std::chrono::milliseconds{0};
  bool rescanned = false;
  while (true) {
    auto device = st.iscsi.lun_device(target, portal, lun);
    if (device || device.error().code != ErrorCode::not_found) return device;
    if (waited >= st.lun_wait) break;
    if (!rescanned && waited >= st.lun_rescan_after) {
      rescanned = true;
      if (auto s = st.iscsi.rescan(); !s)
        spdlog::warn("iSCSI rescan while waiting for LUN {}: {}", lun, s.error().message);
    }
    const auto step = std::min(st.lun_poll, st.lun_wait - waited);
    st.clock.sleep_for(step);
    waited += step;
  }
  return unavailable("LUN " + std::to_string(lun) + " of " + target + " has no block device yet",
                     {{"target", target},
                      {"portal", portal},
                      {"lun", lun},
                      {"waited_ms", static_cast<std::int64_t>(waited.count())}});
}

// fc/luns: with multipath, each LUN a map holds names the map ("multipath_device").
// The LUN's by-id link points at one of the map's paths, or, once udev gave the
// map the WWID links, at the map itself (dm-N).
http::Response fc_luns_reply(StorageBackend& st, const std::vector<storage::FcLun>& luns) {
  json items = json::array();
  for (const auto& l : luns) items.push_back(to_json_value(l));
  json body = {{"luns", json::array()}};
  if (st.multipath != nullptr && !luns.empty()) {
    auto maps = st.multipath->maps();
    if (!maps) {
      body["multipath_unused"] = "multipathd did not answer: " + maps.error().message;
      spdlog::warn("fc/luns: {}", body["multipath_unused"].get<std::string>());
    } else {
      for (std::size_t i = 0; i < luns.size(); ++i) {
        const auto dev = std::filesystem::path(luns[i].device).filename().string();
        for (const auto& m : *maps) {
          if (m.has_path(dev) || m.sysfs == dev) {
            items[i]["multipath_device"] = m.device();
            break;
          }
        }
      }
    }
  }
  body["luns"] = std::move(items);
  return ok_json(body);
}

std::string vg_lv(const CallContext& c) {
  return c.params.lv.empty() ? c.params.vg : c.params.vg + "/" + c.params.lv;
}

}  // namespace

Result<PreparedCall> storage_inventory(const CallContext& c) {
  return PreparedCall{{}, [&st = *c.storage] {
                        return ok_json(storage::collect_storage_inventory(&st.iscsi, &st.lvm,
                                                                          st.locks, st.multipath)
                                           .to_json());
                      }};
}

Result<PreparedCall> iscsi_discover(const CallContext& c) {
  auto portal = get_string(c.body, "portal", true);
  if (!portal) return portal.take_error();
  return PreparedCall{*portal, [&st = *c.storage, portal = *portal] {
                        return reply_list(st.iscsi.discover(portal), "targets");
                      }};
}

Result<PreparedCall> iscsi_login(const CallContext& c) {
  auto t = get_target(c.body);
  if (!t) return t.take_error();
  auto chap = get_chap(c.body);
  if (!chap) return chap.take_error();
  auto lun = get_int(c.body, "lun", false, 1, 0, kMaxLun);
  if (!lun) return lun.take_error();
  std::string subject = t->target + " at " + t->portal;
  return PreparedCall{std::move(subject), [&st = *c.storage, t = std::move(*t),
                                           chap = std::move(*chap), lun = static_cast<int>(*lun)] {
                        if (auto s = st.iscsi.login(t.target, t.portal, chap); !s) return reply(s);
                        std::chrono::milliseconds waited{0};
                        auto device = wait_for_lun_device(st, t.target, t.portal, lun, waited);
                        if (!device) return http::error_response(device.error());
                        // Its multipath map, when one holds it; multipathd's time to build one
                        // comes out of the same budget.
                        const auto use = lun_device_to_use(
                            st, *device,
                            std::min(st.multipath_wait,
                                     std::max(st.lun_wait - waited, std::chrono::milliseconds{0})));
                        // A LUN this host logged in to is a cluster device: LVM may see it from now
                        // on.
                        if (auto added = st.lvm.add_device(use.device); !added) return reply(added);
                        return ok_json(use.to_json());
                      }};
}

Result<PreparedCall> iscsi_logout(const CallContext& c) {
  auto t = get_target(c.body);
  if (!t) return t.take_error();
  std::string subject = t->target + " at " + t->portal;
  return PreparedCall{std::move(subject), [&st = *c.storage, t = std::move(*t)] {
                        return reply(st.iscsi.logout(t.target, t.portal));
                      }};
}

Result<PreparedCall> iscsi_sessions(const CallContext& c) {
  return PreparedCall{{},
                      [&st = *c.storage] { return reply_list(st.iscsi.sessions(), "sessions"); }};
}

Result<PreparedCall> fc_luns(const CallContext& c) {
  return PreparedCall{{}, [&st = *c.storage] {
                        auto luns = storage::list_fc_luns(st.fc_by_id_dir);
                        if (!luns) return http::error_response(luns.error());
                        // A link that resolves to nothing names no usable device.
                        std::erase_if(*luns,
                                      [](const storage::FcLun& l) { return l.device.empty(); });
                        return fc_luns_reply(st, *luns);
                      }};
}

Result<PreparedCall> fc_attach(const CallContext& c) {
  auto wwids = get_wwids(c.body);
  if (!wwids) return wwids.take_error();
  std::string subject = std::to_string(wwids->size()) + " FC LUN(s)";
  return PreparedCall{
      std::move(subject), [&st = *c.storage, wwids = std::move(*wwids)] {
        auto luns = storage::list_fc_luns(st.fc_by_id_dir);
        if (!luns) return http::error_response(luns.error());
        // Every WWID is found before LVM's filter changes: all or nothing.
        std::vector<std::string> found;
        for (const auto& wwid : wwids) {
          auto it = std::find_if(luns->begin(), luns->end(), [&](const storage::FcLun& l) {
            return l.wwid == wwid && !l.device.empty();
          });
          if (it == luns->end())
            return http::error_response(
                not_found("this host sees no FC LUN with WWID " + wwid, {{"wwid", wwid}}));
          found.push_back(it->device);
        }
        json devices = json::array();
        for (std::size_t i = 0; i < wwids.size(); ++i) {
          // Through its multipath map when one holds it, as an iSCSI LUN.
          const auto use = lun_device_to_use(st, found[i], st.multipath_wait);
          // A pool's LUN is a cluster device: LVM may see it from now on.
          if (auto added = st.lvm.add_device(use.device); !added) return reply(added);
          json d = use.to_json();
          d["wwid"] = wwids[i];
          devices.push_back(std::move(d));
        }
        return ok_json({{"devices", std::move(devices)}});
      }};
}

Result<PreparedCall> vg_create(const CallContext& c) {
  auto vg = get_string(c.body, "vg", true);
  if (!vg) return vg.take_error();
  auto devices = get_devices(c.body);
  if (!devices) return devices.take_error();
  return PreparedCall{*vg, [&st = *c.storage, vg = *vg, devices = std::move(*devices)] {
                        return reply(st.lvm.create_shared_vg(vg, devices));
                      }};
}

Result<PreparedCall> vg_get(const CallContext& c) {
  return PreparedCall{
      vg_lv(c), [&st = *c.storage, vg = c.params.vg] { return reply_view(st.lvm.get_vg(vg)); }};
}

Result<PreparedCall> vg_lockstart(const CallContext& c) {
  return PreparedCall{
      vg_lv(c), [&st = *c.storage, vg = c.params.vg] { return reply(st.lvm.lock_start(vg)); }};
}

Result<PreparedCall> vg_lockstop(const CallContext& c) {
  return PreparedCall{vg_lv(c),
                      [&st = *c.storage, vg = c.params.vg] { return reply(st.lvm.lock_stop(vg)); }};
}

Result<PreparedCall> lv_list(const CallContext& c) {
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg] {
                        return reply_list(st.lvm.list_lvs(vg), "lvs");
                      }};
}

Result<PreparedCall> lv_create(const CallContext& c) {
  auto lv = get_string(c.body, "lv", true);
  if (!lv) return lv.take_error();
  auto size = get_size(c.body);
  if (!size) return size.take_error();
  auto exclusive = get_bool(c.body, "activate_exclusive", false);
  if (!exclusive) return exclusive.take_error();
  storage::LvCreateOptions options;
  options.activate_exclusive = *exclusive;
  return PreparedCall{c.params.vg + "/" + *lv,
                      [&st = *c.storage, vg = c.params.vg, lv = *lv, size = *size, options] {
                        return reply(st.lvm.create_lv(vg, lv, size, options));
                      }};
}

Result<PreparedCall> lv_get(const CallContext& c) {
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv] {
                        return reply_view(st.lvm.get_lv(vg, lv));
                      }};
}

Result<PreparedCall> lv_grow(const CallContext& c) {
  auto size = get_size(c.body);
  if (!size) return size.take_error();
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv,
                                 size = *size] { return reply(st.lvm.extend_lv(vg, lv, size)); }};
}

Result<PreparedCall> lv_delete(const CallContext& c) {
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv] {
                        return reply(st.lvm.remove_lv(vg, lv));
                      }};
}

Result<PreparedCall> lv_activate(const CallContext& c) {
  auto mode = parse_activation(c.body);
  if (!mode) return mode.take_error();
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv,
                                 mode = *mode] { return reply(st.lvm.activate(vg, lv, mode)); }};
}

Result<PreparedCall> lv_snapshot(const CallContext& c) {
  auto snapshot = get_string(c.body, "snapshot", true);
  if (!snapshot) return snapshot.take_error();
  auto size = get_size(c.body);
  if (!size) return size.take_error();
  return PreparedCall{
      vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv, snapshot = *snapshot,
                 size = *size] { return reply(st.lvm.create_snapshot(vg, lv, snapshot, size)); }};
}

Result<PreparedCall> lv_merge(const CallContext& c) {
  return PreparedCall{vg_lv(c), [&st = *c.storage, vg = c.params.vg, lv = c.params.lv] {
                        return reply(st.lvm.merge_snapshot(vg, lv));
                      }};
}

}  // namespace kvmfleet::agent::calls
