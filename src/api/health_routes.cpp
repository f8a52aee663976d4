// GET /v1/healthz and GET /metrics.
#include "handlers.hpp"

namespace kvmfleet::api {

void get_health(Controller& svc, Call& c) {
  // Without a token: whether each part is healthy, never its errors (they name VMs).
  json details = json::object();
  // Held here: items() of the temporary would outlive it.
  json parts = c.metrics.health_details();
  parts["liveness"] = svc.hosts().liveness_health();
  for (const auto& [name, h] : parts.items()) {
    json brief = json::object();
    for (const char* key : {"healthy", "lag_seconds", "queue_depth", "guard_active"})
      if (h.is_object() && h.contains(key)) brief[key] = h[key];
    details[name] = std::move(brief);
  }
  c.ok(HttpStatus::ok, {{"status", "ok"}, {"details", std::move(details)}});
}

void get_metrics(Controller& svc, Call& c) {
  auto res = http::Response{HttpStatus::ok, c.req.version()};
  res.set(http::bhttp::field::content_type, "text/plain; version=0.0.4");
  res.keep_alive(c.req.keep_alive());
  res.body() = c.metrics.render(svc.state()) + svc.hosts().liveness_metrics() + svc.ha().metrics();
  res.prepare_payload();
  c.reply(std::move(res));
}

}  // namespace kvmfleet::api
