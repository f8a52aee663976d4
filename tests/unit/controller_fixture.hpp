#pragma once

// A controller without its HTTP front: the store, the state, the runner and the
// service over a FakeAgentApi, with a manual clock. Shared by the controller's tests.

#include "tests/doubles/common/manual_clock.hpp"
#include "kvmfleet/controller/cluster_service.hpp"
#include "kvmfleet/controller/host_operations.hpp"
#include "kvmfleet/controller/storage_operations.hpp"
#include "kvmfleet/controller/vm_operations.hpp"
#include "tests/doubles/fake_agent_api.hpp"
#include "tests/doubles/memory_store.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <gtest/gtest.h>

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

  // A controller process: state loaded from the store, a runner, a service.
  void boot() {
    state_ = std::make_unique<ClusterState>(store_);
    ASSERT_TRUE(state_->load().ok());
    runner_ = std::make_unique<OperationRunner>(*state_, agents_, config_, clock_);
    register_vm_operations(*runner_);
    register_host_operations(*runner_);
    register_storage_operations(*runner_);
    service_ = std::make_unique<ClusterService>(*state_, *runner_, config_, clock_, ioc_);
  }
  void shutdown() {
    if (runner_) runner_->stop();
    service_.reset();
    runner_.reset();
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
    auto r = service_->register_host(name, "http://127.0.0.1:1");
    ASSERT_TRUE(r.ok());
    HostInventory inv;
    inv.cpus = cpus;
    inv.memory_total_mib = mem;
    inv.domain_type = "kvm";
    inv.migration_address = "10.0.0." + std::to_string(name.size() + name.back());
    agents_.address_of[inv.migration_address] = name;
    Principal agent{"a", "host:" + name, Role::agent, name};
    ASSERT_TRUE(service_->heartbeat(agent, name, "", inv).ok());
  }

  Operation wait_done(const std::string& id) {
    std::promise<std::optional<Operation>> p;
    service_->wait_operation(id, 20s, [&](std::optional<Operation> op) { p.set_value(op); });
    auto op = p.get_future().get();
    EXPECT_TRUE(op.has_value());
    return op.value_or(Operation{});
  }

  // Records a state as if observed (a report the controller has not acted on yet).
  void record_vm_state(const std::string& name, VmState s) {
    ASSERT_TRUE(state_->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      Vm v = *d.find_vm(name);
      v.state = s;
      b.put_vms.push_back(v);
      return {};
    }).ok());
  }
  // Records an operation as it is, without running it.
  void record_operation(const Operation& op) {
    ASSERT_TRUE(state_->update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
      b.put_operations.push_back(op);
      return {};
    }).ok());
  }
  void record_host_state(const std::string& name, HostState s) {
    ASSERT_TRUE(state_->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      Host h = *d.find_host(name);
      h.state = s;
      b.put_hosts.push_back(h);
      return {};
    }).ok());
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
  std::unique_ptr<OperationRunner> runner_;
  std::unique_ptr<ClusterService> service_;
};

}  // namespace kvmfleet::testing_support
