// HA restart through the controller's services over the FakeAgentApi, in simulated time:
// a VM restarts elsewhere only once its host is proven down (fenced, or confirmed down),
// never because the host fell silent; in priority order when not all fit; with backoff
// when a restart fails; and never past its shared volumes' locks.

#include "kvmfleet/ha/ha_params.hpp"
#include "kvmfleet/ha/ha_planning.hpp"
#include "kvmfleet/ha/ha_service.hpp"
#include "kvmfleet/vms/vm_params.hpp"
#include "tests/unit/controller_fixture.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

class HaTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
  }

  // An HA VM (no disks) running on `host`.
  std::string ha_vm_on(const std::string& name, const std::string& host, int priority = 0,
                       std::int64_t mem = 256) {
    VmSpec s = spec(name, mem);
    s.pinned_host = host;
    s.ha.enabled = true;
    s.ha.priority = priority;
    auto c = ctl_->vms().create_vm(admin(), s, true, {});
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    if (!c.ok()) return "";
    EXPECT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
    // Placed on `host` by its pin; HA may move it elsewhere, so the pin is lifted.
    unpin(name);
    return vm(name).id;
  }
  void unpin(const std::string& name) {
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                      Vm v = *d.find_vm(name);
                      v.spec.pinned_host.clear();
                      b.put_vms.push_back(v);
                      return {};
                    })
                    .ok());
  }
  // Every host but `silent` heartbeats with what its fake libvirt has, once a second,
  // while `seconds` pass and the controller ticks.
  void run_for(int seconds, const std::set<std::string>& silent = {}) {
    for (int i = 0; i < seconds; ++i) {
      clock_.advance(1000ms);
      for (const auto& name : host_names())
        if (!silent.count(name)) beat(name);
      ctl_->tick();
    }
  }
  void beat(const std::string& name) {
    Host h = host(name);
    auto inv = agents_.inventory(h);
    ASSERT_TRUE(inv.ok());
    HostInventory full = inventory_of(name);
    full.domains = inv->domains;
    full.stamp = inv->stamp;
    ASSERT_TRUE(
        ctl_->hosts().heartbeat({"a", "host:" + name, Role::agent, name}, name, "", full).ok());
  }
  std::vector<std::string> host_names() {
    return state_->read([](const ClusterState::Data& d) {
      std::vector<std::string> out;
      for (const auto& [name, h] : d.hosts) out.push_back(name);
      return out;
    });
  }
  Host host(const std::string& name) { return state_->host(name).value_or(Host{}); }
  // What a fence device's confirmed power-off (or an admin's confirm-down) records.
  void prove_down(const std::string& name, const std::string& kind = "fence") {
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                      Host h = *d.find_host(name);
                      h.state = HostState::fenced;
                      h.proven_down = ProvenDown{kind, "fence_ipmilan at 10.0.0.9: off",
                                                 "kvmfleet fencing", clock_.now()};
                      b.put_hosts.push_back(h);
                      return {};
                    })
                    .ok());
  }
  std::vector<Operation> ha_restarts() {
    return state_->read([](const ClusterState::Data& d) {
      std::vector<Operation> out;
      for (const auto& [id, op] : d.operations)
        if (op.kind == op_kind::vm_ha_restart) out.push_back(op);
      std::sort(out.begin(), out.end(),
                [](const Operation& a, const Operation& b) { return a.created_at < b.created_at; });
      return out;
    });
  }
  // Ticks until every HA restart submitted so far has ended.
  void settle() {
    for (int i = 0; i < 5; ++i) {
      for (const auto& op : ha_restarts())
        if (!is_terminal(op.state)) wait_done(op.id);
      run_for(1, {"node1"});
    }
  }
  // The same with every host heartbeating.
  void settle_all() {
    for (int i = 0; i < 3; ++i) {
      for (const auto& op : ha_restarts())
        if (!is_terminal(op.state)) wait_done(op.id);
      run_for(1);
    }
  }
  bool runs_on(const std::string& host, const std::string& uuid) {
    auto d = agents_.domain_on(host, uuid);
    return d && d->state == "running";
  }
  std::vector<std::string> waiting_reasons() {
    std::vector<std::string> out;
    for (const auto& w : ctl_->ha().status().waiting) out.push_back(w.name + ":" + w.reason);
    return out;
  }
};

TEST_F(HaTest, AHostThatOnlyStoppedHeartbeatingNeverHasItsVmsRestarted) {
  const auto id = ha_vm_on("web1", "node1");
  // node1 falls silent for ten minutes: unreachable, then down. Its VMs may still run.
  run_for(600, {"node1"});
  EXPECT_EQ(host("node1").state, HostState::down);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::unknown);
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_FALSE(agents_.domain_on("node2", id));
  EXPECT_EQ(agents_.count("define"), 1);
}

TEST_F(HaTest, AFencedHostsHaVmRestartsOnAnotherHostCitingTheEvidence) {
  const auto id = ha_vm_on("web1", "node1");
  run_for(60, {"node1"});
  agents_.power_off("node1");
  prove_down("node1");
  run_for(1, {"node1"});
  auto ops = ha_restarts();
  ASSERT_EQ(ops.size(), 1u);
  const auto done = wait_done(ops[0].id);
  ASSERT_EQ(done.state, OpState::succeeded) << (done.error ? done.error->message : "");
  const auto params = done.params.get<VmHaRestartParams>();
  EXPECT_EQ(params.from_host, "node1");
  EXPECT_EQ(params.target_host, "node2");
  EXPECT_EQ(params.evidence.kind, "fence");
  EXPECT_EQ(done.requested_by, "kvmfleet-ha");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  EXPECT_EQ(vm("web1").ha_restarts.size(), 1u);
  EXPECT_TRUE(runs_on("node2", id));
  EXPECT_FALSE(runs_on("node1", id));
  // Later passes leave it be.
  run_for(30, {"node1"});
  EXPECT_EQ(ha_restarts().size(), 1u);
  EXPECT_EQ(ctl_->ha().status().succeeded, 1u);
}

TEST_F(HaTest, AnAdminsConfirmDownCountsAsProofToo) {
  const auto id = ha_vm_on("web1", "node1");
  run_for(60, {"node1"});
  agents_.power_off("node1");
  prove_down("node1", "confirm_down");
  settle();
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_TRUE(runs_on("node2", id));
  EXPECT_EQ(ha_restarts().at(0).params.get<VmHaRestartParams>().evidence.kind, "confirm_down");
}

TEST_F(HaTest, AVmWithoutHaIsRecordedStoppedAndStaysWhereItWas) {
  VmSpec s = spec("plain");
  s.pinned_host = "node1";
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  run_for(60, {"node1"});
  EXPECT_EQ(vm("plain").state, VmState::unknown);
  prove_down("node1");
  run_for(5, {"node1"});
  EXPECT_EQ(vm("plain").state, VmState::stopped);
  EXPECT_EQ(vm("plain").host, "node1");
  EXPECT_TRUE(ha_restarts().empty());
}

TEST_F(HaTest, AStoppedHaVmIsNotStarted) {
  ha_vm_on("web1", "node1");
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop, VmStopParams{1, true}, {});
  ASSERT_TRUE(stop.ok());
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  prove_down("node1");
  run_for(5, {"node1"});
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_EQ(vm("web1").host, "node1");
}

TEST_F(HaTest, WhenNotAllFitTheHigherPrioritiesArePlacedAndTheRestWait) {
  // node2 has room for one 4 GiB VM more (8 GiB, one 2 GiB VM on it already).
  ha_vm_on("low", "node1", 10, 4096);
  ha_vm_on("high", "node1", 500, 4096);
  ha_vm_on("resident", "node2", 0, 2048);
  prove_down("node1");
  settle();
  EXPECT_EQ(vm("high").host, "node2");
  EXPECT_EQ(vm("low").host, "node1");
  EXPECT_EQ(vm("low").state, VmState::stopped);
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"low:no_capacity"}));
  EXPECT_EQ(ctl_->ha().view()["waiting"][0]["reason"], "no_capacity");
  // Room appears (a third host): the waiting VM is placed there.
  host_up("node3");
  settle();
  EXPECT_EQ(vm("low").host, "node3");
  EXPECT_EQ(vm("low").state, VmState::running);
  EXPECT_TRUE(waiting_reasons().empty());
}

TEST_F(HaTest, AVmWithADiskInTheFailedHostsLocalPoolWaits) {
  VmSpec s = spec("local");
  s.pinned_host = "node1";
  s.ha.enabled = true;
  DiskSpec d;
  d.size_gib = 1;
  s.disks.push_back(d);
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  unpin("local");
  prove_down("node1");
  run_for(3, {"node1"});
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"local:local_disks"}));
}

TEST_F(HaTest, AVmPinnedToTheFailedHostWaits) {
  VmSpec s = spec("pinned");
  s.pinned_host = "node1";
  s.ha.enabled = true;
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  prove_down("node1");
  run_for(3, {"node1"});
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"pinned:pinned"}));
}

TEST_F(HaTest, AFailedRestartIsRetriedWithBackoff) {
  const auto id = ha_vm_on("web1", "node1");
  agents_.fail_next("define", invalid("the domain XML is refused"), 2);
  prove_down("node1");
  run_for(1, {"node1"});
  ASSERT_EQ(ha_restarts().size(), 1u);
  EXPECT_EQ(wait_done(ha_restarts()[0].id).state, OpState::failed);
  run_for(1, {"node1"});
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"web1:backoff"}));
  // Held for the first backoff (5 s), then tried again; that fails too, and the next
  // wait is twice as long.
  run_for(3, {"node1"});
  EXPECT_EQ(ha_restarts().size(), 1u);
  run_for(3, {"node1"});
  ASSERT_EQ(ha_restarts().size(), 2u);
  EXPECT_EQ(wait_done(ha_restarts()[1].id).state, OpState::failed);
  run_for(8, {"node1"});
  EXPECT_EQ(ha_restarts().size(), 2u);
  run_for(4, {"node1"});
  settle();
  EXPECT_EQ(ha_restarts().size(), 3u);
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_TRUE(runs_on("node2", id));
  EXPECT_EQ(ctl_->ha().status().failed, 2u);
  EXPECT_EQ(HaService::backoff(1), 5s);
  EXPECT_EQ(HaService::backoff(2), 10s);
  EXPECT_EQ(HaService::backoff(20), 5min);
}

TEST_F(HaTest, AfterMaxRestartsWithinTheHourTheVmWaitsForAnOperator) {
  ha_vm_on("web1", "node1");
  ASSERT_TRUE(
      state_
          ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
            Vm v = *d.find_vm("web1");
            v.ha_restarts = {clock_.now() - 50min, clock_.now() - 20min, clock_.now() - 1min};
            b.put_vms.push_back(v);
            return {};
          })
          .ok());
  prove_down("node1");
  run_for(3, {"node1"});
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"web1:restart_limit"}));
  // Once the oldest restart is out of the window, it may restart again.
  run_for(11 * 60, {"node1"});
  settle();
  EXPECT_EQ(vm("web1").host, "node2");
  // The restarts older than the window are dropped as the new one is recorded.
  EXPECT_EQ(vm("web1").ha_restarts.size(), 3u);
}

TEST_F(HaTest, NothingRestartsWhileTheMassFailureGuardHolds) {
  ha_vm_on("web1", "node1");
  prove_down("node1");
  HaService guarded(*state_, ctl_->operations(), config_, clock_, [] { return true; });
  guarded.tick();
  EXPECT_TRUE(guarded.status().held_by_guard);
  EXPECT_TRUE(ha_restarts().empty());
  EXPECT_NE(guarded.metrics().find("kvmfleet_ha_held_by_guard 1"), std::string::npos);
}

TEST_F(HaTest, AHostBackBeforeTheRestartRunsKeepsItsVm) {
  ha_vm_on("web1", "node1");
  prove_down("node1");
  // The plan is made, but the operation only runs once node1 is heard again.
  runner_->stop();
  run_for(1, {"node1"});
  ASSERT_EQ(ha_restarts().size(), 1u);
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Host h = *d.find_host("node1");
                    h.state = HostState::up;
                    h.proven_down.reset();
                    b.put_hosts.push_back(h);
                    return {};
                  })
                  .ok());
  runner_->start();
  const auto done = wait_done(ha_restarts()[0].id);
  ASSERT_EQ(done.state, OpState::failed);
  EXPECT_EQ(done.error->details.value("reason", ""), "host_not_proven_down");
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_FALSE(agents_.domain_on("node2", vm("web1").id));
}

TEST_F(HaTest, AnHaVmThatCrashesOnAHealthyHostStartsThereAgain) {
  const auto id = ha_vm_on("web1", "node1");
  agents_.set_state("node1", id, "crashed");
  run_for(1);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  settle_all();
  auto ops = ha_restarts();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].state, OpState::succeeded);
  const auto p = ops[0].params.get<VmHaRestartParams>();
  EXPECT_EQ(p.reason, "crashed");
  EXPECT_EQ(p.target_host, "node1");
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_TRUE(runs_on("node1", id));
  EXPECT_EQ(vm("web1").ha_restarts.size(), 1u);
}

TEST_F(HaTest, ACrashLoopStopsAtMaxRestartsWithinTheHour) {
  const auto id = ha_vm_on("web1", "node1");
  for (int i = 0; i < 3; ++i) {
    agents_.set_state("node1", id, "crashed");
    run_for(1);
    settle_all();
    ASSERT_TRUE(runs_on("node1", id)) << "restart " << i;
  }
  agents_.set_state("node1", id, "crashed");
  run_for(5);
  settle_all();
  EXPECT_EQ(ha_restarts().size(), 3u);
  EXPECT_EQ(vm("web1").state, VmState::crashed);
  EXPECT_EQ(waiting_reasons(), (std::vector<std::string>{"web1:restart_limit"}));
  // An operator starts it; an hour later the count is clear again.
  auto start = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, {}, {});
  ASSERT_TRUE(start.ok());
  ASSERT_EQ(wait_done(start->operation.id).state, OpState::succeeded);
  run_for(3700);
  agents_.set_state("node1", id, "crashed");
  run_for(1);
  settle_all();
  EXPECT_EQ(ha_restarts().size(), 4u);
  EXPECT_TRUE(runs_on("node1", id));
}

TEST_F(HaTest, AVmWithoutHaThatCrashesStaysStopped) {
  VmSpec s = spec("plain");
  s.pinned_host = "node1";
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  agents_.set_state("node1", vm("plain").id, "crashed");
  run_for(5);
  EXPECT_EQ(vm("plain").state, VmState::crashed);
  EXPECT_EQ(vm("plain").desired, DesiredState::stopped);
  EXPECT_TRUE(ha_restarts().empty());
}

class HaStorageTest : public HaTest {
 protected:
  void make_pool() {
    StoragePool p;
    p.name = "pool1";
    p.type = PoolType::iscsi;
    p.targets.push_back(
        IscsiPoolTarget{"10.77.0.1:3260", "iqn.2026-01.io.kvmfleet:lun1", 1, "", ""});
    auto s = ctl_->storage().create_pool(admin(), p, {}, {});
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(wait_done(s->operation.id).state, OpState::succeeded);
    auto v = ctl_->storage().create_volume(admin(), "disk1", "pool1", kGiB, {});
    ASSERT_TRUE(v.ok());
    ASSERT_EQ(wait_done(v->operation.id).state, OpState::succeeded);
  }
};

TEST_F(HaStorageTest, AVmOnASharedVolumeRestartsOnlyOnceTheFailedHostsLockIsGone) {
  make_pool();
  VmSpec s = spec("db");
  s.pinned_host = "node1";
  s.ha.enabled = true;
  DiskSpec d;
  d.volume = "disk1";
  s.disks.push_back(d);
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  unpin("db");
  ASSERT_EQ(agents_.holders("pool1", "disk1"),
            (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
  agents_.power_off("node1");
  prove_down("node1");
  // lvmlockd still counts node1's lock (its lease has not expired): the restart is
  // refused, whatever the evidence said, and retried.
  run_for(1, {"node1"});
  ASSERT_EQ(ha_restarts().size(), 1u);
  EXPECT_EQ(wait_done(ha_restarts()[0].id).state, OpState::failed);
  EXPECT_FALSE(runs_on("node2", vm("db").id));
  EXPECT_EQ(vm("db").host, "node1");
  agents_.lease_expired("node1");
  run_for(6, {"node1"});
  settle();
  EXPECT_EQ(vm("db").host, "node2");
  EXPECT_TRUE(runs_on("node2", vm("db").id));
  EXPECT_EQ(agents_.holders("pool1", "disk1"),
            (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));
}

}  // namespace
