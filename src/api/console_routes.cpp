// /v1/vms/{vm}/console and /v1/vms/{vm}/console/log (docs/console.md; api/openapi.yaml
// is the contract). The work is ConsoleService's (src/console/).
#include "handlers.hpp"

#include "kvmfleet/console/console_service.hpp"

namespace kvmfleet::api {

// The console asked without an upgrade.
void console_without_upgrade(Controller&, Call& c) {
  c.fail(
      invalid("the console is a WebSocket: ask for an upgrade (Connection: Upgrade, "
              "Upgrade: websocket)",
              {{"reason", "websocket_required"}}));
}

Result<std::shared_ptr<http::WebSocketHandler>> open_console(Controller& svc, Call& c) {
  return svc.console().open(c.param("vm"));
}

void get_console_log(Controller& svc, Call& c) {
  auto lines = console::parse_tail(c.query);
  if (!lines) return c.fail(lines.error());
  svc.console().log_tail(c.param("vm"), *lines, [call = c.shared_from_this()](Result<json> r) {
    if (!r) return call->fail(r.error());
    call->ok(HttpStatus::ok, *r);
  });
}

}  // namespace kvmfleet::api
