#include "kvmfleet/agent/agent_service.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "kvmfleet/agent/libvirt_hypervisor.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/model/json.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/storage/fake_shared_storage.hpp"

namespace kvmfleet::agent {
namespace {

using doubles::FakeHypervisor;
using nlohmann::json;

constexpr const char* kToken = "kvf_host-token-for-tests";
constexpr const char* kUuid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

http::Request make(http::Verb verb, std::string target, std::string body = {},
                   const char* token = kToken) {
  http::Request req{verb, target, 11};
  if (token) req.set(http::bhttp::field::authorization, std::string("Bearer ") + token);
  if (!body.empty()) {
    req.set(http::bhttp::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
  }
  return req;
}

json spec_json(const std::string& uuid = kUuid, std::int64_t generation = 1) {
  return {{"uuid", uuid},     {"name", "web1"},        {"vcpus", 1},
          {"memory_mib", 64}, {"domain_type", "qemu"}, {"generation", generation}};
}

json body_of(const http::Response& res) {
  return json::parse(res.body());
}

std::string code_of(const http::Response& res) {
  return body_of(res).at("error").at("code").get<std::string>();
}

class AgentServiceTest : public ::testing::Test {
 protected:
  http::Response call(http::Verb verb, std::string target, const json& body,
                      const char* token = kToken) {
    return service_.serve(make(verb, std::move(target), body.is_null() ? "" : body.dump(), token));
  }

  FakeHypervisor hv_;
  AgentService service_{hv_, kToken};
};

TEST_F(AgentServiceTest, RequiresTheHostToken) {
  for (const char* token :
       {static_cast<const char*>(nullptr), "", "wrong", "kvf_host-token-for-test"}) {
    auto res = call(http::Verb::get, "/agent/v1/inventory", nullptr, token);
    EXPECT_EQ(res.result(), http::HttpStatus::unauthorized) << (token ? token : "none");
    EXPECT_EQ(code_of(res), "unauthenticated");
    EXPECT_EQ(res[http::bhttp::field::www_authenticate], "Bearer");
  }
  // Even unknown paths answer 401 first.
  EXPECT_EQ(call(http::Verb::get, "/nope", nullptr, "wrong").result(),
            http::HttpStatus::unauthorized);
  EXPECT_EQ(hv_.count("inventory"), 0);
  EXPECT_EQ(call(http::Verb::get, "/agent/v1/inventory", nullptr).result(), http::HttpStatus::ok);
}

TEST_F(AgentServiceTest, InventoryAndDomain) {
  auto res = call(http::Verb::get, "/agent/v1/inventory", nullptr);
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  EXPECT_EQ(res[http::bhttp::field::content_type], "application/json");
  auto inv = body_of(res).get<HostInventory>();
  EXPECT_EQ(inv.hostname, "fake-host");
  EXPECT_EQ(inv.cpus, 8);

  auto missing = call(http::Verb::get, std::string("/agent/v1/domains/") + kUuid, nullptr);
  EXPECT_EQ(missing.result(), http::HttpStatus::not_found);
  EXPECT_EQ(code_of(missing), "not_found");
}

TEST_F(AgentServiceTest, RejectsBadRequestsBeforeTheHypervisor) {
  const std::string define = "/agent/v1/domains/define";
  auto raw = [&](std::string body) {
    return service_.serve(make(http::Verb::post, define, std::move(body)));
  };
  EXPECT_EQ(raw("{not json").result(), http::HttpStatus::bad_request);
  EXPECT_EQ(raw("[1,2]").result(), http::HttpStatus::bad_request);
  EXPECT_EQ(raw("\"str\"").result(), http::HttpStatus::bad_request);

  struct Case {
    const char* what;
    std::string target;
    json body;
  };
  const std::string dom = std::string("/agent/v1/domains/") + kUuid;
  const std::vector<Case> cases = {
      {"unknown top field", define, {{"op_id", "op1"}, {"spec", spec_json()}, {"force", true}}},
      {"unknown spec field",
       define,
       {{"op_id", "op1"},
        {"spec",
         [] {
           auto s = spec_json();
           s["cpu_model"] = "x";
           return s;
         }()}}},
      {"missing spec", define, {{"op_id", "op1"}}},
      {"missing op_id", define, {{"spec", spec_json()}}},
      {"op_id type", define, {{"op_id", 5}, {"spec", spec_json()}}},
      {"op_id chars", define, {{"op_id", "a b"}, {"spec", spec_json()}}},
      {"op_id long", define, {{"op_id", std::string(129, 'a')}, {"spec", spec_json()}}},
      {"bad name",
       define,
       {{"op_id", "op1"},
        {"spec",
         [] {
           auto s = spec_json();
           s["name"] = "a&b";
           return s;
         }()}}},
      {"bad uuid in spec", define, {{"op_id", "op1"}, {"spec", spec_json("XYZ")}}},
      {"memory range",
       define,
       {{"op_id", "op1"},
        {"spec",
         [] {
           auto s = spec_json();
           s["memory_mib"] = -1;
           return s;
         }()}}},
      {"unknown start field", dom + "/start", {{"op_id", "op1"}, {"force", true}}},
      {"start without op_id", dom + "/start", json::object()},
      {"remove_volumes type", dom + "/undefine", {{"op_id", "op1"}, {"remove_volumes", "yes"}}},
      {"bad uuid in path",
       "/agent/v1/domains/6F1C2A8E-3B4D-4E5F-8A9B-0C1D2E3F4A5B/start",
       {{"op_id", "op1"}}},
      {"traversal in path", "/agent/v1/domains/..%2f..%2fx/start", {{"op_id", "op1"}}},
  };
  for (const auto& c : cases) {
    auto res = call(http::Verb::post, c.target, c.body);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << c.what;
    EXPECT_EQ(code_of(res), "invalid_argument") << c.what;
    EXPECT_FALSE(body_of(res)["error"]["message"].get<std::string>().empty()) << c.what;
  }
  EXPECT_EQ(call(http::Verb::get, "/agent/v1/domains/not-a-uuid", nullptr).result(),
            http::HttpStatus::bad_request);
  EXPECT_TRUE(hv_.calls.empty());
}

TEST_F(AgentServiceTest, UnknownPathsAndMethods) {
  EXPECT_EQ(call(http::Verb::get, "/agent/v1/nothing", nullptr).result(),
            http::HttpStatus::not_found);
  EXPECT_EQ(call(http::Verb::post, std::string("/agent/v1/domains/") + kUuid + "/explode",
                 json{{"op_id", "x"}})
                .result(),
            http::HttpStatus::not_found);
  auto res = call(http::Verb::post, "/agent/v1/inventory", json::object());
  EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed);
  EXPECT_EQ(res[http::bhttp::field::allow], "GET");
  EXPECT_EQ(call(http::Verb::get, "/agent/v1/domains/define", nullptr).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(call(http::Verb::delete_, std::string("/agent/v1/domains/") + kUuid, nullptr).result(),
            http::HttpStatus::method_not_allowed);
}

// Only a call of the protocol's table acts: anything else on a domain's path, even a
// near miss of a real call, is a 404 and reaches no hypervisor call (it once fell
// through to destroy).
TEST_F(AgentServiceTest, AnUnknownActionOnADomainActsOnNothing) {
  hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {}};
  hv_.domains[kUuid].state = "running";
  const std::string dom = std::string("/agent/v1/domains/") + kUuid;
  for (const std::string action :
       {"explode", "kill", "Destroy", "destroy/now", "destroy/", "start/", "fs-freeze",
        "migration/", "migration/cancel", "undefine/force", "define", "..", "%64estroy"}) {
    auto res = call(http::Verb::post, dom + "/" + action, {{"op_id", "x"}});
    EXPECT_EQ(res.result(), http::HttpStatus::not_found) << action;
    EXPECT_EQ(code_of(res), "not_found") << action;
    EXPECT_EQ(body_of(res)["error"]["message"], "no such agent endpoint") << action;
  }
  EXPECT_TRUE(hv_.calls.empty());
  EXPECT_EQ(hv_.domains.at(kUuid).state, "running");
}

TEST_F(AgentServiceTest, RefusesNonJsonBodies) {
  auto req = make(http::Verb::post, std::string("/agent/v1/domains/") + kUuid + "/start",
                  json{{"op_id", "x"}}.dump());
  req.set(http::bhttp::field::content_type, "text/plain");
  auto res = service_.serve(req);
  EXPECT_EQ(res.result(), http::HttpStatus::unsupported_media_type);
}

TEST_F(AgentServiceTest, OpIdReplayReturnsTheSameResponseAndActsOnce) {
  const json body = {{"op_id", "op-42"}, {"spec", spec_json()}};
  auto first = call(http::Verb::post, "/agent/v1/domains/define", body);
  ASSERT_EQ(first.result(), http::HttpStatus::ok) << first.body();
  EXPECT_EQ(body_of(first).get<DomainStatus>().uuid, kUuid);
  // The world changes in between; the replay still answers what the first call did.
  hv_.domains.at(kUuid).state = "running";
  auto second = call(http::Verb::post, "/agent/v1/domains/define", body);
  EXPECT_EQ(second.result(), first.result());
  EXPECT_EQ(second.body(), first.body());
  EXPECT_EQ(hv_.count("define"), 1);

  // The same op_id with another body is a conflict, not a silent replay.
  auto other = call(http::Verb::post, "/agent/v1/domains/define",
                    {{"op_id", "op-42"}, {"spec", spec_json(kUuid, 2)}});
  EXPECT_EQ(other.result(), http::HttpStatus::conflict);
  EXPECT_EQ(hv_.count("define"), 1);

  // One operation's next step under the same op_id is a different call: it acts.
  const std::string start = std::string("/agent/v1/domains/") + kUuid + "/start";
  ASSERT_EQ(call(http::Verb::post, start, {{"op_id", "op-42"}}).result(), http::HttpStatus::ok);
  ASSERT_EQ(call(http::Verb::post, start, {{"op_id", "op-42"}}).result(), http::HttpStatus::ok);
  EXPECT_EQ(hv_.count("start"), 1);
  ASSERT_EQ(call(http::Verb::post, start, {{"op_id", "op-43"}}).result(), http::HttpStatus::ok);
  EXPECT_EQ(hv_.count("start"), 2);
}

// Answers about a domain are stamped after the call acted, by the clock the heartbeat
// loop stamps its reports with: a report that began listing before is older.
TEST_F(AgentServiceTest, AnswersAboutADomainAreStampedAfterTheyActed) {
  ASSERT_EQ(
      call(http::Verb::post, "/agent/v1/domains/define", {{"op_id", "op-1"}, {"spec", spec_json()}})
          .result(),
      http::HttpStatus::ok);
  const ReportStamp listing_began = service_.reports().next();
  const std::string domain = std::string("/agent/v1/domains/") + kUuid;
  auto started = call(http::Verb::post, domain + "/start", {{"op_id", "op-2"}});
  ASSERT_EQ(started.result(), http::HttpStatus::ok) << started.body();
  const auto start_stamp = body_of(started).get<DomainStatus>().stamp;
  EXPECT_EQ(start_stamp.agent, service_.reports().run());
  EXPECT_TRUE(older_than(listing_began, start_stamp));
  auto read = call(http::Verb::get, domain, nullptr);
  EXPECT_TRUE(older_than(start_stamp, body_of(read).get<DomainStatus>().stamp));
  auto inv = call(http::Verb::get, "/agent/v1/inventory", nullptr);
  EXPECT_TRUE(older_than(start_stamp, body_of(inv).get<HostInventory>().stamp));
  // Another agent process is another run: its stamps do not compare with these.
  AgentService restarted{hv_, kToken};
  EXPECT_NE(restarted.reports().run(), service_.reports().run());
}

TEST_F(AgentServiceTest, FailuresAreNotRemembered) {
  hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {}};
  const std::string destroy = std::string("/agent/v1/domains/") + kUuid + "/destroy";
  hv_.fail_next(unavailable("libvirt connection lost"));
  auto first = call(http::Verb::post, destroy, {{"op_id", "op-7"}});
  EXPECT_EQ(first.result(), http::HttpStatus::service_unavailable);
  EXPECT_EQ(code_of(first), "unavailable");
  auto retry = call(http::Verb::post, destroy, {{"op_id", "op-7"}});
  EXPECT_EQ(retry.result(), http::HttpStatus::ok);
  EXPECT_EQ(hv_.count("destroy"), 2);
}

TEST_F(AgentServiceTest, UndefinePassesRemoveVolumes) {
  const std::string undefine = std::string("/agent/v1/domains/") + kUuid + "/undefine";
  auto res = call(http::Verb::post, undefine, {{"op_id", "u1"}, {"remove_volumes", true}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok);
  EXPECT_EQ(body_of(res), json::object());
  EXPECT_EQ(hv_.last_remove_volumes, true);
  hv_.fail_next(conflict("domain is running"));
  auto busy = call(http::Verb::post, undefine, {{"op_id", "u2"}});
  EXPECT_EQ(busy.result(), http::HttpStatus::conflict);
  EXPECT_EQ(hv_.last_remove_volumes, false);
}

TEST_F(AgentServiceTest, ConcurrentRepeatsActOnce) {
  const json body = {{"op_id", "op-c"}, {"spec", spec_json()}};
  std::vector<std::thread> threads;
  std::vector<std::string> bodies(8);
  for (std::size_t i = 0; i < bodies.size(); ++i)
    threads.emplace_back(
        [&, i] { bodies[i] = call(http::Verb::post, "/agent/v1/domains/define", body).body(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(hv_.count("define"), 1);
  for (const auto& b : bodies) EXPECT_EQ(b, bodies.front());
}

TEST_F(AgentServiceTest, DefineRefusesBlockDevicesWithoutSharedStorage) {
  json spec = spec_json();
  spec["disks"] = {{{"volume", std::string(kUuid) + "-disk0.qcow2"},
                    {"block_device", ""},
                    {"size_gib", 10},
                    {"bus", "virtio"},
                    {"target_dev", "vda"}},
                   {{"volume", ""},
                    {"block_device", "/dev/pool1/db-data"},
                    {"size_gib", 0},
                    {"bus", "scsi"},
                    {"target_dev", "sda"}}};
  // Without shared storage on this host no block device is taken (agent_routes_test
  // defines one on a host with storage).
  auto res = call(http::Verb::post, "/agent/v1/domains/define", {{"op_id", "d1"}, {"spec", spec}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << res.body();
  EXPECT_EQ(body_of(res)["error"]["details"]["field"], "spec.disks");

  // A device outside /dev never reaches the hypervisor.
  spec["disks"][1]["block_device"] = "/etc/shadow";
  res = call(http::Verb::post, "/agent/v1/domains/define", {{"op_id", "d2"}, {"spec", spec}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(body_of(res)["error"]["details"]["field"], "spec.disks[1].block_device");
  EXPECT_EQ(hv_.count("define"), 0);
}

TEST_F(AgentServiceTest, FsFreezeAndThaw) {
  hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {}};
  hv_.domains[kUuid].state = "running";
  const std::string base = std::string("/agent/v1/domains/") + kUuid;

  auto res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "snap-1"}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"frozen", 2}}));
  // A retry answers the first answer and does not freeze again.
  res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "snap-1"}});
  EXPECT_EQ(body_of(res), json({{"frozen", 2}}));
  EXPECT_EQ(hv_.count("fs_freeze"), 1);
  // The same operation thaws under its op_id: another path, so it acts.
  res = call(http::Verb::post, base + "/fsthaw", {{"op_id", "snap-1"}});
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"thawed", 2}}));
  res = call(http::Verb::post, base + "/fsthaw", {{"op_id", "snap-2"}});
  EXPECT_EQ(body_of(res), json({{"thawed", 0}}));

  // No guest agent: a conflict that says so.
  hv_.domains[kUuid].guest_agent = false;
  res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "snap-3"}});
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(code_of(res), "conflict");
  EXPECT_EQ(body_of(res)["error"]["details"]["reason"], "guest_agent_unavailable");
  // Failures are not remembered: once the agent answers, the same op_id acts.
  hv_.domains[kUuid].guest_agent = true;
  res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "snap-3"}});
  EXPECT_EQ(res.result(), http::HttpStatus::ok);

  hv_.domains[kUuid].state = "stopped";
  res = call(http::Verb::post, base + "/fsthaw", {{"op_id", "snap-4"}});
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_FALSE(body_of(res)["error"]["details"].contains("reason"));
  hv_.domains.clear();
  res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "snap-5"}});
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);

  // Strict bodies, POST only, a checked uuid.
  const int calls = hv_.count("fs_freeze");
  res = call(http::Verb::post, base + "/fsfreeze", {{"op_id", "x"}, {"mountpoints", {"/"}}});
  EXPECT_EQ(res.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(body_of(res)["error"]["details"]["field"], "mountpoints");
  EXPECT_EQ(call(http::Verb::post, base + "/fsthaw", json::object()).result(),
            http::HttpStatus::bad_request);
  res = call(http::Verb::get, base + "/fsfreeze", nullptr);
  EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed);
  EXPECT_EQ(res[http::bhttp::field::allow], "POST");
  EXPECT_EQ(call(http::Verb::post, "/agent/v1/domains/nope/fsthaw", {{"op_id", "x"}}).result(),
            http::HttpStatus::bad_request);
  EXPECT_EQ(hv_.count("fs_freeze"), calls);
}

TEST_F(AgentServiceTest, BlockResizeTellsARunningDomainItsDiskGrew) {
  DomainDisk shared;
  shared.block_device = "/dev/pool1/disk1";
  shared.target_dev = "vda";
  hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {shared}};
  hv_.domains[kUuid].state = "running";
  constexpr std::uint64_t kTwoGiB = std::uint64_t{2} << 30;
  const std::string path = std::string("/agent/v1/domains/") + kUuid + "/block-resize";
  const json body = {{"op_id", "grow-1"}, {"device", "/dev/pool1/disk1"}, {"size_bytes", kTwoGiB}};

  auto res = call(http::Verb::post, path, body);
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(body_of(res), json({{"device", "/dev/pool1/disk1"}, {"size_bytes", kTwoGiB}}));
  EXPECT_EQ(hv_.domains[kUuid].disk_sizes["/dev/pool1/disk1"], kTwoGiB);
  // A retry answers the first answer.
  EXPECT_EQ(call(http::Verb::post, path, body).result(), http::HttpStatus::ok);
  EXPECT_EQ(hv_.count("block_resize"), 1);

  // Not a disk of the domain: 404; stopped: 409.
  res = call(http::Verb::post, path,
             {{"op_id", "grow-2"}, {"device", "/dev/pool1/other"}, {"size_bytes", kTwoGiB}});
  EXPECT_EQ(res.result(), http::HttpStatus::not_found);
  hv_.domains[kUuid].state = "stopped";
  res = call(http::Verb::post, path,
             {{"op_id", "grow-3"}, {"device", "/dev/pool1/disk1"}, {"size_bytes", 4096}});
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);

  // Strict bodies: every field required, nothing else, POST only.
  const int calls = hv_.count("block_resize");
  for (const json& bad :
       {json{{"op_id", "b1"}, {"size_bytes", 4096}},
        json{{"op_id", "b2"}, {"device", "/dev/pool1/disk1"}},
        json{{"op_id", "b3"}, {"device", "/dev/pool1/disk1"}, {"size_bytes", -1}},
        json{{"op_id", "b4"}, {"device", "/dev/pool1/disk1"}, {"size_bytes", "1G"}},
        json{{"op_id", "b5"},
             {"device", "/dev/pool1/disk1"},
             {"size_bytes", 4096},
             {"shrink", true}}}) {
    res = call(http::Verb::post, path, bad);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << bad.dump();
  }
  EXPECT_EQ(call(http::Verb::get, path, nullptr).result(), http::HttpStatus::method_not_allowed);
  EXPECT_EQ(hv_.count("block_resize"), calls);
}

TEST(OpCacheTest, ForgetsTheOldestBeyondCapacity) {
  OpCache cache(2);
  int acted = 0;
  auto act = [&] {
    ++acted;
    return http::json_response(http::HttpStatus::ok, json{{"n", acted}});
  };
  cache.run("a", "", act);
  cache.run("b", "", act);
  cache.run("c", "", act);
  EXPECT_EQ(cache.size(), 2u);
  cache.run("c", "", act);
  EXPECT_EQ(acted, 3);
  cache.run("a", "", act);  // evicted: acts again
  EXPECT_EQ(acted, 4);
}

// The service over the real libvirt wrapper (test driver): the path from HTTP request
// to a libvirt domain and back. Each test's domain is removed afterwards.
class AgentServiceOverLibvirt : public ::testing::Test {
 protected:
  static LibvirtOptions options() {
    LibvirtOptions o;
    o.uri = "test:///default";
    o.pool_path = "/var/lib/kvmfleet-test/images";
    return o;
  }
  ~AgentServiceOverLibvirt() override {
    (void)hv.destroy(uuid);
    (void)hv.undefine(uuid, true);
  }
  http::Response post(const std::string& target, const json& body) {
    return service.serve(make(http::Verb::post, target, body.dump()));
  }

  LibvirtHypervisor hv{options()};
  ManualClock clock;
  // Shared storage, for the VG of the block-disk test's device.
  doubles::FakeSharedStorage san;
  doubles::FakeVolumeManager lvm{san, 1};
  doubles::FakeIscsiInitiator iscsi;
  AgentService service{hv, StorageBackend{iscsi, lvm, clock}, kToken};
  const std::string uuid = new_uuid();
};

TEST_F(AgentServiceOverLibvirt, DefineStartDestroyUndefine) {
  json spec = spec_json(uuid);
  spec["name"] = "svc-" + uuid.substr(0, 8);
  auto def = post("/agent/v1/domains/define", {{"op_id", "o1"}, {"spec", spec}});
  ASSERT_EQ(def.result(), http::HttpStatus::ok) << def.body();
  EXPECT_TRUE(body_of(def)["managed"].get<bool>());
  const std::string base = "/agent/v1/domains/" + uuid;
  auto started = post(base + "/start", {{"op_id", "o1"}});
  ASSERT_EQ(started.result(), http::HttpStatus::ok) << started.body();
  EXPECT_EQ(body_of(started)["state"], "running");
  auto undef = post(base + "/undefine", {{"op_id", "o1"}, {"remove_volumes", true}});
  EXPECT_EQ(undef.result(), http::HttpStatus::conflict) << undef.body();
  EXPECT_EQ(code_of(undef), "conflict");
  auto destroyed = post(base + "/destroy", {{"op_id", "o1"}});
  ASSERT_EQ(destroyed.result(), http::HttpStatus::ok);
  EXPECT_EQ(body_of(destroyed)["state"], "stopped");
  ASSERT_EQ(post(base + "/undefine", {{"op_id", "o2"}, {"remove_volumes", true}}).result(),
            http::HttpStatus::ok);
  auto gone = service.serve(make(http::Verb::get, base));
  EXPECT_EQ(gone.result(), http::HttpStatus::not_found);
}

TEST_F(AgentServiceOverLibvirt, BlockDiskDomainFreezesAndThaws) {
  json spec = spec_json(uuid);
  spec["name"] = "svc-" + uuid.substr(0, 8);
  spec["disks"] = {
      {{"block_device", "/dev/kvmfleet-test-vg/svc"}, {"size_gib", 0}, {"target_dev", "vda"}}};
  san.add_device("/dev/sdb", std::uint64_t{10} << 30);
  ASSERT_TRUE(lvm.create_shared_vg("kvmfleet-test-vg", {"/dev/sdb"}).ok());
  auto def = post("/agent/v1/domains/define", {{"op_id", "o1"}, {"spec", spec}});
  ASSERT_EQ(def.result(), http::HttpStatus::ok) << def.body();
  const std::string base = "/agent/v1/domains/" + uuid;
  auto stopped = post(base + "/fsfreeze", {{"op_id", "o1"}});
  EXPECT_EQ(stopped.result(), http::HttpStatus::conflict) << stopped.body();
  ASSERT_EQ(post(base + "/start", {{"op_id", "o1"}}).result(), http::HttpStatus::ok);
  auto frozen = post(base + "/fsfreeze", {{"op_id", "o2"}});
  ASSERT_EQ(frozen.result(), http::HttpStatus::ok) << frozen.body();
  EXPECT_EQ(body_of(frozen)["frozen"], 2);
  auto thawed = post(base + "/fsthaw", {{"op_id", "o2"}});
  ASSERT_EQ(thawed.result(), http::HttpStatus::ok) << thawed.body();
  EXPECT_EQ(body_of(thawed)["thawed"], 2);
}

// ---- live migration ------------------------------------------------------------------

class AgentMigrationTest : public AgentServiceTest {
 protected:
  void SetUp() override {
    hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {}};
    hv_.domains[kUuid].state = "running";
  }
  static json migrate_body(const std::string& op_id = "op-m1") {
    return {{"op_id", op_id},
            {"destination_uri", "qemu+tcp://10.77.0.11/system"},
            {"migrate_uri", "tcp://10.77.0.11"},
            {"max_downtime_ms", 500},
            {"bandwidth_mib_s", 64},
            {"auto_converge", true},
            {"allow_post_copy", false}};
  }
  http::Response migrate(const json& body) {
    return call(http::Verb::post, path("/migrate"), body);
  }
  http::Response status() { return call(http::Verb::get, path("/migration"), nullptr); }
  http::Response abort(const std::string& op_id = "op-a1") {
    return call(http::Verb::post, path("/migration/abort"), {{"op_id", op_id}});
  }
  static std::string path(const std::string& action) {
    return std::string("/agent/v1/domains/") + kUuid + action;
  }
  static MigrationStatus status_of(const http::Response& res) {
    return body_of(res).get<MigrationStatus>();
  }
};

TEST_F(AgentMigrationTest, StartsAMigrationWithTheRequestedPolicy) {
  auto res = migrate(migrate_body());
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto st = status_of(res);
  EXPECT_EQ(st.state, MigrationState::running);
  EXPECT_EQ(st.op_id, "op-m1");
  ASSERT_EQ(hv_.migrations.count(kUuid), 1u);
  const auto& r = hv_.migrations.at(kUuid).request;
  EXPECT_EQ(r.op_id, "op-m1");
  EXPECT_EQ(r.destination_uri, "qemu+tcp://10.77.0.11/system");
  EXPECT_EQ(r.migrate_uri, "tcp://10.77.0.11");
  EXPECT_EQ(r.policy.max_downtime_ms, 500);
  EXPECT_EQ(r.policy.bandwidth_mib_s, 64);
  EXPECT_TRUE(r.policy.auto_converge);
  EXPECT_FALSE(r.policy.allow_post_copy);

  auto polled = status();
  ASSERT_EQ(polled.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(polled).state, MigrationState::running);
  hv_.finish_migration(kUuid, MigrationState::completed);
  polled = status();
  ASSERT_EQ(polled.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(polled).state, MigrationState::completed);
  EXPECT_EQ(body_of(polled).at("error"), nullptr);
}

TEST_F(AgentMigrationTest, RefusesBadRequestsBeforeTheHypervisor) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"destination_uri", "qemu+ssh://10.77.0.11/system"},
      {"destination_uri", "qemu:///system"},
      {"destination_uri", "qemu+tcp://10.77.0.11/system?socket=/x"},
      {"destination_uri", "qemu+tcp://10.77.0.300/system"},
      {"migrate_uri", "unix:///run/x.sock"},
      {"migrate_uri", "tcp://10.77.0.11:70000"},
      {"migrate_uri", "tcp://10.77.0.11/x"},
      {"max_downtime_ms", 0},
      {"max_downtime_ms", 600'001},
      {"bandwidth_mib_s", -1},
      {"bandwidth_mib_s", 100'001},
      {"auto_converge", "true"},
      {"op_id", "bad op"},
      {"op_id", nullptr},
  };
  for (const auto& c : cases) {
    auto b = migrate_body();
    b[c.field] = c.value;
    auto res = migrate(b);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << c.field << "=" << c.value.dump();
    EXPECT_EQ(code_of(res), "invalid_argument");
    EXPECT_EQ(body_of(res)["error"]["details"].value("field", ""), c.field) << c.value.dump();
  }
  auto unknown = migrate_body();
  unknown["flags"] = 255;
  EXPECT_EQ(migrate(unknown).result(), http::HttpStatus::bad_request);
  auto bad_uuid = call(http::Verb::post, "/agent/v1/domains/NOT-A-UUID/migrate", migrate_body());
  EXPECT_EQ(bad_uuid.result(), http::HttpStatus::bad_request);
  EXPECT_EQ(hv_.count("migrate"), 0);

  // The limits themselves are accepted.
  auto edge = migrate_body();
  edge["max_downtime_ms"] = 1;
  edge["bandwidth_mib_s"] = 0;
  EXPECT_EQ(migrate(edge).result(), http::HttpStatus::ok);
}

TEST_F(AgentMigrationTest, RepeatsWithTheSameOpIdStartNothing) {
  ASSERT_EQ(migrate(migrate_body()).result(), http::HttpStatus::ok);
  auto again = migrate(migrate_body());
  ASSERT_EQ(again.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(again).state, MigrationState::running);
  EXPECT_EQ(hv_.migrations_started, 1);

  // After the end, a repeat reports the outcome instead of migrating again.
  hv_.finish_migration(kUuid, MigrationState::completed);
  again = migrate(migrate_body());
  ASSERT_EQ(again.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(again).state, MigrationState::completed);
  EXPECT_EQ(hv_.migrations_started, 1);

  // The same op_id with another request is a conflict.
  auto other = migrate_body();
  other["max_downtime_ms"] = 999;
  auto res = migrate(other);
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(code_of(res), "conflict");
  EXPECT_EQ(hv_.migrations_started, 1);
}

TEST_F(AgentMigrationTest, AnotherOpIdWhileRunningIsAConflict) {
  ASSERT_EQ(migrate(migrate_body("op-m1")).result(), http::HttpStatus::ok);
  auto res = migrate(migrate_body("op-m2"));
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(code_of(res), "conflict");
  EXPECT_EQ(hv_.migrations_started, 1);
  EXPECT_EQ(status_of(status()).op_id, "op-m1");

  // Once it failed, a new operation may try again.
  hv_.finish_migration(kUuid, MigrationState::failed);
  auto failed = status_of(status());
  EXPECT_EQ(failed.state, MigrationState::failed);
  ASSERT_TRUE(failed.error.has_value());
  auto retry = migrate(migrate_body("op-m2"));
  ASSERT_EQ(retry.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(retry).op_id, "op-m2");
  EXPECT_EQ(hv_.migrations_started, 2);
}

TEST_F(AgentMigrationTest, AbortCancelsARunningMigration) {
  // Nothing to abort yet.
  EXPECT_EQ(abort("op-a0").result(), http::HttpStatus::conflict);
  ASSERT_EQ(migrate(migrate_body()).result(), http::HttpStatus::ok);
  auto res = abort();
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  auto st = status_of(res);
  EXPECT_EQ(st.state, MigrationState::cancelled);
  ASSERT_TRUE(st.error.has_value());
  EXPECT_EQ(st.error->code, ErrorCode::cancelled);
  // A retried abort answers the same without asking the hypervisor again.
  EXPECT_EQ(abort().result(), http::HttpStatus::ok);
  EXPECT_EQ(hv_.count("abort_migration"), 2);
  EXPECT_EQ(status_of(status()).state, MigrationState::cancelled);
  // Bodies are checked as for other calls.
  EXPECT_EQ(
      call(http::Verb::post, path("/migration/abort"), {{"op_id", "x"}, {"force", true}}).result(),
      http::HttpStatus::bad_request);
}

TEST_F(AgentMigrationTest, StatusAndMethods) {
  auto none = status();
  ASSERT_EQ(none.result(), http::HttpStatus::ok);
  EXPECT_EQ(status_of(none).state, MigrationState::none);
  EXPECT_EQ(body_of(none).at("state"), "none");

  hv_.domains.clear();
  EXPECT_EQ(status().result(), http::HttpStatus::not_found);
  EXPECT_EQ(call(http::Verb::post, path("/migration"), json::object()).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(call(http::Verb::get, path("/migrate"), nullptr).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(call(http::Verb::get, path("/migration/abort"), nullptr).result(),
            http::HttpStatus::method_not_allowed);
  EXPECT_EQ(call(http::Verb::get, "/agent/v1/domains/nope/migration", nullptr).result(),
            http::HttpStatus::bad_request);
}

TEST_F(AgentMigrationTest, MigratingAStoppedOrUnknownDomainFails) {
  hv_.domains.at(kUuid).state = "stopped";
  EXPECT_EQ(migrate(migrate_body()).result(), http::HttpStatus::conflict);
  hv_.domains.clear();
  EXPECT_EQ(migrate(migrate_body()).result(), http::HttpStatus::not_found);
  EXPECT_EQ(hv_.migrations_started, 0);
}

}  // namespace
}  // namespace kvmfleet::agent
