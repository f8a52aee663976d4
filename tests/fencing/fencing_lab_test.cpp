// Fencing on real parts: an IPMI 2.0 BMC (OpenIPMI's ipmi_sim) on loopback whose chassis
// power control "powers off" a lab host — a process this test started and recorded — and
// the controller's fencing with the real /usr/sbin/fence_ipmilan powers it off and
// confirms with `status` that it is off. Everything the test starts is stopped by its
// recorded pid, everything it writes is in one directory it removes.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/fencing/fence_agent.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"
#include "tests/lab/ipmi_bmc.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kFenceIpmilan = "/usr/sbin/fence_ipmilan";

class FencingLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kFenceIpmilan))
        << "fence-agents is not installed (scripts/install-deps.sh)";
    ASSERT_TRUE(fs::exists(lab::IpmiBmc::kIpmiSim))
        << "openipmi is not installed (scripts/install-deps.sh)";
    ASSERT_TRUE(fs::exists("/usr/bin/ipmitool")) << "ipmitool is not installed";
    dir_ = fs::temp_directory_path() / ("kvmfleet-fencing-lab-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);

    // The lab host: a process of ours, recorded; its power is whether it lives.
    auto host = processes_.spawn({"sleep", "100000"}, {});
    ASSERT_TRUE(host.ok()) << host.error().message;
    host_pid_ = *host;
    // Reaped as soon as it dies, so that the BMC never sees a zombie as on.
    host_exit_ = std::async(std::launch::async, [this] {
      return processes_.wait(host_pid_, std::chrono::minutes(10));
    });
    auto bmc = lab::IpmiBmc::start(processes_, dir_ / "bmc", "lab-secret",
                                   {[this] { return host_alive(); },
                                    [this] {
                                      (void)processes_.kill(host_pid_, SIGKILL);
                                      host_exit_.wait();
                                    },
                                    {}});
    ASSERT_TRUE(bmc.ok()) << bmc.error().message;
    bmc_ = std::move(*bmc);

    ASSERT_TRUE(state_.load().ok());
    io_ = std::thread([this] { ioc_.run(); });
    admin_ = ctl_.tokens().create_token("admin", Role::admin)->second;
    ASSERT_TRUE(ctl_.hosts().register_host("lab1", "http://127.0.0.1:1").ok());
    HostInventory inv;
    inv.cpus = 1;
    inv.memory_total_mib = 1024;
    ASSERT_TRUE(
        ctl_.hosts().heartbeat({"a", "host:lab1", Role::agent, "lab1"}, "lab1", "", inv).ok());
    ctl_.runner().start();
  }

  void TearDown() override {
    ctl_.stop();
    work_.reset();
    ioc_.stop();
    if (io_.joinable()) io_.join();
    // By recorded pid only.
    bmc_.reset();
    if (host_pid_ > 0) {
      (void)processes_.kill(host_pid_, SIGKILL);
      if (host_exit_.valid()) host_exit_.wait();
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::map<std::string, std::string> bmc(const std::string& password) const {
    return bmc_->fence_options(password);
  }

  struct Reply {
    unsigned status;
    json body;
  };
  Reply call(http::Verb method, const std::string& target, const std::string& body = {}) {
    http::Request req{method, target, 11};
    req.set(http::bhttp::field::authorization, "Bearer " + admin_);
    if (!body.empty()) req.set(http::bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    std::promise<http::Response> p;
    api_.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    return {res.result_int(), json::parse(res.body(), nullptr, false)};
  }
  bool host_alive() const {
    if (host_pid_ <= 0 || !host_exit_.valid()) return false;
    return ::kill(host_pid_, 0) == 0 && host_exit_.wait_for(0s) != std::future_status::ready;
  }

  fs::path dir_;
  SystemProcessRunner processes_;
  pid_t host_pid_ = -1;
  std::future<Result<ExitStatus>> host_exit_;
  std::unique_ptr<lab::IpmiBmc> bmc_;

  ControllerConfig config_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  ClusterState state_{store_};
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_;
  // The real clock and the real fence agents in /usr/sbin.
  Controller ctl_{state_, agents_, config_, SystemClock::instance(), ioc_};
  api::Metrics metrics_;
  api::Api api_{ctl_, metrics_};
  std::string admin_;
};

TEST_F(FencingLabTest, FenceIpmilanPowersTheHostOffAndItsStatusConfirmsIt) {
  // Two devices: the first with a wrong password (it fails), the second right.
  json devices = {{"devices", json::array()}};
  for (const char* pw : {"wrong-password", "lab-secret"}) {
    json options;
    for (const auto& [k, v] : bmc(pw)) options[k] = v;
    devices["devices"].push_back({{"agent", "fence_ipmilan"}, {"options", options}});
  }
  auto put = call(http::Verb::put, "/v1/hosts/lab1/fencing", devices.dump());
  ASSERT_EQ(put.status, 200u) << put.body.dump();
  EXPECT_EQ(put.body.dump().find("lab-secret"), std::string::npos);
  ASSERT_TRUE(host_alive());

  auto fenced = call(http::Verb::post, "/v1/hosts/lab1/fence?wait=120");
  ASSERT_EQ(fenced.status, 200u) << fenced.body.dump();
  EXPECT_EQ(fenced.body["state"], "succeeded") << fenced.body.dump();
  EXPECT_EQ(fenced.body["result"]["device"], "device 2 (fence_ipmilan)") << fenced.body.dump();
  ASSERT_EQ(fenced.body["result"]["devices"].size(), 2u);
  EXPECT_NE(fenced.body["result"]["devices"][0], "fenced");
  EXPECT_EQ(fenced.body.dump().find("lab-secret"), std::string::npos);
  EXPECT_EQ(fenced.body.dump().find("wrong-password"), std::string::npos);

  // The lab host was killed by the BMC's power off.
  ASSERT_EQ(host_exit_.wait_for(30s), std::future_status::ready);
  auto exit = host_exit_.get();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->term_signal, SIGKILL);
  host_pid_ = -1;

  auto host = call(http::Verb::get, "/v1/hosts/lab1");
  EXPECT_EQ(host.body["state"], "fenced") << host.body.dump();
  EXPECT_EQ(host.body["proven_down"]["kind"], "fence");
  EXPECT_EQ(host.body["proven_down"]["by"], "kvmfleet fencing");
  EXPECT_NE(host.body["proven_down"]["detail"].get<std::string>().find("fence_ipmilan"),
            std::string::npos);
  // And the BMC says so to anyone who asks.
  fencing::CommandFenceAgent agent(processes_);
  auto st = agent.run({"fence_ipmilan", fencing::FenceAction::status, bmc("lab-secret"), 30s});
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->exit_code, 2);
  EXPECT_EQ(st->status, fencing::PowerStatus::off);
  // The BMC saw: power asked, set to 0.
  EXPECT_NE(bmc_->requests().find("set power 0"), std::string::npos) << bmc_->requests();
}

}  // namespace
