#include "kvmfleet/console/console_service.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

namespace kvmfleet::console {

Result<int> parse_tail(const std::map<std::string, std::string>& query) {
  const auto it = query.find("tail");
  if (it == query.end()) return kDefaultTailLines;
  const std::string& v = it->second;
  int n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || ptr != v.data() + v.size() || n < 1 || n > kMaxTailLines)
    return invalid("tail must be a whole number from 1 to " + std::to_string(kMaxTailLines),
                   {{"field", "tail"}});
  return n;
}

Result<ConsoleTarget> console_target(const ClusterState::Data& d, const std::string& vm_ref,
                                     bool need_running) {
  const Vm* vm = d.find_vm(vm_ref);
  if (!vm) return not_found("no VM " + vm_ref);
  if (vm->host.empty())
    return conflict("VM " + vm->spec.name + " is on no host yet",
                    {{"reason", "vm_not_placed"}, {"vm", vm->id}});
  const Host* host = d.find_host(vm->host);
  if (!host || host->state != HostState::up)
    return conflict("the host of VM " + vm->spec.name + " (" + vm->host + ") is not up",
                    {{"reason", "host_not_up"},
                     {"vm", vm->id},
                     {"host", vm->host},
                     {"host_state", host ? std::string(to_string(host->state)) : "unknown"}});
  if (need_running && vm->state != VmState::running)
    return conflict("VM " + vm->spec.name + " is not running",
                    {{"reason", "vm_not_running"},
                     {"vm", vm->id},
                     {"state", std::string(to_string(vm->state))}});
  return ConsoleTarget{host->name, host->agent_url, host->agent_secret, vm->id};
}

ConsoleProxy::~ConsoleProxy() {
  if (link_) link_->close();
}

void ConsoleProxy::on_open(std::shared_ptr<http::WebSocketChannel> channel) {
  // Held weakly: the client's socket owns this proxy, the proxy owns the link.
  std::weak_ptr<http::WebSocketChannel> weak = channel;
  ConsoleEvents events;
  events.on_data = [weak](std::string bytes) {
    if (auto ch = weak.lock()) ch->send(std::move(bytes));
  };
  events.on_end = [weak, host = target_.host, uuid = target_.uuid](Status why) {
    if (!why) spdlog::info("console {} on {}: {}", uuid, host, why.error().message);
    if (auto ch = weak.lock()) ch->close(why ? "console closed" : why.error().message);
  };
  auto link = agents_.open(target_, std::move(events));
  std::lock_guard lk(mu_);
  link_ = std::move(link);
}

void ConsoleProxy::on_message(std::string bytes) {
  std::lock_guard lk(mu_);
  // The server's message limit already holds a message to kMaxClientMessage.
  if (link_ && !bytes.empty() && bytes.size() <= kMaxClientMessage) link_->send(std::move(bytes));
}

void ConsoleProxy::on_closed() {
  std::shared_ptr<ConsoleLink> link;
  {
    std::lock_guard lk(mu_);
    link = std::move(link_);
  }
  if (link) link->close();
}

Result<std::shared_ptr<http::WebSocketHandler>> ConsoleService::open(const std::string& vm_ref) {
  auto target = state_.read([&](const ClusterState::Data& d) {
    return console_target(d, vm_ref, /*need_running=*/true);
  });
  if (!target) return target.take_error();
  return std::shared_ptr<http::WebSocketHandler>(
      std::make_shared<ConsoleProxy>(agents_, std::move(*target)));
}

void ConsoleService::log_tail(const std::string& vm_ref, int lines,
                              std::function<void(Result<nlohmann::json>)> done) {
  auto target = state_.read([&](const ClusterState::Data& d) {
    return console_target(d, vm_ref, /*need_running=*/false);
  });
  if (!target) return done(target.take_error());
  agents_.log_tail(
      *target, lines,
      [done = std::move(done), vm = target->uuid, host = target->host](Result<nlohmann::json> r) {
        if (!r) {
          Error e = r.take_error();
          e.details["host"] = host;
          return done(std::move(e));
        }
        const auto& j = *r;
        // The agent's answer is untrusted: its fields are checked.
        if (!j.is_object() || !j.contains("text") || !j["text"].is_string() ||
            !j.contains("lines") || !j["lines"].is_number_integer() || !j.contains("truncated") ||
            !j["truncated"].is_boolean())
          return done(Error(ErrorCode::unavailable, "malformed console log answer from the agent",
                            {{"host", host}}));
        done(nlohmann::json{{"vm", vm},
                            {"host", host},
                            {"lines", j["lines"]},
                            {"truncated", j["truncated"]},
                            {"text", j["text"]}});
      });
}

}  // namespace kvmfleet::console
