#pragma once

// The controller's one interface to the agents' serial console calls (protocol.hpp,
// "Serial console"): HttpAgentConsole is the real one, tests/doubles/console holds a
// double.

#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace kvmfleet::console {

// Whose console: the agent of the host the VM is recorded on.
struct ConsoleTarget {
  std::string host;
  std::string agent_url;
  std::string agent_secret;  // never logged or returned
  std::string uuid;          // the VM's id, the libvirt domain's UUID
};

// What the agent's console socket delivers. on_end last and exactly once.
struct ConsoleEvents {
  std::function<void(std::string bytes)> on_data;
  std::function<void(Status why)> on_end;
};

// The controller's end of an agent's console socket. Thread-safe; what is sent before
// the socket opens is sent once it does.
class ConsoleLink {
 public:
  virtual ~ConsoleLink() = default;
  virtual void send(std::string bytes) = 0;
  virtual void close() = 0;
};

class AgentConsole {
 public:
  virtual ~AgentConsole() = default;
  // Opens the agent's console socket; failures arrive through events.on_end.
  virtual std::shared_ptr<ConsoleLink> open(const ConsoleTarget& target, ConsoleEvents events) = 0;
  // The agent's console_log answer ({"text", "lines", "truncated"}), or its error,
  // given to `done` from another thread (the call is network I/O).
  virtual void log_tail(const ConsoleTarget& target, int lines,
                        std::function<void(Result<nlohmann::json>)> done) = 0;
};

}  // namespace kvmfleet::console
