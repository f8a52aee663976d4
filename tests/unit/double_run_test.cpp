// A copy of a VM found on another host than the recorded one is a move only on the
// recorded host's own word that it no longer runs it; otherwise it is a suspected double
// run that no operation touches until the recorded host speaks (or is fenced). Every
// ordering of reports, in simulated time, through the controller's services.

#include "tests/unit/controller_fixture.hpp"

#include "kvmfleet/vms/vm_params.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

class DoubleRunTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
    create_on("web1", "node1");
    id_ = vm("web1").id;
    ASSERT_TRUE(beat("node1", "running").ok());
    ASSERT_TRUE(beat("node2", "").ok());
  }

  // A heartbeat listing web1 in `state` (empty: not listed).
  Status beat(const std::string& host, const std::string& state) {
    std::vector<DomainStatus> domains;
    if (!state.empty()) domains.push_back({id_, "web1", state, true, 1, true});
    return heartbeat(host, std::move(domains), agents_.next_stamp(host));
  }
  // node1 falls silent: only node2 heartbeats while the timeout passes.
  void cut_off_node1() {
    for (auto waited = 0ms; waited <= config_.unreachable_after; waited += 1000ms) {
      clock_.advance(1000ms);
      ASSERT_TRUE(beat("node2", "").ok());
      ctl_->tick();
    }
    ASSERT_EQ(host("node1").state, HostState::unreachable);
  }
  Host host(const std::string& name) { return state_->host(name).value_or(Host{}); }
  std::vector<std::string> suspected_hosts() {
    auto v = vm("web1");
    return v.double_run ? v.double_run->hosts : std::vector<std::string>{};
  }
  std::string error_reason(const Result<Submitted>& r) {
    if (r) return "accepted";
    return r.error().details.value("reason", r.error().message);
  }

  std::string id_;
};

TEST_F(DoubleRunTest, ACopyElsewhereWhileTheRecordedHostIsSilentIsSuspectedNotAdopted) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());  // started there by hand, say
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::unknown);
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
  EXPECT_EQ(vm("web1").double_run->since, clock_.now());
  // Its silence going on changes nothing, however long.
  for (int i = 0; i < 60; ++i) {
    clock_.advance(1000ms);
    ASSERT_TRUE(beat("node2", "running").ok());
    ctl_->tick();
  }
  EXPECT_EQ(host("node1").state, HostState::down);
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
}

TEST_F(DoubleRunTest, TheRecordedHostBackAndRunningItKeepsTheSuspicionUntilOneCopyStops) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(beat("node1", "running").ok());  // the link heals: it ran there all along
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
  EXPECT_EQ(vm("web1").state, VmState::unknown);
  // The copy on node2 is stopped (by hand): one copy, where it is recorded.
  ASSERT_TRUE(beat("node2", "stopped").ok());
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
}

TEST_F(DoubleRunTest, TheRecordedHostBackWithoutItSettlesItWhereItRuns) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(beat("node1", "").ok());  // back, and it no longer runs it
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
}

TEST_F(DoubleRunTest, TheOtherCopyGoneWhileTheRecordedHostIsStillSilentEndsTheSuspicion) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(beat("node2", "").ok());
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::unknown);  // node1 still says nothing
}

TEST_F(DoubleRunTest, RunningOnBothUpHostsIsSuspectedFromEitherReport) {
  ASSERT_TRUE(beat("node2", "running").ok());
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
  EXPECT_EQ(vm("web1").host, "node1");
  // The recorded host's report says the same.
  ASSERT_TRUE(beat("node1", "running").ok());
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
}

TEST_F(DoubleRunTest, NoOperationActsOnASuspectedVm) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(vm("web1").double_run);
  const auto calls = agents_.calls().size();
  for (auto kind : {op_kind::vm_start, op_kind::vm_reboot, op_kind::vm_destroy})
    EXPECT_EQ(error_reason(ctl_->vms().vm_action(admin(), "web1", kind, {}, {})),
              "suspected_double_run")
        << kind;
  EXPECT_EQ(error_reason(ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop,
                                               VmStopParams{1, true}, {})),
            "suspected_double_run");
  EXPECT_EQ(error_reason(ctl_->vms().vm_action(admin(), "web1", op_kind::vm_delete,
                                               VmDeleteParams{true}, {})),
            "suspected_double_run");
  EXPECT_EQ(error_reason(ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {})),
            "suspected_double_run");
  EXPECT_EQ(agents_.calls().size(), calls) << "no agent was asked to act";
}

TEST_F(DoubleRunTest, AnOperationQueuedBeforeTheSuspicionDoesNotActOnIt) {
  runner_->stop();  // the operation waits in the queue
  auto s = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_reboot, {}, {});
  ASSERT_TRUE(s.ok());
  // Reports about a VM with an operation pending are left to it; the suspicion comes
  // from the record it finds when it runs.
  record_vm_state("web1", VmState::running);
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Vm v = *d.find_vm("web1");
                    v.double_run = DoubleRun{{"node1", "node2"}, clock_.now()};
                    b.put_vms.push_back(v);
                    return {};
                  })
                  .ok());
  runner_->start();
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_EQ(op.error->details.value("reason", ""), "suspected_double_run");
  EXPECT_EQ(agents_.count("reboot"), 0);
}

TEST_F(DoubleRunTest, TheSuspicionSurvivesAControllerRestart) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(vm("web1").double_run);
  shutdown();
  boot();
  runner_->start();
  EXPECT_EQ(suspected_hosts(), (std::vector<std::string>{"node1", "node2"}));
  EXPECT_EQ(error_reason(ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, {}, {})),
            "suspected_double_run");
}

// node1 proven to run nothing any more, as a fence or an admin's confirm-down records it.
void prove_down(ClusterState& state, const std::string& kind, Clock::time_point at) {
  ASSERT_TRUE(state
                  .update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Host h = *d.find_host("node1");
                    h.state = HostState::fenced;
                    h.proven_down = ProvenDown{kind, "test", "test", at};
                    b.put_hosts.push_back(h);
                    return {};
                  })
                  .ok());
}

TEST_F(DoubleRunTest, TheRecordedHostFencedSettlesTheSuspicionOnTheOtherCopy) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  ASSERT_TRUE(vm("web1").double_run);
  prove_down(*state_, "fence", clock_.now());
  ASSERT_TRUE(beat("node2", "running").ok());
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
}

TEST_F(DoubleRunTest, ACopyElsewhereAfterAConfirmDownIsAMove) {
  cut_off_node1();
  prove_down(*state_, "confirm_down", clock_.now());
  ASSERT_TRUE(beat("node2", "running").ok());
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node2");
}

TEST_F(DoubleRunTest, TheOtherCopyGoneAfterAFenceLeavesTheVmStoppedWhereItWas) {
  cut_off_node1();
  ASSERT_TRUE(beat("node2", "running").ok());
  prove_down(*state_, "fence", clock_.now());
  ASSERT_TRUE(beat("node2", "").ok());  // the copy there was removed too
  EXPECT_FALSE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::stopped);
}

}  // namespace
