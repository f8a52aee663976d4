#include "kvmfleet/api/api.hpp"
#include "kvmfleet/cli/cli.hpp"
#include "kvmfleet/common/process.hpp"
#include "kvmfleet/http/server.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>
#include <future>
#include <sstream>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.agent_retry_backoff = 1ms;
    ASSERT_TRUE(state_.load().ok());
    io_ = std::thread([this] { ioc_.run(); });
    admin_ = ctl_.tokens().create_token("admin", Role::admin)->second;
    operator_ = ctl_.tokens().create_token("ops", Role::operator_)->second;
    viewer_ = ctl_.tokens().create_token("watcher", Role::viewer)->second;
    auto h = ctl_.hosts().register_host("node1", "http://127.0.0.1:1");
    agent_ = h->second;
    HostInventory inv;
    inv.cpus = 8;
    inv.memory_total_mib = 16384;
    ASSERT_TRUE(
        ctl_.hosts().heartbeat({"x", "host:node1", Role::agent, "node1"}, "node1", "", inv).ok());
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
    http::Response raw;
  };

  Reply call(http::Verb method, const std::string& target, const std::string& token,
             const std::string& body = {}, std::map<std::string, std::string> headers = {}) {
    http::Request req{method, target, 11};
    if (!token.empty()) req.set(http::bhttp::field::authorization, "Bearer " + token);
    for (auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    std::promise<http::Response> p;
    api_.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    json j = json::parse(res.body(), nullptr, false);
    return {res.result_int(), j, res};
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
  std::string admin_, operator_, viewer_, agent_;
};

TEST_F(ApiTest, HealthNeedsNoTokenEverythingElseDoes) {
  EXPECT_EQ(call(http::Verb::get, "/v1/healthz", "").status, 200u);
  for (auto path : {"/v1/hosts", "/v1/vms", "/v1/operations", "/metrics", "/v1/tokens"}) {
    auto r = call(http::Verb::get, path, "");
    EXPECT_EQ(r.status, 401u) << path;
    EXPECT_EQ(r.body["error"]["code"], "unauthenticated");
    EXPECT_EQ(call(http::Verb::get, path, "kvf_wrong").status, 401u) << path;
  }
}

TEST_F(ApiTest, RolesAreEnforced) {
  const std::string vm = R"({"name":"a1","memory_mib":64})";
  EXPECT_EQ(call(http::Verb::get, "/v1/vms", viewer_).status, 200u);
  auto denied = call(http::Verb::post, "/v1/vms", viewer_, vm);
  EXPECT_EQ(denied.status, 403u);
  EXPECT_EQ(denied.body["error"]["code"], "permission_denied");
  EXPECT_EQ(call(http::Verb::post, "/v1/vms", operator_, vm).status, 202u);
  EXPECT_EQ(call(http::Verb::post, "/v1/hosts", operator_,
                 R"({"name":"n2","agent_url":"http://127.0.0.1:9"})")
                .status,
            403u);
  EXPECT_EQ(call(http::Verb::get, "/v1/tokens", operator_).status, 403u);
  EXPECT_EQ(call(http::Verb::get, "/v1/tokens", admin_).status, 200u);
  // An agent credential only reaches the agent endpoints.
  EXPECT_EQ(call(http::Verb::get, "/v1/vms", agent_).status, 403u);
  EXPECT_EQ(
      call(http::Verb::post, "/v1/agent/heartbeat", admin_, R"({"host":"node1","inventory":{}})")
          .status,
      403u);
  EXPECT_EQ(call(http::Verb::post, "/v1/agent/heartbeat", agent_,
                 R"({"host":"node1","inventory":{"cpus":8,"memory_total_mib":16384}})")
                .status,
            200u);
}

TEST_F(ApiTest, LivenessIsInHealthMetricsAndTheHostView) {
  auto health = call(http::Verb::get, "/v1/healthz", "");
  ASSERT_EQ(health.status, 200u);
  EXPECT_EQ(health.body["details"]["liveness"],
            json({{"healthy", true}, {"lag_seconds", 0.0}, {"guard_active", false}}));
  // A domain with kvmfleet's metadata that is no VM of this controller's.
  ASSERT_EQ(call(http::Verb::post, "/v1/agent/heartbeat", agent_,
                 R"({"host":"node1","inventory":{"cpus":8,"memory_total_mib":16384,"domains":[)"
                 R"({"uuid":"00000000-0000-4000-8000-00000000abcd","name":"ghost",)"
                 R"("state":"running","managed":true,"generation":2}]}})")
                .status,
            200u);
  auto host = call(http::Verb::get, "/v1/hosts/node1", viewer_);
  ASSERT_EQ(host.status, 200u);
  ASSERT_EQ(host.body["unknown_domains"].size(), 1u);
  EXPECT_EQ(host.body["unknown_domains"][0]["uuid"], "00000000-0000-4000-8000-00000000abcd");
  EXPECT_TRUE(host.body["unmanaged_domains"].empty());
  auto metrics = call(http::Verb::get, "/metrics", viewer_);
  EXPECT_NE(metrics.raw.body().find("kvmfleet_unknown_managed_domains 1\n"), std::string::npos);
  EXPECT_NE(metrics.raw.body().find("kvmfleet_liveness_guard_active 0\n"), std::string::npos);
  EXPECT_NE(metrics.raw.body().find("kvmfleet_controller_lag_seconds 0\n"), std::string::npos);
}

TEST_F(ApiTest, ErrorsAreJsonWithStableCodes) {
  auto r = call(http::Verb::get, "/v1/vms/nope", admin_);
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.body["error"]["code"], "not_found");
  EXPECT_EQ(call(http::Verb::put, "/v1/vms", admin_).status, 405u);
  EXPECT_EQ(call(http::Verb::get, "/v2/vms", admin_).status, 404u);
  EXPECT_EQ(call(http::Verb::get, "/v1/vms/BAD%20ID", admin_).status, 400u);
  auto bad_json = call(http::Verb::post, "/v1/vms", admin_, "{\"name\":");
  EXPECT_EQ(bad_json.status, 400u);
  EXPECT_EQ(bad_json.body["error"]["code"], "invalid_argument");
  auto xml =
      call(http::Verb::post, "/v1/vms", admin_, "<vm/>", {{"Content-Type", "application/xml"}});
  EXPECT_EQ(xml.status, 415u);
  auto unknown_q = call(http::Verb::get, "/v1/vms?colour=red", admin_);
  EXPECT_EQ(unknown_q.status, 400u);
  EXPECT_EQ(unknown_q.body["error"]["details"]["parameter"], "colour");
  auto big = call(http::Verb::post, "/v1/vms", admin_, R"({"name":"big","memory_mib":4194304})");
  EXPECT_EQ(big.status, 422u);
  EXPECT_EQ(big.body["error"]["code"], "insufficient_capacity");
  // Nothing was written by any of those.
  EXPECT_EQ(state_.read([](const ClusterState::Data& d) { return d.vms.size(); }), 0u);
}

TEST_F(ApiTest, MutatingCallsReturn202WithAnOperation) {
  auto r = call(http::Verb::post, "/v1/vms", admin_, R"({"name":"web1","memory_mib":64})");
  ASSERT_EQ(r.status, 202u);
  EXPECT_EQ(r.body["kind"], "vm.create");
  EXPECT_EQ(r.body["state"], "pending");
  EXPECT_EQ(r.raw[http::bhttp::field::location],
            "/v1/operations/" + r.body["id"].get<std::string>());
  auto op = call(http::Verb::get, "/v1/operations/" + r.body["id"].get<std::string>(), viewer_);
  EXPECT_EQ(op.status, 200u);
  EXPECT_EQ(op.body["target"]["type"], "vm");
  EXPECT_FALSE(op.body.contains("request_hash"));
}

// The runner is not started here: the operation is still pending, so the cancel takes
// effect at once and says so with 200; cancelling it again is 409 (it has ended).
TEST_F(ApiTest, CancellingAPendingOperationEndsItAt200) {
  auto r = call(http::Verb::post, "/v1/vms", admin_, R"({"name":"web1","memory_mib":64})");
  ASSERT_EQ(r.status, 202u);
  const std::string path = "/v1/operations/" + r.body["id"].get<std::string>();
  auto cancel = call(http::Verb::delete_, path, operator_);
  EXPECT_EQ(cancel.status, 200u) << cancel.raw.body();
  EXPECT_EQ(cancel.body["state"], "cancelled");
  EXPECT_EQ(call(http::Verb::delete_, path, operator_).status, 409u);
}

TEST_F(ApiTest, OperationsPageWithACursorNewestFirst) {
  std::vector<std::string> made;
  for (int i = 0; i < 5; ++i) {
    auto r = call(http::Verb::post, "/v1/vms", admin_,
                  R"({"name":"web)" + std::to_string(i) + R"(","memory_mib":64})");
    ASSERT_EQ(r.status, 202u);
    made.push_back(r.body["id"]);
    clock_.advance(1s);
  }
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 4; ++page) {
    auto r = call(http::Verb::get,
                  "/v1/operations?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), viewer_);
    ASSERT_EQ(r.status, 200u) << r.raw.body();
    for (const auto& op : r.body["items"]) seen.push_back(op["id"]);
    if (r.body["next_cursor"].is_null()) break;
    cursor = r.body["next_cursor"];
  }
  // Every operation once, newest first.
  EXPECT_EQ(seen, std::vector<std::string>(made.rbegin(), made.rend()));
  for (const char* bad : {"x", "12", "12.nope", "-1.", "a1.00000000-0000-4000-8000-000000000000"}) {
    EXPECT_EQ(call(http::Verb::get, std::string("/v1/operations?cursor=") + bad, viewer_).status,
              400u)
        << bad;
  }
}

TEST_F(ApiTest, AListedPageFollowsEveryChangeOfTheVms) {
  auto empty = call(http::Verb::get, "/v1/vms", viewer_);
  ASSERT_EQ(empty.status, 200u);
  EXPECT_TRUE(empty.body["items"].empty());
  ASSERT_EQ(call(http::Verb::post, "/v1/vms", admin_, R"({"name":"web1","memory_mib":64})").status,
            202u);
  auto one = call(http::Verb::get, "/v1/vms", viewer_);
  ASSERT_EQ(one.body["items"].size(), 1u);
  EXPECT_EQ(one.body["items"][0]["state"], "pending");
  EXPECT_EQ(call(http::Verb::get, "/v1/vms", viewer_).body, one.body);  // served again as is
  // A change of one VM (not a new VM) shows on the very next read.
  ASSERT_TRUE(state_
                  .update([](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Vm vm = *d.find_vm("web1");
                    vm.state = VmState::stopped;
                    vm.generation += 1;
                    b.put_vms.push_back(vm);
                    return {};
                  })
                  .ok());
  EXPECT_EQ(call(http::Verb::get, "/v1/vms", viewer_).body["items"][0]["state"], "stopped");
  EXPECT_EQ(call(http::Verb::get, "/v1/vms?limit=1", viewer_).body["items"][0]["state"], "stopped");
  ASSERT_EQ(call(http::Verb::post, "/v1/vms", admin_, R"({"name":"web2","memory_mib":64})").status,
            202u);
  auto two = call(http::Verb::get, "/v1/vms?limit=1", viewer_);
  EXPECT_EQ(two.body["next_cursor"], "web1");
}

TEST_F(ApiTest, UnknownQueryParametersAreRefusedEverywhere) {
  for (const char* target :
       {"/v1/healthz?x=1", "/metrics?x=1", "/v1/hosts/node1?verbose=1", "/v1/vms/web1?expand=all",
        "/v1/tokens?all=1", "/v1/hosts?x=1", "/v1/vms?sort=name"}) {
    SCOPED_TRACE(target);
    auto r = call(http::Verb::get, target, admin_);
    EXPECT_EQ(r.status, 400u) << r.body.dump();
    EXPECT_EQ(r.body["error"]["code"], "invalid_argument");
  }
  EXPECT_EQ(
      call(http::Verb::post, "/v1/placements?dry=1", admin_, R"({"name":"a","memory_mib":64})")
          .status,
      400u);
  EXPECT_EQ(call(http::Verb::delete_, "/v1/hosts/node1?force=1", admin_).status, 400u);
}

TEST(PageCache, ServesAPageOnlyAtTheVersionItWasMadeAt) {
  api::PageCache cache(2);
  cache.put("a", 1, "one");
  EXPECT_EQ(cache.find("a", 1), "one");
  EXPECT_FALSE(cache.find("a", 2).has_value());
  EXPECT_FALSE(cache.find("b", 1).has_value());
  cache.put("b", 2, "two");
  cache.put("c", 2, "three");  // full: the page of version 1 goes
  EXPECT_FALSE(cache.find("a", 1).has_value());
  EXPECT_EQ(cache.find("b", 2), "two");
  EXPECT_EQ(cache.find("c", 2), "three");
  // A page made from older data, finished after a newer one, does not replace it.
  cache.put("c", 1, "stale");
  EXPECT_EQ(cache.find("c", 2), "three");
  cache.put("c", 3, "newer");
  EXPECT_EQ(cache.find("c", 3), "newer");
}

TEST_F(ApiTest, WaitBlocksUntilTheOperationEnds) {
  runner_.start();
  auto r = call(http::Verb::post, "/v1/vms?wait=20", admin_,
                R"({"name":"web1","memory_mib":64,"start":true})");
  ASSERT_EQ(r.status, 200u) << r.body.dump();
  EXPECT_EQ(r.body["state"], "succeeded");
  auto vm = call(http::Verb::get, "/v1/vms/web1", viewer_);
  EXPECT_EQ(vm.body["state"], "running");
  EXPECT_EQ(vm.body["host"], "node1");
  auto stop = call(http::Verb::post, "/v1/vms/web1/stop?wait=20", operator_, R"({"timeout_s":5})");
  EXPECT_EQ(stop.status, 200u);
  EXPECT_EQ(stop.body["state"], "succeeded");
}

TEST_F(ApiTest, IdempotencyKeyReturnsTheSameOperation) {
  const std::string body = R"({"name":"web1","memory_mib":64})";
  auto a = call(http::Verb::post, "/v1/vms", admin_, body, {{"Idempotency-Key", "abc"}});
  auto b = call(http::Verb::post, "/v1/vms", admin_, body, {{"Idempotency-Key", "abc"}});
  ASSERT_EQ(a.status, 202u);
  ASSERT_EQ(b.status, 202u) << b.body.dump();
  EXPECT_EQ(a.body["id"], b.body["id"]);
  EXPECT_EQ(b.raw["Idempotent-Replayed"], "true");
  auto c = call(http::Verb::post, "/v1/vms", admin_, R"({"name":"web2","memory_mib":64})",
                {{"Idempotency-Key", "abc"}});
  EXPECT_EQ(c.status, 409u);
}

TEST_F(ApiTest, ListsPageWithACursorAndFilter) {
  for (auto n : {"e", "a", "d", "b", "c"})
    ASSERT_EQ(
        call(http::Verb::post, "/v1/vms", admin_, json{{"name", n}, {"memory_mib", 64}}.dump())
            .status,
        202u);
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto r = call(http::Verb::get, "/v1/vms?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor),
                  viewer_);
    ASSERT_EQ(r.status, 200u);
    for (auto& it : r.body["items"]) seen.push_back(it["name"]);
    cursor = r.body["next_cursor"].is_null() ? "" : r.body["next_cursor"].get<std::string>();
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(call(http::Verb::get, "/v1/vms?state=running", viewer_).body["items"].size(), 0u);
  EXPECT_EQ(call(http::Verb::get, "/v1/vms?host=node1", viewer_).body["items"].size(), 5u);
  EXPECT_EQ(call(http::Verb::get, "/v1/vms?limit=0", viewer_).status, 400u);
}

TEST_F(ApiTest, HostsPageWithACursor) {
  for (const char* name : {"node0", "node2", "node3"})
    ASSERT_EQ(call(http::Verb::post, "/v1/hosts", admin_,
                   std::string(R"({"name":")") + name + R"(","agent_url":"http://127.0.0.1:9"})")
                  .status,
              201u);
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto r = call(http::Verb::get,
                  "/v1/hosts?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor), viewer_);
    ASSERT_EQ(r.status, 200u);
    for (auto& h : r.body["items"]) seen.push_back(h["name"]);
    cursor = r.body["next_cursor"].is_null() ? "" : r.body["next_cursor"].get<std::string>();
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{"node0", "node1", "node2", "node3"}));
  // One page by default (100), with a null cursor on the last.
  auto all = call(http::Verb::get, "/v1/hosts", viewer_);
  EXPECT_EQ(all.body["items"].size(), 4u);
  EXPECT_TRUE(all.body["next_cursor"].is_null());
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts?limit=0", viewer_).status, 400u);
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts?limit=1001", viewer_).status, 400u);
  EXPECT_EQ(call(http::Verb::get, "/v1/hosts?cursor=Bad_Name", viewer_).status, 400u);
}

TEST_F(ApiTest, PlacementDryRunExplainsEveryHost) {
  ASSERT_EQ(call(http::Verb::post, "/v1/hosts", admin_,
                 R"({"name":"node2","agent_url":"http://127.0.0.1:9"})")
                .status,
            201u);
  auto r = call(http::Verb::post, "/v1/placements", operator_, R"({"name":"x","memory_mib":1024})");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.body["host"], "node1");
  ASSERT_EQ(r.body["hosts"].size(), 2u);
  for (auto& h : r.body["hosts"]) {
    if (h["host"] == "node2") {
      EXPECT_FALSE(h["feasible"].get<bool>());
      EXPECT_FALSE(h["reason"].get<std::string>().empty());
    }
  }
}

TEST_F(ApiTest, MetricsAreCountedAndExposed) {
  call(http::Verb::get, "/v1/hosts", viewer_);
  auto r = call(http::Verb::get, "/metrics", viewer_);
  ASSERT_EQ(r.status, 200u);
  const std::string text = r.raw.body();
  EXPECT_NE(text.find("kvmfleet_http_requests_total{method=\"GET\",code=\"200\"}"),
            std::string::npos);
  EXPECT_NE(text.find("kvmfleet_hosts{state=\"up\"} 1"), std::string::npos);
}

// ---- the HTTP server itself, on loopback -----------------------------------

class ServerTest : public ::testing::Test {
 protected:
  void start(http::ServerOptions o) {
    o.address = "127.0.0.1";
    o.port = 0;
    server_ = std::make_unique<http::Server>(ioc_, o, [](http::Request&& req, http::Responder r) {
      r(http::json_response(http::HttpStatus::ok, {{"len", req.body().size()}}));
    });
    ASSERT_TRUE(server_->start().ok());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    server_->stop();
    ioc_.stop();
    thread_.join();
  }
  std::string raw_exchange(const std::string& bytes, bool half_close = false) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket s(io);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
    boost::asio::write(s, boost::asio::buffer(bytes));
    if (half_close) s.shutdown(boost::asio::ip::tcp::socket::shutdown_send);
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    for (;;) {
      auto n = s.read_some(boost::asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }
  boost::asio::io_context ioc_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(ServerTest, OversizedBodyGets413JsonError) {
  http::ServerOptions o;
  o.body_limit = 1024;
  start(o);
  http::BeastClient c;
  auto r = c.request("POST", "http://127.0.0.1:" + std::to_string(server_->port()) + "/x", "",
                     std::string(4096, 'a'), 5s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 413u);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "payload_too_large");
}

TEST_F(ServerTest, SlowClientGets408JsonErrorAndIsDisconnected) {
  http::ServerOptions o;
  o.read_timeout = 300ms;
  start(o);
  // Headers promise a body that never comes.
  const auto out = raw_exchange("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{");
  EXPECT_NE(out.find("408"), std::string::npos) << out;
  EXPECT_NE(out.find("request_timeout"), std::string::npos) << out;
}

TEST_F(ServerTest, GarbageGets400AndPipelinedRequestsAreAnsweredInOrder) {
  start({});
  const auto bad = raw_exchange("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_NE(bad.find("400"), std::string::npos) << bad;
  const auto two = raw_exchange(
      "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxPOST /b HTTP/1.1\r\nHost: a\r\n"
      "Content-Length: 2\r\nConnection: close\r\n\r\nyy");
  const auto first = two.find("{\"len\":1}"), second = two.find("{\"len\":2}");
  ASSERT_NE(first, std::string::npos) << two;
  ASSERT_NE(second, std::string::npos) << two;
  EXPECT_LT(first, second);
}

TEST_F(ServerTest, AnAnswerToHeadHasHeadersAndNoBody) {
  start({});
  const auto out = raw_exchange("HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const auto end = out.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos) << out;
  EXPECT_EQ(out.size(), end + 4) << out;
  // The length of the body a GET would have had.
  EXPECT_NE(out.find("Content-Length: 10"), std::string::npos) << out;
}

TEST_F(ServerTest, BodiesInOtherCodingsAreRefused) {
  start({});
  auto request = [&](const std::string& headers, const std::string& body) {
    return raw_exchange("POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + headers + "\r\n" +
                        body);
  };
  const auto gzip = request("Content-Encoding: gzip\r\nContent-Length: 2\r\n", "{}");
  EXPECT_NE(gzip.find("415"), std::string::npos) << gzip;
  EXPECT_NE(gzip.find("unsupported_media_type"), std::string::npos) << gzip;
  EXPECT_EQ(gzip.find("\"len\""), std::string::npos) << gzip;
  for (const std::string te : {"gzip, chunked", "gzip", "deflate"}) {
    const auto out = request("Transfer-Encoding: " + te + "\r\n", "2\r\n{}\r\n0\r\n\r\n");
    EXPECT_NE(out.find("501"), std::string::npos) << te << "\n" << out;
    EXPECT_NE(out.find("not_implemented"), std::string::npos) << te << "\n" << out;
  }
  // identity and chunked are what they always were.
  const auto identity = request("Content-Encoding: identity\r\nContent-Length: 2\r\n", "{}");
  EXPECT_NE(identity.find("{\"len\":2}"), std::string::npos) << identity;
  const auto chunked = request("Transfer-Encoding: chunked\r\n", "2\r\n{}\r\n0\r\n\r\n");
  EXPECT_NE(chunked.find("{\"len\":2}"), std::string::npos) << chunked;
}

// ---- the CLI, against the API through a client double ----------------------

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

TEST_F(ApiTest, CliPrintsTablesAndJsonAndFailsClearly) {
  LoopbackClient client(api_);
  cli::Environment env{"http://127.0.0.1:8400", admin_};
  std::ostringstream out, err;
  EXPECT_EQ(cli::run({"hosts"}, env, client, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("NAME"), std::string::npos);
  EXPECT_NE(out.str().find("node1"), std::string::npos);
  out.str("");
  EXPECT_EQ(cli::run({"vm", "create", "web1", "--memory", "64"}, env, client, out, err), 0)
      << err.str();
  EXPECT_NE(out.str().find("vm.create"), std::string::npos);
  out.str("");
  EXPECT_EQ(cli::run({"vms", "-o", "json"}, env, client, out, err), 0);
  auto j = json::parse(out.str());
  ASSERT_EQ(j["items"].size(), 1u);
  EXPECT_EQ(j["items"][0]["name"], "web1");
  err.str("");
  EXPECT_EQ(cli::run({"vm", "create", "Bad_Name", "--memory", "64"}, env, client, out, err), 1);
  EXPECT_NE(err.str().find("invalid_argument"), std::string::npos);
  EXPECT_EQ(cli::run({"frobnicate"}, env, client, out, err), 2);
  cli::Environment nobody{"http://127.0.0.1:8400", ""};
  err.str("");
  EXPECT_EQ(cli::run({"vms"}, nobody, client, out, err), 1);
  EXPECT_NE(err.str().find("unauthenticated"), std::string::npos);
}

}  // namespace

namespace {

// TLS is one switch: a certificate and key make the same server speak HTTPS.
TEST(TlsServer, ServesHttpsWithTheConfiguredCertificate) {
  const std::string dir = ::testing::TempDir() + "/kvmfleet-tls-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  SystemProcessRunner runner;
  auto made =
      runner.run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                  "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->err : made.error().message);
  boost::asio::io_context ioc;
  http::ServerOptions o;
  o.tls_cert_file = dir + "/cert.pem";
  o.tls_key_file = dir + "/key.pem";
  http::Server server(ioc, o, [](http::Request&&, http::Responder r) {
    r(http::json_response(http::HttpStatus::ok, {{"tls", true}}));
  });
  ASSERT_TRUE(server.start().ok());
  EXPECT_TRUE(server.tls());
  std::thread t([&] { ioc.run(); });
  const std::string url = "https://localhost:" + std::to_string(server.port()) + "/v1/healthz";
  http::BeastClient trusting(dir + "/cert.pem");
  auto r = trusting.request("GET", url, "", "", 5s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  // A client that does not trust the certificate refuses the connection.
  http::BeastClient strict;
  EXPECT_FALSE(strict.request("GET", url, "", "", 5s).ok());
  // Plain HTTP to the TLS port gets no answer.
  http::BeastClient plain;
  auto p =
      plain.request("GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/", "", "", 2s);
  EXPECT_TRUE(!p.ok() || p->status == 0);
  server.stop();
  ioc.stop();
  t.join();
  std::filesystem::remove_all(dir);
}

TEST(TlsServer, MissingKeyIsRefusedAtStart) {
  boost::asio::io_context ioc;
  http::ServerOptions o;
  o.tls_cert_file = "/nonexistent/cert.pem";
  http::Server server(ioc, o, [](http::Request&&, http::Responder) {});
  auto st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);
}

}  // namespace
