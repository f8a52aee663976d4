// /v1/agent/*: what kvmfleet-agent reports with its host's agent token.
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet::api {

void agent_heartbeat(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {"host", "agent_url", "inventory"}); !st)
    return c.fail(st.error());
  auto host = get_string(*body, "host", true);
  if (!host) return c.fail(host.error());
  auto url = get_string(*body, "agent_url", false);
  if (!url) return c.fail(url.error());
  if (!url->empty())
    if (auto st = check_agent_url(*url); !st) return c.fail(st.error());
  if (!body->contains("inventory"))
    return c.fail(invalid("inventory is required", {{"field", "inventory"}}));
  auto inv = parse_inventory(body->at("inventory"));
  if (!inv) return c.fail(inv.error());
  if (auto st = svc.hosts().heartbeat(*c.who, *host, *url, *inv, c.arrived); !st)
    return c.fail(st.error());
  c.ok(HttpStatus::ok, {{"heartbeat_interval_ms", svc.config().heartbeat_interval.count()}});
}

void agent_events(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {"host", "events"}); !st) return c.fail(st.error());
  auto host = get_string(*body, "host", true);
  if (!host) return c.fail(host.error());
  if (!body->contains("events") || !body->at("events").is_array())
    return c.fail(invalid("events must be an array", {{"field", "events"}}));
  std::vector<DomainEvent> events;
  for (const auto& e : body->at("events")) {
    if (!e.is_object()) return c.fail(invalid("event must be an object"));
    DomainEvent ev;
    for (auto [field, out] : {std::pair{"uuid", &ev.uuid}, std::pair{"name", &ev.name},
                              std::pair{"state", &ev.state}, std::pair{"reason", &ev.reason}}) {
      auto v = get_string(e, field, false);
      if (!v) return c.fail(v.error());
      *out = *v;
    }
    if (!is_valid_uuid(ev.uuid))
      return c.fail(invalid("event has a bad uuid", {{"field", "uuid"}}));
    if (!is_event_state(ev.state))
      return c.fail(invalid("event state is not a VM state or undefined", {{"field", "state"}}));
    if (auto it = e.find("stamp"); it != e.end()) {
      try {
        ev.stamp = it->get<ReportStamp>();
      } catch (const std::exception&) {
        return c.fail(invalid("event has a malformed stamp", {{"field", "stamp"}}));
      }
    }
    events.push_back(std::move(ev));
  }
  if (auto st = svc.hosts().domain_events(*c.who, *host, events); !st) return c.fail(st.error());
  c.ok(HttpStatus::ok, json::object());
}

}  // namespace kvmfleet::api
