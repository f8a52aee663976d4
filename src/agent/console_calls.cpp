// The agent's serial console calls (protocol.hpp, "Serial console"). The console itself
// is a WebSocket (AgentService::open_upgrade, ConsoleRelay); its row answers a plain
// GET with a 400 that says so.
#include "call_handlers.hpp"

#include "kvmfleet/agent/console_relay.hpp"

namespace kvmfleet::agent::calls {

namespace proto = agent_protocol;

Result<PreparedCall> console(const CallContext&) {
  return invalid("the console is a WebSocket: ask for an upgrade",
                 {{"reason", "websocket_required"}});
}

Result<PreparedCall> console_log(const CallContext& c) {
  auto lines = parse_console_log_query(c.query);
  if (!lines) return lines.take_error();
  return PreparedCall{
      c.params.uuid, [&hv = c.hv, uuid = c.params.uuid, n = *lines] {
        auto log = hv.console_log(uuid, proto::kConsoleLogMaxBytes);
        if (!log) return http::error_response(log.error());
        const bool whole = log->size() < proto::kConsoleLogMaxBytes;
        const auto tail = tail_lines(*log, n, whole);
        nlohmann::json body = {{"lines", tail.lines}, {"truncated", tail.truncated}};
        // Guest output is any bytes: what is not UTF-8 is replaced.
        body["text"] = nlohmann::json::parse(nlohmann::json(tail.text).dump(
            -1, ' ', false, nlohmann::json::error_handler_t::replace));
        return ok_json(body);
      }};
}

}  // namespace kvmfleet::agent::calls
