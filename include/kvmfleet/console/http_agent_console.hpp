#pragma once

// The real AgentConsole: the agent's console WebSocket through http::connect_websocket
// on the controller's io_context, and the console log through an http::Client on a
// thread of its own.

#include "kvmfleet/console/agent_console.hpp"
#include "kvmfleet/http/client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

namespace kvmfleet::console {

class HttpAgentConsole final : public AgentConsole {
 public:
  // `client`: the controller's client to its agents; `ca_file`: the agents' CA (https).
  HttpAgentConsole(boost::asio::io_context& ioc, http::Client& client, std::string ca_file);
  ~HttpAgentConsole() override;

  std::shared_ptr<ConsoleLink> open(const ConsoleTarget& target, ConsoleEvents events) override;
  void log_tail(const ConsoleTarget& target, int lines,
                std::function<void(Result<nlohmann::json>)> done) override;

 private:
  boost::asio::io_context& ioc_;
  http::Client& client_;
  std::string ca_file_;
  boost::asio::thread_pool pool_{1};
};

}  // namespace kvmfleet::console
