// /v1/storage-pools, /v1/volumes and VM snapshots (docs/storage.md; api/openapi.yaml is
// the contract).
#include "handlers.hpp"

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

}  // namespace

// --- storage pools

void list_pools(Controller& svc, Call& c) {
  json items = svc.state().read([](const ClusterState::Data& d) {
    json a = json::array();
    for (const auto& [_, p] : d.pools) a.push_back(pool_view(p, d));
    return a;
  });
  c.ok(HttpStatus::ok, {{"items", std::move(items)}});
}

void create_pool(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto req = parse_pool_create(*body);
  if (!req) return c.fail(req.error());
  answer_submitted(svc, c,
                   svc.storage().create_pool(*c.who, req->pool, req->hosts, submit_options(c)));
}

void get_pool(Controller& svc, Call& c) {
  const std::string& name = c.param("pool");
  get_one(
      svc, c,
      [&](const ClusterState::Data& d) -> std::optional<json> {
        const StoragePool* p = d.find_pool(name);
        return p ? std::optional<json>(pool_view(*p, d)) : std::nullopt;
      },
      "pool", name);
}

void delete_pool(Controller& svc, Call& c) {
  answer_submitted(svc, c, svc.storage().delete_pool(*c.who, c.param("pool"), submit_options(c)));
}

void connect_pool(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto hosts = parse_pool_hosts(*body);
  if (!hosts) return c.fail(hosts.error());
  answer_submitted(svc, c,
                   svc.storage().connect_pool(*c.who, c.param("pool"), *hosts, submit_options(c)));
}

// --- volumes

void list_volumes(Controller& svc, Call& c) {
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
  c.ok(HttpStatus::ok, {{"items", std::move(items)}});
}

void create_volume(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto req = parse_volume_create(*body);
  if (!req) return c.fail(req.error());
  answer_submitted(svc, c,
                   svc.storage().create_volume(*c.who, req->name, req->pool, req->size_bytes,
                                               submit_options(c)));
}

void get_volume(Controller& svc, Call& c) {
  const std::string& id = c.param("volume");
  get_one(
      svc, c,
      [&](const ClusterState::Data& d) -> std::optional<json> {
        const Volume* v = d.find_volume(id);
        return v ? std::optional<json>(volume_view(*v, d)) : std::nullopt;
      },
      "volume", id);
}

void delete_volume(Controller& svc, Call& c) {
  answer_submitted(svc, c,
                   svc.storage().delete_volume(*c.who, c.param("volume"), submit_options(c)));
}

void grow_volume(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto size = parse_volume_grow(*body);
  if (!size) return c.fail(size.error());
  answer_submitted(svc, c,
                   svc.storage().grow_volume(*c.who, c.param("volume"), *size, submit_options(c)));
}

// --- snapshots

void list_snapshots(Controller& svc, Call& c) {
  const std::string& id = c.param("volume");
  get_one(
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

void create_snapshot(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto req = parse_snapshot_create(*body);
  if (!req) return c.fail(req.error());
  answer_submitted(
      svc, c,
      svc.storage().create_snapshot(*c.who, c.param("volume"), req->name, req->size_bytes,
                                    req->ratio, req->quiesce, submit_options(c)));
}

void get_snapshot(Controller& svc, Call& c) {
  const std::string& id = c.param("volume");
  const std::string& snap = c.param("snapshot");
  get_one(
      svc, c,
      [&](const ClusterState::Data& d) -> std::optional<json> {
        const Volume* v = d.find_volume(id);
        const Snapshot* s = v ? v->find_snapshot(snap) : nullptr;
        return s ? std::optional<json>(snapshot_view(*s, *v)) : std::nullopt;
      },
      "snapshot", snap);
}

void delete_snapshot(Controller& svc, Call& c) {
  answer_submitted(svc, c,
                   svc.storage().snapshot_action(*c.who, c.param("volume"), c.param("snapshot"),
                                                 op_kind::snapshot_delete, submit_options(c)));
}

void revert_snapshot(Controller& svc, Call& c) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {}); !st) return c.fail(st.error());
  answer_submitted(svc, c,
                   svc.storage().snapshot_action(*c.who, c.param("volume"), c.param("snapshot"),
                                                 op_kind::snapshot_revert, submit_options(c)));
}

// A snapshot of every volume of a VM at once.
void create_vm_snapshot(Controller& svc, Call& c) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  auto req = parse_snapshot_create(*body);
  if (!req) return c.fail(req.error());
  answer_submitted(
      svc, c,
      svc.storage().create_vm_snapshot(*c.who, c.param("vm"), req->name, req->size_bytes,
                                       req->ratio, req->quiesce, submit_options(c)));
}

}  // namespace kvmfleet::api
