// The agent's network call against the real `ip` inside a network namespace this test
// makes and removes by its recorded name: the links are made for real, and a second
// call makes nothing. Needs root. This machine's own kernel may lack VLAN support
// (8021q); the VLAN cases then say so and stop, and the kernel lab (Debian's kernel)
// runs them (tests/kernel-lab/kernel_lab_network_test.cpp).

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/network/link_control.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"

namespace kvmfleet {
namespace {

using nlohmann::json;

constexpr const char* kToken = "kvf_host-token-for-network-lab";

// Runs every program inside the namespace (`ip netns exec NAME ...`): the code under
// test runs `ip` as it would on a host, and what it changes is the namespace's.
class NetnsRunner final : public ProcessRunner {
 public:
  NetnsRunner(ProcessRunner& inner, std::string netns) : inner_(inner), netns_(std::move(netns)) {}
  using ProcessRunner::run;
  Result<ProcessOutput> run(const std::vector<std::string>& argv, const RunOptions& o) override {
    std::vector<std::string> full{"ip", "netns", "exec", netns_};
    full.insert(full.end(), argv.begin(), argv.end());
    return inner_.run(full, o);
  }
  Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& o) override {
    return inner_.spawn(argv, o);
  }
  Result<ExitStatus> wait(pid_t pid, std::chrono::milliseconds t) override {
    return inner_.wait(pid, t);
  }
  Status kill(pid_t pid, int signal) override { return inner_.kill(pid, signal); }
  Result<ExitStatus> terminate(pid_t pid, std::chrono::milliseconds grace) override {
    return inner_.terminate(pid, grace);
  }

 private:
  ProcessRunner& inner_;
  std::string netns_;
};

class NetworkLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "needs root to make a network namespace";
    }
    std::random_device rd;
    netns_ = "kvf-net-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
    ASSERT_TRUE(sh({"ip", "netns", "add", netns_}));
    made_ = true;
    // The host's uplink: one end of a veth pair, both ends inside the namespace.
    ASSERT_TRUE(
        sh({"ip", "-n", netns_, "link", "add", "up0", "type", "veth", "peer", "name", "up0p"}));
    ASSERT_TRUE(sh({"ip", "-n", netns_, "link", "set", "dev", "up0p", "up"}));
    inner_ = std::make_unique<NetnsRunner>(system_, netns_);
    links_ = std::make_unique<network::IpLinkControl>(*inner_);
    service_.set_link_control(*links_);
  }
  void TearDown() override {
    // Removing the namespace removes every link made in it.
    if (made_) {
      EXPECT_TRUE(sh({"ip", "netns", "del", netns_}));
    }
  }

  bool sh(const std::vector<std::string>& argv) {
    auto r = system_.run(argv);
    EXPECT_TRUE(r.ok() && r->success())
        << argv[0] << " " << argv.back() << ": " << (r.ok() ? r->err : r.error().message);
    return r.ok() && r->success();
  }
  bool vlans_supported() {
    auto r = system_.run({"ip", "-n", netns_, "link", "add", "link", "up0", "name", "probe.9",
                          "type", "vlan", "id", "9"});
    if (!r.ok() || !r->success()) return false;
    return sh({"ip", "-n", netns_, "link", "del", "probe.9"});
  }
  std::vector<HostLink> links() {
    auto l = links_->links();
    EXPECT_TRUE(l.ok()) << l.error().message;
    return l.ok() ? *l : std::vector<HostLink>{};
  }
  http::Response ensure(const json& body) {
    http::Request req{http::Verb::post, "/agent/v1/networks/ensure", 11};
    req.set(http::bhttp::field::authorization, std::string("Bearer ") + kToken);
    req.set(http::bhttp::field::content_type, "application/json");
    req.body() = body.dump();
    req.prepare_payload();
    return service_.serve(req);
  }

  SystemProcessRunner system_;
  std::string netns_;
  bool made_ = false;
  std::unique_ptr<NetnsRunner> inner_;
  std::unique_ptr<network::IpLinkControl> links_;
  doubles::FakeHypervisor hv_;
  agent::AgentService service_{hv_, kToken};
};

TEST_F(NetworkLabTest, APlainNetworkUsesTheHostsBridgeAndNeverMakesOne) {
  auto missing = ensure({{"op_id", "p1"}, {"bridge", "br-plain"}, {"mtu", 1500}});
  EXPECT_EQ(missing.result_int(), 404) << missing.body();
  for (const auto& l : links()) EXPECT_NE(l.name, "br-plain");

  // The host's own bridge, down: the call brings it up and the report says usable.
  ASSERT_TRUE(sh({"ip", "-n", netns_, "link", "add", "name", "br-plain", "type", "bridge"}));
  Network n;
  n.name = "plain";
  n.bridge = "br-plain";
  EXPECT_EQ(network_unusable_reason(n, links()), "bridge br-plain is down");
  auto made = ensure({{"op_id", "p2"}, {"bridge", "br-plain"}, {"mtu", 1500}});
  ASSERT_EQ(made.result_int(), 200) << made.body();
  EXPECT_EQ(json::parse(made.body())["created"], json::array());
  EXPECT_EQ(network_unusable_reason(n, links()), "");
}

TEST_F(NetworkLabTest, ALinkThatIsNoBridgeIsRefused) {
  auto r = ensure({{"op_id", "m1"}, {"bridge", "up0"}, {"mtu", 1500}});
  EXPECT_EQ(r.result_int(), 409) << r.body();
  EXPECT_EQ(json::parse(r.body())["error"]["details"]["reason"], "link_mismatch");
}

TEST_F(NetworkLabTest, AVlanNetworkIsMadeForRealOnceAndThenLeftAsItIs) {
  if (!vlans_supported()) {
    GTEST_SKIP() << "this kernel has no VLAN support (8021q): the kernel lab runs this case";
  }
  const json body = {
      {"op_id", "v1"}, {"bridge", "br-v42"}, {"mtu", 1400}, {"vlan", 42}, {"uplink", "up0"}};
  auto first = ensure(body);
  ASSERT_EQ(first.result_int(), 200) << first.body();
  EXPECT_EQ(json::parse(first.body())["created"], json::array({"up0.42", "br-v42"}));
  Network n;
  n.name = "v42";
  n.bridge = "br-v42";
  n.vlan = 42;
  n.uplink = "up0";
  n.mtu = 1400;
  const auto after = links();
  EXPECT_EQ(network_unusable_reason(n, after), "");
  json again = body;
  again["op_id"] = "v2";
  auto second = ensure(again);
  ASSERT_EQ(second.result_int(), 200) << second.body();
  EXPECT_EQ(json::parse(second.body())["created"], json::array());
  EXPECT_EQ(links(), after);
}

}  // namespace
}  // namespace kvmfleet
