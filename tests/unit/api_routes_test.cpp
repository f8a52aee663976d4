// The API's router and its route table: matching, the checks every request passes
// before its handler (token, path parameters, method, role, query keys, ?wait), and
// every row reachable with its role and refused below it.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/api/routes.hpp"
#include "src/api/call.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using api::Need;
using api::Route;
using http::Verb;
using nlohmann::json;

namespace {

void nothing(Controller&, api::Call&) {}

// A valid path segment for each parameter kind.
std::string sample(std::string_view kind) {
  if (kind == "operation" || kind == "token") return "00000000-0000-4000-8000-000000000000";
  if (kind == "vm") return "web1";
  if (kind == "host") return "node1";
  if (kind == "pool") return "pool1";
  if (kind == "volume") return "vol1";
  if (kind == "snapshot") return "snap1";
  if (kind == "network") return "lab";
  if (kind == "image") return "img1";
  if (kind == "mac") return "52:54:00:12:34:56";
  throw std::logic_error("no sample for " + std::string(kind));
}

// The route's pattern with every parameter replaced by a valid value.
std::string path_of(const Route& r) {
  std::string out;
  std::string_view p = r.pattern;
  while (!p.empty()) {
    const auto open = p.find('{');
    out += p.substr(0, open);
    if (open == std::string_view::npos) break;
    const auto close = p.find('}', open);
    out += sample(p.substr(open + 1, close - open - 1));
    p.remove_prefix(close + 1);
  }
  return out;
}

std::string method_of(const Route& r) {
  const auto m = http::bhttp::to_string(r.method);
  return std::string(m.data(), m.size());
}

std::vector<std::string_view> split(std::string_view path) {
  return api::split_path(path);
}

TEST(Router, LiteralSegmentsWinOverParametersWhateverTheOrder) {
  const std::vector<Route> one = {{Verb::get, "/v1/vms/{vm}", Need::viewer, {}, nothing},
                                  {Verb::get, "/v1/vms/new", Need::viewer, {}, nothing}};
  const std::vector<Route> other(one.rbegin(), one.rend());
  for (const auto& table : {one, other}) {
    api::Router router(table);
    auto lit = router.match(split("/v1/vms/new"));
    ASSERT_TRUE(lit);
    EXPECT_EQ(lit->resource->pattern, "/v1/vms/new");
    EXPECT_TRUE(lit->params.empty());
    auto par = router.match(split("/v1/vms/web1"));
    ASSERT_TRUE(par);
    EXPECT_EQ(par->resource->pattern, "/v1/vms/{vm}");
    ASSERT_EQ(par->params.size(), 1u);
    EXPECT_EQ(par->params[0].first, "vm");
    EXPECT_EQ(par->params[0].second, "web1");
    EXPECT_FALSE(router.match(split("/v1/vms/web1/start")));
    EXPECT_FALSE(router.match(split("/v1")));
  }
}

TEST(Router, GroupsMethodsOfOnePatternAndListsThemForAllow) {
  api::Router router({{Verb::get, "/v1/hosts", Need::viewer, {}, nothing},
                      {Verb::post, "/v1/hosts", Need::admin, {}, nothing}});
  ASSERT_EQ(router.resources().size(), 1u);
  const auto& res = *router.resources()[0];
  EXPECT_EQ(res.allow, "GET, POST");
  EXPECT_FALSE(res.open);
  ASSERT_NE(res.find(Verb::post), nullptr);
  EXPECT_EQ(res.find(Verb::post)->need, Need::admin);
  EXPECT_EQ(res.find(Verb::put), nullptr);
}

TEST(Router, RefusesATableItCannotRouteUnambiguously) {
  auto build = [](std::vector<Route> t) { api::Router r(std::move(t)); };
  // Two patterns that match the same paths.
  EXPECT_THROW(build({{Verb::get, "/v1/x/{vm}", Need::viewer, {}, nothing},
                      {Verb::delete_, "/v1/x/{host}", Need::admin, {}, nothing}}),
               std::logic_error);
  // A method twice on one pattern.
  EXPECT_THROW(build({{Verb::get, "/v1/x", Need::viewer, {}, nothing},
                      {Verb::get, "/v1/x", Need::admin, {}, nothing}}),
               std::logic_error);
  // Open and protected methods on one pattern: whether to ask for a token would
  // depend on the method.
  EXPECT_THROW(build({{Verb::get, "/v1/x", Need::anyone, {}, nothing},
                      {Verb::post, "/v1/x", Need::admin, {}, nothing}}),
               std::logic_error);
  for (const char* bad : {"/v1/x/{frob}", "v1/x", "/v1/x/", "/v1//x", "/v1/{vm", "/v1/a{vm}"})
    EXPECT_THROW(build({{Verb::get, bad, Need::viewer, {}, nothing}}), std::logic_error) << bad;
  EXPECT_THROW(build({{Verb::get, "/v1/x", Need::viewer, {}, nullptr}}), std::logic_error);
  EXPECT_NO_THROW(build(api::routes()));
}

TEST(Router, ChecksEachParameterByItsKind) {
  struct Case {
    const char* kind;
    const char* good;
    const char* bad;
    const char* message;
  };
  const std::string uuid = "00000000-0000-4000-8000-000000000000";
  for (const Case& k : {Case{"vm", "web1", "Web_1", "bad VM id or name"},
                        Case{"host", "node1", "Node_1", "bad host name"},
                        Case{"operation", uuid.c_str(), "web1", "bad operation id"},
                        Case{"pool", "pool1", "Pool 1", "bad storage pool name"},
                        Case{"volume", uuid.c_str(), "Vol_1", "bad volume id or name"},
                        Case{"snapshot", "s1", "Snap_1", "bad snapshot id or name"},
                        Case{"token", uuid.c_str(), "kvf_x", "bad token id"},
                        Case{"network", "lab", "Lab_1", "bad network name"},
                        Case{"image", "img1", "Img..1", "bad image name"},
                        Case{"mac", "52:54:00:AB:cd:01", "52:54:00:ab:cd", "bad MAC address"}}) {
    SCOPED_TRACE(k.kind);
    EXPECT_TRUE(api::check_path_param(k.kind, k.good).ok());
    auto bad = api::check_path_param(k.kind, k.bad);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(bad.error().message, k.message);
    if (std::string_view(k.kind) == "token")
      EXPECT_TRUE(bad.error().details.empty());
    else
      EXPECT_EQ(bad.error().details.value(k.kind, ""), k.bad);
  }
  // Names and ids both reach the VM, volume and snapshot routes.
  EXPECT_TRUE(api::check_path_param("vm", uuid).ok());
  EXPECT_TRUE(api::check_path_param("snapshot", uuid).ok());
}

// ---- through Api::handle, with a controller behind it ------------------------

class ApiRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(state_.load().ok());
    io_ = std::thread([this] { ioc_.run(); });
    tokens_[Role::admin] = ctl_.tokens().create_token("admin", Role::admin)->second;
    tokens_[Role::operator_] = ctl_.tokens().create_token("ops", Role::operator_)->second;
    tokens_[Role::viewer] = ctl_.tokens().create_token("watcher", Role::viewer)->second;
    tokens_[Role::agent] = ctl_.hosts().register_host("node1", "http://127.0.0.1:1")->second;
  }
  void TearDown() override {
    work_.reset();
    ioc_.stop();
    io_.join();
  }

  struct Reply {
    unsigned status;
    json body;
    http::Response raw;
  };
  Reply call(api::Api& api, Verb method, const std::string& target, const std::string& token,
             const std::string& body = {}) {
    http::Request req{method, target, 11};
    if (!token.empty()) req.set(http::bhttp::field::authorization, "Bearer " + token);
    req.body() = body;
    req.prepare_payload();
    std::promise<http::Response> p;
    api.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    return {res.result_int(), json::parse(res.body(), nullptr, false), res};
  }
  Reply call(Verb method, const std::string& target, const std::string& token,
             const std::string& body = {}) {
    return call(api_, method, target, token, body);
  }
  // A request built by the test, headers and all.
  Reply send(http::Request req) {
    req.prepare_payload();
    std::promise<http::Response> p;
    api_.handle(std::move(req), [&](http::Response r) { p.set_value(std::move(r)); });
    auto res = p.get_future().get();
    return {res.result_int(), json::parse(res.body(), nullptr, false), res};
  }

  // A token of a role the row admits, and of one it refuses (empty when all may call).
  std::string token_for(Need need) {
    switch (need) {
      case Need::anyone:
        return "";
      case Need::viewer:
        return tokens_[Role::viewer];
      case Need::operator_:
        return tokens_[Role::operator_];
      case Need::admin:
        return tokens_[Role::admin];
      case Need::agent:
        return tokens_[Role::agent];
    }
    return "";
  }
  std::string weaker_than(Need need) {
    switch (need) {
      case Need::anyone:
        return "";
      case Need::viewer:
        return tokens_[Role::agent];  // agents reach only /v1/agent/*
      case Need::operator_:
        return tokens_[Role::viewer];
      case Need::admin:
        return tokens_[Role::operator_];
      case Need::agent:
        return tokens_[Role::admin];
    }
    return "";
  }

  // Counts the VMs, operations and hosts: refused requests change none of them.
  std::size_t things() {
    return state_.read([](const ClusterState::Data& d) {
      return d.vms.size() + d.operations.size() + d.hosts.size();
    });
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
  api::Metrics metrics_;
  api::Api api_{ctl_, metrics_};
  std::map<Role, std::string> tokens_;
};

// The real table with every handler replaced by one that names the row it was given:
// each row is reached by its own method and path, with the role it needs.
TEST_F(ApiRoutesTest, EveryRouteIsReachedWithItsRoleAndRefusedBelowIt) {
  std::vector<Route> stubbed = api::routes();
  for (auto& r : stubbed) {
    r.handle = [](Controller&, api::Call& c) {
      json params = json::object();
      for (const auto& [kind, value] : c.params) params[std::string(kind)] = value;
      c.ok(http::HttpStatus::ok, {{"pattern", std::string(c.route->pattern)},
                                  {"method", method_of(*c.route)},
                                  {"params", params},
                                  {"wait", c.wait.count()}});
    };
  }
  api::Api stub_api(ctl_, metrics_, stubbed);
  const std::size_t before = things();
  for (const Route& r : api::routes()) {
    const std::string path = path_of(r);
    SCOPED_TRACE(method_of(r) + " " + path);
    auto reached = call(stub_api, r.method, path, token_for(r.need));
    ASSERT_EQ(reached.status, 200u) << reached.raw.body();
    EXPECT_EQ(reached.body["pattern"], std::string(r.pattern));
    EXPECT_EQ(reached.body["method"], method_of(r));
    for (const auto& p : reached.body["params"].items()) EXPECT_EQ(p.value(), sample(p.key()));
    if (std::find(r.query.begin(), r.query.end(), "wait") != r.query.end()) {
      EXPECT_EQ(call(stub_api, r.method, path + "?wait=7", token_for(r.need)).body["wait"], 7);
    }
    if (r.need == Need::anyone) continue;
    // Below its role, the real table refuses it before its handler runs.
    auto refused = call(r.method, path, weaker_than(r.need));
    EXPECT_EQ(refused.status, 403u) << refused.raw.body();
    EXPECT_EQ(refused.body["error"]["code"], "permission_denied");
    auto anonymous = call(r.method, path, "");
    EXPECT_EQ(anonymous.status, 401u) << anonymous.raw.body();
    EXPECT_EQ(anonymous.body["error"]["code"], "unauthenticated");
  }
  EXPECT_EQ(things(), before);
}

TEST_F(ApiRoutesTest, QueryKeysARowDoesNotAcceptAreRefusedBeforeItsHandler) {
  const std::size_t before = things();
  for (const Route& r : api::routes()) {
    const std::string path = path_of(r);
    SCOPED_TRACE(method_of(r) + " " + path);
    auto bogus = call(r.method, path + "?bogus=1", token_for(r.need));
    EXPECT_EQ(bogus.status, 400u) << bogus.raw.body();
    EXPECT_EQ(bogus.body["error"]["code"], "invalid_argument");
    EXPECT_EQ(bogus.body["error"]["details"]["parameter"], "bogus");
    const bool waits = std::find(r.query.begin(), r.query.end(), "wait") != r.query.end();
    for (const char* wait : {"301", "-1", "soon"}) {
      auto bad_wait = call(r.method, path + "?wait=" + wait, token_for(r.need));
      EXPECT_EQ(bad_wait.status, 400u) << wait << " " << bad_wait.raw.body();
      EXPECT_EQ(bad_wait.body["error"]["details"]["parameter"], "wait") << wait;
      if (!waits) {
        EXPECT_EQ(bad_wait.body["error"]["message"], "unknown query parameter");
      }
    }
  }
  EXPECT_EQ(things(), before);
}

TEST_F(ApiRoutesTest, AnUnknownPathIs404OnceTheTokenIsAccepted) {
  const std::string& viewer = tokens_[Role::viewer];
  for (const char* path :
       {"/", "/v2/vms", "/v1/nothing", "/v1/vms/web1/explode", "/v1/agent/elsewhere",
        "/v1/volumes/vol1/snapshots/s1/restore", "/metrics/x", "/v1/healthz/x"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(call(Verb::get, path, "").status, 401u);
    for (Verb m : {Verb::get, Verb::post, Verb::delete_}) {
      auto r = call(m, path, viewer);
      EXPECT_EQ(r.status, 404u) << r.raw.body();
      EXPECT_EQ(r.body["error"]["code"], "not_found");
    }
  }
}

TEST_F(ApiRoutesTest, AKnownPathWithAnotherMethodIs405WithAllow) {
  const std::string& admin = tokens_[Role::admin];
  struct Case {
    Verb method;
    const char* path;
    const char* allow;
  };
  for (const Case& k :
       {Case{Verb::put, "/v1/vms", "GET, POST"}, Case{Verb::post, "/v1/vms/web1", "GET, DELETE"},
        Case{Verb::get, "/v1/vms/web1/start", "POST"},
        Case{Verb::get, "/v1/tokens/00000000-0000-4000-8000-000000000000", "DELETE"},
        Case{Verb::get, "/v1/agent/heartbeat", "POST"},
        Case{Verb::patch, "/v1/volumes/vol1/snapshots/s1", "GET, DELETE"}}) {
    SCOPED_TRACE(k.path);
    auto r = call(k.method, k.path, admin);
    EXPECT_EQ(r.status, 405u) << r.raw.body();
    EXPECT_EQ(r.body["error"]["code"], "method_not_allowed");
    EXPECT_EQ(r.raw[http::bhttp::field::allow], k.allow);
  }
  // /v1/healthz needs no token, for any method.
  auto health = call(Verb::post, "/v1/healthz", "");
  EXPECT_EQ(health.status, 405u);
  EXPECT_EQ(health.raw[http::bhttp::field::allow], "GET");
}

TEST_F(ApiRoutesTest, ABadPathParameterIs400BeforeTheMethodIsLookedAt) {
  const std::string& admin = tokens_[Role::admin];
  struct Case {
    const char* path;
    const char* detail;  // the parameter the error names, or "" for none
  };
  for (const Case& k :
       {Case{"/v1/vms/Web_1", "vm"}, Case{"/v1/vms/Web_1/migrate", "vm"},
        Case{"/v1/hosts/Node_1", "host"}, Case{"/v1/hosts/Node_1/maintenance", "host"},
        Case{"/v1/operations/not-a-uuid", "operation"}, Case{"/v1/storage-pools/Pool_1", "pool"},
        Case{"/v1/storage-pools/Pool_1/hosts", "pool"}, Case{"/v1/volumes/Vol_1/grow", "volume"},
        Case{"/v1/volumes/vol1/snapshots/Snap_1/revert", "snapshot"},
        Case{"/v1/tokens/not-a-uuid", ""}}) {
    SCOPED_TRACE(k.path);
    for (Verb m : {Verb::get, Verb::post, Verb::delete_, Verb::put}) {
      auto r = call(m, k.path, admin);
      EXPECT_EQ(r.status, 400u) << r.raw.body();
      EXPECT_EQ(r.body["error"]["code"], "invalid_argument");
      if (*k.detail) {
        EXPECT_TRUE(r.body["error"]["details"].contains(k.detail)) << r.raw.body();
      }
    }
  }
}

TEST_F(ApiRoutesTest, EveryAnswerIsCounted) {
  call(Verb::get, "/v1/hosts", tokens_[Role::viewer]);
  call(Verb::get, "/v1/nothing", tokens_[Role::viewer]);
  call(Verb::put, "/v1/hosts", tokens_[Role::viewer]);
  auto r = call(Verb::get, "/metrics", tokens_[Role::viewer]);
  ASSERT_EQ(r.status, 200u);
  const std::string text = r.raw.body();
  for (const char* line : {"kvmfleet_http_requests_total{method=\"GET\",code=\"200\"} 1",
                           "kvmfleet_http_requests_total{method=\"GET\",code=\"404\"} 1",
                           "kvmfleet_http_requests_total{method=\"PUT\",code=\"405\"} 1"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

TEST_F(ApiRoutesTest, MetricLabelsTakeOnlyValuesFromAClosedSet) {
  // Unknown method names, even refused with 401, are one series, not one each.
  for (int i = 0; i < 20; ++i) {
    http::Request req;
    req.method_string("X-METHOD-" + std::to_string(i) + std::string(100, 'A'));
    req.target("/v1/hosts");
    req.version(11);
    EXPECT_EQ(send(std::move(req)).status, 401u);
  }
  auto r = call(Verb::get, "/metrics", tokens_[Role::viewer]);
  ASSERT_EQ(r.status, 200u);
  const std::string text = r.raw.body();
  EXPECT_EQ(text.find("X-METHOD"), std::string::npos) << text;
  EXPECT_NE(text.find("kvmfleet_http_requests_total{method=\"other\",code=\"401\"} 20"),
            std::string::npos)
      << text;
  EXPECT_EQ(api::Metrics::method_label("DELETE"), "DELETE");
  EXPECT_EQ(api::Metrics::method_label("delete"), "other");
  EXPECT_EQ(api::Metrics::status_label(404), "404");
  EXPECT_EQ(api::Metrics::status_label(299), "other");
}

// Only whoever may submit an operation's kind may cancel it.
TEST_F(ApiRoutesTest, AnOperatorMayNotCancelAnAdminOnlyOperation) {
  const std::string id = "11111111-2222-4333-8444-555555555555";
  ASSERT_TRUE(state_
                  .update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
                    Operation op;
                    op.id = id;
                    op.kind = std::string(op_kind::pool_create);
                    op.target_type = "storage_pool";
                    op.target_id = "pool1";
                    op.created_at = clock_.now();
                    b.put_operations.push_back(op);
                    return {};
                  })
                  .ok());
  auto r = call(Verb::delete_, "/v1/operations/" + id, tokens_[Role::operator_]);
  EXPECT_EQ(r.status, 403u) << r.raw.body();
  EXPECT_EQ(r.body["error"]["code"], "permission_denied");
  EXPECT_EQ(state_.read([&](const ClusterState::Data& d) { return d.find_operation(id)->state; }),
            OpState::pending);
  r = call(Verb::delete_, "/v1/operations/" + id, tokens_[Role::admin]);
  EXPECT_NE(r.status, 403u) << r.raw.body();
  EXPECT_EQ(state_.read([&](const ClusterState::Data& d) { return d.find_operation(id)->state; }),
            OpState::cancelled);
}

TEST_F(ApiRoutesTest, AnOperationsCursorBeyond64BitsIs400) {
  const std::string uuid = ".11111111-2222-4333-8444-555555555555";
  for (const std::string ticks :
       {"99999999999999999999", "9223372036854775808", "18446744073709551616", "-1", "+1"}) {
    auto r = call(Verb::get, "/v1/operations?cursor=" + ticks + uuid, tokens_[Role::viewer]);
    EXPECT_EQ(r.status, 400u) << ticks << " " << r.raw.body();
    EXPECT_EQ(r.body["error"]["details"]["parameter"], "cursor") << ticks;
  }
  EXPECT_EQ(
      call(Verb::get, "/v1/operations?cursor=9223372036854775807" + uuid, tokens_[Role::viewer])
          .status,
      200u);
}

TEST_F(ApiRoutesTest, AnEmptyIdempotencyKeyIs400) {
  http::Request req{Verb::get, "/v1/hosts", 11};
  req.set(http::bhttp::field::authorization, "Bearer " + tokens_[Role::viewer]);
  req.set("Idempotency-Key", "");
  auto r = send(std::move(req));
  EXPECT_EQ(r.status, 400u) << r.raw.body();
  EXPECT_EQ(r.body["error"]["code"], "invalid_argument");
}

// application/json with any parameters and in any case, on every route with a body;
// another type, or a type that only starts like it, is 415.
TEST_F(ApiRoutesTest, ContentTypeIsMatchedAsAMediaType) {
  int n = 0;
  auto create = [&](const std::string& type) {
    http::Request req{Verb::post, "/v1/tokens", 11};
    req.set(http::bhttp::field::authorization, "Bearer " + tokens_[Role::admin]);
    req.set(http::bhttp::field::content_type, type);
    req.body() = json{{"name", "t" + std::to_string(++n)}, {"role", "viewer"}}.dump();
    return send(std::move(req));
  };
  for (const char* ok : {"application/json", "Application/JSON", "application/json; charset=utf-8",
                         "application/json;charset=UTF-8", " application/json "})
    EXPECT_EQ(create(ok).status, 201u) << ok;
  for (const char* bad : {"application/jsonp", "application/json-seq", "text/plain",
                          "application/xml; x=application/json"}) {
    auto r = create(bad);
    EXPECT_EQ(r.status, 415u) << bad;
    EXPECT_EQ(r.body["error"]["code"], "unsupported_media_type") << bad;
  }
}

// Heartbeat and event bodies: numbers of their type and range, known VM states; a
// refusal names the field and changes nothing.
TEST_F(ApiRoutesTest, AgentReportsWithBadNumbersOrUnknownStatesAre400) {
  const json good_domain = {{"uuid", "0c8f3a61-2a0e-4d7b-8a5e-4d1e2c3b4a59"},
                            {"name", "web1"},
                            {"state", "running"},
                            {"managed", false},
                            {"generation", 0},
                            {"persistent", true},
                            {"stamp", {{"agent", "run1"}, {"seq", 3}}}};
  const json good = {{"hostname", "node1"},
                     {"cpus", 8},
                     {"memory_total_mib", 4096},
                     {"memory_free_mib", 1024},
                     {"domain_type", "kvm"},
                     {"domains", {good_domain}},
                     {"stamp", {{"agent", "run1"}, {"seq", 5}}}};
  auto beat = [&](const json& inv) {
    return call(
        Verb::post, "/v1/agent/heartbeat", tokens_[Role::agent],
        json{{"host", "node1"}, {"agent_url", "http://127.0.0.1:1"}, {"inventory", inv}}.dump());
  };
  struct Case {
    const char* pointer;
    json value;
    const char* field;
  };
  for (const auto& k :
       {Case{"/cpus", -5, "inventory.cpus"}, Case{"/cpus", "8", "inventory.cpus"},
        Case{"/cpus", 8.5, "inventory.cpus"},
        Case{"/memory_total_mib", -1, "inventory.memory_total_mib"},
        Case{"/memory_free_mib", 18446744073709551615ull, "inventory.memory_free_mib"},
        Case{"/hostname", 7, "inventory.hostname"},
        Case{"/domain_type", "xen", "inventory.domain_type"},
        Case{"/domains/0/state", "exploded", "inventory.domains[0].state"},
        Case{"/domains/0/generation", -1, "inventory.domains[0].generation"},
        Case{"/domains/0/managed", 1, "inventory.domains[0].managed"},
        Case{"/domains/0/uuid", "NOT-A-UUID", "inventory.domains[0].uuid"},
        Case{"/domains/0/stamp/seq", -3, "inventory.domains[0].stamp"},
        Case{"/stamp/agent", 7, "inventory.stamp"}}) {
    json inv = good;
    inv[json::json_pointer(k.pointer)] = k.value;
    auto r = beat(inv);
    EXPECT_EQ(r.status, 400u) << k.pointer << " " << r.raw.body();
    EXPECT_EQ(r.body["error"]["details"]["field"], k.field) << k.pointer << " " << r.raw.body();
  }
  EXPECT_EQ(
      state_.read([](const ClusterState::Data& d) { return d.find_host("node1")->inventory.cpus; }),
      0);
  auto r = beat(good);
  EXPECT_EQ(r.status, 200u) << r.raw.body();
  // The report's stamp is passed on (the host's list keeps it per domain).
  EXPECT_EQ(state_.read([](const ClusterState::Data& d) {
    return d.find_host("node1")->inventory.domains.at(0).stamp.seq;
  }),
            5u);
  EXPECT_EQ(
      state_.read([](const ClusterState::Data& d) { return d.find_host("node1")->inventory.cpus; }),
      8);

  auto event = [&](const json& e) {
    return call(Verb::post, "/v1/agent/events", tokens_[Role::agent],
                json{{"host", "node1"}, {"events", {e}}}.dump());
  };
  json e = {{"uuid", "0c8f3a61-2a0e-4d7b-8a5e-4d1e2c3b4a59"},
            {"name", "web1"},
            {"state", "exploded"},
            {"reason", "x"}};
  r = event(e);
  EXPECT_EQ(r.status, 400u) << r.raw.body();
  EXPECT_EQ(r.body["error"]["details"]["field"], "state");
  e["state"] = 5;
  EXPECT_EQ(event(e).status, 400u);
  for (const char* state : {"stopped", "undefined"}) {
    e["state"] = state;
    EXPECT_EQ(event(e).status, 200u) << state;
  }
}

}  // namespace
