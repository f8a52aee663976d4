#pragma once

// A controller without its HTTP front: the store, the state, the runner and the
// service over a FakeAgentApi, with a manual clock. Shared by the controller's tests.

#include "kvmfleet/controller/controller.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <future>
#include <thread>

namespace kvmfleet::testing_support {

using namespace std::chrono_literals;

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.agent_retry_attempts = 3;
    config_.agent_retry_backoff = 1ms;
    config_.operation_workers = 2;
    io_thread_ = std::thread([this] { ioc_.run(); });
    boot();
  }
  void TearDown() override {
    shutdown();
    work_.reset();
    ioc_.stop();
    io_thread_.join();
  }

  // A controller process: state loaded from the store, the controller over it.
  void boot() {
    state_ = std::make_unique<ClusterState>(store_);
    ASSERT_TRUE(state_->load().ok());
    ctl_ = std::make_unique<Controller>(*state_, agents_, config_, clock_, ioc_);
    runner_ = &ctl_->runner();
  }
  void shutdown() {
    if (ctl_) ctl_->stop();
    ctl_.reset();
    runner_ = nullptr;
    state_.reset();
  }

  Principal admin() { return {"t", "admin", Role::admin, ""}; }

  // The usual start: hosts node1 and node2 up, the runner running.
  void start_with_two_hosts() {
    host_up("node1");
    host_up("node2");
    runner_->start();
  }

  void host_up(const std::string& name, int cpus = 4, std::int64_t mem = 8192) {
    auto r = ctl_->hosts().register_host(name, "http://127.0.0.1:1");
    ASSERT_TRUE(r.ok());
    HostInventory inv = inventory_of(name, cpus, mem);
    agents_.address_of[inv.migration_address] = name;
    Principal agent{"a", "host:" + name, Role::agent, name};
    ASSERT_TRUE(ctl_->hosts().heartbeat(agent, name, "", inv).ok());
  }
  // What host_up's host reports of itself.
  static HostInventory inventory_of(const std::string& name, int cpus = 4,
                                    std::int64_t mem = 8192) {
    HostInventory inv;
    inv.cpus = cpus;
    inv.memory_total_mib = mem;
    inv.domain_type = "kvm";
    inv.migration_address = "10.0.0." + std::to_string(name.size() + name.back());
    return inv;
  }
  // A heartbeat from `host`'s agent listing `domains`, its listing begun at `stamp`.
  Status heartbeat(const std::string& host, std::vector<DomainStatus> domains,
                   ReportStamp stamp = {}) {
    HostInventory inv = inventory_of(host);
    inv.domains = std::move(domains);
    inv.stamp = std::move(stamp);
    return ctl_->hosts().heartbeat({"a", "host:" + host, Role::agent, host}, host, "", inv);
  }

  // Runs simulated time until the operation ends: every wait of the operations (polls,
  // backoff, timeouts) is on clock_, so minutes of them pass in milliseconds.
  Operation wait_done(const std::string& id) {
    std::optional<Operation> op;
    const bool ended = clock_.advance_until(
        [&] {
          op = state_->operation(id);
          return op && is_terminal(op->state);
        },
        50ms, 1h);
    EXPECT_TRUE(ended) << "operation " << id << " still " << (op ? to_string(op->state) : "gone");
    return op.value_or(Operation{});
  }

  // Creates VM `name` pinned to `host` (started or only defined) and waits for it.
  void create_on(const std::string& name, const std::string& host, bool start = true) {
    VmSpec s = spec(name);
    s.pinned_host = host;
    auto c = ctl_->vms().create_vm(admin(), s, start, {});
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  }

  // Records a state as if observed (a report the controller has not acted on yet).
  void record_vm_state(const std::string& name, VmState s) {
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                      Vm v = *d.find_vm(name);
                      v.state = s;
                      b.put_vms.push_back(v);
                      return {};
                    })
                    .ok());
  }
  // Records an operation as it is, without running it.
  void record_operation(const Operation& op) {
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
                      b.put_operations.push_back(op);
                      return {};
                    })
                    .ok());
  }
  void record_host_state(const std::string& name, HostState s) {
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                      Host h = *d.find_host(name);
                      h.state = s;
                      b.put_hosts.push_back(h);
                      return {};
                    })
                    .ok());
  }

  Vm vm(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) {
      const Vm* v = d.find_vm(name);
      return v ? *v : Vm{};
    });
  }

  VmSpec spec(const std::string& name, std::int64_t mem = 256) {
    VmSpec s;
    s.name = name;
    s.memory_mib = mem;
    return s;
  }

  ControllerConfig config_;
  ManualClock clock_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_thread_;
  std::unique_ptr<ClusterState> state_;
  std::unique_ptr<Controller> ctl_;
  OperationRunner* runner_ = nullptr;  // the controller's
};

}  // namespace kvmfleet::testing_support
