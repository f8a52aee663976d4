// /v1/tokens: bearer tokens and their roles.
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>

namespace kvmfleet::api {

void list_tokens(Controller& svc, Call& c) {
  json items = svc.state().read([](const ClusterState::Data& d) {
    std::vector<const TokenRecord*> v;
    for (const auto& [_, t] : d.tokens) v.push_back(&t);
    std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->created_at < b->created_at; });
    json a = json::array();
    for (const auto* t : v) a.push_back(token_view(*t));
    return a;
  });
  c.ok(HttpStatus::ok, {{"items", items}});
}

void create_token(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {"name", "role"}); !st) return c.fail(st.error());
  auto name = get_string(*body, "name", true);
  if (!name) return c.fail(name.error());
  auto role_s = get_string(*body, "role", true);
  if (!role_s) return c.fail(role_s.error());
  auto role = role_from_string(*role_s);
  if (!role || *role == Role::agent)
    return c.fail(invalid("role must be admin, operator or viewer", {{"field", "role"}}));
  auto r = svc.tokens().create_token(*name, *role);
  if (!r) return c.fail(r.error());
  json view = token_view(r->first);
  view["token"] = r->second;
  c.ok(HttpStatus::created, view);
}

void delete_token(Controller& svc, Call& c) {
  if (auto st = svc.tokens().delete_token(c.param("token")); !st) return c.fail(st.error());
  c.ok(HttpStatus::ok, json::object());
}

}  // namespace kvmfleet::api
