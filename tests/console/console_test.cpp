// The serial console's logic with doubles: the controller's choice of agent and its
// refusals, the limits, the proxy both ways; the agent's relay and log tail.
#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/console_relay.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/console/console_service.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/console/fake_agent_console.hpp"
#include "tests/doubles/http/fake_websocket_channel.hpp"

#include <gtest/gtest.h>

using namespace kvmfleet;

namespace {

constexpr const char* kUuid = "6f1c2b1e-3a4d-4c5e-8f70-1a2b3c4d5e6f";

ClusterState::Data cluster(VmState vm_state, HostState host_state, const std::string& host = "h1") {
  ClusterState::Data d;
  Host h;
  h.name = "h1";
  h.agent_url = "http://127.0.0.1:7100";
  h.agent_secret = "secret";
  h.state = host_state;
  WriteBatch b;
  b.put_hosts.push_back(h);
  Vm vm;
  vm.id = kUuid;
  vm.spec.name = "web1";
  vm.host = host;
  vm.state = vm_state;
  b.put_vms.push_back(vm);
  d.apply(b);
  return d;
}

TEST(ConsoleTarget, ARunningVmOnAnUpHostIsReachedThroughItsAgent) {
  auto d = cluster(VmState::running, HostState::up);
  auto t = console::console_target(d, "web1", true);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->host, "h1");
  EXPECT_EQ(t->agent_url, "http://127.0.0.1:7100");
  EXPECT_EQ(t->uuid, kUuid);
}

TEST(ConsoleTarget, RefusalsNameTheirReason) {
  auto stopped = cluster(VmState::stopped, HostState::up);
  auto r = console::console_target(stopped, "web1", true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_EQ(r.error().details["reason"], "vm_not_running");
  // The log of a stopped VM is still readable.
  EXPECT_TRUE(console::console_target(stopped, "web1", false).ok());

  auto down = cluster(VmState::running, HostState::unreachable);
  r = console::console_target(down, "web1", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_EQ(r.error().details["reason"], "host_not_up");

  auto pending = cluster(VmState::pending, HostState::up, "");
  r = console::console_target(pending, "web1", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().details["reason"], "vm_not_placed");

  r = console::console_target(stopped, "nope", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::not_found);
}

TEST(ConsoleTail, TailIsBoundedAndDefaulted) {
  EXPECT_EQ(*console::parse_tail({}), console::kDefaultTailLines);
  EXPECT_EQ(*console::parse_tail({{"tail", "5"}}), 5);
  EXPECT_EQ(*console::parse_tail({{"tail", "10000"}}), 10'000);
  for (const char* bad : {"0", "-1", "10001", "abc", "", "5x", "99999999999999"})
    EXPECT_FALSE(console::parse_tail({{"tail", bad}}).ok()) << bad;
}

TEST(ConsoleProxy, RelaysBothWaysAndEndsTogether) {
  doubles::FakeAgentConsole agents;
  auto channel = std::make_shared<doubles::FakeWebSocketChannel>();
  auto proxy = std::make_shared<console::ConsoleProxy>(
      agents, console::ConsoleTarget{"h1", "http://a", "s", kUuid});
  proxy->on_open(channel);
  ASSERT_EQ(agents.links.size(), 1u);
  auto link = agents.links[0];
  EXPECT_EQ(link->target.uuid, kUuid);

  proxy->on_message("ls\r");
  proxy->on_message(std::string(console::kMaxClientMessage + 1, 'x'));  // over the limit
  ASSERT_EQ(link->sent.size(), 1u);
  EXPECT_EQ(link->sent[0], "ls\r");

  link->events.on_data("login: ");
  ASSERT_EQ(channel->sent.size(), 1u);
  EXPECT_EQ(channel->sent[0], "login: ");

  link->events.on_end(Error(ErrorCode::unavailable, "agent went away"));
  EXPECT_TRUE(channel->closed);
  EXPECT_EQ(channel->reason, "agent went away");

  proxy->on_closed();
  EXPECT_TRUE(link->closed);
}

TEST(ConsoleProxy, ClientLeavingClosesTheAgentLink) {
  doubles::FakeAgentConsole agents;
  auto channel = std::make_shared<doubles::FakeWebSocketChannel>();
  auto proxy = std::make_shared<console::ConsoleProxy>(
      agents, console::ConsoleTarget{"h1", "http://a", "s", kUuid});
  proxy->on_open(channel);
  proxy->on_closed();
  EXPECT_TRUE(agents.links[0]->closed);
  proxy->on_message("late");
  EXPECT_TRUE(agents.links[0]->sent.empty());
}

TEST(AgentConsoleRelay, RelaysGuestOutputAndInput) {
  doubles::FakeHypervisor hv;
  hv.domains[kUuid].state = "running";
  auto channel = std::make_shared<doubles::FakeWebSocketChannel>();
  auto relay = std::make_shared<agent::ConsoleRelay>(hv, kUuid);
  relay->on_open(channel);
  ASSERT_TRUE(hv.console);
  hv.push_console("SeaBIOS\r\n");
  ASSERT_EQ(channel->sent.size(), 1u);
  EXPECT_EQ(channel->sent[0], "SeaBIOS\r\n");
  relay->on_message("root\r");
  ASSERT_EQ(hv.console->written.size(), 1u);
  EXPECT_EQ(hv.console->written[0], "root\r");
  hv.end_console("guest stopped");
  EXPECT_TRUE(channel->closed);
  EXPECT_EQ(channel->reason, "guest stopped");
}

TEST(AgentConsoleRelay, AStoppedDomainClosesTheSocketWithTheReason) {
  doubles::FakeHypervisor hv;
  hv.domains[kUuid].state = "stopped";
  auto channel = std::make_shared<doubles::FakeWebSocketChannel>();
  auto relay = std::make_shared<agent::ConsoleRelay>(hv, kUuid);
  relay->on_open(channel);
  EXPECT_TRUE(channel->closed);
  EXPECT_NE(channel->reason.find("not running"), std::string::npos);
}

TEST(AgentConsoleLog, TailLinesKeepsTheLastLines) {
  auto t = agent::tail_lines("a\nb\nc\n", 2, true);
  EXPECT_EQ(t.text, "b\nc\n");
  EXPECT_EQ(t.lines, 2);
  EXPECT_TRUE(t.truncated);
  t = agent::tail_lines("a\nb\nc", 2, true);
  EXPECT_EQ(t.text, "b\nc");
  t = agent::tail_lines("a\nb\n", 10, true);
  EXPECT_EQ(t.text, "a\nb\n");
  EXPECT_EQ(t.lines, 2);
  EXPECT_FALSE(t.truncated);
  t = agent::tail_lines("", 10, true);
  EXPECT_EQ(t.text, "");
  EXPECT_FALSE(t.truncated);
  t = agent::tail_lines("x\ny\n", 10, false);
  EXPECT_TRUE(t.truncated);
}

TEST(AgentConsoleLog, QueryIsStrict) {
  EXPECT_EQ(*agent::parse_console_log_query(""), agent_protocol::kConsoleLogDefaultLines);
  EXPECT_EQ(*agent::parse_console_log_query("lines=7"), 7);
  for (const char* bad : {"lines=0", "lines=10001", "tail=5", "lines=5&x=1", "lines=", "lines=-3"})
    EXPECT_FALSE(agent::parse_console_log_query(bad).ok()) << bad;
}

http::Request get(const std::string& target, const std::string& token = "tok") {
  http::Request req{http::Verb::get, target, 11};
  if (!token.empty()) req.set(http::bhttp::field::authorization, "Bearer " + token);
  return req;
}

TEST(AgentConsoleCalls, LogAnswersTheTailAndTheConsoleNeedsAnUpgrade) {
  doubles::FakeHypervisor hv;
  hv.domains[kUuid].state = "stopped";
  hv.console_logs[kUuid] = "one\ntwo\nthree\n";
  agent::AgentService svc(hv, "tok");
  auto res = svc.serve(get(std::string("/agent/v1/domains/") + kUuid + "/console/log?lines=2"));
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["text"], "two\nthree\n");
  EXPECT_EQ(hv.last_console_log_max, agent_protocol::kConsoleLogMaxBytes);

  res = svc.serve(get(std::string("/agent/v1/domains/") + kUuid + "/console/log?lines=0"));
  EXPECT_EQ(res.result_int(), 400u);
  res = svc.serve(get(std::string("/agent/v1/domains/") + kUuid + "/console"));
  EXPECT_EQ(res.result_int(), 400u);
  EXPECT_NE(res.body().find("websocket_required"), std::string::npos);
}

TEST(AgentConsoleCalls, TheUpgradeIsCheckedFirst) {
  doubles::FakeHypervisor hv;
  agent::AgentService svc(hv, "tok");
  const std::string path = std::string("/agent/v1/domains/") + kUuid + "/console";
  auto r = svc.open_upgrade(get(path, "wrong"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unauthenticated);
  r = svc.open_upgrade(get("/agent/v1/domains/NOT-A-UUID/console"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  r = svc.open_upgrade(get("/agent/v1/inventory"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  r = svc.open_upgrade(get(path));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
}

}  // namespace
