// The agent's router: every row of the protocol's table (protocol.hpp) is reachable at
// its own path and answered by its own handler; a wrong method is a 405, an unknown
// path a 404, and neither ever reaches a backend.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/call_router.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/model/json.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/network/fake_link_control.hpp"
#include "tests/doubles/storage/fake_shared_storage.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;
using proto_call = agent_protocol::Call;
using agent_protocol::CallId;
using agent_protocol::kCalls;
using agent_protocol::PathParams;

constexpr const char* kToken = "kvf_host-token-for-tests";
constexpr const char* kUuid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
constexpr const char* kOtherUuid = "0b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e";
constexpr const char* kIqn = "iqn.2026-01.com.example:san";
constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

bool has_param(const proto_call& call, std::string_view name) {
  return call.path.find(name) != std::string_view::npos;
}

// The parameters a row's path has, filled with `all`'s values.
PathParams params_of(const proto_call& call, const PathParams& all) {
  PathParams p;
  if (has_param(call, "{uuid}")) p.uuid = all.uuid;
  if (has_param(call, "{vg}")) p.vg = all.vg;
  if (has_param(call, "{lv}")) p.lv = all.lv;
  return p;
}

std::string other_method(const proto_call& call) {
  return call.method == "GET" ? "POST" : "GET";
}

TEST(CallRouter, EveryRowIsFoundAtItsOwnPath) {
  const PathParams all{kUuid, "kvmvg", "vol1"};
  for (const auto& call : kCalls) {
    const auto params = params_of(call, all);
    const auto path = path_for(call, params);
    const auto m = match_call(call.method, path);
    ASSERT_NE(m.call, nullptr) << call.name << " " << path;
    EXPECT_EQ(m.call, &call) << call.name << " matched " << m.call->name;
    EXPECT_EQ(m.params, params) << call.name;
    // A query does not belong to the path the router sees; the service strips it.
    EXPECT_EQ(path.find('?'), std::string::npos);
  }
}

TEST(CallRouter, AnotherMethodIsAMethodNotAllowedNamingTheRowsMethod) {
  const PathParams all{kUuid, "kvmvg", "vol1"};
  for (const auto& call : kCalls) {
    const auto path = path_for(call, params_of(call, all));
    const auto m = match_call("DELETE", path);
    EXPECT_EQ(m.call, nullptr) << call.name;
    EXPECT_NE(m.allow.find(call.method), std::string::npos) << call.name << ": " << m.allow;

    const auto other = match_call(other_method(call), path);
    if (other.call != nullptr) {
      // Only where a name may spell a literal: GET /vgs/create reads the VG "create".
      EXPECT_TRUE(call.path.ends_with("/create")) << call.name << " → " << other.call->name;
      EXPECT_NE(other.call, &call);
      continue;
    }
    EXPECT_EQ(other.allow, call.method) << call.name;
  }
}

TEST(CallRouter, UnknownPathsMatchNothing) {
  const std::string dom = std::string("/agent/v1/domains/") + kUuid;
  for (const std::string& path :
       {std::string(""), std::string("/"), std::string("agent/v1/inventory"),
        std::string("/agent/v1/inventory/"), std::string("/agent/v1/inventory/x"),
        std::string("/agent/v1/nothing"), dom + "/explode", dom + "/start/now", dom + "/",
        dom + "/migration/abort/x", std::string("/agent/v1/domains//start"),
        std::string("/agent/v1/storage/"), std::string("/agent/v1/storage/vgs"),
        std::string("/agent/v1/storage/vgs//lvs"), std::string("/agent/v1/storage/vgs/v/lvs/")}) {
    for (const char* method : {"GET", "POST", "DELETE"}) {
      const auto m = match_call(method, path);
      EXPECT_EQ(m.call, nullptr) << method << " " << path;
      EXPECT_TRUE(m.allow.empty()) << method << " " << path << ": " << m.allow;
    }
  }
}

TEST(CallRouter, ALiteralWinsOverAUuidButNotOverAnLvmName) {
  // No UUID spells "define": the define call's path, asked with GET, is a 405.
  auto m = match_call("GET", "/agent/v1/domains/define");
  EXPECT_EQ(m.call, nullptr);
  EXPECT_EQ(m.allow, "POST");
  m = match_call("POST", "/agent/v1/domains/define");
  ASSERT_NE(m.call, nullptr);
  EXPECT_EQ(m.call->id, CallId::define);
  EXPECT_EQ(m.params, PathParams{});
  // A path segment that is no UUID is still the uuid: the service answers 400 for it.
  m = match_call("GET", "/agent/v1/domains/..%2f..%2fx");
  ASSERT_NE(m.call, nullptr);
  EXPECT_EQ(m.call->id, CallId::domain_get);
  EXPECT_EQ(m.params.uuid, "..%2f..%2fx");

  // A VG and an LV may be called "create".
  m = match_call("GET", "/agent/v1/storage/vgs/create");
  ASSERT_NE(m.call, nullptr);
  EXPECT_EQ(m.call->id, CallId::vg_get);
  EXPECT_EQ(m.params.vg, "create");
  m = match_call("POST", "/agent/v1/storage/vgs/create");
  ASSERT_NE(m.call, nullptr);
  EXPECT_EQ(m.call->id, CallId::vg_create);
  m = match_call("GET", "/agent/v1/storage/vgs/create/lvs/create");
  ASSERT_NE(m.call, nullptr);
  EXPECT_EQ(m.call->id, CallId::lv_get);
  EXPECT_EQ(m.params, (PathParams{"", "create", "create"}));
  m = match_call("PUT", "/agent/v1/storage/vgs/create");
  EXPECT_EQ(m.call, nullptr);
  EXPECT_EQ(m.allow, "GET, POST");
}

// ---- through AgentService ------------------------------------------------------------

http::Request make(const std::string& method, const std::string& target, const json& body) {
  http::Request req{http::bhttp::string_to_verb(method), target, 11};
  req.set(http::bhttp::field::authorization, std::string("Bearer ") + kToken);
  if (!body.is_null()) {
    req.set(http::bhttp::field::content_type, "application/json");
    req.body() = body.dump();
    req.prepare_payload();
  }
  return req;
}

json body_of(const http::Response& res) {
  return json::parse(res.body());
}

// Whether the router itself answered (rather than a row's handler).
bool answered_by_router(const http::Response& res) {
  if (res.result() == http::HttpStatus::method_not_allowed) return true;
  const auto body = body_of(res);
  if (!body.contains("error") || !body["error"].is_object()) return false;
  const auto& error = body["error"];
  return (res.result() == http::HttpStatus::not_found &&
          error.value("message", "") == "no such agent endpoint") ||
         error.value("message", "") == "storage is not configured on this host" ||
         error.value("message", "") == "networking is not configured on this host";
}

class AgentRoutesTest : public ::testing::Test {
 protected:
  AgentRoutesTest() {
    DomainDisk shared;
    shared.block_device = "/dev/pool1/disk1";
    shared.target_dev = "vda";
    hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {shared}};
    hv_.domains[kUuid].state = "running";
    san_.add_device("/dev/sdb", 10 * kGiB);
    iscsi_.add_target("10.77.0.1:3260", kIqn);
    backend_.fc_by_id_dir = "/nonexistent/kvmfleet/by-id";
    links_.add({"br0", LinkKind::bridge, 1500, true, std::nullopt, "", ""});
    service_.set_link_control(links_);
  }

  http::Response send(const proto_call& call, const PathParams& params, json body) {
    if (call.method == "POST" && !body.contains("op_id"))
      body["op_id"] = "op-" + std::string(call.name);
    return service_.serve(make(std::string(call.method), path_for(call, params),
                               call.method == "POST" ? body : json()));
  }

  doubles::FakeHypervisor hv_;
  ManualClock clock_;  // nothing here waits
  doubles::FakeSharedStorage san_;
  doubles::FakeVolumeManager lvm_{san_, 1};
  doubles::FakeIscsiInitiator iscsi_;
  StorageBackend backend_{iscsi_, lvm_, clock_};
  doubles::FakeLinkControl links_;
  AgentService service_{hv_, backend_, kToken};
};

// One request per row, in an order in which each succeeds: the row's handler, and
// only it, acted.
TEST_F(AgentRoutesTest, EveryRowIsAnsweredByItsOwnHandler) {
  json spec = {{"uuid", kOtherUuid}, {"name", "web2"},        {"vcpus", 1},
               {"memory_mib", 64},   {"domain_type", "qemu"}, {"generation", 1}};
  struct Step {
    CallId id;
    PathParams params;
    json body;
    // For a hypervisor call: the FakeHypervisor's count that moves by one.
    const char* counted;
    http::HttpStatus status = http::HttpStatus::ok;
  };
  const PathParams dom{kUuid, "", ""};
  const PathParams other{kOtherUuid, "", ""};
  // A domain not defined here (one that left, or has yet to arrive), with a seed.
  const PathParams gone{"1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a", "", ""};
  json seeded = spec;
  seeded["uuid"] = gone.uuid;
  seeded["name"] = "web3";
  seeded["cloud_init"] = {{"hostname", "web3"}};
  const PathParams vg{"", "kvmvg", ""};
  const PathParams vol{"", "kvmvg", "vol1"};
  const std::vector<Step> steps = {
      {CallId::inventory, {}, nullptr, "inventory"},
      {CallId::domain_get, dom, nullptr, "get"},
      {CallId::define, {}, {{"spec", spec}}, "define"},
      {CallId::start, other, json::object(), "start"},
      {CallId::shutdown, other, json::object(), "shutdown"},
      {CallId::reboot, other, json::object(), "reboot"},
      {CallId::destroy, other, json::object(), "destroy"},
      {CallId::undefine, other, {{"remove_volumes", true}}, "undefine"},
      {CallId::fs_freeze, dom, json::object(), "fs_freeze"},
      {CallId::fs_thaw, dom, json::object(), "fs_thaw"},
      {CallId::block_resize,
       dom,
       {{"device", "/dev/pool1/disk1"}, {"size_bytes", 2 * kGiB}},
       "block_resize"},
      {CallId::migrate,
       dom,
       {{"destination_uri", "qemu+tcp://10.77.0.11/system"}, {"migrate_uri", "tcp://10.77.0.11"}},
       "migrate"},
      {CallId::migration, dom, nullptr, "migration_status"},
      {CallId::migration_abort, dom, json::object(), "abort_migration"},
      {CallId::nic_attach,
       dom,
       {{"nic", {{"mac", "52:54:00:00:00:09"}, {"bridge", "br0"}}}, {"generation", 2}},
       "attach_nic"},
      {CallId::nic_detach, dom, {{"mac", "52:54:00:00:00:09"}, {"generation", 3}}, "detach_nic"},
      {CallId::media_prepare, gone, {{"spec", seeded}}, "prepare_media"},
      {CallId::media_remove, gone, {{"cdrom_sha256", std::string(64, 'c')}}, "remove_media"},
      {CallId::storage_inventory, {}, nullptr, nullptr},
      {CallId::iscsi_discover, {}, {{"portal", "10.77.0.1"}}, nullptr},
      {CallId::iscsi_login, {}, {{"target", kIqn}, {"portal", "10.77.0.1"}}, nullptr},
      {CallId::iscsi_sessions, {}, nullptr, nullptr},
      {CallId::iscsi_logout, {}, {{"target", kIqn}, {"portal", "10.77.0.1"}}, nullptr},
      {CallId::fc_luns, {}, nullptr, nullptr},
      // This host sees no FC LUN: the handler's own 404, naming the WWID.
      {CallId::fc_attach,
       {},
       {{"wwids", {"0x5000c500a1b2c3d4"}}},
       nullptr,
       http::HttpStatus::not_found},
      {CallId::vg_create, {}, {{"vg", "kvmvg"}, {"devices", {"/dev/sdb"}}}, nullptr},
      {CallId::vg_get, vg, nullptr, nullptr},
      {CallId::vg_lockstop, vg, json::object(), nullptr},
      {CallId::vg_lockstart, vg, json::object(), nullptr},
      {CallId::lv_create, vg, {{"lv", "vol1"}, {"size_bytes", kGiB}}, nullptr},
      {CallId::lv_list, vg, nullptr, nullptr},
      {CallId::lv_get, vol, nullptr, nullptr},
      {CallId::lv_grow, vol, {{"size_bytes", 2 * kGiB}}, nullptr},
      {CallId::lv_activate, vol, {{"mode", "inactive"}}, nullptr},
      {CallId::lv_snapshot, vol, {{"snapshot", "vol1-snap"}, {"size_bytes", 256u << 20}}, nullptr},
      {CallId::lv_merge, {"", "kvmvg", "vol1-snap"}, json::object(), nullptr},
      {CallId::lv_delete, vol, json::object(), nullptr},
      {CallId::network_ensure, {}, {{"bridge", "br0"}, {"mtu", 1500}}, nullptr},
      // The console is a WebSocket: a plain GET is the handler's own 400.
      {CallId::console, dom, nullptr, nullptr, http::HttpStatus::bad_request},
      {CallId::console_log, dom, nullptr, "console_log"},
  };
  // Every row has its step, and only one.
  for (const auto& call : kCalls) {
    EXPECT_EQ(
        std::count_if(steps.begin(), steps.end(), [&](const Step& s) { return s.id == call.id; }),
        1)
        << call.name;
  }
  for (const auto& step : steps) {
    const auto& call = agent_protocol::call(step.id);
    const auto counts = hv_.calls;
    auto res = send(call, step.params, step.body);
    EXPECT_EQ(res.result(), step.status) << call.name << ": " << res.body();
    EXPECT_FALSE(answered_by_router(res)) << call.name << ": " << res.body();
    auto expected = counts;
    if (step.counted != nullptr) ++expected[step.counted];
    EXPECT_EQ(hv_.calls, expected) << call.name;
  }
  EXPECT_EQ(body_of(send(agent_protocol::kFcAttach, {},
                         {{"op_id", "again"}, {"wwids", {"0x5000c500a1b2c3d4"}}}))
                .at("error")
                .at("details")
                .at("wwid"),
            "0x5000c500a1b2c3d4");
}

TEST_F(AgentRoutesTest, AWrongMethodIsA405AndActsOnNothing) {
  const PathParams all{kUuid, "kvmvg", "vol1"};
  for (const auto& call : kCalls) {
    const auto path = path_for(call, params_of(call, all));
    for (const std::string& method :
         {other_method(call), std::string("DELETE"), std::string("PUT")}) {
      if (match_call(method, path).call != nullptr) continue;  // GET /vgs/create: the VG "create"
      auto res = service_.serve(make(method, path, json{{"op_id", "wrong-method"}}));
      EXPECT_EQ(res.result(), http::HttpStatus::method_not_allowed) << method << " " << path;
      EXPECT_EQ(body_of(res)["error"]["code"], "method_not_allowed") << method << " " << path;
      EXPECT_NE(std::string(res[http::bhttp::field::allow]).find(call.method), std::string::npos)
          << method << " " << path;
    }
  }
  EXPECT_TRUE(hv_.calls.empty());
  EXPECT_TRUE(lvm_.added_devices.empty());
  EXPECT_FALSE(san_.vg("kvmvg").has_value());
}

// Only a logical volume of a VG this host's shared storage holds, as /dev/VG/LV,
// reaches the hypervisor; anything else is a 400 naming the disk's field.
TEST_F(AgentRoutesTest, DefineTakesOnlyLogicalVolumesOfThisHostsVgs) {
  ASSERT_TRUE(lvm_.create_shared_vg("pool1", {"/dev/sdb"}).ok());
  json disk = {{"volume", ""}, {"size_gib", 0}, {"bus", "virtio"}, {"target_dev", "vda"}};
  json spec = {{"uuid", kOtherUuid}, {"name", "web2"},        {"vcpus", 1},
               {"memory_mib", 64},   {"domain_type", "qemu"}, {"generation", 1}};
  int n = 0;
  auto define = [&](const std::string& device) {
    disk["block_device"] = device;
    spec["disks"] = json::array({disk});
    return send(agent_protocol::kDefine, {},
                {{"op_id", "define-" + std::to_string(++n)}, {"spec", spec}});
  };
  for (const char* device : {"/dev/sda", "/dev/mapper/x", "/dev/pool1/--force", "/dev/pool1/-x",
                             "/dev/-pool/lv", "/dev/pool1/a/b", "/dev/pool1/", "/dev//pool1/x",
                             "/dev/other/lv1", "/dev/disk/by-id/x", "/dev/pool1/lv1/.."}) {
    auto res = define(device);
    EXPECT_EQ(res.result(), http::HttpStatus::bad_request) << device << " " << res.body();
    EXPECT_EQ(body_of(res)["error"]["code"], "invalid_argument") << device;
    EXPECT_EQ(body_of(res)["error"]["details"]["field"], "spec.disks[0].block_device") << device;
  }
  EXPECT_EQ(hv_.count("define"), 0);
  auto res = define("/dev/pool1/lv1");
  EXPECT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  EXPECT_EQ(hv_.count("define"), 1);
}

// The agent matches Content-Type as the controller does: the media type, any case,
// parameters allowed; a type that only starts like application/json is 415.
TEST_F(AgentRoutesTest, ContentTypeIsMatchedAsAMediaType) {
  int n = 0;
  auto inventory_call = [&](const std::string& type) {
    auto req = make("POST", path_for(agent_protocol::kVgLockStart, {{}, "kvmvg", {}}),
                    {{"op_id", "ct-" + std::to_string(++n)}});
    req.set(http::bhttp::field::content_type, type);
    return service_.serve(std::move(req));
  };
  for (const char* bad : {"application/jsonp", "text/plain", "application/json-patch+json"}) {
    auto res = inventory_call(bad);
    EXPECT_EQ(res.result(), http::HttpStatus::unsupported_media_type) << bad;
  }
  for (const char* ok : {"APPLICATION/JSON", "application/json; charset=utf-8"}) {
    auto res = inventory_call(ok);
    EXPECT_NE(res.result(), http::HttpStatus::unsupported_media_type) << ok << res.body();
  }
}

TEST(SpecValidation, BlockDevicesAreLogicalVolumePathsOfTheGivenVgs) {
  DomainDisk disk;
  disk.target_dev = "vda";
  DomainSpec spec{kOtherUuid, "web2", 1, 64, "qemu", 1, {disk}};
  spec.disks[0].block_device = "/dev/pool1/lv1";
  EXPECT_TRUE(validate_domain_spec(spec).ok());
  EXPECT_TRUE(check_block_device_vgs(spec, {"pool1"}).ok());
  EXPECT_FALSE(check_block_device_vgs(spec, {"pool2"}).ok());
  for (const char* bad : {"/dev/sda", "/dev/mapper/x", "/dev/pool1/--force", "/dev/lvm/x"}) {
    spec.disks[0].block_device = bad;
    auto st = validate_domain_spec(spec);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().details["field"], "spec.disks[0].block_device") << bad;
  }
}

}  // namespace
}  // namespace kvmfleet::agent
