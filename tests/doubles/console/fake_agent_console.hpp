#pragma once

// The double of console::AgentConsole (include/kvmfleet/console/agent_console.hpp):
// links recorded with what was sent through them; the agent's side played by hand.

#include "kvmfleet/console/agent_console.hpp"

#include <mutex>
#include <vector>

namespace kvmfleet::doubles {

class FakeAgentConsole final : public console::AgentConsole {
 public:
  struct FakeLink final : console::ConsoleLink {
    console::ConsoleTarget target;
    console::ConsoleEvents events;
    std::vector<std::string> sent;
    bool closed = false;
    void send(std::string bytes) override { sent.push_back(std::move(bytes)); }
    void close() override { closed = true; }
  };

  std::shared_ptr<console::ConsoleLink> open(const console::ConsoleTarget& target,
                                             console::ConsoleEvents events) override {
    auto link = std::make_shared<FakeLink>();
    link->target = target;
    link->events = std::move(events);
    links.push_back(link);
    return link;
  }
  void log_tail(const console::ConsoleTarget& target, int lines,
                std::function<void(Result<nlohmann::json>)> done) override {
    last_target = target;
    last_lines = lines;
    done(log_answer);
  }

  std::vector<std::shared_ptr<FakeLink>> links;
  Result<nlohmann::json> log_answer = nlohmann::json::object();
  console::ConsoleTarget last_target;
  int last_lines = 0;
};

}  // namespace kvmfleet::doubles
