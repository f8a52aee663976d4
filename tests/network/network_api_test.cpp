// /v1/networks and VM NICs through the API (routes, roles, bodies, views), the links in
// heartbeats, and the CLI's network commands, over the FakeAgentApi.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/cli/cli.hpp"
#include "kvmfleet/model/json.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <future>
#include <sstream>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

class NetworkApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.agent_retry_backoff = 1ms;
    ASSERT_TRUE(state_.load().ok());
    io_ = std::thread([this] { ioc_.run(); });
    admin_ = ctl_.tokens().create_token("admin", Role::admin)->second;
    operator_ = ctl_.tokens().create_token("ops", Role::operator_)->second;
    agent_ = ctl_.hosts().register_host("node1", "http://127.0.0.1:1")->second;
    agents_.set_links("node1", {{"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""}});
    heartbeat(json::array({{{"name", "eth1"}, {"kind", "other"}, {"mtu", 1500}, {"up", true}}}));
    runner_.start();
  }
  void TearDown() override {
    runner_.stop();
    work_.reset();
    ioc_.stop();
    io_.join();
  }

  struct Reply {
    unsigned status;
    json body;
  };

  Reply call(http::Verb method, const std::string& target, const std::string& token,
             const std::string& body = {}) {
    http::Request req{method, target, 11};
    if (!token.empty()) req.set(http::bhttp::field::authorization, "Bearer " + token);
    if (!body.empty()) req.set(http::bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    std::promise<http::Response> p;
    api_.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    return {res.result_int(), json::parse(res.body(), nullptr, false)};
  }
  unsigned heartbeat(const json& links) {
    const json body = {{"host", "node1"},
                       {"inventory", {{"cpus", 8}, {"memory_total_mib", 16384}, {"links", links}}}};
    return call(http::Verb::post, "/v1/agent/heartbeat", agent_, body.dump()).status;
  }
  // Waits (in simulated time) for an operation that a 202 answered.
  json finished(const json& accepted) {
    std::optional<Operation> op;
    clock_.advance_until(
        [&] {
          op = state_.operation(accepted["id"].get<std::string>());
          return op && is_terminal(op->state);
        },
        50ms, 10min);
    return op ? json(*op) : json();
  }

  ControllerConfig config_;
  ManualClock clock_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  ClusterState state_{store_};
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_;
  Controller ctl_{state_, agents_, config_, clock_, ioc_};
  OperationRunner& runner_ = ctl_.runner();
  api::Metrics metrics_;
  api::Api api_{ctl_, metrics_};
  std::string admin_, operator_, agent_;
};

const char* kLab = R"({"name":"lab","bridge":"br-lab","vlan":42,"uplink":"eth1"})";

TEST_F(NetworkApiTest, CreateShowListDelete) {
  EXPECT_EQ(call(http::Verb::post, "/v1/networks", operator_, kLab).status, 403u);
  auto created = call(http::Verb::post, "/v1/networks", admin_, kLab);
  ASSERT_EQ(created.status, 202u) << created.body.dump();
  const auto op = finished(created.body);
  EXPECT_EQ(op["state"], "succeeded") << op.dump();
  EXPECT_EQ(op["result"]["hosts"]["node1"], "ready");

  auto before = call(http::Verb::get, "/v1/networks/lab", operator_);
  ASSERT_EQ(before.status, 200u);
  EXPECT_EQ(before.body["hosts"]["node1"]["usable"], false);  // not reported yet
  EXPECT_EQ(before.body["hosts"]["node1"]["setup"], "ready");
  json links = json::array();
  for (const auto& l : agents_.links_of("node1")) links.push_back(l);
  ASSERT_EQ(heartbeat(links), 200u);
  auto after = call(http::Verb::get, "/v1/networks/lab", operator_);
  EXPECT_EQ(after.body["hosts"]["node1"]["usable"], true) << after.body.dump();
  EXPECT_EQ(after.body["vlan"], 42);
  EXPECT_EQ(after.body["uplink"], "eth1");
  EXPECT_EQ(after.body["mtu"], 1500);

  auto list = call(http::Verb::get, "/v1/networks", operator_);
  ASSERT_EQ(list.body["items"].size(), 1u);
  EXPECT_EQ(call(http::Verb::post, "/v1/networks", admin_, kLab).status, 409u);
  EXPECT_EQ(call(http::Verb::delete_, "/v1/networks/lab", operator_).status, 403u);
  EXPECT_EQ(call(http::Verb::delete_, "/v1/networks/lab", admin_).status, 200u);
  EXPECT_EQ(call(http::Verb::get, "/v1/networks/lab", operator_).status, 404u);
  EXPECT_EQ(call(http::Verb::get, "/v1/networks/Bad_Name", operator_).status, 400u);
}

TEST_F(NetworkApiTest, BadBodiesAre400WithAStableReason) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"name":"n","bridge":"br;rm -rf /"})", "invalid_interface_name"},
      {R"({"name":"n","bridge":"-h"})", "invalid_interface_name"},
      {R"({"name":"n","bridge":".."})", "invalid_interface_name"},
      {R"({"name":"n","bridge":"br/0"})", "invalid_interface_name"},
      {R"({"name":"n","bridge":"bridge-name-too-long"})", "invalid_interface_name"},
      {R"({"name":"n","bridge":"br0","vlan":4095,"uplink":"eth1"})", "vlan_out_of_range"},
      {R"({"name":"n","bridge":"br0","vlan":0,"uplink":"eth1"})", "vlan_out_of_range"},
      {R"({"name":"n","bridge":"br0","vlan":7})", "vlan_without_uplink"},
      {R"({"name":"n","bridge":"br0","uplink":"eth1"})", "uplink_without_vlan"},
      {R"({"name":"n","bridge":"br0","mtu":65536})", "mtu_out_of_range"},
      {R"({"name":"N","bridge":"br0"})", "invalid_name"},
  };
  for (const auto& [body, reason] : cases) {
    auto r = call(http::Verb::post, "/v1/networks", admin_, body);
    EXPECT_EQ(r.status, 400u) << body;
    EXPECT_EQ(r.body["error"]["code"], "invalid_argument") << body;
    EXPECT_EQ(r.body["error"]["details"]["reason"], reason) << body;
  }
  EXPECT_EQ(call(http::Verb::post, "/v1/networks", admin_, R"({"name":"n","bridge":"br0","x":1})")
                .body["error"]["details"]["field"],
            "x");
  EXPECT_EQ(call(http::Verb::get, "/v1/networks", operator_).body["items"].size(), 0u);
  EXPECT_EQ(agents_.count("network_ensure"), 0);
}

TEST_F(NetworkApiTest, AHeartbeatWithABadLinkIsRefused) {
  EXPECT_EQ(heartbeat(json::array({{{"name", "br 0"}, {"kind", "bridge"}}})), 400u);
  EXPECT_EQ(heartbeat(json::array({{{"name", "br0"}, {"kind", "tunnel"}}})), 400u);
  EXPECT_EQ(heartbeat(json::array({{{"name", "br0"}, {"kind", "bridge"}, {"mtu", 1500}}})), 200u);
}

TEST_F(NetworkApiTest, VmNicsThroughTheApi) {
  finished(call(http::Verb::post, "/v1/networks", admin_, kLab).body);
  json links = json::array();
  for (const auto& l : agents_.links_of("node1")) links.push_back(l);
  ASSERT_EQ(heartbeat(links), 200u);

  auto c = call(http::Verb::post, "/v1/vms", operator_,
                R"({"name":"web1","memory_mib":64,"nics":[{"network":"lab"},
                    {"network":"lab","mac":"52:54:00:0A:0B:0C","model":"e1000"}]})");
  ASSERT_EQ(c.status, 202u) << c.body.dump();
  auto vm = call(http::Verb::get, "/v1/vms/web1", operator_).body;
  ASSERT_EQ(vm["nics"].size(), 2u) << vm.dump();
  EXPECT_EQ(vm["nics"][0]["network"], "lab");
  EXPECT_EQ(vm["nics"][0]["model"], "virtio");
  EXPECT_EQ(vm["nics"][1]["mac"], "52:54:00:0a:0b:0c");
  EXPECT_EQ(vm["nics"][1]["model"], "e1000");

  auto taken = call(
      http::Verb::post, "/v1/vms", operator_,
      R"({"name":"web2","memory_mib":64,"nics":[{"network":"lab","mac":"52:54:00:0a:0b:0c"}]})");
  EXPECT_EQ(taken.status, 409u);
  EXPECT_EQ(taken.body["error"]["details"]["reason"], "mac_in_use");
  auto unknown = call(http::Verb::post, "/v1/vms", operator_,
                      R"({"name":"web2","memory_mib":64,"nics":[{"network":"nowhere"}]})");
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_EQ(unknown.body["error"]["details"]["reason"], "unknown_network");
  const std::pair<const char*, const char*> bad[] = {
      {R"([{"network":"lab","mac":"01:00:5e:00:00:01"}])", "invalid_mac"},
      {R"([{"network":"lab","mac":"52:54:00:0a:0b"}])", "invalid_mac"},
      {R"([{"network":"lab","mac":"00:00:00:00:00:00"}])", "invalid_mac"},
      {R"([{"network":"lab","model":"ne2k_pci"}])", "invalid_nic_model"},
      {R"([{"network":"lab","mac":"52:54:00:01:02:03"},{"network":"lab","mac":"52:54:00:01:02:03"}])",
       "duplicate_mac"},
  };
  for (const auto& [nics, reason] : bad) {
    auto r = call(http::Verb::post, "/v1/vms", operator_,
                  std::string(R"({"name":"web3","memory_mib":64,"nics":)") + nics + "}");
    EXPECT_EQ(r.status, 400u) << nics;
    EXPECT_EQ(r.body["error"]["details"]["reason"], reason) << nics;
  }
  EXPECT_EQ(call(http::Verb::get, "/v1/vms/web3", operator_).status, 404u);
  auto in_use = call(http::Verb::delete_, "/v1/networks/lab", admin_);
  EXPECT_EQ(in_use.status, 409u);
  EXPECT_EQ(in_use.body["error"]["details"]["reason"], "network_in_use");
}

// NIC hot plug through the routes: the body is a create's NIC, the path's MAC any case.
TEST_F(NetworkApiTest, NicsJoinAndLeaveAVmThroughTheApi) {
  finished(call(http::Verb::post, "/v1/networks", admin_, kLab).body);
  json links = json::array();
  for (const auto& l : agents_.links_of("node1")) links.push_back(l);
  ASSERT_EQ(heartbeat(links), 200u);
  auto c = call(http::Verb::post, "/v1/vms", operator_, R"({"name":"web1","memory_mib":64})");
  ASSERT_EQ(c.status, 202u) << c.body.dump();
  ASSERT_EQ(finished(c.body)["state"], "succeeded");

  auto added = call(http::Verb::post, "/v1/vms/web1/nics", operator_,
                    R"({"network":"lab","mac":"52:54:00:0A:0B:0D","model":"e1000"})");
  ASSERT_EQ(added.status, 202u) << added.body.dump();
  EXPECT_EQ(added.body["kind"], "vm.nic_add");
  const json op = finished(added.body);
  ASSERT_EQ(op["state"], "succeeded") << op.dump();
  EXPECT_EQ(op["result"]["mac"], "52:54:00:0a:0b:0d");
  auto vm = call(http::Verb::get, "/v1/vms/web1", operator_).body;
  ASSERT_EQ(vm["nics"].size(), 1u) << vm.dump();
  EXPECT_EQ(vm["nics"][0]["model"], "e1000");

  const std::pair<const char*, const char*> bad[] = {
      {R"({"network":"lab","mac":"01:00:5e:00:00:01"})", "invalid_mac"},
      {R"({"network":"lab","model":"ne2k_pci"})", "invalid_nic_model"},
  };
  for (const auto& [body, reason] : bad) {
    auto r = call(http::Verb::post, "/v1/vms/web1/nics", operator_, body);
    EXPECT_EQ(r.status, 400u) << body;
    EXPECT_EQ(r.body["error"]["details"]["reason"], reason) << body;
  }
  auto stray = call(http::Verb::post, "/v1/vms/web1/nics", operator_, R"({"network":"lab","x":1})");
  EXPECT_EQ(stray.status, 400u);
  auto unknown = call(http::Verb::post, "/v1/vms/web1/nics", operator_, R"({"network":"nowhere"})");
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_EQ(unknown.body["error"]["details"]["reason"], "unknown_network");
  EXPECT_EQ(call(http::Verb::delete_, "/v1/vms/web1/nics/not-a-mac", operator_).status, 400u);
  auto no_nic = call(http::Verb::delete_, "/v1/vms/web1/nics/52:54:00:00:00:01", operator_);
  EXPECT_EQ(no_nic.status, 404u);
  EXPECT_EQ(no_nic.body["error"]["details"]["reason"], "unknown_nic");

  auto removed = call(http::Verb::delete_, "/v1/vms/web1/nics/52:54:00:0A:0B:0D", operator_);
  ASSERT_EQ(removed.status, 202u) << removed.body.dump();
  EXPECT_EQ(removed.body["kind"], "vm.nic_remove");
  ASSERT_EQ(finished(removed.body)["state"], "succeeded");
  EXPECT_TRUE(call(http::Verb::get, "/v1/vms/web1", operator_).body["nics"].empty());
}

class LoopbackClient final : public http::Client {
 public:
  explicit LoopbackClient(api::Api& api) : api_(api) {}
  Result<http::ClientResponse> request(std::string_view method, const std::string& url,
                                       const std::string& bearer, const std::string& body,
                                       std::chrono::milliseconds) override {
    const auto path = url.substr(url.find('/', url.find("//") + 2));
    http::Request req{http::bhttp::string_to_verb(std::string(method)), path, 11};
    if (!bearer.empty()) req.set(http::bhttp::field::authorization, "Bearer " + bearer);
    req.body() = body;
    req.prepare_payload();
    std::promise<http::Response> p;
    api_.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    return http::ClientResponse{res.result_int(), res.body()};
  }

 private:
  api::Api& api_;
};

TEST_F(NetworkApiTest, TheCliManagesNetworks) {
  LoopbackClient client(api_);
  cli::Environment env{"http://127.0.0.1:8400", admin_};
  std::ostringstream out, err;
  EXPECT_EQ(cli::run({"network", "create", "lab", "--bridge", "br-lab", "--vlan", "42", "--uplink",
                      "eth1"},
                     env, client, out, err),
            0)
      << err.str();
  EXPECT_NE(out.str().find("network.create"), std::string::npos) << out.str();
  // Until network.create has ended (a network with an operation in flight is not deleted).
  ASSERT_TRUE(clock_.advance_until(
      [&] {
        return state_.network("lab") && !state_.network("lab")->hosts.empty() &&
               state_.read([](const ClusterState::Data& d) {
                 return d.active_operation_for("lab") == nullptr;
               });
      },
      50ms, 10min));
  out.str("");
  EXPECT_EQ(cli::run({"network", "list"}, env, client, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("br-lab"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("0/1"), std::string::npos) << out.str();
  out.str("");
  EXPECT_EQ(cli::run({"network", "show", "lab"}, env, client, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("node1"), std::string::npos) << out.str();
  out.str("");
  EXPECT_EQ(
      cli::run({"vm", "create", "web1", "--memory", "64", "--nic", "lab,52:54:00:00:00:07,e1000"},
               env, client, out, err),
      1);  // the network is not usable on node1 until node1 reports it
  EXPECT_NE(err.str().find("network 'lab' is not usable"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(cli::run({"network", "create", "x", "--bridge", "-x"}, env, client, out, err), 1);
  EXPECT_NE(err.str().find("invalid_interface_name"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(cli::run({"network", "delete", "lab"}, env, client, out, err), 0) << err.str();
  EXPECT_FALSE(state_.network("lab"));
}

TEST_F(NetworkApiTest, TheCliAddsAndRemovesNics) {
  finished(call(http::Verb::post, "/v1/networks", admin_, kLab).body);
  json links = json::array();
  for (const auto& l : agents_.links_of("node1")) links.push_back(l);
  ASSERT_EQ(heartbeat(links), 200u);
  auto c = call(http::Verb::post, "/v1/vms", operator_, R"({"name":"web1","memory_mib":64})");
  ASSERT_EQ(finished(c.body)["state"], "succeeded");
  LoopbackClient client(api_);
  cli::Environment env{"http://127.0.0.1:8400", operator_};
  std::ostringstream out, err;
  EXPECT_EQ(cli::run({"vm", "nic", "add", "web1"}, env, client, out, err), 2);
  EXPECT_NE(err.str().find("--network"), std::string::npos) << err.str();
  EXPECT_EQ(cli::run({"vm", "nic", "add", "web1", "--network", "lab", "--mac", "52:54:00:0a:0b:0e",
                      "--model", "rtl8139"},
                     env, client, out, err),
            0)
      << err.str();
  EXPECT_NE(out.str().find("vm.nic_add"), std::string::npos) << out.str();
  ASSERT_TRUE(clock_.advance_until(
      [&] { return state_.vm("web1") && state_.vm("web1")->spec.nics.size() == 1; }, 50ms, 10min));
  EXPECT_EQ(state_.vm("web1")->spec.nics[0].model, NicModel::rtl8139);
  out.str("");
  EXPECT_EQ(cli::run({"vm", "nic", "remove", "web1", "52:54:00:0a:0b:0e"}, env, client, out, err),
            0)
      << err.str();
  EXPECT_NE(out.str().find("vm.nic_remove"), std::string::npos) << out.str();
  ASSERT_TRUE(clock_.advance_until(
      [&] { return state_.vm("web1") && state_.vm("web1")->spec.nics.empty(); }, 50ms, 10min));
}

}  // namespace
