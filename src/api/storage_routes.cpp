// /v1/storage-pools and /v1/volumes (docs/storage.md; api/openapi.yaml is the contract).
#include "call.hpp"
#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::api {
namespace {

// Answers GET of one resource found by `find`, or 404 `what`.
template <typename Find>
void get_one(Controller& svc, Call& c, Find find, const char* what, const std::string& key) {
  auto view = svc.state().read(find);
  if (!view) return c.fail(not_found(std::string("no such ") + what, {{what, key}}));
  c.ok(HttpStatus::ok, *view);
}

// POST handlers take ?wait like every other asynchronous call.
bool wait_query_ok(Call& c) {
  if (auto st = check_query_keys(c.query, {"wait"}); !st) {
    c.fail(st.error());
    return false;
  }
  if (auto w = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds); !w) {
    c.fail(w.error());
    return false;
  }
  return true;
}

void route_pools(Controller& svc, std::shared_ptr<Call> cp, const auto& require,
                 const auto& not_allowed) {
  Call& c = *cp;
  const auto& seg = c.seg;
  const auto n = seg.size();
  const Verb m = c.req.method();
  if (n == 2 && m == Verb::get) {
    if (!require(Need::viewer)) return;
    if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
    json items = svc.state().read([](const ClusterState::Data& d) {
      json a = json::array();
      for (const auto& [_, p] : d.pools) a.push_back(pool_view(p, d));
      return a;
    });
    return c.ok(HttpStatus::ok, {{"items", std::move(items)}});
  }
  if (n == 2 && m == Verb::post) {
    if (!require(Need::admin)) return;
    if (!wait_query_ok(c)) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto req = parse_pool_create(*body);
    if (!req) return c.fail(req.error());
    return answer_submitted(svc, cp,
                            svc.storage().create_pool(*c.who, req->pool, req->hosts, submit_options(c)));
  }
  if (n == 2) return not_allowed();
  const std::string name(seg[2]);
  if (!is_valid_name(name)) return c.fail(invalid("bad storage pool name", {{"pool", name}}));
  if (n == 3 && m == Verb::get) {
    if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
    if (!require(Need::viewer)) return;
    return get_one(
        svc, c,
        [&](const ClusterState::Data& d) -> std::optional<json> {
          const StoragePool* p = d.find_pool(name);
          return p ? std::optional<json>(pool_view(*p, d)) : std::nullopt;
        },
        "pool", name);
  }
  if (n == 3 && m == Verb::delete_) {
    if (!require(Need::admin)) return;
    if (!wait_query_ok(c)) return;
    return answer_submitted(svc, cp, svc.storage().delete_pool(*c.who, name, submit_options(c)));
  }
  if (n == 3) return not_allowed();
  if (n == 4 && seg[3] == "hosts") {
    if (m != Verb::post) return not_allowed();
    if (!require(Need::admin)) return;
    if (!wait_query_ok(c)) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto hosts = parse_pool_hosts(*body);
    if (!hosts) return c.fail(hosts.error());
    return answer_submitted(svc, cp, svc.storage().connect_pool(*c.who, name, *hosts, submit_options(c)));
  }
  return c.fail(not_found("no such resource"));
}

void route_volumes(Controller& svc, std::shared_ptr<Call> cp, const auto& require,
                   const auto& not_allowed) {
  Call& c = *cp;
  const auto& seg = c.seg;
  const auto n = seg.size();
  const Verb m = c.req.method();
  if (n == 2 && m == Verb::get) {
    if (!require(Need::viewer)) return;
    if (auto st = check_query_keys(c.query, {"pool"}); !st) return c.fail(st.error());
    const std::string pool = c.query.count("pool") ? c.query.at("pool") : "";
    if (!pool.empty() && !is_valid_name(pool))
      return c.fail(invalid("bad pool", {{"parameter", "pool"}}));
    json items = svc.state().read([&](const ClusterState::Data& d) {
      json a = json::array();
      for (const auto& [_, id] : d.volume_ids) {
        const Volume& v = d.volumes.at(id);
        if (pool.empty() || v.pool == pool) a.push_back(volume_view(v, d));
      }
      return a;
    });
    return c.ok(HttpStatus::ok, {{"items", std::move(items)}});
  }
  if (n == 2 && m == Verb::post) {
    if (!require(Need::operator_)) return;
    if (!wait_query_ok(c)) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto req = parse_volume_create(*body);
    if (!req) return c.fail(req.error());
    return answer_submitted(
        svc, cp,
        svc.storage().create_volume(*c.who, req->name, req->pool, req->size_bytes, submit_options(c)));
  }
  if (n == 2) return not_allowed();
  const std::string id(seg[2]);
  if (!is_valid_uuid(id) && !is_valid_name(id))
    return c.fail(invalid("bad volume id or name", {{"volume", id}}));

  if (n == 3 && m == Verb::get) {
    if (!require(Need::viewer)) return;
    if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
    return get_one(
        svc, c,
        [&](const ClusterState::Data& d) -> std::optional<json> {
          const Volume* v = d.find_volume(id);
          return v ? std::optional<json>(volume_view(*v, d)) : std::nullopt;
        },
        "volume", id);
  }
  if (n == 3 && m == Verb::delete_) {
    if (!require(Need::operator_)) return;
    if (!wait_query_ok(c)) return;
    return answer_submitted(svc, cp, svc.storage().delete_volume(*c.who, id, submit_options(c)));
  }
  if (n == 3) return not_allowed();

  if (n == 4 && seg[3] == "grow") {
    if (m != Verb::post) return not_allowed();
    if (!require(Need::operator_)) return;
    if (!wait_query_ok(c)) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto size = parse_volume_grow(*body);
    if (!size) return c.fail(size.error());
    return answer_submitted(svc, cp, svc.storage().grow_volume(*c.who, id, *size, submit_options(c)));
  }
  if (seg[3] != "snapshots") return c.fail(not_found("no such resource"));
  if (n == 4 && m == Verb::get) {
    if (!require(Need::viewer)) return;
    if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
    return get_one(
        svc, c,
        [&](const ClusterState::Data& d) -> std::optional<json> {
          const Volume* v = d.find_volume(id);
          if (!v) return std::nullopt;
          json a = json::array();
          for (const auto& s : v->snapshots) a.push_back(snapshot_view(s, *v));
          return json{{"items", std::move(a)}};
        },
        "volume", id);
  }
  if (n == 4 && m == Verb::post) {
    if (!require(Need::operator_)) return;
    if (!wait_query_ok(c)) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto req = parse_snapshot_create(*body);
    if (!req) return c.fail(req.error());
    return answer_submitted(svc, cp,
                            svc.storage().create_snapshot(*c.who, id, req->name, req->size_bytes, req->ratio,
                                                req->quiesce, submit_options(c)));
  }
  if (n == 4) return not_allowed();
  const std::string snap(seg[4]);
  if (!is_valid_uuid(snap) && !is_valid_name(snap))
    return c.fail(invalid("bad snapshot id or name", {{"snapshot", snap}}));
  if (n == 5 && m == Verb::get) {
    if (!require(Need::viewer)) return;
    if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
    return get_one(
        svc, c,
        [&](const ClusterState::Data& d) -> std::optional<json> {
          const Volume* v = d.find_volume(id);
          const Snapshot* s = v ? v->find_snapshot(snap) : nullptr;
          return s ? std::optional<json>(snapshot_view(*s, *v)) : std::nullopt;
        },
        "snapshot", snap);
  }
  std::string_view kind;
  if (n == 5 && m == Verb::delete_) kind = op_kind::snapshot_delete;
  else if (n == 6 && seg[5] == "revert" && m == Verb::post) kind = op_kind::snapshot_revert;
  else if (n == 5 || (n == 6 && seg[5] == "revert")) return not_allowed();
  else return c.fail(not_found("no such resource"));
  if (!require(Need::operator_)) return;
  if (!wait_query_ok(c)) return;
  if (kind == op_kind::snapshot_revert) {
    auto body = optional_body_of(c);
    if (!body) return c.fail(body.error());
    if (auto st = check_known_fields(*body, {}); !st) return c.fail(st.error());
  }
  return answer_submitted(svc, cp, svc.storage().snapshot_action(*c.who, id, snap, kind, submit_options(c)));
}

}  // namespace

void route_storage(Controller& svc, std::shared_ptr<Call> cp) {
  Call& c = *cp;
  auto require = [&](Need need) {
    if (allowed(c.who->role, need)) return true;
    c.fail(Error(ErrorCode::permission_denied,
                 "role " + std::string(to_string(c.who->role)) + " may not do this"));
    return false;
  };
  auto not_allowed = [&] {
    c.fail(Error(ErrorCode::method_not_allowed, "method not allowed on this path"));
  };
  if (c.seg[1] == "storage-pools") return route_pools(svc, cp, require, not_allowed);
  return route_volumes(svc, cp, require, not_allowed);
}

}  // namespace kvmfleet::api
