// /v1/hosts: registration, schedulable, removal. (Maintenance is in migration_routes.cpp.)
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::api {
namespace {

std::optional<json> host_view_of(Controller& svc, const std::string& name) {
  auto facts = svc.state().read([&](const ClusterState::Data& d) -> std::optional<HostFacts> {
    const Host* h = d.find_host(name);
    return h ? std::optional<HostFacts>(host_facts(*h, d)) : std::nullopt;
  });
  if (!facts) return std::nullopt;
  json view = host_view(*facts);
  view["fencing"] = svc.fencing().summary(facts->host);
  return view;
}

}  // namespace

// A page of hosts by name. Only the page's records are copied under the state's read
// lock (heartbeats wait for it to apply); the JSON is built after it is released.
void list_hosts(Controller& svc, Call& c) {
  auto limit = query_int(c.query, "limit", 100, 1, 1000);
  if (!limit) return c.fail(limit.error());
  const std::string cursor = c.query.count("cursor") ? c.query.at("cursor") : "";
  if (!cursor.empty() && !is_valid_name(cursor))
    return c.fail(invalid("bad cursor", {{"parameter", "cursor"}}));
  std::string next;
  auto page = svc.state().read([&](const ClusterState::Data& d) {
    std::vector<HostFacts> facts;
    // The cursor is the last name of the previous page.
    auto it = cursor.empty() ? d.hosts.begin() : d.hosts.upper_bound(cursor);
    for (; it != d.hosts.end(); ++it) {
      if (static_cast<int>(facts.size()) == *limit) {
        next = facts.back().host.name;
        break;
      }
      facts.push_back(host_facts(it->second, d));
    }
    return facts;
  });
  json items = json::array();
  for (const auto& f : page) {
    items.push_back(host_view(f));
    items.back()["fencing"] = svc.fencing().summary(f.host);
  }
  c.ok(HttpStatus::ok,
       {{"items", std::move(items)}, {"next_cursor", next.empty() ? json(nullptr) : json(next)}});
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
