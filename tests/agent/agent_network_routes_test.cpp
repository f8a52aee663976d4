// The agent's network call (/agent/v1/networks/ensure) and the links in its inventory,
// over the hypervisor and link doubles.

#include <gtest/gtest.h>

#include "kvmfleet/agent/agent_service.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/network/fake_link_control.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

constexpr const char* kToken = "kvf_host-token-for-tests";

http::Request post(const std::string& target, const json& body) {
  http::Request req{http::Verb::post, target, 11};
  req.set(http::bhttp::field::authorization, std::string("Bearer ") + kToken);
  req.set(http::bhttp::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  return req;
}

json body_of(const http::Response& res) {
  return json::parse(res.body());
}

class AgentNetworkRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    links_.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
    service_.set_link_control(links_);
  }
  doubles::FakeHypervisor hv_;
  doubles::FakeLinkControl links_;
  AgentService service_{hv_, kToken};
};

TEST_F(AgentNetworkRoutesTest, EnsureMakesAVlanNetworkOnceAndRepeatsAreHarmless) {
  const json body = {
      {"op_id", "op-1"}, {"bridge", "br-lab"}, {"mtu", 1500}, {"vlan", 42}, {"uplink", "eth1"}};
  auto res = service_.serve(post("/agent/v1/networks/ensure", body));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(body_of(res)["created"], json::array({"eth1.42", "br-lab"}));
  // The same op_id answers the first answer; a new one finds everything made.
  auto again = service_.serve(post("/agent/v1/networks/ensure", body));
  EXPECT_EQ(body_of(again)["created"], json::array({"eth1.42", "br-lab"}));
  json second = body;
  second["op_id"] = "op-2";
  auto fresh = service_.serve(post("/agent/v1/networks/ensure", second));
  ASSERT_EQ(fresh.result_int(), 200) << fresh.body();
  EXPECT_EQ(body_of(fresh)["created"], json::array());
  Network n;
  n.name = "lab";
  n.bridge = "br-lab";
  n.vlan = 42;
  n.uplink = "eth1";
  EXPECT_EQ(network_unusable_reason(n, *links_.links()), "");
}

TEST_F(AgentNetworkRoutesTest, BadNamesAndRangesNeverReachIp) {
  const json bad[] = {
      {{"op_id", "a"}, {"bridge", "-br"}, {"mtu", 1500}},
      {{"op_id", "b"}, {"bridge", "br 0"}, {"mtu", 1500}},
      {{"op_id", "c"}, {"bridge", "br0"}, {"mtu", 1500}, {"vlan", 4095}, {"uplink", "eth1"}},
      {{"op_id", "d"}, {"bridge", "br0"}, {"mtu", 1500}, {"vlan", 5}, {"uplink", "../x"}},
      {{"op_id", "e"}, {"bridge", "br0"}, {"mtu", 70}},
      {{"op_id", "f"}, {"bridge", "br0"}, {"mtu", 1500}, {"colour", "red"}},
      {{"op_id", "g"}, {"bridge", "br0"}},
  };
  for (const auto& b : bad) {
    auto res = service_.serve(post("/agent/v1/networks/ensure", b));
    EXPECT_EQ(res.result_int(), 400) << b.dump() << " " << res.body();
  }
  EXPECT_TRUE(links_.changes().empty());
}

TEST_F(AgentNetworkRoutesTest, APlainNetworkNeedsItsBridge) {
  auto res = service_.serve(
      post("/agent/v1/networks/ensure", {{"op_id", "p"}, {"bridge", "br0"}, {"mtu", 1500}}));
  EXPECT_EQ(res.result_int(), 404) << res.body();
  EXPECT_EQ(body_of(res)["error"]["details"]["reason"], "bridge_missing");
  EXPECT_TRUE(links_.changes().empty());
}

TEST_F(AgentNetworkRoutesTest, InventoryCarriesTheLinks) {
  http::Request req{http::Verb::get, "/agent/v1/inventory", 11};
  req.set(http::bhttp::field::authorization, std::string("Bearer ") + kToken);
  auto res = service_.serve(req);
  ASSERT_EQ(res.result_int(), 200) << res.body();
  ASSERT_EQ(body_of(res)["links"].size(), 1u);
  EXPECT_EQ(body_of(res)["links"][0]["name"], "eth1");
}

TEST(AgentNetworkNotConfigured, TheNetworkCallIsAConflict) {
  doubles::FakeHypervisor hv;
  AgentService service{hv, kToken};
  auto res = service.serve(
      post("/agent/v1/networks/ensure", {{"op_id", "x"}, {"bridge", "br0"}, {"mtu", 1500}}));
  EXPECT_EQ(res.result_int(), 409) << res.body();
}

}  // namespace
}  // namespace kvmfleet::agent
