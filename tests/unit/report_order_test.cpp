// Reports that arrive after what they observed was overtaken: heartbeats, events and
// operations' answers reach the controller on separate connections, so a report the
// agent made before an answer may arrive after it. Every one is stamped by the agent
// (FakeAgentApi stamps as the agent does); the controller never goes back in time.

#include "tests/unit/controller_fixture.hpp"

#include "kvmfleet/vms/vm_params.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

class ReportOrderTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
  }

  // Creates web1 on node1, started or only defined.
  void create(bool start) { create_on("web1", "node1", start); }

  // A heartbeat from `host` whose listing began at `stamp`; `state` empty: web1 absent.
  Status beat(const std::string& host, const ReportStamp& stamp, const std::string& state) {
    std::vector<DomainStatus> domains;
    if (!state.empty()) domains.push_back({vm("web1").id, "web1", state, true, 1, true});
    return heartbeat(host, std::move(domains), stamp);
  }
  Status event(const std::string& host, const ReportStamp& stamp, const std::string& state) {
    return ctl_->hosts().domain_events(agent(host), host,
                                       {DomainEvent{vm("web1").id, "web1", state, "test", stamp}});
  }
  Principal agent(const std::string& host) { return {"a", "host:" + host, Role::agent, host}; }
};

TEST_F(ReportOrderTest, AHeartbeatThatLookedBeforeAStartAnsweredDoesNotUndoIt) {
  create(false);
  const ReportStamp looked = agents_.next_stamp("node1");  // the listing begins: stopped
  auto s = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, {}, {});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(wait_done(s->operation.id).state, OpState::succeeded);
  ASSERT_EQ(vm("web1").state, VmState::running);

  ASSERT_TRUE(beat("node1", looked, "stopped").ok());  // ... and arrives after the answer
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);

  // What the agent observed after the start is news: stopped outside kvmfleet.
  ASSERT_TRUE(beat("node1", agents_.next_stamp("node1"), "stopped").ok());
  EXPECT_EQ(vm("web1").state, VmState::stopped);
  EXPECT_EQ(vm("web1").desired, DesiredState::stopped);
}

TEST_F(ReportOrderTest, AHeartbeatThatLookedBeforeTheDefineDoesNotLoseTheVm) {
  const ReportStamp looked = agents_.next_stamp("node1");  // no such domain yet
  create(true);
  ASSERT_TRUE(beat("node1", looked, "").ok());
  EXPECT_EQ(vm("web1").state, VmState::running);
  // The host's list keeps the domain the answers told of.
  auto h = state_->host("node1");
  ASSERT_TRUE(h);
  ASSERT_EQ(h->inventory.domains.size(), 1u);
  EXPECT_EQ(h->inventory.domains[0].state, "running");

  ASSERT_TRUE(beat("node1", agents_.next_stamp("node1"), "").ok());
  EXPECT_EQ(vm("web1").state, VmState::unknown);  // gone, and no operation of ours did it
}

TEST_F(ReportOrderTest, AnEventOlderThanTheHeartbeatIsNoNews) {
  create(true);
  const ReportStamp paused_at = agents_.next_stamp("node1");
  ASSERT_TRUE(beat("node1", agents_.next_stamp("node1"), "running").ok());
  ASSERT_TRUE(event("node1", paused_at, "paused").ok());  // overtaken on the way
  EXPECT_EQ(vm("web1").state, VmState::running);

  ASSERT_TRUE(event("node1", agents_.next_stamp("node1"), "paused").ok());
  EXPECT_EQ(vm("web1").state, VmState::paused);
  // Nor does a heartbeat that looked before that event take it back.
  ASSERT_TRUE(beat("node1", paused_at, "running").ok());
  EXPECT_EQ(vm("web1").state, VmState::paused);
}

TEST_F(ReportOrderTest, ReportsBothHostsMadeDuringALiveMigrationDoNotMoveTheVmBack) {
  create(true);
  const ReportStamp source_looked = agents_.next_stamp("node1");  // still running there
  const ReportStamp target_looked = agents_.next_stamp("node2");  // incoming, paused
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(wait_done(m->operation.id).state, OpState::succeeded);
  ASSERT_EQ(vm("web1").host, "node2");

  ASSERT_TRUE(beat("node2", target_looked, "paused").ok());
  ASSERT_TRUE(beat("node1", source_looked, "running").ok());
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
  auto source = state_->host("node1");
  ASSERT_TRUE(source);
  EXPECT_TRUE(source->inventory.domains.empty()) << "the source's list keeps it gone";

  // Reports from after the move: it runs on node2 and nowhere else; nothing changes.
  ASSERT_TRUE(beat("node1", agents_.next_stamp("node1"), "").ok());
  ASSERT_TRUE(beat("node2", agents_.next_stamp("node2"), "running").ok());
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
}

TEST_F(ReportOrderTest, ARestartedAgentsReportsAreNews) {
  create(true);
  // Another run of node1's agent: its stamps do not compare with the last run's.
  ASSERT_TRUE(beat("node1", ReportStamp{"agent-node1-restarted", 1}, "stopped").ok());
  EXPECT_EQ(vm("web1").state, VmState::stopped);
}

TEST_F(ReportOrderTest, AnOperationsAnswerIsKeptByTheVmAcrossARestart) {
  create(false);
  const ReportStamp looked = agents_.next_stamp("node1");
  auto s = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, {}, {});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(wait_done(s->operation.id).state, OpState::succeeded);
  const auto seen = vm("web1").seen;
  ASSERT_EQ(seen.size(), 1u);
  ASSERT_EQ(seen.count("node1"), 1u);
  shutdown();
  boot();
  runner_->start();
  EXPECT_EQ(vm("web1").seen, seen);
  // Every up host heard from again, the late one still is no news.
  ASSERT_TRUE(beat("node2", agents_.next_stamp("node2"), "").ok());
  ASSERT_TRUE(beat("node1", looked, "stopped").ok());
  EXPECT_EQ(vm("web1").state, VmState::running);
}

}  // namespace
