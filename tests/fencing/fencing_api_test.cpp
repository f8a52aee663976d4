// The fencing routes through the API (roles, bodies, views, refusals) and the CLI's
// fencing commands, over the fake fence agent.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/cli/cli.hpp"
#include "kvmfleet/model/json.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/fencing/fake_fence_agent.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

class FencingApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(state_.load().ok());
    io_ = std::thread([this] { ioc_.run(); });
    admin_ = ctl_.tokens().create_token("admin", Role::admin)->second;
    operator_ = ctl_.tokens().create_token("ops", Role::operator_)->second;
    agent_ = ctl_.hosts().register_host("node1", "http://127.0.0.1:1")->second;
    ASSERT_EQ(heartbeat(), 200u);
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
  unsigned heartbeat() {
    const json body = {{"host", "node1"},
                       {"inventory", {{"cpus", 8}, {"memory_total_mib", 16384}}}};
    return call(http::Verb::post, "/v1/agent/heartbeat", agent_, body.dump()).status;
  }
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
  std::shared_ptr<fencing::FakeFenceAgent> fence_ = std::make_shared<fencing::FakeFenceAgent>();
  ClusterState state_{store_};
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_;
  Controller ctl_{state_, agents_, config_, clock_, ioc_, nullptr, nullptr, fence_};
  OperationRunner& runner_ = ctl_.runner();
  api::Metrics metrics_;
  api::Api api_{ctl_, metrics_};
  std::string admin_, operator_, agent_;
};

const char* kDevices =
    R"({"devices": [{"agent": "fence_ipmilan", "options": {"ip": "127.0.0.1", "ipport": 6230,
        "username": "admin", "password": "s3cret", "lanplus": true, "cipher": "3"}}]})";

TEST_F(FencingApiTest, DevicesAreSetAndShownWithoutSecrets) {
  EXPECT_EQ(call(http::Verb::put, "/v1/hosts/node1/fencing", operator_, kDevices).status, 403u);
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts/node1/fencing", operator_).status, 403u);
  auto put = call(http::Verb::put, "/v1/hosts/node1/fencing", admin_, kDevices);
  ASSERT_EQ(put.status, 200u) << put.body.dump();
  auto got = call(http::Verb::get, "/v1/hosts/node1/fencing", admin_);
  ASSERT_EQ(got.status, 200u);
  EXPECT_EQ(got.body, put.body);
  EXPECT_EQ(got.body["devices"][0]["agent"], "fence_ipmilan");
  EXPECT_EQ(got.body["devices"][0]["options"]["password"], json({{"set", true}}));
  EXPECT_EQ(got.body["devices"][0]["options"]["ipport"], "6230");
  EXPECT_EQ(got.body.dump().find("s3cret"), std::string::npos);
  auto host = call(http::Verb::get, "/v1/hosts/node1", operator_);
  EXPECT_EQ(host.body["fencing"]["devices"], 1);
  EXPECT_TRUE(host.body["proven_down"].is_null());
  EXPECT_EQ(host.body.dump().find("s3cret"), std::string::npos);
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts/nope/fencing", admin_).status, 404u);
}

TEST_F(FencingApiTest, BadDevicesAreRefusedWithStableCodes) {
  auto bad = call(http::Verb::put, "/v1/hosts/node1/fencing", admin_,
                  R"({"devices": [{"agent": "fence_x", "options": {"ip": "a\nb"}}]})");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(bad.body["error"]["code"], "invalid_argument");
  EXPECT_EQ(bad.body["error"]["details"]["reason"], "bad_option_value");
  EXPECT_EQ(bad.body["error"]["details"]["field"], "devices[0].options.ip");
  fence_->remove_agent("fence_gone");
  auto missing = call(http::Verb::put, "/v1/hosts/node1/fencing", admin_,
                      R"({"devices": [{"agent": "fence_gone"}]})");
  EXPECT_EQ(missing.status, 400u);
  EXPECT_EQ(missing.body["error"]["details"]["reason"], "agent_not_found");
  EXPECT_EQ(call(http::Verb::put, "/v1/hosts/nope/fencing", admin_, kDevices).status, 404u);
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts/node1/fencing", admin_).body["devices"].size(), 0u);
}

TEST_F(FencingApiTest, FenceAndConfirmDown) {
  auto none = call(http::Verb::post, "/v1/hosts/node1/fence", admin_);
  EXPECT_EQ(none.status, 409u);
  EXPECT_EQ(none.body["error"]["details"]["reason"], "no_fence_devices");
  auto up = call(http::Verb::post, "/v1/hosts/node1/confirm-down", admin_, R"({"reason": "x"})");
  EXPECT_EQ(up.status, 409u);
  EXPECT_EQ(up.body["error"]["details"]["reason"], "host_up");
  EXPECT_EQ(call(http::Verb::post, "/v1/hosts/node1/confirm-down", admin_, R"({})").status, 400u);
  EXPECT_EQ(call(http::Verb::post, "/v1/hosts/node1/confirm-down", operator_, R"({"reason": "x"})")
                .status,
            403u);
  ASSERT_EQ(call(http::Verb::put, "/v1/hosts/node1/fencing", admin_, kDevices).status, 200u);
  EXPECT_EQ(call(http::Verb::post, "/v1/hosts/node1/fence", operator_).status, 403u);
  auto fenced = call(http::Verb::post, "/v1/hosts/node1/fence", admin_);
  ASSERT_EQ(fenced.status, 202u) << fenced.body.dump();
  EXPECT_EQ(fenced.body["kind"], "host.fence");
  const auto op = finished(fenced.body);
  EXPECT_EQ(op["state"], "succeeded") << op.dump();
  auto host = call(http::Verb::get, "/v1/hosts/node1", operator_);
  EXPECT_EQ(host.body["state"], "fenced");
  EXPECT_EQ(host.body["proven_down"]["kind"], "fence");
  EXPECT_EQ(host.body["proven_down"]["by"], "kvmfleet fencing");
  // Confirmed down again, by hand: the admin's word replaces the evidence.
  auto confirmed =
      call(http::Verb::post, "/v1/hosts/node1/confirm-down", admin_, R"({"reason": "unplugged"})");
  ASSERT_EQ(confirmed.status, 200u) << confirmed.body.dump();
  EXPECT_EQ(confirmed.body["state"], "fenced");
  EXPECT_EQ(confirmed.body["proven_down"]["kind"], "confirm_down");
  EXPECT_EQ(confirmed.body["proven_down"]["by"], "admin");
  EXPECT_EQ(confirmed.body["proven_down"]["detail"], "unplugged");
  ASSERT_EQ(heartbeat(), 200u);
  auto back = call(http::Verb::get, "/v1/hosts", operator_);
  EXPECT_EQ(back.body["items"][0]["state"], "up");
  EXPECT_TRUE(back.body["items"][0]["proven_down"].is_null());
  EXPECT_EQ(back.body["items"][0]["fencing"]["devices"], 1);
}

class LoopbackClient final : public http::Client {
 public:
  explicit LoopbackClient(api::Api& api) : api_(api) {}
  Result<http::ClientResponse> request(std::string_view method, const std::string& url,
                                       const std::string& token, const std::string& body,
                                       std::chrono::milliseconds) override {
    const auto path = url.substr(url.find('/', url.find("//") + 2));
    http::Request req{http::bhttp::string_to_verb(std::string(method)), path, 11};
    if (!token.empty()) req.set(http::bhttp::field::authorization, "Bearer " + token);
    if (!body.empty()) req.set(http::bhttp::field::content_type, "application/json");
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

TEST_F(FencingApiTest, TheCliManagesFencing) {
  LoopbackClient client(api_);
  cli::Environment env{"http://127.0.0.1:8400", admin_};
  const auto file = std::filesystem::temp_directory_path() /
                    ("kvmfleet-fencing-cli-" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << kDevices;
  std::ostringstream out, err;
  EXPECT_EQ(cli::run({"host", "fencing", "set", "node1", file.string()}, env, client, out, err), 0)
      << err.str();
  std::filesystem::remove(file);
  EXPECT_NE(out.str().find("password=(set)"), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find("s3cret"), std::string::npos);
  out.str("");
  EXPECT_EQ(cli::run({"host", "fencing", "show", "node1"}, env, client, out, err), 0);
  EXPECT_NE(out.str().find("fence_ipmilan"), std::string::npos);
  out.str("");
  EXPECT_EQ(cli::run({"host", "confirm-down", "node1"}, env, client, out, err), 2);
  EXPECT_EQ(cli::run({"host", "confirm-down", "node1", "--reason", "x"}, env, client, out, err), 1);
  EXPECT_NE(err.str().find("conflict"), std::string::npos);
  auto fenced = std::async(std::launch::async, [&] {
    std::ostringstream o, e;
    return cli::run({"host", "fence", "node1", "--wait", "60"}, env, client, o, e);
  });
  clock_.advance_until([&] { return fenced.wait_for(0s) == std::future_status::ready; }, 50ms,
                       10min);
  EXPECT_EQ(fenced.get(), 0);
  EXPECT_EQ(state_.host("node1")->state, HostState::fenced);
}

}  // namespace
