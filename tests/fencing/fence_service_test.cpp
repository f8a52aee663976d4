// Fencing in simulated time with the fake fence agent: device order, status
// confirmation, failure and backoff, the liveness guard, confirm-down, heartbeats from
// fenced hosts, and secrets that never show.
#include "fencing_fixture.hpp"

#include "kvmfleet/api/views.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/store/store.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kvmfleet::testing_support {
namespace {

using fencing::PowerStatus;
using nlohmann::json;

TEST_F(FencingTest, DevicesAreTriedInOrderAndTheFirstThatConfirmsFences) {
  host_up("node1");
  set_two_devices("node1");
  fence_->device("10.0.0.1").reachable = false;
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_TRUE(s.ok()) << s.error().message;
  const auto op = wait_done(s->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << json(op).dump();
  EXPECT_EQ(fence_->actions("10.0.0.1"), (std::vector<std::string>{"off"}));
  EXPECT_EQ(fence_->actions("10.0.0.2"), (std::vector<std::string>{"off", "status"}));
  const Host h = host("node1");
  EXPECT_EQ(h.state, HostState::fenced);
  ASSERT_TRUE(h.proven_down);
  EXPECT_EQ(h.proven_down->kind, "fence");
  EXPECT_EQ(h.proven_down->by, "kvmfleet fencing");
  EXPECT_NE(h.proven_down->detail.find("device 2 (fence_redfish)"), std::string::npos);
  EXPECT_EQ(op.result["device"], "device 2 (fence_redfish)");
  EXPECT_EQ(op.result["fenced"], true);
  ASSERT_EQ(op.result["devices"].size(), 2u);
  EXPECT_NE(op.result["devices"][0].get<std::string>().find("off failed"), std::string::npos);
  EXPECT_EQ(op.result["devices"][1], "fenced");
  // The evidence reached the store.
  auto stored = store_.load();
  ASSERT_TRUE(stored.ok());
  for (const auto& sh : stored->hosts)
    if (sh.name == "node1") {
      EXPECT_EQ(sh.state, HostState::fenced);
    }
}

TEST_F(FencingTest, StatusIsAskedUntilItReportsOffWithBackoff) {
  host_up("node1");
  set_two_devices("node1");
  fence_->device("10.0.0.1").off_after_status = 3;  // off takes a while
  const auto t0 = clock_.steady_now();
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(wait_done(s->operation.id).state, OpState::succeeded);
  EXPECT_EQ(fence_->actions("10.0.0.1"),
            (std::vector<std::string>{"off", "status", "status", "status"}));
  EXPECT_TRUE(fence_->actions("10.0.0.2").empty());
  // Two waits between the three status calls: 1 s then 2 s, on the injected clock.
  EXPECT_GE(clock_.steady_now() - t0, 3s);
  EXPECT_EQ(host("node1").state, HostState::fenced);
}

TEST_F(FencingTest, AnOffThatDoesNotTakeIsNotFencedAndTheNextDeviceIsTried) {
  host_up("node1");
  set_two_devices("node1");
  fence_->device("10.0.0.1").off_works = false;  // says done, power stays on
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_TRUE(s.ok());
  const auto op = wait_done(s->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded);
  EXPECT_EQ(fence_->actions("10.0.0.1"),
            (std::vector<std::string>{"off", "status", "status", "status", "status", "status"}));
  EXPECT_NE(op.result["devices"][0].get<std::string>().find("status did not report off"),
            std::string::npos);
  EXPECT_EQ(op.result["device"], "device 2 (fence_redfish)");
}

TEST_F(FencingTest, WhenEveryDeviceFailsTheHostIsNotFencedAndAutomaticFencingBacksOff) {
  host_up("node1");
  host_up("node2");
  set_two_devices("node1");
  fence_->device("10.0.0.1").reachable = false;
  fence_->device("10.0.0.2").reachable = false;
  silence(40s, {"node2"});
  ASSERT_EQ(host("node1").state, HostState::down);
  ctl_->fencing().tick();
  auto ops = fence_ops("node1");
  ASSERT_EQ(ops.size(), 1u);
  const auto op = wait_done(ops[0].id);
  EXPECT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_EQ(op.error->code, ErrorCode::unavailable);
  EXPECT_EQ(op.result["rounds"], 3);
  EXPECT_EQ(op.result["fenced"], false);
  EXPECT_EQ(op.result["devices"].size(), 2u);
  // Three rounds over both devices, each device's off failing.
  EXPECT_EQ(fence_->actions("10.0.0.1").size(), 3u);
  EXPECT_EQ(fence_->actions("10.0.0.2").size(), 3u);
  // Not fenced: back to down, no evidence; the view says why.
  Host h = host("node1");
  EXPECT_EQ(h.state, HostState::down);
  EXPECT_FALSE(h.proven_down);
  auto summary = ctl_->fencing().summary(h);
  EXPECT_NE(summary["last_error"].get<std::string>().find("off failed"), std::string::npos);

  // The next automatic try waits for the backoff (30 s), then comes.
  ctl_->fencing().tick();
  EXPECT_EQ(fence_ops("node1").size(), 1u);
  silence(31s, {"node2"});
  ctl_->fencing().tick();
  ops = fence_ops("node1");
  ASSERT_EQ(ops.size(), 2u);
  // The device is back: this time it is fenced.
  fence_->device("10.0.0.1").reachable = true;
  EXPECT_EQ(wait_done(ops[1].id).state, OpState::succeeded);
  EXPECT_EQ(host("node1").state, HostState::fenced);
  EXPECT_EQ(ops[1].requested_by, "kvmfleet fencing");
}

TEST_F(FencingTest, AHostDownByLivenessIsFencedAutomaticallyButANeverHeardOneIsNot) {
  host_up("node1");
  host_up("node2");
  set_two_devices("node1");
  // Registered, never heard: down, with devices, but nothing proves it ever ran.
  ASSERT_TRUE(ctl_->hosts().register_host("fresh", "http://127.0.0.1:2").ok());
  set_two_devices("fresh");
  ctl_->fencing().tick();
  EXPECT_TRUE(fence_ops("node1").empty());
  EXPECT_TRUE(fence_ops("fresh").empty());
  silence(10s, {"node2"});
  EXPECT_EQ(host("node1").state, HostState::unreachable);
  ctl_->fencing().tick();
  EXPECT_TRUE(fence_ops("node1").empty()) << "unreachable is never enough";
  silence(30s, {"node2"});
  ASSERT_EQ(host("node1").state, HostState::down);
  ctl_->fencing().tick();
  auto ops = fence_ops("node1");
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(wait_done(ops[0].id).state, OpState::succeeded);
  EXPECT_EQ(host("node1").state, HostState::fenced);
  EXPECT_TRUE(fence_ops("fresh").empty());
  // A fenced host stays fenced however long it is silent.
  silence(60s, {"node2"});
  EXPECT_EQ(host("node1").state, HostState::fenced);
  ctl_->fencing().tick();
  EXPECT_EQ(fence_ops("node1").size(), 1u);
}

class GuardedFencingTest : public FencingTest {
 protected:
  void configure() override {
    config_.liveness_guard_min_hosts = 3;
    config_.liveness_guard_share = 0.3;
  }
};

TEST_F(GuardedFencingTest, NoAutomaticFencingWhileTheLivenessGuardHolds) {
  for (const char* h : {"node1", "node2", "node3", "node4", "node5"}) host_up(h);
  set_two_devices("node1");
  // node1 alone goes down.
  silence(40s, {"node2", "node3", "node4", "node5"});
  ASSERT_EQ(host("node1").state, HostState::down);
  // Then three more fall silent at once: the guard trips.
  silence(8s, {"node5"});
  ASSERT_TRUE(ctl_->hosts().liveness_guard_active());
  ctl_->fencing().tick();
  EXPECT_TRUE(fence_ops("node1").empty());
  EXPECT_TRUE(fence_->requests().empty());
  // They are heard again: the guard lets go and node1 is fenced.
  silence(2s, {"node2", "node3", "node4", "node5"});
  ASSERT_FALSE(ctl_->hosts().liveness_guard_active());
  ctl_->fencing().tick();
  auto ops = fence_ops("node1");
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(wait_done(ops[0].id).state, OpState::succeeded);
}

TEST_F(FencingTest, ConfirmDownIsRefusedForAnUpHostAndRecordsTheAdmin) {
  host_up("node1");
  host_up("node2");
  auto refused = ctl_->fencing().confirm_down(admin(), "node1", "pulled the plug");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(host("node1").state, HostState::up);
  EXPECT_FALSE(ctl_->fencing().confirm_down(admin(), "nope", "x").ok());
  silence(10s, {"node2"});
  ASSERT_EQ(host("node1").state, HostState::unreachable);
  ASSERT_TRUE(ctl_->fencing().confirm_down(admin(), "node1", "pulled the plug").ok());
  Host h = host("node1");
  EXPECT_EQ(h.state, HostState::fenced);
  ASSERT_TRUE(h.proven_down);
  EXPECT_EQ(h.proven_down->kind, "confirm_down");
  EXPECT_EQ(h.proven_down->by, "alice");
  EXPECT_EQ(h.proven_down->detail, "pulled the plug");
  EXPECT_EQ(h.proven_down->at, clock_.now());
}

TEST_F(FencingTest, AHeartbeatFromAFencedHostMakesItUpAndClearsTheEvidence) {
  host_up("node1");
  host_up("node2");
  silence(10s, {"node2"});
  ASSERT_TRUE(ctl_->fencing().confirm_down(admin(), "node1", "gone").ok());
  ASSERT_EQ(host("node1").state, HostState::fenced);
  ASSERT_TRUE(heartbeat("node1").ok());
  Host h = host("node1");
  EXPECT_EQ(h.state, HostState::up);
  EXPECT_FALSE(h.proven_down);
  // Persisted: a restarted controller does not find it fenced.
  auto stored = store_.load();
  ASSERT_TRUE(stored.ok());
  for (const auto& sh : stored->hosts)
    if (sh.name == "node1") {
      EXPECT_EQ(sh.state, HostState::up);
      EXPECT_FALSE(sh.proven_down);
    }
}

TEST_F(FencingTest, AFenceOfAHostWithoutDevicesIsRefused) {
  host_up("node1");
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::conflict);
  EXPECT_EQ(s.error().details["reason"], "no_fence_devices");
  EXPECT_EQ(ctl_->fencing().fence(admin(), "nope", {}).error().code, ErrorCode::not_found);
}

TEST_F(FencingTest, CancellingAFenceBringsTheHostBack) {
  host_up("node1");
  host_up("node2");
  set_two_devices("node1");
  fence_->device("10.0.0.1").reachable = false;
  fence_->device("10.0.0.2").reachable = false;
  silence(40s, {"node2"});
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_TRUE(s.ok());
  // Let it reach its wait between rounds, then cancel.
  clock_.advance_until([&] { return fence_->requests().size() >= 2; }, 10ms, 1min);
  ASSERT_TRUE(ctl_->operations().cancel(s->operation.id).ok());
  EXPECT_EQ(wait_done(s->operation.id).state, OpState::cancelled);
  EXPECT_EQ(host("node1").state, HostState::down);
}

TEST_F(FencingTest, SecretsNeverShowInViewsOperationsOrLogs) {
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  spdlog::set_level(spdlog::level::debug);

  host_up("node1");
  host_up("node2");
  set_two_devices("node1");
  fence_->device("10.0.0.1").reachable = false;
  auto s = ctl_->fencing().fence(admin(), "node1", {});
  ASSERT_TRUE(s.ok());
  const auto op = wait_done(s->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded);
  // The agents did get them.
  bool passed = false;
  for (const auto& r : fence_->requests()) passed |= r.options.count("password") > 0;
  EXPECT_TRUE(passed);

  auto devices = ctl_->fencing().get_devices("node1");
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ((*devices)["devices"][0]["options"]["password"], json({{"set", true}}));
  EXPECT_EQ((*devices)["devices"][0]["options"]["username"], "admin");
  EXPECT_EQ((*devices)["devices"][0]["options"]["lanplus"], "1");
  const Host h = host("node1");
  const std::string shown =
      devices->dump() + json(op).dump() +
      state_->read([&](const ClusterState::Data& d) { return api::host_view(h, d).dump(); }) +
      ctl_->fencing().summary(h).dump();
  spdlog::default_logger()->flush();
  spdlog::set_default_logger(previous);
  for (const std::string& text : {shown, log.str()}) {
    EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  }
  EXPECT_NE(log.str().find("node1"), std::string::npos);  // the capture did capture
}

TEST_F(FencingTest, ASecretGivenAsSetKeepsTheStoredValue) {
  host_up("node1");
  set_two_devices("node1");
  auto shown = ctl_->fencing().get_devices("node1");
  ASSERT_TRUE(shown.ok());
  // What GET shows can be put back, with one option changed.
  json body = {{"devices", (*shown)["devices"]}};
  body["devices"][0]["options"]["ipport"] = "6230";
  auto parsed = fencing::parse_fencing(body);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_TRUE(ctl_->fencing().set_devices("node1", *parsed).ok());
  const Host h = host("node1");
  ASSERT_EQ(h.fence_devices.size(), 2u);
  EXPECT_EQ(h.fence_devices[0].secrets.at("password"), "s3cret-ipmi");
  EXPECT_EQ(h.fence_devices[0].options.at("ipport"), "6230");
  // Kept only from the same device with the same agent.
  body["devices"][0]["agent"] = "fence_ilo";
  parsed = fencing::parse_fencing(body);
  ASSERT_TRUE(parsed.ok());
  auto refused = ctl_->fencing().set_devices("node1", *parsed);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().details["reason"], "no_stored_secret");
  EXPECT_EQ(host("node1").fence_devices, h.fence_devices);
}

TEST_F(FencingTest, MonitorTellsWhetherAHostIsFenceable) {
  host_up("node1");
  host_up("node2");
  set_two_devices("node1");
  EXPECT_TRUE(ctl_->fencing().summary(host("node1"))["fenceable"].is_null());
  fence_->device("10.0.0.1").reachable = false;
  ctl_->fencing().monitor_all();
  auto s = ctl_->fencing().summary(host("node1"));
  EXPECT_EQ(s["fenceable"], true);
  EXPECT_EQ(s["devices"], 2);
  ASSERT_EQ(s["monitor"].size(), 2u);
  EXPECT_NE(s["monitor"][0].get<std::string>().find("monitor failed"), std::string::npos);
  EXPECT_EQ(s["monitor"][1], "ok");
  EXPECT_EQ(s["monitored_at"], format_time(clock_.now()));
  fence_->device("10.0.0.2").reachable = false;
  ctl_->fencing().monitor_all();
  EXPECT_EQ(ctl_->fencing().summary(host("node1"))["fenceable"], false);
  // Monitoring changes no power and no state.
  EXPECT_EQ(host("node1").state, HostState::up);
  for (const auto& r : fence_->requests()) EXPECT_EQ(r.action, fencing::FenceAction::monitor);
  // A host without devices is not monitored.
  EXPECT_TRUE(ctl_->fencing().summary(host("node2"))["fenceable"].is_null());
}

TEST(FencingParse, BadBodiesAreRefusedWithStableReasons) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"([])", "not_object"},
      {R"({})", "required"},
      {R"({"devices": {}})", "required"},
      {R"({"devices": [], "x": 1})", "unknown_field"},
      {R"({"devices": [1]})", "not_object"},
      {R"({"devices": [{"options": {}}]})", "required"},
      {R"({"devices": [{"agent": "ipmitool"}]})", "bad_agent_name"},
      {R"({"devices": [{"agent": "fence_x", "extra": 1}]})", "unknown_field"},
      {R"({"devices": [{"agent": "fence_x", "options": []}]})", "not_object"},
      {R"({"devices": [{"agent": "fence_x", "options": {"ip": "a\nb"}}]})", "bad_option_value"},
      {R"({"devices": [{"agent": "fence_x", "options": {"ip": 1.5}}]})", "bad_option_value"},
      {R"({"devices": [{"agent": "fence_x", "options": {"ip": {"set": true}}}]})",
       "bad_option_value"},
      {R"({"devices": [{"agent": "fence_x", "options": {"a=b": "1"}}]})", "bad_option_name"},
      {R"({"devices": [{"agent": "fence_x", "options": {"action": "on"}}]})", "reserved_option"},
  };
  for (const auto& [body, reason] : cases) {
    auto r = fencing::parse_fencing(json::parse(body));
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << body;
    EXPECT_EQ(r.error().details["reason"], reason) << body;
  }
  json nine = {{"devices", json::array()}};
  for (int i = 0; i < 9; ++i) nine["devices"].push_back({{"agent", "fence_x"}});
  EXPECT_EQ(fencing::parse_fencing(nine).error().details["reason"], "too_many_devices");
  EXPECT_EQ(fencing::parse_confirm_down(json::parse(R"({})")).error().details["reason"],
            "required");
  EXPECT_EQ(fencing::parse_confirm_down(json::parse(R"({"reason": "a\u0001"})"))
                .error()
                .details["reason"],
            "bad_value");
  EXPECT_EQ(*fencing::parse_confirm_down(json::parse(R"({"reason": "gone"})")), "gone");
}

TEST(FencingStore, SecretsAreSealedAtRest) {
  namespace fs = std::filesystem;
  const auto dir =
      fs::temp_directory_path() / ("kvmfleet-fence-store-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto db = (dir / "controller.db").string();
  Host h;
  h.name = "node1";
  h.fence_devices.push_back(
      FenceDevice{"fence_ipmilan", {{"ip", "10.0.0.1"}}, {{"password", "s3cret-at-rest"}}});
  {
    auto store = open_sqlite_store(db);
    ASSERT_TRUE(store.ok()) << store.error().message;
    WriteBatch b;
    b.put_hosts.push_back(h);
    ASSERT_TRUE((*store)->commit(b).ok());
    for (const auto& f : fs::directory_iterator(dir)) {
      std::ifstream in(f.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(bytes.find("s3cret-at-rest"), std::string::npos) << f.path();
    }
    EXPECT_EQ(fs::status(db + ".key").permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
  }
  auto store = open_sqlite_store(db);
  ASSERT_TRUE(store.ok());
  auto loaded = (*store)->load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->hosts.size(), 1u);
  EXPECT_EQ(loaded->hosts[0].fence_devices, h.fence_devices);
  store->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvmfleet::testing_support
