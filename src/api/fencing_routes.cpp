// /v1/hosts/{host}/fencing, /fence, /confirm-down (docs/fencing.md; api/openapi.yaml is
// the contract). Fence devices' secret options are never answered back.
#include "handlers.hpp"

#include "kvmfleet/fencing/fence_service.hpp"

namespace kvmfleet::api {

void get_fencing(Controller& svc, Call& c) {
  auto view = svc.fencing().get_devices(c.param("host"));
  if (!view) return c.fail(view.error());
  c.ok(HttpStatus::ok, *view);
}

void put_fencing(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto devices = fencing::parse_fencing(*body);
  if (!devices) return c.fail(devices.error());
  auto view = svc.fencing().set_devices(c.param("host"), std::move(*devices));
  if (!view) return c.fail(view.error());
  c.ok(HttpStatus::ok, *view);
}

void fence_host(Controller& svc, Call& c) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  if (!body->is_object() || !body->empty())
    return c.fail(invalid("fence takes no body fields", {{"reason", "unknown_field"}}));
  answer_submitted(svc, c, svc.fencing().fence(*c.who, c.param("host"), submit_options(c)));
}

void confirm_host_down(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto reason = fencing::parse_confirm_down(*body);
  if (!reason) return c.fail(reason.error());
  const std::string& name = c.param("host");
  if (auto st = svc.fencing().confirm_down(*c.who, name, *reason); !st) return c.fail(st.error());
  auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
    const Host* h = d.find_host(name);
    return h ? std::optional<json>(host_view(*h, d)) : std::nullopt;
  });
  if (!view) return c.fail(not_found("no such host", {{"host", name}}));
  (*view)["fencing"] = svc.fencing().summary(svc.state().host(name).value_or(Host{}));
  c.ok(HttpStatus::ok, *view);
}

}  // namespace kvmfleet::api
