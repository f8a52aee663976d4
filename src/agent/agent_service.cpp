#include "kvmfleet/agent/agent_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <filesystem>
#include <limits>
#include <vector>

#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/agent/storage_devices.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/storage/storage_inventory.hpp"
#include "kvmfleet/storage/storage_names.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

constexpr std::string_view kDomainsPrefix = "/agent/v1/domains/";

bool is_valid_op_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

http::Response method_not_allowed(std::string_view allow) {
  auto res = http::error_response(
      {ErrorCode::method_not_allowed, "method not allowed; use " + std::string(allow)});
  res.set(http::bhttp::field::allow, std::string(allow));
  return res;
}

http::Response ok_json(const json& body) {
  return http::json_response(http::HttpStatus::ok, body);
}

template <typename T>
http::Response reply(const Result<T>& r) {
  if (!r) return http::error_response(r.error());
  return ok_json(json(r.value()));
}

http::Response reply(const Status& s) {
  if (!s) return http::error_response(s.error());
  return ok_json(json::object());
}

// {"frozen": N} and the like.
http::Response reply_count(const Result<int>& r, const char* key) {
  if (!r) return http::error_response(r.error());
  return ok_json({{key, r.value()}});
}

// The path's uuid segment is untrusted: checked before it goes anywhere.
Status check_uuid(std::string_view uuid) {
  if (is_valid_uuid(uuid)) return {};
  return invalid("uuid in path must be a lowercase canonical UUID", {{"field", "uuid"}});
}

// A mutating request's body: JSON (when a content type is given), an object.
Result<json> parse_json_body(const http::Request& req) {
  if (auto ct = req.find(http::bhttp::field::content_type); ct != req.end()) {
    const std::string_view v(ct->value().data(), ct->value().size());
    if (!v.starts_with("application/json"))
      return Error{ErrorCode::unsupported_media, "request body must be application/json"};
  }
  json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return invalid("request body is not valid JSON");
  if (!body.is_object()) return invalid("request body must be a JSON object");
  return body;
}

Result<std::string> get_op_id(const json& body) {
  auto op_id = get_string(body, "op_id", true);
  if (!op_id) return op_id.take_error();
  if (!is_valid_op_id(*op_id))
    return invalid("op_id must be 1-128 characters of [A-Za-z0-9._:-]", {{"field", "op_id"}});
  return op_id;
}

// --- storage views -------------------------------------------------------------

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

Result<storage::LvActivation> parse_activation(const json& body) {
  auto mode = get_string(body, "mode", true);
  if (!mode) return mode.take_error();
  if (*mode == "exclusive") return storage::LvActivation::exclusive;
  if (*mode == "shared") return storage::LvActivation::shared;
  if (*mode == "inactive") return storage::LvActivation::inactive;
  return invalid("mode must be exclusive, shared or inactive", {{"field", "mode"}});
}

// Sizes are checked by the storage library (multiple of 512, at most 1 PiB); here
// only that they are positive integers.
Result<std::uint64_t> get_size(const json& body) {
  auto v = get_int(body, "size_bytes", true, 0, 1, std::numeric_limits<std::int64_t>::max());
  if (!v) return v.take_error();
  return static_cast<std::uint64_t>(*v);
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

// SCSI LUN numbers as the kernel and iscsiadm use them (flat space addressing).
constexpr std::int64_t kMaxLun = 16'383;

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

std::vector<std::string_view> split_path(std::string_view rest) {
  std::vector<std::string_view> out;
  while (true) {
    const auto slash = rest.find('/');
    out.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return out;
}

}  // namespace

// One storage route, resolved from the path: what to do, and to which VG/LV.
struct AgentService::StorageCall {
  bool post = false;
  std::string action;  // "inventory", "iscsi/login", "vg/create", "lv/grow", ...
  std::string vg;
  std::string lv;
};

AgentService::AgentService(Hypervisor& hypervisor, std::string token, std::size_t op_cache_capacity)
    : hv_(hypervisor), token_(std::move(token)), ops_(op_cache_capacity) {
  assert(!token_.empty());
}

AgentService::AgentService(Hypervisor& hypervisor, StorageBackend storage, std::string token,
                           std::size_t op_cache_capacity)
    : hv_(hypervisor), storage_(storage), token_(std::move(token)), ops_(op_cache_capacity) {
  assert(!token_.empty());
}

void AgentService::handle(http::Request&& req, http::Responder respond) {
  respond(serve(req));
}

http::Response AgentService::serve(const http::Request& req) {
  http::Response res;
  try {
    res = route(req);
  } catch (const std::exception& e) {
    spdlog::error("agent request {} {} failed: {}", std::string(req.method_string()),
                  std::string(req.target()), e.what());
    res = http::error_response(internal_error("unexpected error handling the request"));
  }
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  return res;
}

http::Response AgentService::route(const http::Request& req) {
  // Authenticate before anything else, so an unauthenticated caller learns nothing,
  // not even which paths exist. An empty configured token never matches.
  const auto presented = http::bearer_token(req);
  if (token_.empty() || presented.empty() || !constant_time_equal(presented, token_)) {
    auto res = http::error_response({ErrorCode::unauthenticated, "missing or invalid token"});
    res.set(http::bhttp::field::www_authenticate, "Bearer");
    return res;
  }

  std::string_view path(req.target().data(), req.target().size());
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  if (path == agent_protocol::kInventory.path) {
    if (req.method() != http::Verb::get) return method_not_allowed("GET");
    return reply(hv_.inventory());
  }
  if (path == agent_protocol::kDefine.path) {
    if (req.method() != http::Verb::post) return method_not_allowed("POST");
    return mutate(req, path, "define", {});
  }
  if (path == agent_protocol::kStorageInventory.path ||
      path.starts_with(agent_protocol::kStoragePrefix))
    return route_storage(req, path);
  if (path.starts_with(kDomainsPrefix)) {
    const auto rest = path.substr(kDomainsPrefix.size());
    const auto slash = rest.find('/');
    const auto uuid = rest.substr(0, slash);
    if (slash == std::string_view::npos) {
      if (req.method() != http::Verb::get) return method_not_allowed("GET");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return reply(hv_.get_domain(std::string(uuid)));
    }
    const auto action = rest.substr(slash + 1);
    if (action == "start" || action == "shutdown" || action == "reboot" || action == "destroy" ||
        action == "undefine") {
      if (req.method() != http::Verb::post) return method_not_allowed("POST");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return mutate(req, path, action, std::string(uuid));
    }
    if (action == "fsfreeze" || action == "fsthaw" || action == "block-resize") {
      if (req.method() != http::Verb::post) return method_not_allowed("POST");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return mutate(req, path, action, std::string(uuid));
    }
    if (action == "migrate" || action == "migration/abort") {
      if (req.method() != http::Verb::post) return method_not_allowed("POST");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return mutate(req, path, action, std::string(uuid));
    }
    if (action == "migration") {
      if (req.method() != http::Verb::get) return method_not_allowed("GET");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return reply(hv_.migration_status(std::string(uuid)));
    }
  }
  return http::error_response(not_found("no such agent endpoint"));
}

http::Response AgentService::mutate(const http::Request& req, std::string_view path,
                                    std::string_view action, const std::string& uuid) {
  auto parsed = parse_json_body(req);
  if (!parsed) return http::error_response(parsed.error());
  const json body = std::move(*parsed);

  // parse_migration_request checks a migrate body's fields itself.
  Status known = action == "define"     ? check_known_fields(body, {"op_id", "spec"})
                 : action == "undefine" ? check_known_fields(body, {"op_id", "remove_volumes"})
                 : action == "block-resize"
                     ? check_known_fields(body, {"op_id", "device", "size_bytes"})
                 : action == "migrate" ? Status{}
                                       : check_known_fields(body, {"op_id"});
  if (!known) return http::error_response(known.error());
  auto op_id = get_op_id(body);
  if (!op_id) return http::error_response(op_id.error());

  std::function<http::Response()> act;
  std::string subject = uuid;
  if (action == "define") {
    auto it = body.find("spec");
    if (it == body.end())
      return http::error_response(invalid("spec is required", {{"field", "spec"}}));
    auto spec = parse_domain_spec(*it);
    if (!spec) return http::error_response(spec.error());
    subject = spec->uuid;
    act = [this, spec = std::move(*spec)] { return reply(hv_.define(spec)); };
  } else if (action == "undefine") {
    auto remove = get_bool(body, "remove_volumes", false);
    if (!remove) return http::error_response(remove.error());
    act = [this, uuid, remove = *remove] { return reply(hv_.undefine(uuid, remove)); };
  } else if (action == "migrate") {
    auto request = parse_migration_request(body);
    if (!request) return http::error_response(request.error());
    request->op_id = *op_id;
    // Not through the op cache: the hypervisor keeps each domain's last migration by
    // op_id, so a repeat answers the migration's current status, not a stale copy of
    // the first answer, and can never start it twice.
    auto res = reply(hv_.migrate(uuid, *request));
    spdlog::info("migrate {} to {} (op {}): {}", uuid, request->destination_uri, *op_id,
                 res.result_int());
    return res;
  } else if (action == "migration/abort") {
    act = [this, uuid] { return reply(hv_.abort_migration(uuid)); };
  } else if (action == "fsfreeze") {
    act = [this, uuid] { return reply_count(hv_.fs_freeze(uuid), "frozen"); };
  } else if (action == "fsthaw") {
    act = [this, uuid] { return reply_count(hv_.fs_thaw(uuid), "thawed"); };
  } else if (action == "block-resize") {
    auto device = get_string(body, "device", true);
    if (!device) return http::error_response(device.error());
    auto size = get_size(body);
    if (!size) return http::error_response(size.error());
    act = [this, uuid, device = *device, size = *size] {
      auto st = hv_.block_resize(uuid, device, size);
      if (!st) return http::error_response(st.error());
      return ok_json({{"device", device}, {"size_bytes", size}});
    };
  } else if (action == "start") {
    act = [this, uuid] { return reply(hv_.start(uuid)); };
  } else if (action == "shutdown") {
    act = [this, uuid] { return reply(hv_.shutdown(uuid)); };
  } else if (action == "reboot") {
    act = [this, uuid] { return reply(hv_.reboot(uuid)); };
  } else {
    act = [this, uuid] { return reply(hv_.destroy(uuid)); };
  }

  // One controller operation makes several calls (define, then start...) with the same
  // op_id, so the call's path is part of the key.
  const std::string key = *op_id + " " + std::string(path);
  auto res = ops_.run(key, body.dump(), [&] {
    auto r = act();
    spdlog::info("{} {} (op {}): {}", action, subject, *op_id, r.result_int());
    return r;
  });
  return res;
}

http::Response AgentService::route_storage(const http::Request& req, std::string_view path) {
  StorageCall call;
  if (path == agent_protocol::kStorageInventory.path) {
    call.action = "inventory";
  } else {
    const auto seg = split_path(path.substr(agent_protocol::kStoragePrefix.size()));
    const auto n = seg.size();
    for (auto s : seg) {
      if (s.empty()) return http::error_response(not_found("no such agent endpoint"));
    }
    if (n == 2 && seg[0] == "iscsi" &&
        (seg[1] == "discover" || seg[1] == "login" || seg[1] == "logout")) {
      call = {true, "iscsi/" + std::string(seg[1]), {}, {}};
    } else if (n == 2 && seg[0] == "iscsi" && seg[1] == "sessions") {
      call = {false, "iscsi/sessions", {}, {}};
    } else if (n == 2 && seg[0] == "fc" && seg[1] == "luns") {
      call = {false, "fc/luns", {}, {}};
    } else if (n == 2 && seg[0] == "fc" && seg[1] == "attach") {
      call = {true, "fc/attach", {}, {}};
    } else if (n >= 2 && seg[0] == "vgs") {
      call.vg = std::string(seg[1]);
      if (n == 2 && seg[1] == "create" && req.method() == http::Verb::post) {
        call = {true, "vg/create", {}, {}};
      } else if (n == 2) {
        call.action = "vg/get";
      } else if (n == 3 && (seg[2] == "lockstart" || seg[2] == "lockstop")) {
        call.post = true;
        call.action = "vg/" + std::string(seg[2]);
      } else if (n == 3 && seg[2] == "lvs") {
        call.action = "lv/list";
      } else if (n == 4 && seg[2] == "lvs" && seg[3] == "create" &&
                 req.method() == http::Verb::post) {
        call.post = true;
        call.action = "lv/create";
      } else if (n == 4 && seg[2] == "lvs") {
        call.lv = std::string(seg[3]);
        call.action = "lv/get";
      } else if (n == 5 && seg[2] == "lvs" &&
                 (seg[4] == "grow" || seg[4] == "delete" || seg[4] == "activate" ||
                  seg[4] == "snapshot" || seg[4] == "merge")) {
        call.lv = std::string(seg[3]);
        call.post = true;
        call.action = "lv/" + std::string(seg[4]);
      } else {
        return http::error_response(not_found("no such agent endpoint"));
      }
    } else {
      return http::error_response(not_found("no such agent endpoint"));
    }
  }

  if (call.post && req.method() != http::Verb::post) return method_not_allowed("POST");
  if (!call.post && req.method() != http::Verb::get) return method_not_allowed("GET");
  // 409 rather than 404: the route exists, this host is in the wrong state for it,
  // and a 404 would read as "no such VG/LV" to the controller.
  if (!storage_) return http::error_response(conflict("storage is not configured on this host"));
  return call.post ? mutate_storage(req, path, call) : get_storage(call);
}

http::Response AgentService::get_storage(const StorageCall& call) {
  auto& st = *storage_;
  if (call.action == "inventory") {
    return ok_json(
        storage::collect_storage_inventory(&st.iscsi, &st.lvm, st.locks, st.multipath).to_json());
  }
  if (call.action == "iscsi/sessions") return reply_list(st.iscsi.sessions(), "sessions");
  if (call.action == "fc/luns") {
    auto luns = storage::list_fc_luns(st.fc_by_id_dir);
    if (!luns) return http::error_response(luns.error());
    // A link that resolves to nothing names no usable device.
    std::erase_if(*luns, [](const storage::FcLun& l) { return l.device.empty(); });
    return fc_luns_reply(st, *luns);
  }
  if (call.action == "vg/get") return reply_view(st.lvm.get_vg(call.vg));
  if (call.action == "lv/list") return reply_list(st.lvm.list_lvs(call.vg), "lvs");
  assert(call.action == "lv/get");
  return reply_view(st.lvm.get_lv(call.vg, call.lv));
}

http::Response AgentService::mutate_storage(const http::Request& req, std::string_view path,
                                            const StorageCall& call) {
  auto parsed = parse_json_body(req);
  if (!parsed) return http::error_response(parsed.error());
  const json body = std::move(*parsed);
  const auto& a = call.action;
  const Status known =
      a == "iscsi/discover" ? check_known_fields(body, {"op_id", "portal"})
      : a == "iscsi/login"  ? check_known_fields(body, {"op_id", "target", "portal", "chap", "lun"})
      : a == "iscsi/logout" ? check_known_fields(body, {"op_id", "target", "portal"})
      : a == "fc/attach"    ? check_known_fields(body, {"op_id", "wwids"})
      : a == "vg/create"    ? check_known_fields(body, {"op_id", "vg", "devices"})
      : a == "lv/create"
          ? check_known_fields(body, {"op_id", "lv", "size_bytes", "activate_exclusive"})
      : a == "lv/grow"     ? check_known_fields(body, {"op_id", "size_bytes"})
      : a == "lv/activate" ? check_known_fields(body, {"op_id", "mode"})
      : a == "lv/snapshot" ? check_known_fields(body, {"op_id", "snapshot", "size_bytes"})
                           : check_known_fields(body, {"op_id"});
  if (!known) return http::error_response(known.error());
  auto op_id = get_op_id(body);
  if (!op_id) return http::error_response(op_id.error());

  auto& st = *storage_;
  std::function<http::Response()> act;
  std::string subject = call.lv.empty() ? call.vg : call.vg + "/" + call.lv;
  if (a == "iscsi/discover") {
    auto portal = get_string(body, "portal", true);
    if (!portal) return http::error_response(portal.error());
    subject = *portal;
    act = [&st, portal = *portal] { return reply_list(st.iscsi.discover(portal), "targets"); };
  } else if (a == "iscsi/login" || a == "iscsi/logout") {
    auto target = get_string(body, "target", true);
    if (!target) return http::error_response(target.error());
    auto portal = get_string(body, "portal", true);
    if (!portal) return http::error_response(portal.error());
    subject = *target + " at " + *portal;
    if (a == "iscsi/login") {
      auto chap = get_chap(body);
      if (!chap) return http::error_response(chap.error());
      auto lun = get_int(body, "lun", false, 1, 0, kMaxLun);
      if (!lun) return http::error_response(lun.error());
      act = [&st, target = *target, portal = *portal, chap = std::move(*chap),
             lun = static_cast<int>(*lun)] {
        if (auto s = st.iscsi.login(target, portal, chap); !s) return reply(s);
        std::chrono::milliseconds waited{0};
        auto device = wait_for_lun_device(st, target, portal, lun, waited);
        if (!device) return http::error_response(device.error());
        // Its multipath map, when one holds it; multipathd's time to build one comes
        // out of the same budget.
        const auto use = lun_device_to_use(
            st, *device,
            std::min(st.multipath_wait,
                     std::max(st.lun_wait - waited, std::chrono::milliseconds{0})));
        // A LUN this host logged in to is a cluster device: LVM may see it from now on.
        if (auto added = st.lvm.add_device(use.device); !added) return reply(added);
        return ok_json(use.to_json());
      };
    } else {
      act = [&st, target = *target, portal = *portal] {
        return reply(st.iscsi.logout(target, portal));
      };
    }
  } else if (a == "fc/attach") {
    auto wwids = get_wwids(body);
    if (!wwids) return http::error_response(wwids.error());
    subject = std::to_string(wwids->size()) + " FC LUN(s)";
    act = [&st, wwids = std::move(*wwids)] {
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
        const std::string& wwid = wwids[i];
        // Through its multipath map when one holds it, as an iSCSI LUN.
        const auto use = lun_device_to_use(st, found[i], st.multipath_wait);
        // A pool's LUN is a cluster device: LVM may see it from now on.
        if (auto added = st.lvm.add_device(use.device); !added) return reply(added);
        json d = use.to_json();
        d["wwid"] = wwid;
        devices.push_back(std::move(d));
      }
      return ok_json({{"devices", std::move(devices)}});
    };
  } else if (a == "vg/create") {
    auto vg = get_string(body, "vg", true);
    if (!vg) return http::error_response(vg.error());
    auto devices = get_devices(body);
    if (!devices) return http::error_response(devices.error());
    subject = *vg;
    act = [&st, vg = *vg, devices = std::move(*devices)] {
      return reply(st.lvm.create_shared_vg(vg, devices));
    };
  } else if (a == "vg/lockstart") {
    act = [&st, vg = call.vg] { return reply(st.lvm.lock_start(vg)); };
  } else if (a == "vg/lockstop") {
    act = [&st, vg = call.vg] { return reply(st.lvm.lock_stop(vg)); };
  } else if (a == "lv/create") {
    auto lv = get_string(body, "lv", true);
    if (!lv) return http::error_response(lv.error());
    auto size = get_size(body);
    if (!size) return http::error_response(size.error());
    auto exclusive = get_bool(body, "activate_exclusive", false);
    if (!exclusive) return http::error_response(exclusive.error());
    subject = call.vg + "/" + *lv;
    storage::LvCreateOptions options;
    options.activate_exclusive = *exclusive;
    act = [&st, vg = call.vg, lv = *lv, size = *size, options] {
      return reply(st.lvm.create_lv(vg, lv, size, options));
    };
  } else if (a == "lv/grow") {
    auto size = get_size(body);
    if (!size) return http::error_response(size.error());
    act = [&st, vg = call.vg, lv = call.lv, size = *size] {
      return reply(st.lvm.extend_lv(vg, lv, size));
    };
  } else if (a == "lv/delete") {
    act = [&st, vg = call.vg, lv = call.lv] { return reply(st.lvm.remove_lv(vg, lv)); };
  } else if (a == "lv/activate") {
    auto mode = parse_activation(body);
    if (!mode) return http::error_response(mode.error());
    act = [&st, vg = call.vg, lv = call.lv, mode = *mode] {
      return reply(st.lvm.activate(vg, lv, mode));
    };
  } else if (a == "lv/snapshot") {
    auto snapshot = get_string(body, "snapshot", true);
    if (!snapshot) return http::error_response(snapshot.error());
    auto size = get_size(body);
    if (!size) return http::error_response(size.error());
    act = [&st, vg = call.vg, lv = call.lv, snapshot = *snapshot, size = *size] {
      return reply(st.lvm.create_snapshot(vg, lv, snapshot, size));
    };
  } else {
    assert(a == "lv/merge");
    act = [&st, vg = call.vg, lv = call.lv] { return reply(st.lvm.merge_snapshot(vg, lv)); };
  }

  // As for domains: the call's path is part of the key. The body is remembered only
  // as a digest, so a CHAP secret does not stay in the cache.
  const std::string key = *op_id + " " + std::string(path);
  return ops_.run(key, sha256_hex(body.dump()), [&] {
    auto r = act();
    // Names are untrusted until the backend checked them: logged as JSON strings.
    spdlog::info("storage {} {} (op {}): {}", a,
                 json(subject).dump(-1, ' ', false, json::error_handler_t::replace), *op_id,
                 r.result_int());
    return r;
  });
}

}  // namespace kvmfleet::agent
