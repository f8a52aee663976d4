// The agent's storage routes (/agent/v1/storage) over the shared-storage doubles.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/storage_devices.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/storage/fake_shared_storage.hpp"

namespace kvmfleet::agent {
namespace {

using doubles::FakeHypervisor;
using nlohmann::json;

constexpr const char* kToken = "kvf_host-token-for-tests";
constexpr const char* kIqn = "iqn.2026-01.com.example:san";
constexpr const char* kChapIqn = "iqn.2026-01.com.example:secure";
constexpr const char* kPortal = "10.77.0.1";
constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

http::Request make(http::Verb verb, const std::string& target, const std::string& body = {},
                   const char* content_type = "application/json") {
  http::Request req{verb, target, 11};
  req.set(http::bhttp::field::authorization, std::string("Bearer ") + kToken);
  if (!body.empty()) {
    req.set(http::bhttp::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
  }
  return req;
}

json body_of(const http::Response& res) {
  return json::parse(res.body());
}

std::string code_of(const http::Response& res) {
  return body_of(res).at("error").at("code").get<std::string>();
}

std::string field_of(const http::Response& res) {
  return body_of(res).at("error").at("details").value("field", "");
}

// The storage waits' time: a ManualClock that every wait moves to its deadline at once,
// so that a request served on the test's thread waits in simulated time. Each wait is
// recorded.
class SteppingClock final : public Clock {
 public:
  time_point now() const override { return time_.now(); }
  steady_time_point steady_now() const override { return time_.steady_now(); }
  bool sleep_until_steady(steady_time_point deadline, const Interrupt& interrupt) const override {
    const auto d =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - time_.steady_now());
    {
      std::lock_guard lk(mu_);
      slept_.push_back(d);
    }
    time_.advance(d);
    return time_.sleep_until_steady(deadline, interrupt);
  }
  std::vector<std::chrono::milliseconds> slept() const {
    std::lock_guard lk(mu_);
    return slept_;
  }

 private:
  mutable ManualClock time_;
  mutable std::mutex mu_;
  mutable std::vector<std::chrono::milliseconds> slept_;
};

class AgentStorageRoutesTest : public ::testing::Test {
 protected:
  AgentStorageRoutesTest() {
    san_.add_device("/dev/sdb", 10 * kGiB);
    iscsi_.add_target("10.77.0.1:3260", kIqn);
    iscsi_.add_target("10.77.0.1:3260", kChapIqn, storage::ChapCredentials{"kvm", "s3cret-pw"});
  }

  http::Response get(const std::string& path) {
    return service_.serve(make(http::Verb::get, path));
  }
  http::Response post(const std::string& path, json body) {
    if (body.is_null()) body = json::object();
    if (body.is_object() && !body.contains("op_id")) body["op_id"] = "op-" + std::to_string(++ops_);
    return service_.serve(make(http::Verb::post, path, body.dump()));
  }
  // A VG made on this host, lockspace started here.
  void make_vg() {
    ASSERT_EQ(
        post("/agent/v1/storage/vgs/create", {{"vg", "kvmvg"}, {"devices", {"/dev/sdb"}}}).result(),
        http::HttpStatus::ok);
  }
  void make_lv(const std::string& name, std::uint64_t size = kGiB) {
    ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/create", {{"lv", name}, {"size_bytes", size}})
                  .result(),
              http::HttpStatus::ok);
  }

  FakeHypervisor hv_;
  SteppingClock clock_;
  doubles::FakeSharedStorage san_;
  doubles::FakeVolumeManager lvm_{san_, 1};
  doubles::FakeVolumeManager other_host_{san_, 2};
  doubles::FakeIscsiInitiator iscsi_;
  AgentService service_{hv_, StorageBackend{iscsi_, lvm_, clock_}, kToken};
  int ops_ = 0;
};

TEST(AgentStorageNotConfigured, EveryStorageRouteIsAConflict) {
  FakeHypervisor hv;
  AgentService service{hv, kToken};
  const std::vector<std::pair<http::Verb, std::string>> routes = {
      {http::Verb::get, "/agent/v1/storage"},
      {http::Verb::get, "/agent/v1/storage/iscsi/sessions"},
      {http::Verb::post, "/agent/v1/storage/iscsi/discover"},
      {http::Verb::post, "/agent/v1/storage/iscsi/login"},
      {http::Verb::post, "/agent/v1/storage/iscsi/logout"},
      {http::Verb::get, "/agent/v1/storage/fc/luns"},
      {http::Verb::post, "/agent/v1/storage/fc/attach"},
      {http::Verb::post, "/agent/v1/storage/vgs/create"},
      {http::Verb::get, "/agent/v1/storage/vgs/kvmvg"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lockstart"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lockstop"},
      {http::Verb::get, "/agent/v1/storage/vgs/kvmvg/lvs"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/create"},
      {http::Verb::get, "/agent/v1/storage/vgs/kvmvg/lvs/vol1"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/vol1/delete"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/vol1/snapshot"},
      {http::Verb::post, "/agent/v1/storage/vgs/kvmvg/lvs/snap1/merge"},
  };
  for (const auto& [verb, path] : routes) {
    auto res = service.serve(make(verb, path, verb == http::Verb::post ? R"({"op_id":"o1"})" : ""));
    EXPECT_EQ(res.result(), http::HttpStatus::conflict) << path;
    EXPECT_EQ(code_of(res), "conflict") << path;
    EXPECT_EQ(body_of(res)["error"]["message"], "storage is not configured on this host") << path;
  }
  // Paths that are no storage route stay 404, wrong methods 405, as with storage.
  EXPECT_EQ(service.serve(make(http::Verb::get, "/agent/v1/storage/nope")).result(),
            http::HttpStatus::not_found);
  EXPECT_EQ(service.serve(make(http::Verb::get, "/agent/v1/storage/iscsi/login")).result(),
            http::HttpStatus::method_not_allowed);
}

TEST_F(AgentStorageRoutesTest, UnknownPathsAndMethods) {
  for (const char* path :
       {"/agent/v1/storage/", "/agent/v1/storage/iscsi", "/agent/v1/storage/vgs",
        "/agent/v1/storage/vgs//lvs", "/agent/v1/storage/vgs/kvmvg/lvs/vol1/resize",
        "/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow/more", "/agent/v1/storage/vgs/kvmvg/pvs"}) {
    auto res = post(path, json::object());
    EXPECT_EQ(res.result(), http::HttpStatus::not_found) << path;
    EXPECT_EQ(code_of(res), "not_found") << path;
  }
  auto res = service_.serve(make(http::Verb::post, "/agent/v1/storage", "{}"));
  EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed);
  EXPECT_EQ(res[http::bhttp::field::allow], "GET");
  res = service_.serve(make(http::Verb::get, "/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow"));
  EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed);
  EXPECT_EQ(res[http::bhttp::field::allow], "POST");
  res = service_.serve(make(http::Verb::delete_, "/agent/v1/storage/vgs/kvmvg/lvs/vol1"));
  EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed);
}

TEST_F(AgentStorageRoutesTest, IscsiDiscoverLoginSessionsLogout) {
  auto res = post("/agent/v1/storage/iscsi/discover", {{"portal", kPortal}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto targets = body_of(res)["targets"];
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0]["portal"], "10.77.0.1:3260");
  EXPECT_EQ(targets[0]["tpgt"], 1);

  res = post("/agent/v1/storage/iscsi/login", {{"target", kIqn}, {"portal", kPortal}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  // LUN 1 unless told otherwise: its block device, by udev's by-path name.
  EXPECT_EQ(body_of(res), json({{"device", "/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-" +
                                               std::string(kIqn) + "-lun-1"}}));
  // The LUN is a cluster device from now on: LVM's filter lets it through.
  EXPECT_EQ(lvm_.added_devices,
            std::vector<std::string>{"/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-" +
                                     std::string(kIqn) + "-lun-1"});

  res = get("/agent/v1/storage/iscsi/sessions");
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  auto sessions = body_of(res)["sessions"];
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0]["target"], kIqn);
  EXPECT_EQ(sessions[0]["portal"], "10.77.0.1:3260");
  EXPECT_EQ(sessions[0]["session_state"], "LOGGED_IN");
  EXPECT_EQ(sessions[0]["luns"][1]["disk"], "/dev/sda");

  // CHAP: wrong secret is invalid_argument and the secret is nowhere in the answer.
  res = post("/agent/v1/storage/iscsi/login",
             {{"target", kChapIqn},
              {"portal", kPortal},
              {"chap", {{"username", "kvm"}, {"password", "wrong-pw"}}}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(code_of(res), "invalid_argument");
  EXPECT_EQ(res.body().find("wrong-pw"), std::string::npos);
  res = post("/agent/v1/storage/iscsi/login",
             {{"target", kChapIqn},
              {"portal", kPortal},
              {"chap", {{"username", "kvm"}, {"password", "s3cret-pw"}}}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(get("/agent/v1/storage/iscsi/sessions"))["sessions"].size(), 2u);

  res = post("/agent/v1/storage/iscsi/logout", {{"target", kIqn}, {"portal", kPortal}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  // Logging out of a target without a session is a success too.
  res = post("/agent/v1/storage/iscsi/logout", {{"target", kIqn}, {"portal", kPortal}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  EXPECT_EQ(body_of(get("/agent/v1/storage/iscsi/sessions"))["sessions"].size(), 1u);
}

TEST_F(AgentStorageRoutesTest, IscsiBadBodies) {
  struct Case {
    const char* path;
    json body;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"/agent/v1/storage/iscsi/login", {{"portal", kPortal}}, "target"},
      {"/agent/v1/storage/iscsi/login", {{"target", kIqn}}, "portal"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"iface", "x"}},
       "iface"},
      {"/agent/v1/storage/iscsi/login", {{"target", 7}, {"portal", kPortal}}, "target"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"chap", "kvm:pw"}},
       "chap"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"chap", {{"username", "kvm"}}}},
       "chap.password"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn},
        {"portal", kPortal},
        {"chap", {{"username", "kvm"}, {"password", "p"}, {"method", "md5"}}}},
       "chap.method"},
      {"/agent/v1/storage/iscsi/logout",
       {{"target", kIqn}, {"portal", kPortal}, {"chap", nullptr}},
       "chap"},
      {"/agent/v1/storage/iscsi/discover", {}, "portal"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"lun", -1}},
       "lun"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"lun", 16384}},
       "lun"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"lun", "1"}},
       "lun"},
      {"/agent/v1/storage/iscsi/login",
       {{"target", kIqn}, {"portal", kPortal}, {"lun", 1.5}},
       "lun"},
      {"/agent/v1/storage/iscsi/logout",
       {{"target", kIqn}, {"portal", kPortal}, {"lun", 1}},
       "lun"},
  };
  for (const auto& c : cases) {
    auto res = post(c.path, c.body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << c.body.dump();
    EXPECT_EQ(code_of(res), "invalid_argument") << c.body.dump();
    EXPECT_EQ(field_of(res), c.field) << c.body.dump();
  }
  // Names and portals are the storage library's to check: still 400, no session made.
  for (const auto& [target, portal] :
       std::vector<std::pair<std::string, std::string>>{{"iqn.2026-13.com.example:san", kPortal},
                                                        {"not-an-iqn", kPortal},
                                                        {kIqn, "10.77.0.1:70000"},
                                                        {kIqn, "10.77.0.1;reboot"}}) {
    auto res = post("/agent/v1/storage/iscsi/login", {{"target", target}, {"portal", portal}});
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << target << " " << portal;
    EXPECT_EQ(code_of(res), "invalid_argument");
  }
  EXPECT_TRUE(body_of(get("/agent/v1/storage/iscsi/sessions"))["sessions"].empty());
}

// The kernel attaches a LUN's disk some time after the login returns: this initiator
// has none for the first `late_looks` looks. Everything else is the fake's.
class LateLunInitiator final : public storage::IscsiInitiator {
 public:
  explicit LateLunInitiator(doubles::FakeIscsiInitiator& real) : real_(real) {}
  Result<std::vector<storage::IscsiTarget>> discover(std::string_view portal) override {
    return real_.discover(portal);
  }
  Status login(std::string_view iqn, std::string_view portal,
               const std::optional<storage::ChapCredentials>& chap) override {
    ++logins;
    return real_.login(iqn, portal, chap);
  }
  Status logout(std::string_view iqn, std::string_view portal) override {
    return real_.logout(iqn, portal);
  }
  Result<std::vector<storage::IscsiSession>> sessions() override { return real_.sessions(); }
  Status rescan() override {
    ++rescans;
    return real_.rescan();
  }
  Result<std::string> lun_device(std::string_view iqn, std::string_view portal, int lun) override {
    looked_for.push_back(lun);
    if (static_cast<int>(looked_for.size()) <= late_looks) return not_found("no disk yet");
    if (fail) return *fail;
    return real_.lun_device(iqn, portal, lun);
  }

  int late_looks = 0;
  std::optional<Error> fail;
  int logins = 0;
  int rescans = 0;
  std::vector<int> looked_for;

 private:
  doubles::FakeIscsiInitiator& real_;
};

class IscsiLoginWaitTest : public AgentStorageRoutesTest {
 protected:
  IscsiLoginWaitTest() {
    StorageBackend backend{late_, lvm_, clock_};
    waiting_ = std::make_unique<AgentService>(hv_, backend, kToken);
  }
  http::Response login(json body) {
    body["target"] = kIqn;
    body["portal"] = kPortal;
    if (!body.contains("op_id")) body["op_id"] = "op-l" + std::to_string(++ops_);
    return waiting_->serve(make(http::Verb::post, "/agent/v1/storage/iscsi/login", body.dump()));
  }
  std::chrono::milliseconds total_slept() const {
    std::chrono::milliseconds t{0};
    for (auto d : clock_.slept()) t += d;
    return t;
  }

  LateLunInitiator late_{iscsi_};
  std::unique_ptr<AgentService> waiting_;  // over late_
};

TEST_F(IscsiLoginWaitTest, WaitsForTheKernelToAttachTheLun) {
  ASSERT_TRUE(iscsi_.discover(kPortal).ok());
  late_.late_looks = 3;
  auto res = login(json::object());
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res)["device"],
            "/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-" + std::string(kIqn) + "-lun-1");
  EXPECT_EQ(late_.looked_for, std::vector<int>(4, 1));
  EXPECT_EQ(clock_.slept(),
            std::vector<std::chrono::milliseconds>(3, std::chrono::milliseconds{250}));
  // Found before the rescan was due.
  EXPECT_EQ(late_.rescans, 0);
}

TEST_F(IscsiLoginWaitTest, RescansOnceThenGivesUpAfterTwentySeconds) {
  ASSERT_TRUE(iscsi_.discover(kPortal).ok());
  // The fake's target has no LUN 0 disk: it never shows up.
  auto res = login({{"op_id", "op-lun0"}, {"lun", 0}});
  EXPECT_EQ(res.result(), http::HttpStatus::service_unavailable) << res.body();
  EXPECT_EQ(code_of(res), "unavailable");
  EXPECT_EQ(body_of(res)["error"]["message"],
            "LUN 0 of " + std::string(kIqn) + " has no block device yet");
  EXPECT_EQ(body_of(res)["error"]["details"]["lun"], 0);
  EXPECT_EQ(total_slept(), std::chrono::milliseconds{20'000});
  EXPECT_EQ(late_.rescans, 1);
  EXPECT_EQ(late_.looked_for.size(), 81u);  // now, then every 250 ms for 20 s
  EXPECT_EQ(late_.looked_for.front(), 0);
  // The session stays (a retry finds it logged in); the failure is not remembered.
  EXPECT_EQ(body_of(get("/agent/v1/storage/iscsi/sessions"))["sessions"].size(), 1u);
  res = login({{"op_id", "op-lun0"}, {"lun", 0}});
  EXPECT_EQ(res.result(), http::HttpStatus::service_unavailable);
  EXPECT_EQ(late_.logins, 2);
  // Nothing was remembered for that op_id: a corrected request under it acts. Once it
  // answered, the same op_id for another LUN is a conflict.
  EXPECT_EQ(login({{"op_id", "op-lun0"}, {"lun", 1}}).result(), http::HttpStatus::ok);
  EXPECT_EQ(login({{"op_id", "op-lun0"}, {"lun", 0}}).result(), http::HttpStatus::conflict);
}

TEST_F(IscsiLoginWaitTest, ALunDeviceErrorOtherThanNotFoundEndsTheWait) {
  ASSERT_TRUE(iscsi_.discover(kPortal).ok());
  late_.late_looks = 1;
  late_.fail = internal_error("iscsiadm -m session -P 3: unexpected output");
  auto res = login(json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::internal_server_error);
  EXPECT_EQ(late_.looked_for.size(), 2u);
  EXPECT_EQ(clock_.slept().size(), 1u);
}

TEST_F(IscsiLoginWaitTest, AFailedLoginLooksForNoDevice) {
  // Not discovered: no node record.
  auto res = login(json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);
  EXPECT_TRUE(late_.looked_for.empty());
  EXPECT_TRUE(clock_.slept().empty());
}

TEST_F(IscsiLoginWaitTest, RepeatedLoginAnswersTheFirstDevice) {
  ASSERT_TRUE(iscsi_.discover(kPortal).ok());
  const json body = {{"op_id", "op-same"}, {"lun", 1}};
  auto first = login(body);
  ASSERT_EQ(first.result(), http::HttpStatus::ok);
  auto second = login(body);
  EXPECT_EQ(second.body(), first.body());
  EXPECT_EQ(late_.logins, 1);
}

// A by-id directory as udev makes it, in a temporary directory.
class FcLunsTest : public AgentStorageRoutesTest {
 protected:
  FcLunsTest() {
    root_ = std::filesystem::temp_directory_path() /
            ("kvmfleet-fc-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "by-id");
    for (const char* disk : {"sdc", "sdd", "sdd1"}) std::ofstream(root_ / disk) << "";
    link("../sdc", "scsi-3600140512345678900000000000000c1");
    link("../sdc", "wwn-0x600140512345678900000000000000c1");  // the same disk
    link("../sdd", "wwn-0x5000c500a1b2c3d4");
    link("../sdd1", "wwn-0x5000c500a1b2c3d4-part1");           // a partition
    link("../sdx", "scsi-3600140599999999900000000000000ff");  // dangling
    link("../sdc", "ata-QEMU_HARDDISK_QM00001");               // not a WWID name
    StorageBackend backend{iscsi_, lvm_, clock_};
    backend.fc_by_id_dir = root_ / "by-id";
    fc_ = std::make_unique<AgentService>(hv_, backend, kToken);
  }
  ~FcLunsTest() override { std::filesystem::remove_all(root_); }
  void link(const char* target, const char* name) {
    std::filesystem::create_symlink(target, root_ / "by-id" / name);
  }

  std::filesystem::path root_;
  std::unique_ptr<AgentService> fc_;  // over root_/by-id
};

TEST_F(FcLunsTest, ListsLunsByWwidWithTheirDevices) {
  auto res = fc_->serve(make(http::Verb::get, "/agent/v1/storage/fc/luns"));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  const json want = {
      {"luns",
       {{{"wwid", "0x5000c500a1b2c3d4"}, {"device", (root_ / "sdd").string()}},
        {{"wwid", "3600140512345678900000000000000c1"}, {"device", (root_ / "sdc").string()}}}}};
  EXPECT_EQ(body_of(res), want);
  EXPECT_EQ(fc_->serve(make(http::Verb::post, "/agent/v1/storage/fc/luns", "{}")).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(fc_->serve(make(http::Verb::get, "/agent/v1/storage/fc")).result(),
            http::HttpStatus::not_found);
  EXPECT_EQ(fc_->serve(make(http::Verb::get, "/agent/v1/storage/fc/luns/x")).result(),
            http::HttpStatus::not_found);
}

// A pool's FC LUNs attached: each WWID's device joins LVM's filter, in WWID order, all
// or none.
TEST_F(FcLunsTest, AttachAddsEachWwidsDeviceToLvmsFilter) {
  auto post = [&](const json& body) {
    return fc_->serve(make(http::Verb::post, "/agent/v1/storage/fc/attach", body.dump()));
  };
  const json body = {{"op_id", "a1"},
                     {"wwids", {"3600140512345678900000000000000c1", "0x5000c500a1b2c3d4"}}};
  auto res = post(body);
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  const json want = {
      {"devices",
       {{{"device", (root_ / "sdc").string()}, {"wwid", "3600140512345678900000000000000c1"}},
        {{"device", (root_ / "sdd").string()}, {"wwid", "0x5000c500a1b2c3d4"}}}}};
  EXPECT_EQ(body_of(res), want);
  EXPECT_EQ(lvm_.added_devices,
            (std::vector<std::string>{(root_ / "sdc").string(), (root_ / "sdd").string()}));
  // A retry answers the first answer and changes nothing.
  EXPECT_EQ(body_of(post(body)), want);
  EXPECT_EQ(lvm_.added_devices.size(), 2u);

  // A WWID this host does not see (or whose link is dangling): 404 naming it, and the
  // filter unchanged for the others too.
  for (const char* missing :
       {"3600140599999999900000000000000ff", "36001405aaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    res =
        post({{"op_id", std::string("a-") + missing}, {"wwids", {"0x5000c500a1b2c3d4", missing}}});
    EXPECT_EQ(res.result(), http::HttpStatus::not_found) << res.body();
    EXPECT_EQ(body_of(res)["error"]["details"]["wwid"], missing);
  }
  EXPECT_EQ(lvm_.added_devices.size(), 2u);

  // Strict bodies.
  for (const json& bad :
       {json{{"op_id", "b1"}}, json{{"op_id", "b2"}, {"wwids", json::array()}},
        json{{"op_id", "b3"}, {"wwids", {"not-hex"}}},
        json{{"op_id", "b4"}, {"wwids", {"0x5000c500a1b2c3d4", "0x5000c500a1b2c3d4"}}},
        json{{"op_id", "b5"}, {"wwids", {42}}},
        json{{"op_id", "b6"}, {"wwids", {"0x5000c500a1b2c3d4"}}, {"force", true}}}) {
    res = post(bad);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << bad.dump() << " " << res.body();
  }
  EXPECT_EQ(fc_->serve(make(http::Verb::get, "/agent/v1/storage/fc/attach")).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(lvm_.added_devices.size(), 2u);
}

TEST_F(AgentStorageRoutesTest, FcLunsOfAHostWithoutByIdDirectoryIsEmpty) {
  StorageBackend backend{iscsi_, lvm_, clock_};
  backend.fc_by_id_dir = "/nonexistent/kvmfleet/by-id";
  AgentService service(hv_, backend, kToken);
  auto res = service.serve(make(http::Verb::get, "/agent/v1/storage/fc/luns"));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"luns", json::array()}}));
}

TEST_F(AgentStorageRoutesTest, VgCreateGetLockStartStop) {
  make_vg();
  auto res = get("/agent/v1/storage/vgs/kvmvg");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto vg = body_of(res);
  EXPECT_EQ(vg["name"], "kvmvg");
  EXPECT_EQ(vg["shared"], true);
  EXPECT_EQ(vg["lock_type"], "sanlock");
  EXPECT_EQ(vg["size_bytes"], 9 * kGiB);
  EXPECT_EQ(vg["free_bytes"], 9 * kGiB);

  // A second create is the backend's conflict.
  res = post("/agent/v1/storage/vgs/create", {{"vg", "kvmvg"}, {"devices", {"/dev/sdb"}}});
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(code_of(res), "conflict");

  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lockstop", json::object()).result(),
            http::HttpStatus::ok);
  EXPECT_FALSE(san_.vg("kvmvg")->lockspace.count(1));
  // Without the lockspace nothing in the VG changes here: unavailable.
  res = post("/agent/v1/storage/vgs/kvmvg/lvs/create", {{"lv", "vol1"}, {"size_bytes", kGiB}});
  EXPECT_EQ(res.result(), http::HttpStatus::service_unavailable);
  EXPECT_EQ(code_of(res), "unavailable");
  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lockstart", json::object()).result(),
            http::HttpStatus::ok);
  EXPECT_TRUE(san_.vg("kvmvg")->lockspace.count(1));

  res = get("/agent/v1/storage/vgs/othervg");
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);
  EXPECT_EQ(code_of(res), "not_found");
  res = post("/agent/v1/storage/vgs/othervg/lockstart", json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);
}

TEST_F(AgentStorageRoutesTest, VgBadBodies) {
  for (const auto& body :
       std::vector<json>{{{"devices", {"/dev/sdb"}}},
                         {{"vg", "kvmvg"}},
                         {{"vg", "kvmvg"}, {"devices", "/dev/sdb"}},
                         {{"vg", "kvmvg"}, {"devices", {1}}},
                         {{"vg", "kvmvg"}, {"devices", {"/dev/sdb"}}, {"shared", true}}}) {
    auto res = post("/agent/v1/storage/vgs/create", body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << body.dump();
    EXPECT_EQ(code_of(res), "invalid_argument") << body.dump();
  }
  // Checked by the storage library.
  for (const auto& body : std::vector<json>{{{"vg", "lvm"}, {"devices", {"/dev/sdb"}}},
                                            {{"vg", "-x"}, {"devices", {"/dev/sdb"}}},
                                            {{"vg", "kvmvg"}, {"devices", json::array()}}}) {
    auto res = post("/agent/v1/storage/vgs/create", body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << body.dump();
  }
  EXPECT_FALSE(san_.vg("kvmvg").has_value());
  auto res = post("/agent/v1/storage/vgs/kvmvg/lockstart", {{"force", true}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(field_of(res), "force");
  res = get("/agent/v1/storage/vgs/bad%2Fname");
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
}

TEST_F(AgentStorageRoutesTest, LvLifecycle) {
  make_vg();
  auto res = post("/agent/v1/storage/vgs/kvmvg/lvs/create",
                  {{"lv", "vol1"}, {"size_bytes", kGiB}, {"activate_exclusive", true}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json::object());

  res = get("/agent/v1/storage/vgs/kvmvg/lvs/vol1");
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  auto lv = body_of(res);
  EXPECT_EQ(lv["name"], "vol1");
  EXPECT_EQ(lv["vg"], "kvmvg");
  EXPECT_EQ(lv["size_bytes"], kGiB);
  EXPECT_EQ(lv["path"], "/dev/kvmvg/vol1");
  EXPECT_EQ(lv["activation"], "exclusive");
  EXPECT_EQ(lv["active"], true);
  EXPECT_TRUE(lv["data_percent"].is_null());

  ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow", {{"size_bytes", 2 * kGiB}}).result(),
            http::HttpStatus::ok);
  EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs/vol1"))["size_bytes"], 2 * kGiB);
  res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow", {{"size_bytes", kGiB}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << "shrinking";

  for (const char* mode : {"shared", "exclusive", "inactive"}) {
    res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", {{"mode", mode}});
    ASSERT_EQ(res.result(), http::HttpStatus::ok) << mode << res.body();
    EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs/vol1"))["activation"], mode);
  }

  ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/snapshot",
                 {{"snapshot", "vol1-snap"}, {"size_bytes", 256u << 20}})
                .result(),
            http::HttpStatus::ok);
  res = get("/agent/v1/storage/vgs/kvmvg/lvs");
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  auto lvs = body_of(res)["lvs"];
  ASSERT_EQ(lvs.size(), 2u);
  EXPECT_EQ(lvs[0]["is_origin"], true);
  EXPECT_EQ(lvs[1]["name"], "vol1-snap");
  EXPECT_EQ(lvs[1]["is_snapshot"], true);
  EXPECT_EQ(lvs[1]["origin"], "vol1");
  EXPECT_EQ(lvs[1]["data_percent"], 0.0);

  // An origin with snapshots cannot be deleted: the backend's conflict.
  res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/delete", json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(code_of(res), "conflict");

  ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1-snap/merge", json::object()).result(),
            http::HttpStatus::ok);
  EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs"))["lvs"].size(), 1u);
  // Merging an LV that is not a snapshot is invalid.
  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/merge", json::object()).result(),
            http::HttpStatus::bad_request);

  ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/delete", json::object()).result(),
            http::HttpStatus::ok);
  res = get("/agent/v1/storage/vgs/kvmvg/lvs/vol1");
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);
  EXPECT_EQ(code_of(res), "not_found");
}

TEST_F(AgentStorageRoutesTest, ActivationHeldByAnotherHostIsAConflict) {
  make_vg();
  make_lv("vol1");
  ASSERT_TRUE(other_host_.lock_start("kvmvg").ok());
  ASSERT_TRUE(other_host_.activate("kvmvg", "vol1", storage::LvActivation::exclusive).ok());
  for (const char* mode : {"exclusive", "shared"}) {
    auto res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", {{"mode", mode}});
    EXPECT_EQ(res.result(), http::HttpStatus::conflict) << mode;
    EXPECT_EQ(code_of(res), "conflict");
    EXPECT_NE(body_of(res)["error"]["message"].get<std::string>().find("locked by other host"),
              std::string::npos);
  }
  EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs/vol1"))["activation"], "inactive");
  auto res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/delete", json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
}

TEST_F(AgentStorageRoutesTest, LvBadBodies) {
  make_vg();
  make_lv("vol1");
  struct Case {
    const char* path;
    json body;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"/agent/v1/storage/vgs/kvmvg/lvs/create", {{"size_bytes", kGiB}}, "lv"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create", {{"lv", "vol2"}}, "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create",
       {{"lv", "vol2"}, {"size_bytes", "1G"}},
       "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create",
       {{"lv", "vol2"}, {"size_bytes", -512}},
       "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create",
       {{"lv", "vol2"}, {"size_bytes", 1.5}},
       "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create",
       {{"lv", "vol2"}, {"size_bytes", kGiB}, {"activate_exclusive", "yes"}},
       "activate_exclusive"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/create",
       {{"lv", "vol2"}, {"size_bytes", kGiB}, {"vg", "kvmvg"}},
       "vg"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow", {}, "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/grow",
       {{"size_bytes", 2 * kGiB}, {"shrink", false}},
       "shrink"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", {}, "mode"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", {{"mode", "ey"}}, "mode"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate",
       {{"mode", "exclusive"}, {"host", "n2"}},
       "host"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/snapshot", {{"size_bytes", kGiB}}, "snapshot"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/snapshot", {{"snapshot", "s1"}}, "size_bytes"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/delete", {{"force", true}}, "force"},
      {"/agent/v1/storage/vgs/kvmvg/lvs/vol1/merge", {{"origin", "vol1"}}, "origin"},
  };
  for (const auto& c : cases) {
    auto res = post(c.path, c.body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << c.path << " " << c.body.dump();
    EXPECT_EQ(code_of(res), "invalid_argument") << c.body.dump();
    EXPECT_EQ(field_of(res), c.field) << c.path << " " << c.body.dump();
  }
  // Names and sizes the storage library refuses.
  for (const auto& body :
       std::vector<json>{{{"lv", "snapshot1"}, {"size_bytes", kGiB}},
                         {{"lv", "a_tmeta"}, {"size_bytes", kGiB}},
                         {{"lv", "../x"}, {"size_bytes", kGiB}},
                         {{"lv", "vol2"}, {"size_bytes", 1000}},
                         {{"lv", "vol2"}, {"size_bytes", std::uint64_t{1} << 51}}}) {
    auto res = post("/agent/v1/storage/vgs/kvmvg/lvs/create", body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << body.dump();
    EXPECT_EQ(code_of(res), "invalid_argument");
  }
  EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs"))["lvs"].size(), 1u);
  // Too big for the VG: insufficient_capacity (422), nothing made.
  auto res =
      post("/agent/v1/storage/vgs/kvmvg/lvs/create", {{"lv", "big"}, {"size_bytes", 100 * kGiB}});
  EXPECT_EQ(res.result(), http::HttpStatus::unprocessable_entity);
  EXPECT_EQ(code_of(res), "insufficient_capacity");
}

TEST_F(AgentStorageRoutesTest, BodiesMustBeJsonObjectsWithAnOpId) {
  const std::string path = "/agent/v1/storage/vgs/kvmvg/lockstart";
  auto res = service_.serve(make(http::Verb::post, path, "{not json"));
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  res = service_.serve(make(http::Verb::post, path, "[1]"));
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  res = service_.serve(make(http::Verb::post, path, R"({"op_id":"o1"})", "text/plain"));
  EXPECT_EQ(res.result(), http::HttpStatus::unsupported_media_type);
  res = service_.serve(make(http::Verb::post, path, "{}"));
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(field_of(res), "op_id");
  res = service_.serve(make(http::Verb::post, path, R"({"op_id":"bad id!"})"));
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(field_of(res), "op_id");
}

TEST_F(AgentStorageRoutesTest, RepeatedOpIdAnswersTheFirstAnswer) {
  make_vg();
  const json body = {{"op_id", "op-create-vol1"}, {"lv", "vol1"}, {"size_bytes", kGiB}};
  ASSERT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/create", body).result(), http::HttpStatus::ok);
  // A retry does not run lvcreate again (which would be a conflict now).
  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/create", body).result(), http::HttpStatus::ok);
  // The same op_id with another body is a conflict.
  auto other = body;
  other["size_bytes"] = 2 * kGiB;
  auto res = post("/agent/v1/storage/vgs/kvmvg/lvs/create", other);
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  // A new op_id acts: the LV exists.
  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/create", {{"lv", "vol1"}, {"size_bytes", kGiB}})
                .result(),
            http::HttpStatus::conflict);

  // Failures are not remembered: a retry after one acts again.
  san_.fail_next("activate", unavailable("lvchange: Cannot connect to lvmlockd"));
  const json act = {{"op_id", "op-act"}, {"mode", "exclusive"}};
  res = post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", act);
  EXPECT_EQ(res.result(), http::HttpStatus::service_unavailable);
  EXPECT_EQ(code_of(res), "unavailable");
  EXPECT_EQ(post("/agent/v1/storage/vgs/kvmvg/lvs/vol1/activate", act).result(),
            http::HttpStatus::ok);
  EXPECT_EQ(body_of(get("/agent/v1/storage/vgs/kvmvg/lvs/vol1"))["activation"], "exclusive");
}

TEST_F(AgentStorageRoutesTest, InventoryReportsSessionsAndVgs) {
  make_vg();
  ASSERT_EQ(post("/agent/v1/storage/iscsi/discover", {{"portal", kPortal}}).result(),
            http::HttpStatus::ok);
  ASSERT_EQ(post("/agent/v1/storage/iscsi/login", {{"target", kIqn}, {"portal", kPortal}}).result(),
            http::HttpStatus::ok);
  auto res = get("/agent/v1/storage");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto inv = body_of(res);
  ASSERT_EQ(inv["iscsi_sessions"].size(), 1u);
  EXPECT_EQ(inv["iscsi_sessions"][0]["target"], kIqn);
  EXPECT_EQ(inv["iscsi_sessions"][0]["state"], "LOGGED_IN");
  ASSERT_EQ(inv["vgs"].size(), 1u);
  EXPECT_EQ(inv["vgs"][0]["name"], "kvmvg");
  EXPECT_TRUE(inv.contains("locks"));
  EXPECT_TRUE(inv["errors"].empty());

  // A failing part is a line in errors, not a failed request.
  san_.fail_next("list_vgs", unavailable("vgs: Cannot connect to lvmlockd"));
  res = get("/agent/v1/storage");
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  EXPECT_EQ(body_of(res)["errors"].size(), 1u);
}

// --- multipath (storage.multipath) ------------------------------------------------

constexpr const char* kWwid = "360000000000000000e00000000010001";

// `multipathd show maps json` with one map over `paths` ({dev, checker state}), as
// multipath-tools 0.9.4 prints it (tests/storage/data/multipathd_show_maps_json.out).
std::string maps_json(const std::vector<std::pair<std::string, std::string>>& paths,
                      const std::string& name = kWwid, const std::string& sysfs = "dm-0") {
  json groups = json::array();
  for (const auto& [dev, chk] : paths) {
    const bool ok = chk == "ready";
    groups.push_back({{"selector", "service-time 0"},
                      {"dm_st", "enabled"},
                      {"paths",
                       {{{"dev", dev},
                         {"dm_st", ok ? "active" : "failed"},
                         {"dev_st", ok ? "running" : "offline"},
                         {"chk_st", chk},
                         {"target_wwnn", kIqn}}}}});
  }
  json maps = json::array();
  if (!paths.empty())
    maps.push_back({{"name", name},
                    {"uuid", name},
                    {"sysfs", sysfs},
                    {"dm_st", "active"},
                    {"path_faults", 0},
                    {"path_groups", groups}});
  return json({{"major_version", 0}, {"minor_version", 1}, {"maps", maps}}).dump(3);
}

const std::vector<std::string> kShowMaps = {"multipathd", "show", "maps", "json"};

class MultipathTest : public AgentStorageRoutesTest {
 protected:
  MultipathTest() {
    iscsi_.add_target("10.77.0.2:3260", kIqn);
    EXPECT_TRUE(iscsi_.discover("10.77.0.1").ok());
    EXPECT_TRUE(iscsi_.discover("10.77.0.2").ok());
    // Nothing scripted: multipathd answers, with no map.
    runner_.set_default([](const std::vector<std::string>&) -> Result<ProcessOutput> {
      return FakeProcessRunner::exited(0, maps_json({}));
    });
    backend_.multipath = &multipath_;
    // udev's by-path links of the fake's sessions: sid N is /dev/sd('a' + N - 1).
    backend_.resolve_device = [this](const std::string& path) -> Result<std::string> {
      resolved_.push_back(path);
      if (path == by_path("10.77.0.1:3260")) return std::string("/dev/sda");
      if (path == by_path("10.77.0.2:3260")) return std::string("/dev/sdb");
      if (path == "/dev/sda" || path == "/dev/sdb") return path;  // disks, no links
      return not_found(path + " does not exist");
    };
    mp_ = std::make_unique<AgentService>(hv_, backend_, kToken);
  }
  static std::string by_path(const std::string& portal) {
    return "/dev/disk/by-path/ip-" + portal + "-iscsi-" + std::string(kIqn) + "-lun-1";
  }
  http::Response login(const std::string& portal) {
    json body = {{"op_id", "op-mp" + std::to_string(++ops_)}, {"target", kIqn}, {"portal", portal}};
    return mp_->serve(make(http::Verb::post, "/agent/v1/storage/iscsi/login", body.dump()));
  }
  std::chrono::milliseconds total_slept() const {
    std::chrono::milliseconds t{0};
    for (auto d : clock_.slept()) t += d;
    return t;
  }
  std::size_t multipathd_calls() const {
    return static_cast<std::size_t>(
        std::count(runner_.calls().begin(), runner_.calls().end(), kShowMaps));
  }

  FakeProcessRunner runner_;
  storage::Multipath multipath_{runner_};
  StorageBackend backend_{iscsi_, lvm_, clock_};
  std::vector<std::string> resolved_;
  std::unique_ptr<AgentService> mp_;  // with multipath
};

TEST_F(MultipathTest, LoginAnswersTheMapAndTheMapJoinsLvmsFilter) {
  runner_.expect(kShowMaps,
                 FakeProcessRunner::exited(0, maps_json({{"sda", "ready"}, {"sdb", "ready"}})));
  auto res = login("10.77.0.1");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"device", "/dev/mapper/" + std::string(kWwid)},
                                {"path_device", by_path("10.77.0.1:3260")},
                                {"multipath_map", kWwid}}));
  // The by-path link was resolved to its disk to find it among the maps' paths.
  EXPECT_EQ(resolved_, std::vector<std::string>{by_path("10.77.0.1:3260")});
  // The map, not the single path, is what LVM may see.
  EXPECT_EQ(lvm_.added_devices, std::vector<std::string>{"/dev/mapper/" + std::string(kWwid)});
  EXPECT_TRUE(clock_.slept().empty());

  // The second portal's path is in the same map: the same device.
  runner_.expect(kShowMaps,
                 FakeProcessRunner::exited(0, maps_json({{"sda", "ready"}, {"sdb", "ready"}})));
  res = login("10.77.0.2");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res)["device"], "/dev/mapper/" + std::string(kWwid));
  EXPECT_EQ(body_of(res)["path_device"], by_path("10.77.0.2:3260"));
}

TEST_F(MultipathTest, LoginWaitsForMultipathdToBuildTheMap) {
  // The path is there, the map comes on the third look.
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, maps_json({})));
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, maps_json({})));
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, maps_json({{"sda", "ready"}})));
  auto res = login("10.77.0.1");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res)["device"], "/dev/mapper/" + std::string(kWwid));
  EXPECT_EQ(clock_.slept(),
            std::vector<std::chrono::milliseconds>(2, std::chrono::milliseconds{250}));
  EXPECT_EQ(multipathd_calls(), 3u);
}

TEST_F(MultipathTest, NoMapHoldsTheLunTheLoginAnswersThePath) {
  // A single path with find_multipaths: multipathd makes no map for it.
  auto res = login("10.77.0.1");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"device", by_path("10.77.0.1:3260")}}));
  EXPECT_EQ(lvm_.added_devices, std::vector<std::string>{by_path("10.77.0.1:3260")});
  // It looked for a map for multipath_wait (3 s), every lun_poll.
  EXPECT_EQ(total_slept(), std::chrono::milliseconds{3'000});
  EXPECT_EQ(multipathd_calls(), 13u);
}

TEST_F(MultipathTest, TheWaitForAMapComesOutOfTheLoginsBudget) {
  // The LUN's device took 19.5 s of the 20 s to show: 0.5 s are left for the map.
  LateLunInitiator late(iscsi_);
  late.late_looks = 78;
  StorageBackend backend{late, lvm_, clock_, nullptr, &multipath_};
  backend.resolve_device = backend_.resolve_device;
  AgentService service(hv_, backend, kToken);
  json body = {{"op_id", "op-late"}, {"target", kIqn}, {"portal", "10.77.0.1"}};
  auto res = service.serve(make(http::Verb::post, "/agent/v1/storage/iscsi/login", body.dump()));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"device", by_path("10.77.0.1:3260")}}));
  EXPECT_EQ(late.looked_for.size(), 79u);
  EXPECT_EQ(total_slept(), std::chrono::milliseconds{20'000});
  EXPECT_EQ(multipathd_calls(), 3u);  // at 19.5 s, 19.75 s and 20 s
}

TEST_F(MultipathTest, MultipathdNotAnsweringTheLoginAnswersThePathAndWhy) {
  runner_.expect(kShowMaps, FakeProcessRunner::exited(1, "", "error -104 receiving packet\n"));
  auto res = login("10.77.0.1");
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto body = body_of(res);
  EXPECT_EQ(body["device"], by_path("10.77.0.1:3260"));
  EXPECT_FALSE(body.contains("multipath_map"));
  ASSERT_TRUE(body["multipath_unused"].is_string()) << body.dump();
  EXPECT_NE(body["multipath_unused"].get<std::string>().find("is multipathd running?"),
            std::string::npos)
      << body.dump();
  EXPECT_EQ(lvm_.added_devices, std::vector<std::string>{by_path("10.77.0.1:3260")});
  // No waiting on a daemon that is not there.
  EXPECT_TRUE(clock_.slept().empty());
  EXPECT_EQ(multipathd_calls(), 1u);
}

TEST_F(MultipathTest, ALinkThatResolvesToNothingIsUsedAsItIsAndSaysWhy) {
  backend_.resolve_device = [](const std::string& path) -> Result<std::string> {
    return not_found("cannot resolve " + path + ": No such file or directory");
  };
  AgentService service(hv_, backend_, kToken);
  json body = {{"op_id", "op-unresolved"}, {"target", kIqn}, {"portal", "10.77.0.1"}};
  auto res = service.serve(make(http::Verb::post, "/agent/v1/storage/iscsi/login", body.dump()));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res)["device"], by_path("10.77.0.1:3260"));
  EXPECT_NE(body_of(res)["multipath_unused"].get<std::string>().find("cannot resolve"),
            std::string::npos);
  EXPECT_EQ(multipathd_calls(), 0u);
}

TEST_F(MultipathTest, InventoryReportsMapsPathsAndDegradedMaps) {
  runner_.expect(kShowMaps,
                 FakeProcessRunner::exited(0, maps_json({{"sda", "ready"}, {"sdb", "faulty"}})));
  auto res = mp_->serve(make(http::Verb::get, "/agent/v1/storage"));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto inv = body_of(res);
  ASSERT_EQ(inv["multipath"].size(), 1u) << inv.dump();
  const auto& m = inv["multipath"][0];
  EXPECT_EQ(m["name"], kWwid);
  EXPECT_EQ(m["device"], "/dev/mapper/" + std::string(kWwid));
  EXPECT_EQ(m["paths"], 2);
  EXPECT_EQ(m["healthy_paths"], 1);
  EXPECT_EQ(m["degraded"], true);
  EXPECT_EQ(m["failed_paths"], json::array({"sdb"}));
  ASSERT_EQ(m["path_states"].size(), 2u);
  EXPECT_EQ(m["path_states"][1], json({{"dev", "sdb"},
                                       {"healthy", false},
                                       {"dm_state", "failed"},
                                       {"dev_state", "offline"},
                                       {"checker_state", "faulty"}}));
  EXPECT_TRUE(inv["errors"].empty());

  // multipathd down: a line in errors, the rest still reported.
  runner_.expect(kShowMaps, FakeProcessRunner::exited(1, "", ""));
  inv = body_of(mp_->serve(make(http::Verb::get, "/agent/v1/storage")));
  EXPECT_TRUE(inv["multipath"].empty());
  ASSERT_EQ(inv["errors"].size(), 1u);
  EXPECT_NE(inv["errors"][0].get<std::string>().find("multipath"), std::string::npos);
}

TEST_F(MultipathTest, SessionLunsAtStartJoinThroughTheirMap) {
  // Two sessions to one LUN (two portals): sda and sdb, one map.
  ASSERT_TRUE(iscsi_.login(kIqn, "10.77.0.1", std::nullopt).ok());
  ASSERT_TRUE(iscsi_.login(kIqn, "10.77.0.2", std::nullopt).ok());
  const std::string map = maps_json({{"sda", "ready"}, {"sdb", "ready"}});
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, map));
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, map));
  auto added = add_session_luns(backend_);
  EXPECT_EQ(added, std::vector<std::string>{"/dev/mapper/" + std::string(kWwid)});
  EXPECT_EQ(lvm_.added_devices, added);
  EXPECT_TRUE(clock_.slept().empty()) << "no wait at start: the maps are there or not";

  // multipathd down: the paths, as without multipath.
  doubles::FakeVolumeManager lvm2{san_, 3};
  FakeProcessRunner dead;
  dead.set_default([](const std::vector<std::string>&) -> Result<ProcessOutput> {
    return FakeProcessRunner::exited(1, "", "");
  });
  storage::Multipath mp_down(dead);
  StorageBackend b2{iscsi_, lvm2, clock_, nullptr, &mp_down};
  b2.resolve_device = backend_.resolve_device;
  EXPECT_EQ(add_session_luns(b2), (std::vector<std::string>{"/dev/sda", "/dev/sdb"}));

  // Without multipath: the paths.
  doubles::FakeVolumeManager lvm3{san_, 4};
  StorageBackend plain{iscsi_, lvm3, clock_};
  EXPECT_EQ(add_session_luns(plain), (std::vector<std::string>{"/dev/sda", "/dev/sdb"}));
}

// With multipath, a LUN a map holds names the map: by one of its paths (sdc) or, once
// udev pointed the WWID links at the map, by the map itself (dm-1).
class FcLunsMultipathTest : public FcLunsTest {
 protected:
  FcLunsMultipathTest() {
    std::ofstream(root_ / "dm-1") << "";
    link("../dm-1", "scsi-3600140500000000000000000000000d1");
    backend_.fc_by_id_dir = root_ / "by-id";
    backend_.multipath = &multipath_;
    service_mp_ = std::make_unique<AgentService>(hv_, backend_, kToken);
  }
  FakeProcessRunner runner_;
  storage::Multipath multipath_{runner_};
  StorageBackend backend_{iscsi_, lvm_, clock_};
  std::unique_ptr<AgentService> service_mp_;
};

TEST_F(FcLunsMultipathTest, EachLunNamesItsMap) {
  json maps = json::parse(maps_json({{"sdc", "ready"}, {"sde", "ready"}}));
  maps["maps"].push_back(json::parse(maps_json({{"sdf", "ready"}}, "mpathb", "dm-1"))["maps"][0]);
  runner_.expect(kShowMaps, FakeProcessRunner::exited(0, maps.dump()));
  auto res = service_mp_->serve(make(http::Verb::get, "/agent/v1/storage/fc/luns"));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  const json want = {{"luns",
                      {{{"wwid", "0x5000c500a1b2c3d4"}, {"device", (root_ / "sdd").string()}},
                       {{"wwid", "3600140500000000000000000000000d1"},
                        {"device", (root_ / "dm-1").string()},
                        {"multipath_device", "/dev/mapper/mpathb"}},
                       {{"wwid", "3600140512345678900000000000000c1"},
                        {"device", (root_ / "sdc").string()},
                        {"multipath_device", "/dev/mapper/" + std::string(kWwid)}}}}};
  EXPECT_EQ(body_of(res), want);

  // multipathd down: the LUNs as they are, and why no map is named.
  runner_.expect(kShowMaps, FakeProcessRunner::exited(1, "", ""));
  res = service_mp_->serve(make(http::Verb::get, "/agent/v1/storage/fc/luns"));
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto body = body_of(res);
  EXPECT_EQ(body["luns"].size(), 3u);
  for (const auto& l : body["luns"]) EXPECT_FALSE(l.contains("multipath_device")) << l.dump();
  EXPECT_NE(body.value("multipath_unused", "").find("multipathd"), std::string::npos)
      << body.dump();
}

TEST(ResolveDeviceLink, ResolvesLinksAndKeepsDevices) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("kvmfleet-resolve-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "by-path");
  std::ofstream(dir / "sdc") << "";
  std::filesystem::create_symlink("../sdc", dir / "by-path" / "ip-lun-1");
  std::filesystem::create_symlink("../sdz", dir / "by-path" / "ip-lun-2");
  auto r = resolve_device_link((dir / "by-path" / "ip-lun-1").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (dir / "sdc").string());
  r = resolve_device_link((dir / "sdc").string());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (dir / "sdc").string());
  EXPECT_EQ(resolve_device_link((dir / "by-path" / "ip-lun-2").string()).error().code,
            ErrorCode::not_found);
  EXPECT_EQ(resolve_device_link((dir / "nothing").string()).error().code, ErrorCode::not_found);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvmfleet::agent
