#pragma once

// A VM's serial console through the controller (docs/console.md): a WebSocket that
// the controller relays to the agent of the host the VM is recorded on, and the tail
// of the console log. Decisions only (which agent, may it be asked now, the limits);
// the network is AgentConsole's.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/console/agent_console.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/http/websocket.hpp"

#include <map>
#include <memory>
#include <string>

namespace kvmfleet::console {

inline constexpr int kMaxTailLines = 10'000;
inline constexpr int kDefaultTailLines = 100;
// A client's message to the console: keystrokes and pastes, never more than this.
inline constexpr std::size_t kMaxClientMessage = 4 * 1024;

// ?tail=N: 1..kMaxTailLines, default kDefaultTailLines; anything else is 400.
Result<int> parse_tail(const std::map<std::string, std::string>& query);

// The agent to ask about VM `vm_ref` (id or name): 404 unknown VM; 409 conflict when
// it is on no host (details.reason "vm_not_placed") or its host is not up
// ("host_not_up"), and, with `need_running`, when it is not running ("vm_not_running").
Result<ConsoleTarget> console_target(const ClusterState::Data& d, const std::string& vm_ref,
                                     bool need_running);

// The controller's end of a console WebSocket: relays the client's messages to the
// agent's console socket and back; either side's end closes the other.
class ConsoleProxy final : public http::WebSocketHandler,
                           public std::enable_shared_from_this<ConsoleProxy> {
 public:
  ConsoleProxy(AgentConsole& agents, ConsoleTarget target)
      : agents_(agents), target_(std::move(target)) {}
  ~ConsoleProxy() override;
  void on_open(std::shared_ptr<http::WebSocketChannel> channel) override;
  void on_message(std::string bytes) override;
  void on_closed() override;

 private:
  AgentConsole& agents_;
  ConsoleTarget target_;
  std::mutex mu_;
  std::shared_ptr<ConsoleLink> link_;
};

class ConsoleService {
 public:
  ConsoleService(ClusterState& state, AgentConsole& agents) : state_(state), agents_(agents) {}

  // The WebSocket handler for VM `vm_ref`'s console, or why not (console_target).
  Result<std::shared_ptr<http::WebSocketHandler>> open(const std::string& vm_ref);
  // The last `lines` lines of its console log (any power state; the host must be up),
  // as {"vm", "host", "lines", "truncated", "text"}, given to `done` (maybe on another
  // thread).
  void log_tail(const std::string& vm_ref, int lines,
                std::function<void(Result<nlohmann::json>)> done);

 private:
  ClusterState& state_;
  AgentConsole& agents_;
};

}  // namespace kvmfleet::console
