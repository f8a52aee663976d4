// The controller's agent client (HttpAgentApi, src/core/agent_api.cpp) against
// the agent's service in one process: both sides work from the rows of the protocol's
// table, so every request the controller makes reaches the row it meant, within that
// row's timeout, and the agent accepts its body.

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/call_router.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/core/agent_api.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/network/fake_link_control.hpp"
#include "tests/doubles/storage/fake_shared_storage.hpp"

namespace kvmfleet::agent {
namespace {

using agent_protocol::CallId;

constexpr const char* kToken = "kvf_host-token-for-tests";
constexpr const char* kUuid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
constexpr const char* kIqn = "iqn.2026-01.com.example:san";
constexpr std::string_view kAgentUrl = "http://agent.test:7100";
constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

// An http::Client that hands each request to an AgentService, as the network would,
// and notes the row of the table each one reached and the timeout it was given.
class InProcessAgent final : public http::Client {
 public:
  struct Reached {
    const agent_protocol::Call* call;
    std::string target;
    std::chrono::milliseconds timeout;
  };

  explicit InProcessAgent(AgentService& service) : service_(service) {}

  Result<http::ClientResponse> request(std::string_view method, const std::string& url,
                                       const std::string& bearer, const std::string& body,
                                       std::chrono::milliseconds timeout) override {
    if (!url.starts_with(kAgentUrl)) return unavailable("no agent at " + url);
    const std::string target = url.substr(kAgentUrl.size());
    http::Request req{http::bhttp::string_to_verb({method.data(), method.size()}), target, 11};
    req.set(http::bhttp::field::authorization, "Bearer " + bearer);
    if (!body.empty()) {
      req.set(http::bhttp::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    auto res = service_.serve(req);
    {
      std::lock_guard lk(mu_);
      reached_.push_back({match_call(method, target).call, target, timeout});
    }
    return http::ClientResponse{res.result_int(), res.body()};
  }

  std::vector<Reached> reached() const {
    std::lock_guard lk(mu_);
    return reached_;
  }

 private:
  AgentService& service_;
  mutable std::mutex mu_;
  std::vector<Reached> reached_;
};

class AgentClientTest : public ::testing::Test {
 protected:
  AgentClientTest() {
    host_.name = "node1";
    host_.agent_url = std::string(kAgentUrl) + "/";
    host_.agent_secret = kToken;
    DomainDisk shared;
    shared.block_device = "/dev/pool1/disk1";
    shared.target_dev = "vda";
    hv_.domains[kUuid].spec = DomainSpec{kUuid, "web1", 1, 64, "qemu", 1, {shared}};
    hv_.domains[kUuid].state = "running";
    san_.add_device("/dev/sdb", 10 * kGiB);
    iscsi_.add_target("10.77.0.1:3260", kIqn);
    backend_.fc_by_id_dir = "/nonexistent/kvmfleet/by-id";
    links_.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
    service_.set_link_control(links_);
  }

  doubles::FakeHypervisor hv_;
  ManualClock clock_;  // nothing here waits
  doubles::FakeSharedStorage san_;
  doubles::FakeVolumeManager lvm_{san_, 1};
  doubles::FakeIscsiInitiator iscsi_;
  StorageBackend backend_{iscsi_, lvm_, clock_};
  doubles::FakeLinkControl links_;
  AgentService service_{hv_, backend_, kToken};
  InProcessAgent network_{service_};
  HttpAgentApi api_{network_};
  Host host_;
};

TEST_F(AgentClientTest, EveryRequestOfTheClientIsARowTheAgentServes) {
  const std::string other = "0b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e";
  DomainSpec spec{other, "web2", 1, 64, "qemu", 1, {}};

  // Domains.
  ASSERT_TRUE(api_.inventory(host_).ok());
  ASSERT_TRUE(api_.get_domain(host_, kUuid).ok());
  ASSERT_TRUE(api_.define(host_, "op1", spec).ok());
  ASSERT_TRUE(api_.start(host_, "op1", other).ok());
  ASSERT_TRUE(api_.shutdown(host_, "op1", other).ok());
  ASSERT_TRUE(api_.reboot(host_, "op1", other).ok());
  ASSERT_TRUE(api_.destroy(host_, "op1", other).ok());
  ASSERT_TRUE(api_.undefine(host_, "op1", other, true).ok());
  auto frozen = api_.fs_freeze(host_, "op2", kUuid);
  ASSERT_TRUE(frozen.ok()) << frozen.error().message;
  EXPECT_EQ(*frozen, 2);
  ASSERT_TRUE(api_.fs_thaw(host_, "op2", kUuid).ok());
  ASSERT_TRUE(api_.block_resize(host_, "op2", kUuid, "/dev/pool1/disk1", 2 * kGiB).ok());
  MigrationRequest request;
  request.op_id = "op3";
  request.destination_uri = "qemu+tcp://10.77.0.11/system";
  request.migrate_uri = "tcp://10.77.0.11";
  request.policy.converge_timeout_s = 60;
  auto migration = api_.migrate(host_, kUuid, request);
  ASSERT_TRUE(migration.ok()) << migration.error().message;
  EXPECT_EQ(hv_.migrations.at(kUuid).request.policy.converge_timeout_s, 60);
  ASSERT_TRUE(api_.migration_status(host_, kUuid).ok());
  ASSERT_TRUE(api_.abort_migration(host_, "op3", kUuid).ok());
  // NIC hot plug.
  const DomainNic hot{"52:54:00:00:00:09", "br-lab", NicModel::e1000, 1500};
  auto attached = api_.attach_nic(host_, "op3a", kUuid, hot, 5);
  ASSERT_TRUE(attached.ok()) << attached.error().message;
  EXPECT_EQ(hv_.domains.at(kUuid).spec.nics, (std::vector<DomainNic>{hot}));
  EXPECT_EQ(hv_.domains.at(kUuid).spec.generation, 5);
  ASSERT_TRUE(api_.detach_nic(host_, "op3a", kUuid, hot.mac, 6).ok());
  EXPECT_TRUE(hv_.domains.at(kUuid).spec.nics.empty());
  // A migration's CD-ROMs: made on a destination (after the domain left it here),
  // then named in the request, then given up.
  DomainSpec with_media = spec;
  with_media.cdrom = CdromSpec{"installer", std::string(64, 'c'), 4096};
  with_media.cloud_init = CloudInit{"", "", "web2", "", {}};
  auto media = api_.prepare_media(host_, "op3m", with_media);
  ASSERT_TRUE(media.ok()) << media.error().message;
  EXPECT_EQ(media->cdrom, "/fake/pool/cache/" + std::string(64, 'c') + ".img");
  EXPECT_EQ(media->seed, "/fake/pool/" + other + "-seed.iso");
  ASSERT_TRUE(api_.remove_media(host_, "op3m", other, std::string(64, 'c')).ok());
  EXPECT_TRUE(hv_.media_files.empty());
  request.op_id = "op3n";
  request.media = *media;
  ASSERT_TRUE(api_.migrate(host_, kUuid, request).ok());
  EXPECT_EQ(hv_.migrations.at(kUuid).request.media, *media);

  // Shared storage.
  IscsiPoolTarget target{"10.77.0.1", kIqn, 1, {}, {}};
  ASSERT_TRUE(api_.storage_inventory(host_).ok());
  ASSERT_TRUE(api_.iscsi_discover(host_, "op4", "10.77.0.1").ok());
  auto device = api_.iscsi_login(host_, "op4", target);
  ASSERT_TRUE(device.ok()) << device.error().message;
  ASSERT_TRUE(api_.iscsi_logout(host_, "op4", target).ok());
  // This host sees no FC LUN: the agent's own answer, naming the WWID.
  auto fc = api_.fc_attach(host_, "op5", {"0x5000c500a1b2c3d4"});
  ASSERT_FALSE(fc.ok());
  EXPECT_EQ(fc.error().code, ErrorCode::not_found);
  EXPECT_EQ(fc.error().details.value("wwid", ""), "0x5000c500a1b2c3d4");
  ASSERT_TRUE(api_.vg_create(host_, "op6", "kvmvg", {"/dev/sdb"}).ok());
  ASSERT_TRUE(api_.vg_get(host_, "kvmvg").ok());
  ASSERT_TRUE(api_.vg_lockstop(host_, "op6", "kvmvg").ok());
  ASSERT_TRUE(api_.vg_lockstart(host_, "op6", "kvmvg").ok());
  auto made = api_.lv_create(host_, "op7", "kvmvg", "vol1", kGiB);
  ASSERT_TRUE(made.ok()) << made.error().message;
  auto lvs = api_.lv_list(host_, "kvmvg");
  ASSERT_TRUE(lvs.ok());
  ASSERT_EQ(lvs->size(), 1u);
  ASSERT_TRUE(api_.lv_grow(host_, "op7", "kvmvg", "vol1", 2 * kGiB).ok());
  ASSERT_TRUE(api_.lv_activate(host_, "op7", "kvmvg", "vol1", LvMode::inactive).ok());
  ASSERT_TRUE(api_.lv_snapshot(host_, "op7", "kvmvg", "vol1", "vol1-snap", 256u << 20).ok());
  ASSERT_TRUE(api_.lv_merge(host_, "op7", "kvmvg", "vol1-snap").ok());
  ASSERT_TRUE(api_.lv_delete(host_, "op7", "kvmvg", "vol1").ok());

  // Networks.
  Network lab;
  lab.name = "lab";
  lab.bridge = "br-lab";
  lab.vlan = 42;
  lab.uplink = "eth1";
  auto created = api_.network_ensure(host_, "op8", lab);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(*created, (std::vector<std::string>{"eth1.42", "br-lab"}));
  auto inv = api_.inventory(host_);
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(network_unusable_reason(lab, inv->links), "");

  std::set<CallId> used;
  for (const auto& r : network_.reached()) {
    ASSERT_NE(r.call, nullptr) << r.target;
    EXPECT_EQ(r.timeout, agent_protocol::timeout_for(r.call->timeout)) << r.call->name;
    used.insert(r.call->id);
  }
  // The controller reaches every row but three reads that serve operators and the lab;
  // the console's two rows are reached by console::HttpAgentConsole, not HttpAgentApi.
  const std::set<CallId> not_used = {CallId::iscsi_sessions, CallId::fc_luns, CallId::lv_get,
                                     CallId::console, CallId::console_log};
  for (const auto& call : agent_protocol::kCalls)
    EXPECT_EQ(used.count(call.id), not_used.count(call.id) ? 0u : 1u) << call.name;
}

}  // namespace
}  // namespace kvmfleet::agent
