#include "kvmfleet/console/http_agent_console.hpp"

#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/http/websocket_client.hpp"

#include <boost/asio/post.hpp>

namespace kvmfleet::console {
namespace {

namespace proto = agent_protocol;

std::string url_of(const ConsoleTarget& t, const proto::Call& call) {
  std::string base = t.agent_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string path(call.path);
  // The uuid is the VM's id, checked as a UUID when the VM was recorded.
  if (auto pos = path.find("{uuid}"); pos != std::string::npos) path.replace(pos, 6, t.uuid);
  return base + path;
}

class Link final : public ConsoleLink {
 public:
  explicit Link(std::shared_ptr<http::WebSocketConnection> c) : c_(std::move(c)) {}
  void send(std::string bytes) override { c_->send(std::move(bytes)); }
  void close() override { c_->close(); }

 private:
  std::shared_ptr<http::WebSocketConnection> c_;
};

}  // namespace

HttpAgentConsole::HttpAgentConsole(boost::asio::io_context& ioc, http::Client& client,
                                   std::string ca_file)
    : ioc_(ioc), client_(client), ca_file_(std::move(ca_file)) {}

HttpAgentConsole::~HttpAgentConsole() {
  pool_.join();
}

std::shared_ptr<ConsoleLink> HttpAgentConsole::open(const ConsoleTarget& target,
                                                    ConsoleEvents events) {
  http::WebSocketClientOptions options;
  options.ca_file = ca_file_;
  // The agent sends what the guest printed in pieces of up to a few hundred KiB.
  options.message_limit = 1 << 20;
  http::WebSocketCallbacks callbacks;
  callbacks.on_message = std::move(events.on_data);
  callbacks.on_closed = [on_end = std::move(events.on_end), host = target.host](Status why) {
    if (!why) {
      Error e = why.error();
      e.details["host"] = host;
      e.details["agent_call"] = std::string(proto::kConsole.name);
      why = std::move(e);
    }
    if (on_end) on_end(std::move(why));
  };
  auto c = http::connect_websocket(ioc_, url_of(target, proto::kConsole), target.agent_secret,
                                   std::move(options), std::move(callbacks));
  return std::make_shared<Link>(std::move(c));
}

void HttpAgentConsole::log_tail(const ConsoleTarget& target, int lines,
                                std::function<void(Result<nlohmann::json>)> done) {
  boost::asio::post(pool_, [this, target, lines, done = std::move(done)] {
    const auto url = url_of(target, proto::kConsoleLog) + "?lines=" + std::to_string(lines);
    auto r = http::call_json(client_, "GET", url, target.agent_secret, nullptr,
                             proto::timeout_for(proto::kConsoleLog.timeout));
    if (!r) {
      Error e = r.take_error();
      e.details["agent_call"] = std::string(proto::kConsoleLog.name);
      return done(std::move(e));
    }
    done(std::move(*r));
  });
}

}  // namespace kvmfleet::console
