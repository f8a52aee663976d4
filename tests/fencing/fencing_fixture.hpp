#pragma once

// A controller without its HTTP front, with a fake fence agent and a manual clock:
// fencing in simulated time.

#include "kvmfleet/controller/controller.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/fencing/fake_fence_agent.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <thread>

namespace kvmfleet::testing_support {

using namespace std::chrono_literals;

class FencingTest : public ::testing::Test {
 protected:
  // Before the controller is made: a test's own configuration.
  virtual void configure() {}
  void SetUp() override {
    config_.agent_retry_attempts = 3;
    config_.agent_retry_backoff = 1ms;
    config_.operation_workers = 2;
    config_.unreachable_after = 6s;
    config_.down_after = 30s;
    configure();
    io_thread_ = std::thread([this] { ioc_.run(); });
    state_ = std::make_unique<ClusterState>(store_);
    ASSERT_TRUE(state_->load().ok());
    ctl_ = std::make_unique<Controller>(*state_, agents_, config_, clock_, ioc_, nullptr, nullptr,
                                        fence_);
    ctl_->runner().start();
  }
  void TearDown() override {
    ctl_->stop();
    ctl_.reset();
    state_.reset();
    work_.reset();
    ioc_.stop();
    io_thread_.join();
  }

  Principal admin() { return {"t1", "alice", Role::admin, ""}; }

  void host_up(const std::string& name) {
    auto r = ctl_->hosts().register_host(name, "http://127.0.0.1:1");
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(heartbeat(name).ok());
  }
  Status heartbeat(const std::string& name) {
    HostInventory inv;
    inv.cpus = 4;
    inv.memory_total_mib = 8192;
    inv.domain_type = "kvm";
    return ctl_->hosts().heartbeat({"a", "host:" + name, Role::agent, name}, name, "", inv);
  }
  // Two devices: fence_ipmilan at 10.0.0.1 (password s3cret-ipmi), fence_redfish at 10.0.0.2.
  void set_two_devices(const std::string& host) {
    auto devices = fencing::parse_fencing(nlohmann::json::parse(R"({"devices": [
      {"agent": "fence_ipmilan", "options": {"ip": "10.0.0.1", "username": "admin",
       "password": "s3cret-ipmi", "lanplus": true, "ipport": 623}},
      {"agent": "fence_redfish", "options": {"ip": "10.0.0.2", "username": "root",
       "password": "s3cret-redfish"}}]})"));
    ASSERT_TRUE(devices.ok()) << devices.error().message;
    auto set = ctl_->fencing().set_devices(host, *devices);
    ASSERT_TRUE(set.ok()) << set.error().message;
  }
  Host host(const std::string& name) { return state_->host(name).value_or(Host{}); }

  Operation wait_done(const std::string& id) {
    std::optional<Operation> op;
    const bool ended = clock_.advance_until(
        [&] {
          op = state_->operation(id);
          return op && is_terminal(op->state);
        },
        50ms, 2h);
    EXPECT_TRUE(ended) << "operation " << id << " still " << (op ? to_string(op->state) : "gone");
    return op.value_or(Operation{});
  }
  // `d` of simulated time with a liveness pass every second, the hosts in `alive`
  // heartbeating: the others fall silent.
  void silence(std::chrono::milliseconds d, const std::vector<std::string>& alive = {}) {
    for (auto t = 0ms; t < d; t += 1s) {
      clock_.advance(1s);
      for (const auto& h : alive) EXPECT_TRUE(heartbeat(h).ok());
      ctl_->hosts().check_liveness();
    }
  }
  // The host.fence operations of `host`, oldest first.
  std::vector<Operation> fence_ops(const std::string& host) {
    return state_->read([&](const ClusterState::Data& d) {
      std::vector<Operation> out;
      for (const auto& [_, op] : d.operations)
        if (op.kind == fencing::kHostFence && op.target_id == host) out.push_back(op);
      std::sort(out.begin(), out.end(),
                [](const Operation& a, const Operation& b) { return a.created_at < b.created_at; });
      return out;
    });
  }

  ControllerConfig config_;
  ManualClock clock_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  std::shared_ptr<fencing::FakeFenceAgent> fence_ = std::make_shared<fencing::FakeFenceAgent>();
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_thread_;
  std::unique_ptr<ClusterState> state_;
  std::unique_ptr<Controller> ctl_;
};

}  // namespace kvmfleet::testing_support
