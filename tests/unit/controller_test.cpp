#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/core/reconciler.hpp"
#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/hosts/liveness.hpp"
#include "kvmfleet/migration/migration_operations.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/migration/migration_planning.hpp"
#include "kvmfleet/vms/vm_operations.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"
#include "tests/unit/controller_fixture.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <fstream>
#include <future>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

using testing_support::ControllerTest;

TEST_F(ControllerTest, CreateDefinesOnThePlacedHostAndStarts) {
  host_up("node1");
  runner_->start();
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->operation.state, OpState::pending);
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.progress, 100);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  EXPECT_EQ(agents_.count("define"), 1);
  EXPECT_EQ(agents_.count("start"), 1);
  // Every agent call carried the operation id.
  for (const auto& c : agents_.calls()) EXPECT_EQ(c.op_id, op.id);
}

TEST_F(ControllerTest, CreateWithNoUpHostIsInsufficientCapacityAndWritesNothing) {
  ASSERT_TRUE(ctl_->hosts().register_host("node1", "http://127.0.0.1:1").ok());  // never heartbeats
  const int before = store_.commits;
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::insufficient_capacity);
  EXPECT_EQ(s.error().details["hosts"]["node1"].get<std::string>().empty(), false);
  EXPECT_EQ(store_.commits, before);
  EXPECT_TRUE(vm("web1").id.empty());
}

TEST_F(ControllerTest, DuplicateNameIsAConflict) {
  host_up("node1");
  ASSERT_TRUE(ctl_->vms().create_vm(admin(), spec("web1"), false, {}).ok());
  auto again = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST_F(ControllerTest, StoreFailureLeavesNothingHalfWritten) {
  host_up("node1");
  store_.fail_commits = 1;
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::unavailable);
  EXPECT_TRUE(vm("web1").id.empty());
  auto ops = state_->read([](const ClusterState::Data& d) { return d.operations.size(); });
  EXPECT_EQ(ops, 0u);
}

TEST_F(ControllerTest, IdempotencyKeyReplaysTheSameOperationAndActsOnce) {
  host_up("node1");
  runner_->start();
  SubmitOptions o{"key-1", "hash-a"};
  auto first = ctl_->vms().create_vm(admin(), spec("web1"), false, o);
  ASSERT_TRUE(first.ok());
  auto second = ctl_->vms().create_vm(admin(), spec("web1"), false, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_TRUE(second->replayed);
  EXPECT_EQ(second->operation.id, first->operation.id);
  wait_done(first->operation.id);
  EXPECT_EQ(agents_.count("define"), 1);
  // The same key for a different request is refused.
  auto other = ctl_->vms().create_vm(admin(), spec("web2"), false, {"key-1", "hash-b"});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::conflict);
}

TEST_F(ControllerTest, IdempotencyKeysAreScopedPerTokenNotPerName) {
  host_up("node1");
  Principal a{"token-a", "ci", Role::operator_, ""};
  Principal b{"token-b", "ci", Role::operator_, ""};  // another token, same name
  auto first = ctl_->vms().create_vm(a, spec("web1"), false, {"same-key", "h1"});
  auto second = ctl_->vms().create_vm(b, spec("web2"), false, {"same-key", "h2"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->replayed);
  EXPECT_NE(first->operation.id, second->operation.id);
  // And the store's own uniqueness check agrees after a restart.
  shutdown();
  boot();
  auto again = ctl_->vms().create_vm(b, spec("web2"), false, {"same-key", "h2"});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->operation.id, second->operation.id);
}

TEST_F(ControllerTest, AgentRefusalRollsBackTheCreate) {
  host_up("node1");
  agents_.fail_next("define", invalid("libvirt says no"));
  runner_->start();
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  ASSERT_TRUE(s.ok());
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_EQ(op.error->code, ErrorCode::invalid_argument);
  EXPECT_TRUE(op.error->details.value("rolled_back", false));
  EXPECT_TRUE(vm("web1").id.empty());
}

TEST_F(ControllerTest, UnavailableAgentIsRetriedThenSucceeds) {
  host_up("node1");
  agents_.fail_next("define", unavailable("connection refused"), 2);
  runner_->start();
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded);
  EXPECT_EQ(agents_.count("define"), 3);
}

TEST_F(ControllerTest, StopTimesOutWithoutForceAndPowersOffWithForce) {
  host_up("node1");
  runner_->start();
  auto c = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  wait_done(c->operation.id);
  agents_.acpi_works = false;  // the guest ignores ACPI
  auto s = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop, VmStopParams{1, false}, {});
  ASSERT_TRUE(s.ok());
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_EQ(op.error->code, ErrorCode::timeout);
  EXPECT_EQ(vm("web1").state, VmState::running);
  auto f = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop, VmStopParams{1, true}, {});
  auto fop = wait_done(f->operation.id);
  EXPECT_EQ(fop.state, OpState::succeeded);
  EXPECT_TRUE(fop.result.value("forced", false));
  EXPECT_EQ(vm("web1").state, VmState::stopped);
  EXPECT_EQ(agents_.count("destroy"), 1);
}

TEST_F(ControllerTest, AWallClockStepCutsNoStopTimeout) {
  host_up("node1");
  runner_->start();
  auto c = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  wait_done(c->operation.id);
  agents_.acpi_works = false;  // the guest ignores ACPI
  auto s = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop, VmStopParams{60, false}, {});
  ASSERT_TRUE(s.ok());
  // Once the stop waits for the guest, the wall clock steps two hours ahead: the guest
  // still has its 60 s.
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (clock_.sleepers() == 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(1ms);
  ASSERT_GT(clock_.sleepers(), 0u);
  clock_.jump(2h);
  auto ended = [&] { return is_terminal(state_->operation(s->operation.id)->state); };
  EXPECT_FALSE(clock_.advance_until(ended, 500ms, 50s));
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_EQ(op.error->code, ErrorCode::timeout);
}

TEST_F(ControllerTest, OnceStartedTheControllerTicksOnTheClock) {
  // The clock moves on whether or not the ticker's thread has woken yet: a tick that runs
  // a step late is not taken for the controller's lag here (tests/unit/liveness_test.cpp).
  shutdown();
  config_.liveness_lag_threshold = 1h;
  boot();
  host_up("node1");
  auto node1 = [&] {
    return state_->read([&](const ClusterState::Data& d) { return d.find_host("node1")->state; });
  };
  ctl_->start();
  // node1 falls silent; a tick, one second of the clock after the last, notices.
  const auto start = clock_.steady_now();
  EXPECT_TRUE(clock_.advance_until([&] { return node1() == HostState::unreachable; }, 1s, 1min));
  EXPECT_GE(clock_.steady_now() - start, config_.unreachable_after);
  ctl_->stop();
}

TEST_F(ControllerTest, DeleteOfARunningVmNeedsForce) {
  host_up("node1");
  runner_->start();
  auto c = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  wait_done(c->operation.id);
  auto d = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_delete, VmDeleteParams{false}, {});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::conflict);
  auto f = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_delete, VmDeleteParams{true}, {});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(wait_done(f->operation.id).state, OpState::succeeded);
  EXPECT_TRUE(vm("web1").id.empty());
  EXPECT_EQ(agents_.count("undefine"), 1);
}

TEST_F(ControllerTest, UnknownVmIsNotFound) {
  auto s = ctl_->vms().vm_action(admin(), "ghost", op_kind::vm_start, {}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::not_found);
}

TEST_F(ControllerTest, ARestartedControllerFinishesOperationsLeftBehind) {
  host_up("node1");
  // Submitted, then the process "dies" before any worker ran it.
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  ASSERT_TRUE(s.ok());
  shutdown();
  boot();  // a new process: memory rebuilt from the store
  auto pending = state_->read(
      [&](const ClusterState::Data& d) { return d.find_operation(s->operation.id)->state; });
  EXPECT_EQ(pending, OpState::pending);
  // Heartbeat time is not persisted; the host reports in again.
  HostInventory inv;
  inv.cpus = 4;
  inv.memory_total_mib = 8192;
  ASSERT_TRUE(
      ctl_->hosts().heartbeat({"a", "host:node1", Role::agent, "node1"}, "node1", "", inv).ok());
  runner_->start();
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded);
  EXPECT_EQ(op.attempts, 1);
  EXPECT_EQ(vm("web1").state, VmState::running);
}

TEST_F(ControllerTest, AnOperationInterruptedWhileRunningIsResumedAndCounted) {
  host_up("node1");
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});
  // Mark it running as a dead controller would have left it.
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Operation op = *d.find_operation(s->operation.id);
                    op.state = OpState::running;
                    op.attempts = 1;
                    b.put_operations.push_back(op);
                    return {};
                  })
                  .ok());
  shutdown();
  boot();
  ASSERT_TRUE(ctl_->hosts()
                  .heartbeat({"a", "host:node1", Role::agent, "node1"}, "node1", "",
                             HostInventory{"", "", 4, "", 8192})
                  .ok());
  runner_->start();
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded);
  EXPECT_EQ(op.attempts, 2);
}

TEST_F(ControllerTest, PendingOperationCanBeCancelled) {
  host_up("node1");
  auto s = ctl_->vms().create_vm(admin(), spec("web1"), false, {});  // runner not started
  ASSERT_TRUE(ctl_->operations().cancel(s->operation.id).ok());
  auto op = wait_done(s->operation.id);
  EXPECT_EQ(op.state, OpState::cancelled);
  auto again = ctl_->operations().cancel(s->operation.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST_F(ControllerTest, HeartbeatFromTheWrongHostIsRefused) {
  host_up("node1");
  ASSERT_TRUE(ctl_->hosts().register_host("node2", "http://127.0.0.1:2").ok());
  auto st = ctl_->hosts().heartbeat({"a", "host:node1", Role::agent, "node1"}, "node2", "", {});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::permission_denied);
}

TEST_F(ControllerTest, TokensAuthenticateByHashAndBootstrapWritesAnAdminToken) {
  auto t = ctl_->tokens().create_token("ops", Role::operator_);
  ASSERT_TRUE(t.ok());
  auto who = ctl_->tokens().authenticate(t->second);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->role, Role::operator_);
  EXPECT_FALSE(ctl_->tokens().authenticate(t->second + "x"));
  EXPECT_FALSE(ctl_->tokens().authenticate(""));
  EXPECT_NE(t->first.hash, t->second);  // only the hash is kept
  const std::string path = ::testing::TempDir() + "/kvmfleet-admin-token";
  std::remove(path.c_str());
  ASSERT_TRUE(ctl_->tokens().bootstrap_admin(path).ok());
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  auto admin_who = ctl_->tokens().authenticate(token);
  ASSERT_TRUE(admin_who);
  EXPECT_EQ(admin_who->role, Role::admin);
  std::remove(path.c_str());
}

// ---- reconciler: pure functions --------------------------------------------

// One liveness pass by the pure rules, with no lag and no guard: hosts silent for 6 s
// turn unreachable, those unreachable and silent for 30 s turn down.
WriteBatch reconcile_liveness(const ClusterState::Data& data, Clock::time_point now,
                              Clock::time_point started_at) {
  // Silence on wall-clock times alone, as a controller without lag would judge it: since
  // the last heartbeat, or since the start for a host not heard since.
  const SilenceOf silence = [&](const Host& h) -> Clock::duration {
    return now - (h.last_heartbeat ? std::max(*h.last_heartbeat, started_at) : started_at);
  };
  WriteBatch b = plan_unreachable(data, silence, 6s, now);
  WriteBatch d = plan_down(data, silence, 30s, now);
  b.put_hosts.insert(b.put_hosts.end(), d.put_hosts.begin(), d.put_hosts.end());
  b.put_vms.insert(b.put_vms.end(), d.put_vms.begin(), d.put_vms.end());
  return b;
}

class ReconcilerTest : public ::testing::Test {
 protected:
  ReconcilerTest() {
    Host h;
    h.name = "node1";
    h.state = HostState::up;
    h.last_heartbeat = now_;
    put(h);
    Host h2 = h;
    h2.name = "node2";
    put(h2);
    vm_.id = "00000000-0000-4000-8000-000000000001";
    vm_.spec.name = "web1";
    vm_.host = "node1";
    vm_.desired = DesiredState::running;
    vm_.state = VmState::running;
    put(vm_);
  }
  DomainStatus dom(const std::string& state) { return {vm_.id, "web1", state, true, 1, true}; }
  // The data changes only through apply(), which keeps its indices in step.
  void put(const Host& h) {
    WriteBatch b;
    b.put_hosts.push_back(h);
    data_.apply(b);
  }
  void put(const Vm& vm) {
    WriteBatch b;
    b.put_vms.push_back(vm);
    data_.apply(b);
  }
  void put(const Operation& op) {
    WriteBatch b;
    b.put_operations.push_back(op);
    data_.apply(b);
  }
  void set_domains(const std::string& host, std::vector<DomainStatus> domains) {
    Host h = data_.hosts.at(host);
    h.inventory.domains = std::move(domains);
    put(h);
  }
  void set_state(const std::string& host, HostState state) {
    Host h = data_.hosts.at(host);
    h.state = state;
    put(h);
  }

  Clock::time_point now_ = from_unix_ms(1'000'000);
  Clock::time_point started_ = now_ - 1h;  // this controller heard every heartbeat above
  ClusterState::Data data_;
  Vm vm_;
};

TEST_F(ReconcilerTest, NoChangeWritesNothing) {
  EXPECT_TRUE(reconcile_host(data_, "node1", {dom("running")}, now_, started_).empty());
}

TEST_F(ReconcilerTest, AStopOutsideKvmfleetIsReflectedNotFought) {
  auto b = reconcile_host(data_, "node1", {dom("stopped")}, now_, started_);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].state, VmState::stopped);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::stopped);
  // Applying it and observing the same again changes nothing: no flapping.
  data_.apply(b);
  EXPECT_TRUE(reconcile_host(data_, "node1", {dom("stopped")}, now_, started_).empty());
}

TEST_F(ReconcilerTest, AVmWithAnOperationInFlightIsLeftAlone) {
  Operation op;
  op.id = "op";
  op.target_id = vm_.id;
  op.state = OpState::running;
  put(op);
  EXPECT_TRUE(reconcile_host(data_, "node1", {dom("stopped")}, now_, started_).empty());
}

TEST_F(ReconcilerTest, AVanishedDomainBecomesUnknownOnce) {
  auto b = reconcile_host(data_, "node1", {}, now_, started_);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].state, VmState::unknown);
  data_.apply(b);
  EXPECT_TRUE(reconcile_host(data_, "node1", {}, now_, started_).empty());
}

TEST_F(ReconcilerTest, RunningOnTwoHostsIsFlaggedNotAdopted) {
  set_domains("node1", {dom("running")});
  auto b = reconcile_host(data_, "node2", {dom("running")}, now_, started_);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node1");
  EXPECT_EQ(b.put_vms[0].state, VmState::unknown);
}

TEST_F(ReconcilerTest, MovedOutsideKvmfleetIsAdopted) {
  set_domains("node1", {});
  auto b = reconcile_host(data_, "node2", {dom("running")}, now_, started_);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node2");
}

TEST_F(ReconcilerTest, SilentHostGoesUnreachableThenDownAndItsVmsUnknown) {
  EXPECT_TRUE(reconcile_liveness(data_, now_ + 1s, started_).empty());
  auto b = reconcile_liveness(data_, now_ + 7s, started_);
  ASSERT_EQ(b.put_hosts.size(), 2u);
  EXPECT_EQ(b.put_hosts[0].state, HostState::unreachable);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].state, VmState::unknown);
  data_.apply(b);
  auto d = reconcile_liveness(data_, now_ + 31s, started_);
  ASSERT_EQ(d.put_hosts.size(), 2u);
  EXPECT_EQ(d.put_hosts[0].state, HostState::down);
  // web1 turned unknown in memory only: down writes it to the store as it is.
  ASSERT_EQ(d.put_vms.size(), 1u);
  EXPECT_EQ(d.put_vms[0].state, VmState::unknown);
  EXPECT_EQ(d.put_vms[0].generation, b.put_vms[0].generation);
}

// After a controller restart the hosts' records are what a previous process heard:
// node1 last said it ran web1. Here web1 has moved to node2 while no controller watched.
class ReconcilerAfterRestartTest : public ReconcilerTest {
 protected:
  ReconcilerAfterRestartTest() {
    started_ = now_;
    for (const auto* name : {"node1", "node2"}) {
      Host h = data_.hosts.at(name);
      h.last_heartbeat = now_ - 10s;
      put(h);
    }
    set_domains("node1", {dom("running")});
  }
  // A heartbeat this controller hears: the host's list is replaced, as heartbeat() does.
  WriteBatch beat(const std::string& host, std::vector<DomainStatus> domains,
                  std::chrono::milliseconds at) {
    Host h = data_.hosts.at(host);
    h.state = HostState::up;
    h.last_heartbeat = now_ + at;
    h.inventory.domains = domains;
    put(h);
    return reconcile_host(data_, host, domains, now_ + at, started_);
  }
  void apply(const WriteBatch& b) { data_.apply(b); }
  const Vm& web1() { return data_.vms.at(vm_.id); }
};

TEST_F(ReconcilerAfterRestartTest, NothingIsDecidedBeforeEveryUpHostHeartbeated) {
  // node2 has it running, but node1 (recorded, up) has not spoken since the start.
  EXPECT_TRUE(beat("node2", {dom("running")}, 1ms).put_vms.empty());
  // node1's queued events arrive before its first heartbeat: a stopped copy, patched
  // into the list a previous controller kept. Neither stopped nor gone on that basis.
  EXPECT_TRUE(reconcile_host(data_, "node1", {dom("stopped")}, now_ + 2ms, started_).empty());
  EXPECT_TRUE(reconcile_host(data_, "node1", {}, now_ + 2ms, started_).empty());
  EXPECT_EQ(web1().host, "node1");
  EXPECT_EQ(web1().state, VmState::running);
  EXPECT_EQ(web1().desired, DesiredState::running);

  // node1 heartbeats without it while node2 runs it: it moved, it did not stop.
  auto b = beat("node1", {}, 3ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node2");
  EXPECT_EQ(b.put_vms[0].state, VmState::running);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
  apply(b);
  EXPECT_TRUE(beat("node2", {dom("running")}, 4ms).empty());
  EXPECT_TRUE(beat("node1", {}, 5ms).empty());
}

TEST_F(ReconcilerAfterRestartTest, ADestinationHeardLastIsAdoptedWithoutAGap) {
  // node1 first, still holding a defined, shut-off copy: node2 is not heard yet.
  EXPECT_TRUE(beat("node1", {dom("stopped")}, 1ms).put_vms.empty());
  EXPECT_EQ(web1().desired, DesiredState::running);
  auto b = beat("node2", {dom("running")}, 2ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node2");
  EXPECT_EQ(b.put_vms[0].state, VmState::running);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
  apply(b);
  // The copy left on node1 is not this VM's any more.
  EXPECT_TRUE(beat("node1", {dom("stopped")}, 3ms).empty());
}

TEST_F(ReconcilerAfterRestartTest, AStoppedCopyOnTheRecordedHostDoesNotStopAVmRunningElsewhere) {
  beat("node2", {dom("running")}, 1ms);
  auto b = beat("node1", {dom("stopped")}, 2ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node2");
  EXPECT_EQ(b.put_vms[0].state, VmState::running);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
}

TEST_F(ReconcilerAfterRestartTest, RunningOnTwoOtherHostsIsFlaggedNotAdopted) {
  Host h3 = data_.hosts.at("node2");
  h3.name = "node3";
  put(h3);
  beat("node2", {dom("running")}, 1ms);
  beat("node3", {dom("running")}, 1ms);
  auto b = beat("node1", {}, 2ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node1");
  EXPECT_EQ(b.put_vms[0].state, VmState::unknown);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
}

TEST_F(ReconcilerAfterRestartTest, AStoppedVmOnAHeardHostIsStillReflected) {
  // Once every up host has spoken and nobody else runs it, a stop is a stop.
  beat("node2", {}, 1ms);
  auto b = beat("node1", {dom("stopped")}, 2ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node1");
  EXPECT_EQ(b.put_vms[0].state, VmState::stopped);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::stopped);
}

TEST_F(ReconcilerAfterRestartTest, DownHostsDoNotHoldTheReconcilerBack) {
  set_state("node1", HostState::down);
  Vm unknown = data_.vms.at(vm_.id);
  unknown.state = VmState::unknown;
  put(unknown);
  // Decided without node1: node2 runs it and node1 never said it stopped, so it is a
  // suspected double run: a copy found elsewhere while the recorded host is silent is
  // not a move.
  auto b = beat("node2", {dom("running")}, 1ms);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node1");
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
  ASSERT_TRUE(b.put_vms[0].double_run);
  EXPECT_EQ(b.put_vms[0].double_run->hosts, (std::vector<std::string>{"node1", "node2"}));
}

TEST_F(ReconcilerAfterRestartTest, ASilentHostIsTimedFromTheStartThenTheUsualRulesApply) {
  // node1's last heartbeat is old, but only because no controller listened: it is not
  // declared unreachable before it had the chance to speak to this one.
  EXPECT_TRUE(reconcile_liveness(data_, now_ + 1s, started_).empty());
  EXPECT_TRUE(beat("node2", {dom("running")}, 5s).put_vms.empty());  // node1 not heard

  // node1 never speaks: the heartbeat timeout, counted from the start, declares it.
  auto l = reconcile_liveness(data_, now_ + 6s, started_);
  ASSERT_EQ(l.put_hosts.size(), 1u);
  EXPECT_EQ(l.put_hosts[0].name, "node1");
  EXPECT_EQ(l.put_hosts[0].state, HostState::unreachable);
  ASSERT_EQ(l.put_vms.size(), 1u);
  EXPECT_EQ(l.put_vms[0].state, VmState::unknown);
  apply(l);

  // From there on a report is acted on: node2 runs it, and node1, not up, has not said
  // it stopped running it: a suspected double run.
  auto b = beat("node2", {dom("running")}, 7s);
  ASSERT_EQ(b.put_vms.size(), 1u);
  EXPECT_EQ(b.put_vms[0].host, "node1");
  EXPECT_EQ(b.put_vms[0].state, VmState::unknown);
  EXPECT_EQ(b.put_vms[0].desired, DesiredState::running);
  ASSERT_TRUE(b.put_vms[0].double_run);
  EXPECT_EQ(b.put_vms[0].double_run->since, now_ + 7s);
  apply(b);
  EXPECT_TRUE(beat("node2", {dom("running")}, 29s).empty());
  auto d = reconcile_liveness(data_, now_ + 30s, started_);
  ASSERT_EQ(d.put_hosts.size(), 1u);
  EXPECT_EQ(d.put_hosts[0].state, HostState::down);
  // Down is silence, not proof: the suspicion stands.
  apply(d);
  EXPECT_TRUE(beat("node2", {dom("running")}, 31s).empty());
  EXPECT_TRUE(web1().double_run);
  EXPECT_EQ(web1().host, "node1");
}

TEST_F(ReconcilerAfterRestartTest, ADownHostStaysDownUntilItHeartbeats) {
  set_state("node1", HostState::down);
  for (auto at : {1s, 7s, 31s})
    for (const auto& h : reconcile_liveness(data_, now_ + at, started_).put_hosts)
      EXPECT_NE(h.name, "node1") << "at +" << at.count() << "s";
}

// The same through the service: a real restart of the controller over its store.
class RestartedControllerTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
    create_on("web1", "node1");
    id_ = vm("web1").id;
    ASSERT_TRUE(beat("node1", {running()}).ok());
    ASSERT_TRUE(beat("node2", {}).ok());
  }
  DomainStatus running() { return {id_, "web1", "running", true, 1, true}; }
  Status beat(const std::string& host, std::vector<DomainStatus> domains) {
    return heartbeat(host, std::move(domains));
  }
  // A new controller process, `away` after the old one stopped.
  void restart(std::chrono::milliseconds away) {
    shutdown();
    clock_.advance(away);
    boot();
    runner_->start();
  }
  HostState host_state(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) { return d.find_host(name)->state; });
  }
  std::string id_;
};

TEST_F(RestartedControllerTest, AVmThatMovedWhileTheControllerWasDownIsFollowedNotStopped) {
  restart(1s);
  // web1 now runs on node2; node2 happens to be heard first.
  ASSERT_TRUE(beat("node2", {running()}).ok());
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  // node1's agent delivers the events it queued while no controller answered (libvirt
  // stopped the source, then undefined it) before its first heartbeat.
  ASSERT_TRUE(ctl_->hosts()
                  .domain_events({"a", "host:node1", Role::agent, "node1"}, "node1",
                                 {{id_, "web1", "stopped", "migrated"}})
                  .ok());
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_NE(vm("web1").state, VmState::stopped);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  ASSERT_TRUE(ctl_->hosts()
                  .domain_events({"a", "host:node1", Role::agent, "node1"}, "node1",
                                 {{id_, "web1", "undefined", ""}})
                  .ok());
  EXPECT_EQ(vm("web1").state, VmState::running);

  // node1's first heartbeat has no web1, node2 has it running: it is node2's.
  ASSERT_TRUE(beat("node1", {}).ok());
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
}

TEST_F(RestartedControllerTest, AHostThatNeverHeartbeatsAgainHoldsNothingBackPastTheTimeout) {
  restart(1h);  // every heartbeat the store kept is an hour old
  ctl_->tick();
  EXPECT_EQ(host_state("node1"), HostState::up);  // not blamed for the controller's absence
  EXPECT_EQ(host_state("node2"), HostState::up);
  ASSERT_TRUE(beat("node2", {running()}).ok());
  EXPECT_EQ(vm("web1").host, "node1");  // node1 may still speak

  clock_.advance(config_.unreachable_after);
  ASSERT_TRUE(beat("node2", {running()}).ok());
  ctl_->tick();
  EXPECT_EQ(host_state("node1"), HostState::unreachable);
  EXPECT_EQ(host_state("node2"), HostState::up);
  EXPECT_EQ(vm("web1").state, VmState::unknown);  // the usual rule for a silent host

  // node1 has said nothing since: a copy on node2 is a suspected double run, not a move.
  ASSERT_TRUE(beat("node2", {running()}).ok());
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(vm("web1").state, VmState::unknown);
  ASSERT_TRUE(vm("web1").double_run);
  EXPECT_EQ(vm("web1").double_run->hosts, (std::vector<std::string>{"node1", "node2"}));

  // node1's own word that it no longer runs it settles it: node2's.
  ASSERT_TRUE(beat("node1", {}).ok());
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
  EXPECT_EQ(vm("web1").desired, DesiredState::running);
  EXPECT_FALSE(vm("web1").double_run);
}

// ---- live migration -----------------------------------------------------------

class MigrationTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    host_up("node1");
    host_up("node2", 4, 4096);
    runner_->start();
    VmSpec s = spec("web1");
    s.pinned_host = "node1";
    auto c = ctl_->vms().create_vm(admin(), s, true, {});
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  }
};

TEST_F(MigrationTest, MovesTheVmToTheTargetAndRecordsIt) {
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result["target_host"], "node2");
  EXPECT_EQ(op.result["migration"]["state"], "completed");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::running);
  // The agent got the target's address, never a name to resolve.
  EXPECT_EQ(agents_.count("migrate"), 1);
}

// Every move says how it moves, from its submission on, and a poller sees the partial
// result (where it goes, libvirt's job statistics) while it runs.
TEST_F(MigrationTest, ALiveMoveRecordsItsModeAndShowsItsProgress) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->operation.params.value("mode", ""), "live");
  EXPECT_EQ(m->operation.result.value("mode", ""), "live");
  std::optional<Operation> seen;
  const bool polled = clock_.advance_until(
      [&] {
        seen = state_->operation(m->operation.id);
        return seen && seen->result.contains("migration");
      },
      50ms, 1min);
  ASSERT_TRUE(polled) << (seen ? seen->result.dump() : "gone");
  EXPECT_EQ(seen->result.value("mode", ""), "live");
  EXPECT_EQ(seen->result.value("source_host", ""), "node1");
  EXPECT_EQ(seen->result.value("target_host", ""), "node2");
  EXPECT_EQ(seen->result["migration"].value("state", ""), "running");
  agents_.complete_migration(vm("web1").id);
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("mode", ""), "live");
  EXPECT_EQ(op.result["migration"].value("state", ""), "completed");
}

TEST_F(MigrationTest, WithoutATargetTheSchedulerPicksAnotherHost) {
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->operation.params["target_host"], "node2");
  EXPECT_EQ(wait_done(m->operation.id).state, OpState::succeeded);
  EXPECT_EQ(vm("web1").host, "node2");
}

TEST_F(MigrationTest, PreChecksRefuseClearly) {
  auto same = ctl_->migration().migrate_vm(admin(), "web1", "node1", {}, {});
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.error().code, ErrorCode::conflict);
  auto ghost = ctl_->migration().migrate_vm(admin(), "web1", "node9", {}, {});
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.error().code, ErrorCode::not_found);
  ASSERT_TRUE(ctl_->hosts().set_schedulable("node2", false).ok());
  auto maint = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(maint.ok());
  EXPECT_EQ(maint.error().code, ErrorCode::conflict);
  auto none = ctl_->migration().migrate_vm(admin(), "web1", "", {}, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::insufficient_capacity);
  ASSERT_TRUE(ctl_->hosts().set_schedulable("node2", true).ok());
  VmSpec big = spec("big", 6000);
  big.pinned_host = "node1";
  auto c = ctl_->vms().create_vm(admin(), big, true, {});
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  auto full = ctl_->migration().migrate_vm(admin(), "big", "node2", {}, {});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::insufficient_capacity);
  // Neither running nor stopped: no migration of either kind.
  record_vm_state("web1", VmState::paused);
  auto paused = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(paused.ok());
  EXPECT_EQ(paused.error().code, ErrorCode::conflict);
  EXPECT_EQ(agents_.count("migrate"), 0);
}

// A stopped VM moves cold: defined on the target, undefined on the source, recorded
// there; no libvirt migration, no migration slot, and it starts on the target.
TEST_F(MigrationTest, StoppedVmMovesCold) {
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_destroy, {}, {});
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  const std::string id = vm("web1").id;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->operation.params.value("mode", ""), "cold");
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("mode", ""), "cold");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(vm("web1").state, VmState::stopped);
  EXPECT_EQ(agents_.count("migrate"), 0);
  const Host n1 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node1"); });
  const Host n2 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node2"); });
  EXPECT_EQ(agents_.get_domain(n1, id).error().code, ErrorCode::not_found);
  ASSERT_TRUE(agents_.get_domain(n2, id).ok());
  auto start = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, {}, {});
  ASSERT_EQ(wait_done(start->operation.id).state, OpState::succeeded);
  EXPECT_EQ(agents_.get_domain(n2, id)->state, "running");
  // Back again, and to its own host: 409.
  auto same = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.error().code, ErrorCode::conflict);
}

// The record says stopped, the source host says it runs (the record lags): the move
// is refused and nothing is defined on the target.
TEST_F(MigrationTest, ColdMoveOfAVmTheSourceStillRunsIsRefused) {
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_destroy, {}, {});
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  const std::string id = vm("web1").id;
  agents_.set_state("node1", id, "running");
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(op.error->code, ErrorCode::conflict);
  EXPECT_EQ(vm("web1").host, "node1");
  const Host n2 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node2"); });
  EXPECT_EQ(agents_.get_domain(n2, id).error().code, ErrorCode::not_found);
  EXPECT_EQ(agents_.count("define"), 1);  // the create's only
}

// A stopped VM on a host that is not up is not moved: its host cannot confirm it is
// stopped (that is HA's fencing question, not a move).
TEST_F(MigrationTest, ColdMoveNeedsTheSourceUp) {
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_destroy, {}, {});
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  record_host_state("node1", HostState::unreachable);
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::conflict);
  EXPECT_NE(m.error().message.find("not up"), std::string::npos) << m.error().message;
}

TEST_F(MigrationTest, VmsWithLocalDisksOrAnotherAcceleratorDoNotMove) {
  VmSpec s = spec("disky");
  s.pinned_host = "node1";
  s.disks.push_back(DiskSpec{});
  s.disks[0].size_gib = 1;
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  auto m = ctl_->migration().migrate_vm(admin(), "disky", "node2", {}, {});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::conflict);
  EXPECT_NE(m.error().message.find("local image pool"), std::string::npos) << m.error().message;
  EXPECT_EQ(m.error().details["disks"].size(), 1u);

  // node3 runs guests under TCG: no target for a KVM guest, named or picked.
  auto r = ctl_->hosts().register_host("node3", "http://127.0.0.1:1");
  ASSERT_TRUE(r.ok());
  HostInventory inv;
  inv.cpus = 64;
  inv.memory_total_mib = 65536;
  inv.domain_type = "qemu";
  inv.migration_address = "10.0.0.99";
  ASSERT_TRUE(
      ctl_->hosts().heartbeat({"a", "host:node3", Role::agent, "node3"}, "node3", "", inv).ok());
  auto tcg = ctl_->migration().migrate_vm(admin(), "web1", "node3", {}, {});
  ASSERT_FALSE(tcg.ok());
  EXPECT_EQ(tcg.error().code, ErrorCode::conflict);
  EXPECT_NE(tcg.error().message.find("accelerator"), std::string::npos) << tcg.error().message;
  auto picked = ctl_->migration().migrate_vm(admin(), "web1", "", {}, {});
  ASSERT_TRUE(picked.ok()) << picked.error().message;
  EXPECT_EQ(picked->operation.params["target_host"], "node2");  // node3 is roomier but out
  wait_done(picked->operation.id);
}

TEST_F(MigrationTest, CancelAbortsTheJobAndTheVmStaysOnTheSource) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 100 && agents_.count("migrate") == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(ctl_->operations().cancel(m->operation.id).ok());
  auto op = wait_done(m->operation.id);
  EXPECT_EQ(op.state, OpState::cancelled);
  EXPECT_EQ(agents_.count("abort_migration"), 1);
  EXPECT_EQ(vm("web1").host, "node1");
}

TEST_F(MigrationTest, ARestartedControllerAdoptsAMigrationThatFinishedWhileItWasDown) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  for (int i = 0; i < 100 && agents_.count("migrate") == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(agents_.count("migrate"), 1);
  shutdown();  // the operation stays "running" in the store
  boot();
  const std::string id = vm("web1").id;
  agents_.complete_migration(id);  // libvirt finished while no controller watched
  for (auto h : {"node1", "node2"}) {
    HostInventory inv{"", "", 4, "", 8192};
    inv.migration_address = "10.0.0." + std::to_string(std::string(h).size() + h[4]);
    ASSERT_TRUE(
        ctl_->hosts().heartbeat({"a", std::string("host:") + h, Role::agent, h}, h, "", inv).ok());
  }
  runner_->start();
  auto op = wait_done(m->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(agents_.count("migrate"), 1);  // not started a second time
}

TEST_F(MigrationTest, ASourceAgentThatLostTrackLeavesTheOutcomeToWhatTheHostsRun) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 100 && agents_.count("migrate") == 0; ++i) std::this_thread::sleep_for(10ms);
  const std::string id = vm("web1").id;
  agents_.complete_migration(id);  // libvirt finished it...
  agents_.forget_migration(id);    // ...while the source agent restarted
  auto op = wait_done(m->operation.id);
  EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("web1").host, "node2");
}

TEST_F(MigrationTest, AMigrationThatVanishedOnTheSourceLeavesTheVmThere) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 100 && agents_.count("migrate") == 0; ++i) std::this_thread::sleep_for(10ms);
  agents_.forget_migration(vm("web1").id);  // e.g. libvirtd restarted and dropped the job
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(op.error->code, ErrorCode::unavailable);
  EXPECT_NE(op.error->message.find("keeps running on node1"), std::string::npos)
      << op.error->message;
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(agents_.count("migrate"), 1);  // never restarted behind the user's back
}

// ---- migration budgets and host maintenance -----------------------------------

Operation migration(const std::string& id, const std::string& from, const std::string& to) {
  Operation op;
  op.id = id;
  set_params(op, VmMigrateParams{.target_host = to, .source_host = from});
  return op;
}

TEST(MigrationSlots, AtMostKLeaveAndKArriveOnAnyHost) {
  const std::vector<Operation> running = {migration("a", "n1", "n2"), migration("b", "n1", "n3")};
  auto out = migration_slot_refusal(migration("c", "n1", "n4"), running, 2);
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->find("leaving n1"), std::string::npos) << *out;
  EXPECT_FALSE(migration_slot_refusal(migration("c", "n1", "n4"), running, 3).has_value());
  EXPECT_FALSE(migration_slot_refusal(migration("c", "n5", "n4"), running, 2).has_value());
  const std::vector<Operation> arriving = {migration("a", "n1", "n9"), migration("b", "n2", "n9")};
  auto in = migration_slot_refusal(migration("c", "n3", "n9"), arriving, 2);
  ASSERT_TRUE(in.has_value());
  EXPECT_NE(in->find("arriving on n9"), std::string::npos) << *in;
  // Itself, and operations of other kinds, never count.
  Operation stop = migration("s", "n1", "n2");
  stop.kind = op_kind::vm_stop;
  EXPECT_FALSE(
      migration_slot_refusal(migration("a", "n1", "n2"), {migration("a", "n1", "n2"), stop}, 1));
}

class DrainTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    config_.operation_workers = 6;
    config_.migrations_per_host = 2;
    start_with_two_hosts();
    for (const char* name : {"v1", "v2", "v3"}) {
      VmSpec s = spec(name);
      s.pinned_host = "node1";
      auto c = ctl_->vms().create_vm(admin(), s, true, {});
      ASSERT_TRUE(c.ok());
      ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
    }
  }
  Operation op(const std::string& id) {
    return state_->read([&](const ClusterState::Data& d) { return *d.find_operation(id); });
  }
  bool schedulable(const std::string& host) {
    return state_->read(
        [&](const ClusterState::Data& d) { return d.find_host(host)->schedulable; });
  }
};

TEST_F(DrainTest, AThirdMigrationFromAHostQueuesAndSaysWhy) {
  agents_.hold_migrations = true;
  std::vector<std::string> ids;
  for (const char* name : {"v1", "v2", "v3"}) {
    auto m = ctl_->migration().migrate_vm(admin(), name, "node2", {}, {});
    ASSERT_TRUE(m.ok()) << m.error().message;
    ids.push_back(m->operation.id);
  }
  for (int i = 0; i < 200 && agents_.count("migrate") < 2; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(agents_.count("migrate"), 2);
  Operation third;
  for (int i = 0; i < 200; ++i) {
    third = op(ids[2]);
    if (third.step.rfind("queued:", 0) == 0) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(third.state, OpState::pending);
  EXPECT_NE(third.step.find("leaving node1 (limit 2)"), std::string::npos) << third.step;
  agents_.complete_migration(vm("v1").id);
  EXPECT_EQ(wait_done(ids[0]).state, OpState::succeeded);
  for (int i = 0; i < 300 && agents_.count("migrate") < 3; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(agents_.count("migrate"), 3);  // the freed slot went to the queued one
  agents_.complete_migration(vm("v2").id);
  agents_.complete_migration(vm("v3").id);
  EXPECT_EQ(wait_done(ids[1]).state, OpState::succeeded);
  EXPECT_EQ(wait_done(ids[2]).state, OpState::succeeded);
  EXPECT_EQ(vm("v3").host, "node2");
}

// progress() records the drain's result as it goes: a poller sees each VM's state.
TEST_F(DrainTest, APollerSeesEachVmOfADrainWhileItRuns) {
  agents_.hold_migrations = true;
  auto m = ctl_->migration().set_maintenance(admin(), "node1", true, {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  nlohmann::json vms;
  const bool seen = clock_.advance_until(
      [&] {
        vms = op(m->operation.id).result.value("vms", nlohmann::json::object());
        return vms.size() == 3 && agents_.count("migrate") == 2;
      },
      50ms, 1min);
  ASSERT_TRUE(seen) << vms.dump();
  int migrating = 0, queued = 0;
  for (const auto& [name, e] : vms.items()) {
    migrating += e.value("state", "") == "migrating";
    queued += e.value("state", "") == "queued";
    EXPECT_TRUE(e.contains("operation")) << name;
  }
  EXPECT_EQ(migrating + queued, 3) << vms.dump();
  EXPECT_GE(queued, 1) << vms.dump();  // the third waits for a slot
  // Whichever two started first end; then the third starts, and ends.
  auto started_moves = [&] {
    std::vector<std::string> uuids;
    for (const auto& c : agents_.calls())
      if (c.name == "migrate") uuids.push_back(c.uuid);
    return uuids;
  };
  for (const auto& uuid : started_moves()) agents_.complete_migration(uuid);
  ASSERT_TRUE(clock_.advance_until([&] { return agents_.count("migrate") == 3; }, 50ms, 1min));
  agents_.complete_migration(started_moves().back());
  const Operation done = wait_done(m->operation.id);
  ASSERT_EQ(done.state, OpState::succeeded) << (done.error ? done.error->message : "");
  for (const char* name : {"v1", "v2", "v3"})
    EXPECT_EQ(done.result["vms"][name]["state"], "moved") << name;
}

TEST_F(DrainTest, MaintenanceMovesEveryRunningVmAwayAndReportsEach) {
  auto stop = ctl_->vms().vm_action(admin(), "v3", op_kind::vm_destroy, {}, {});
  ASSERT_TRUE(stop.ok());
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  auto m = ctl_->migration().set_maintenance(admin(), "node1", true, {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_FALSE(schedulable("node1")) << "unschedulable before the first VM moves";
  auto done = wait_done(m->operation.id);
  ASSERT_EQ(done.state, OpState::succeeded) << (done.error ? done.error->message : "");
  EXPECT_EQ(done.progress, 100);
  EXPECT_EQ(vm("v1").host, "node2");
  EXPECT_EQ(vm("v2").host, "node2");
  EXPECT_EQ(vm("v3").host, "node1");  // stopped: stays defined where it is
  const auto& vms = done.result["vms"];
  EXPECT_EQ(vms["v1"]["state"], "moved");
  EXPECT_EQ(vms["v1"]["target_host"], "node2");
  EXPECT_EQ(vms["v2"]["state"], "moved");
  EXPECT_EQ(vms["v3"]["state"], "stays");
  // Each move is an operation of its own, attributed to the drain's requester.
  const Operation child = op(vms["v1"]["operation"]);
  EXPECT_EQ(child.kind, op_kind::vm_migrate);
  EXPECT_EQ(child.requested_by, admin().name);
  EXPECT_EQ(child.params["maintenance_of"], "node1");

  auto again = ctl_->migration().migrate_vm(admin(), "v1", "node1", {}, {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict);  // in maintenance
  auto off = ctl_->migration().set_maintenance(admin(), "node1", false, {}, {});
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(wait_done(off->operation.id).state, OpState::succeeded);
  EXPECT_TRUE(schedulable("node1"));
}

TEST_F(DrainTest, MaintenanceFailsNamingTheVmsThatCouldNotMove) {
  agents_.fail_next("migrate", Error(ErrorCode::conflict, "CPU model not supported by target"),
                    100);
  auto m = ctl_->migration().set_maintenance(admin(), "node1", true, {}, {});
  ASSERT_TRUE(m.ok());
  auto done = wait_done(m->operation.id);
  ASSERT_EQ(done.state, OpState::failed);
  ASSERT_TRUE(done.error.has_value());
  EXPECT_EQ(done.error->code, ErrorCode::conflict);
  EXPECT_NE(done.error->message.find("3 VM(s) could not move off node1"), std::string::npos)
      << done.error->message;
  EXPECT_EQ(done.error->details["vms"]["v2"], "CPU model not supported by target");
  EXPECT_FALSE(schedulable("node1"));  // still in maintenance
  EXPECT_EQ(vm("v1").host, "node1");
}

TEST_F(DrainTest, MaintenanceRefusesClearly) {
  auto ghost = ctl_->migration().set_maintenance(admin(), "node9", true, {}, {});
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.error().code, ErrorCode::not_found);
  agents_.hold_migrations = true;
  auto m = ctl_->migration().set_maintenance(admin(), "node1", true, {}, {});
  ASSERT_TRUE(m.ok());
  auto twice = ctl_->migration().set_maintenance(admin(), "node1", false, {}, {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::conflict);
  // Cancelling the drain aborts its migrations: the VMs stay where they run.
  for (int i = 0; i < 300 && agents_.count("migrate") < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(ctl_->operations().cancel(m->operation.id).ok());
  auto done = wait_done(m->operation.id);
  EXPECT_EQ(done.state, OpState::cancelled);
  EXPECT_EQ(vm("v1").host, "node1");
  EXPECT_EQ(vm("v3").host, "node1");
  EXPECT_GE(agents_.count("abort_migration"), 2);
}

}  // namespace
