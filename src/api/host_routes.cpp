// /v1/hosts: registration, schedulable, removal. (Maintenance is in migration_routes.cpp.)
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::api {
namespace {

std::optional<json> host_view_of(Controller& svc, const std::string& name) {
  return svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
    const Host* h = d.find_host(name);
    return h ? std::optional<json>(host_view(*h, d)) : std::nullopt;
  });
}

}  // namespace

void list_hosts(Controller& svc, Call& c) {
  json items = svc.state().read([](const ClusterState::Data& d) {
    json a = json::array();
    for (const auto& [_, h] : d.hosts) a.push_back(host_view(h, d));
    return a;
  });
  c.ok(HttpStatus::ok, {{"items", items}});
}

void register_host(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {"name", "agent_url"}); !st) return c.fail(st.error());
  auto name = get_string(*body, "name", true);
  if (!name) return c.fail(name.error());
  if (auto st = check_name("name", *name); !st) return c.fail(st.error());
  auto url = get_string(*body, "agent_url", true);
  if (!url) return c.fail(url.error());
  if (auto st = check_agent_url(*url); !st) return c.fail(st.error());
  auto r = svc.hosts().register_host(*name, *url);
  if (!r) return c.fail(r.error());
  json view = svc.state().read([&](const ClusterState::Data& d) { return host_view(r->first, d); });
  c.ok(HttpStatus::created, {{"host", view}, {"agent_token", r->second}});
}

void get_host(Controller& svc, Call& c) {
  const std::string& name = c.param("host");
  auto view = host_view_of(svc, name);
  if (!view) return c.fail(not_found("no such host", {{"host", name}}));
  c.ok(HttpStatus::ok, *view);
}

void patch_host(Controller& svc, Call& c) {
  const std::string& name = c.param("host");
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {"schedulable"}); !st) return c.fail(st.error());
  if (!body->contains("schedulable") || !(*body)["schedulable"].is_boolean())
    return c.fail(invalid("schedulable must be true or false", {{"field", "schedulable"}}));
  auto s = get_bool(*body, "schedulable", true);
  if (!s) return c.fail(s.error());
  if (auto st = svc.hosts().set_schedulable(name, *s); !st) return c.fail(st.error());
  auto view = host_view_of(svc, name);
  if (!view) return c.fail(not_found("no such host", {{"host", name}}));
  c.ok(HttpStatus::ok, *view);
}

void delete_host(Controller& svc, Call& c) {
  if (auto st = svc.hosts().delete_host(c.param("host")); !st) return c.fail(st.error());
  c.ok(HttpStatus::ok, json::object());
}

}  // namespace kvmfleet::api
