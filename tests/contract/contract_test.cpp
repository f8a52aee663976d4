// The REST API contract, api/openapi.yaml, checked against the real controller: the
// test drives every endpoint of a real kvmfleet-controller, records each exchange, and
// has openapi_check.py validate the recording against the contract. A field, status or
// content type that the controller produces and the contract does not declare fails.
#include "checker.hpp"
#include "controller_process.hpp"
#include "recording_client.hpp"

#include "kvmfleet/common/process.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

namespace kvmfleet::contract {
namespace {

using nlohmann::json;

// A loopback port that is bound but never listens: a connection to it is refused at
// once, and nothing else can take the port while the test holds it. Registered hosts
// point their agent_url here, so the controller's calls to "the agent" fail for real.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    socklen_t len = sizeof addr;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

bool is_terminal_state(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

class ControllerContract : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(refusing_.port(), 0) << "cannot bind a loopback port";
    // Small limits so that 413 and 408 can be provoked cheaply; liveness windows long
    // enough that the host stays up for the whole test after one heartbeat; one agent
    // attempt so that operations against the missing agent end quickly.
    auto c = ControllerProcess::start(KVMFLEET_CONTROLLER_BIN, {{"body_limit_bytes", 16384},
                                                                {"read_timeout_ms", 2000},
                                                                {"unreachable_after_ms", 1800000},
                                                                {"down_after_ms", 3600000},
                                                                {"agent_retry_attempts", 1},
                                                                {"agent_retry_backoff_ms", 1}});
    ASSERT_TRUE(c.ok()) << c.error().message;
    controller_ = std::move(*c);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    record_path_ = kRecordDir + "/recorded-" + info->name() + ".jsonl";
    http_ = std::make_unique<RecordingClient>(controller_->port(), record_path_);
  }

  void TearDown() override {
    if (HasFailure() && controller_)
      std::fprintf(stderr, "controller log:\n%s\n", controller_->log().c_str());
  }

  HttpAnswer send(const HttpCall& call) {
    auto a = http_->send(call);
    if (!a) {
      ADD_FAILURE() << call.method << " " << call.target << ": " << a.error().message;
      return {};
    }
    return *a;
  }
  HttpAnswer get(const std::string& target, const std::string& templ, const std::string& token) {
    return send({.method = "GET", .target = target, .path_template = templ, .token = token});
  }
  HttpAnswer post(const std::string& target, const std::string& templ, const std::string& token,
                  const json& body) {
    return send({.method = "POST",
                 .target = target,
                 .path_template = templ,
                 .token = token,
                 .body = body.dump()});
  }
  HttpAnswer del(const std::string& target, const std::string& templ, const std::string& token) {
    return send({.method = "DELETE", .target = target, .path_template = templ, .token = token});
  }

  std::string agent_url() const { return "http://127.0.0.1:" + std::to_string(refusing_.port()); }

  RefusingPort refusing_;
  std::unique_ptr<ControllerProcess> controller_;
  std::string record_path_;
  std::unique_ptr<RecordingClient> http_;
};

TEST_F(ControllerContract, EveryEndpointAnswersAsTheContractSays) {
  const std::string admin = controller_->admin_token();
  const std::string missing_uuid = "00000000-0000-4000-8000-000000000000";

  // ---- health, metrics, authentication, routing --------------------------------------
  auto health = get("/v1/healthz", "/v1/healthz", "");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.json().value("status", ""), "ok");
  EXPECT_EQ(
      send(
          {.method = "POST", .target = "/v1/healthz", .path_template = "/v1/healthz", .body = "{}"})
          .status,
      405u);
  EXPECT_EQ(get("/v1/hosts", "/v1/hosts", "").status, 401u);
  EXPECT_EQ(get("/v1/hosts", "/v1/hosts", "kvf_this-token-was-never-issued").status, 401u);
  auto metrics = get("/metrics", "/metrics", admin);
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_TRUE(metrics.content_type.starts_with("text/plain")) << metrics.content_type;
  EXPECT_NE(metrics.body.find("kvmfleet_http_requests_total"), std::string::npos);
  EXPECT_NE(metrics.body.find("kvmfleet_ha_restarts_total"), std::string::npos);
  auto ha = get("/v1/ha", "/v1/ha", admin);
  EXPECT_EQ(ha.status, 200u);
  EXPECT_EQ(ha.json().value("held_by_guard", true), false);
  EXPECT_EQ(get("/v1/ha", "/v1/ha", "").status, 401u);
  EXPECT_EQ(get("/v1/no-such-thing", "/v1/no-such-thing", admin).status, 404u);
  EXPECT_EQ(get("/v2/hosts", "/v2/hosts", admin).status, 404u);

  // ---- tokens -------------------------------------------------------------------------
  auto created = post("/v1/tokens", "/v1/tokens", admin, {{"name", "ops"}, {"role", "operator"}});
  ASSERT_EQ(created.status, 201u) << created.body;
  const std::string operator_token = created.json().value("token", "");
  created = post("/v1/tokens", "/v1/tokens", admin, {{"name", "watcher"}, {"role", "viewer"}});
  ASSERT_EQ(created.status, 201u) << created.body;
  const std::string viewer_token = created.json().value("token", "");
  EXPECT_EQ(post("/v1/tokens", "/v1/tokens", admin, {{"name", "sneaky"}, {"role", "agent"}}).status,
            400u);
  EXPECT_EQ(
      post("/v1/tokens", "/v1/tokens", admin, {{"name", "Bad Name"}, {"role", "viewer"}}).status,
      400u);
  EXPECT_EQ(post("/v1/tokens", "/v1/tokens", operator_token, {{"name", "mine"}, {"role", "admin"}})
                .status,
            403u);
  EXPECT_EQ(get("/v1/tokens", "/v1/tokens", viewer_token).status, 403u);
  auto temp =
      post("/v1/tokens", "/v1/tokens", admin, {{"name", "short-lived"}, {"role", "viewer"}});
  ASSERT_EQ(temp.status, 201u);
  const std::string temp_id = temp.json().value("id", "");
  EXPECT_EQ(del("/v1/tokens/" + temp_id, "/v1/tokens/{id}", admin).status, 200u);
  EXPECT_EQ(del("/v1/tokens/" + temp_id, "/v1/tokens/{id}", admin).status, 404u);
  EXPECT_EQ(get("/v1/hosts", "/v1/hosts", temp.json().value("token", "")).status, 401u);  // revoked
  EXPECT_EQ(del("/v1/tokens/not-a-uuid", "/v1/tokens/{id}", admin).status, 400u);
  EXPECT_EQ(get("/v1/tokens/" + temp_id, "/v1/tokens/{id}", admin).status, 405u);

  // ---- hosts and agents ---------------------------------------------------------------
  auto reg = post("/v1/hosts", "/v1/hosts", admin, {{"name", "node1"}, {"agent_url", agent_url()}});
  ASSERT_EQ(reg.status, 201u) << reg.body;
  const std::string agent_token = reg.json().value("agent_token", "");
  EXPECT_EQ(reg.json()["host"].value("state", ""), "down");
  EXPECT_EQ(
      post("/v1/hosts", "/v1/hosts", admin, {{"name", "node1"}, {"agent_url", agent_url()}}).status,
      409u);
  EXPECT_EQ(post("/v1/hosts", "/v1/hosts", admin, {{"name", "Node_1"}, {"agent_url", agent_url()}})
                .status,
            400u);
  EXPECT_EQ(
      post("/v1/hosts", "/v1/hosts", admin, {{"name", "node9"}, {"agent_url", "ftp://node9:21"}})
          .status,
      400u);
  EXPECT_EQ(post("/v1/hosts", "/v1/hosts", operator_token,
                 {{"name", "node9"}, {"agent_url", agent_url()}})
                .status,
            403u);

  // ---- shared storage while no host is up -----------------------------------------------
  // node1 is registered but has not sent a heartbeat, so it is down.
  const json pool1 = {
      {"name", "pool1"},
      {"type", "iscsi"},
      {"targets", {{{"portal", "10.77.0.1"}, {"iqn", "iqn.2026-01.io.kvmfleet:san"}, {"lun", 1}}}}};
  auto no_host = post("/v1/storage-pools", "/v1/storage-pools", admin, pool1);
  EXPECT_EQ(no_host.status, 409u) << no_host.body;
  EXPECT_EQ(no_host.json()["error"].value("code", ""), "conflict") << no_host.body;
  json ghost_host = pool1;
  ghost_host["hosts"] = {"ghost"};
  auto unknown_host = post("/v1/storage-pools", "/v1/storage-pools", admin, ghost_host);
  EXPECT_EQ(unknown_host.status, 404u) << unknown_host.body;
  EXPECT_EQ(unknown_host.json()["error"]["details"].value("host", ""), "ghost")
      << unknown_host.body;
  // A pool for a host that is named but down is accepted; its operation finds the host
  // down, calls no agent, and rolls the pool back.
  json on_node1 = pool1;
  on_node1["hosts"] = {"node1"};
  auto down_pool = post("/v1/storage-pools?wait=60", "/v1/storage-pools", admin, on_node1);
  ASSERT_EQ(down_pool.status, 200u) << down_pool.body;
  {
    const json op = down_pool.json();
    EXPECT_EQ(op.value("kind", ""), "storage_pool.create");
    EXPECT_EQ(op["target"].value("type", ""), "storage_pool");
    EXPECT_EQ(op["target"].value("id", ""), "pool1");
    EXPECT_EQ(op["params"]["hosts"], json({"node1"}));
    EXPECT_EQ(op["params"].value("type", ""), "iscsi");
    EXPECT_EQ(op.value("state", ""), "failed") << down_pool.body;
    ASSERT_TRUE(op["error"].is_object()) << down_pool.body;
    EXPECT_EQ(op["error"].value("code", ""), "unavailable");
    EXPECT_TRUE(op["error"]["details"].value("rolled_back", false)) << down_pool.body;
    EXPECT_NE(op["error"]["details"]["hosts"].value("node1", "").find("down"), std::string::npos)
        << down_pool.body;
  }
  EXPECT_EQ(get("/v1/storage-pools/pool1", "/v1/storage-pools/{name}", admin).status, 404u);

  const std::string legacy_uuid = "7d4c3a2b-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
  const json heartbeat = {{"host", "node1"},
                          {"agent_url", agent_url()},
                          {"inventory",
                           {{"hostname", "node1.lab"},
                            {"host_uuid", "4c4c4544-0042-3510-8052-b4c04f4e3232"},
                            {"cpus", 8},
                            {"cpu_model", "Skylake-Server-IBRS"},
                            {"memory_total_mib", 16384},
                            {"memory_free_mib", 12000},
                            {"libvirt_version", "9.0.0"},
                            {"qemu_version", "7.2.0"},
                            {"domain_type", "kvm"},
                            {"links",
                             {{{"name", "eth1"}, {"kind", "other"}, {"mtu", 1500}, {"up", true}},
                              {{"name", "br0"}, {"kind", "bridge"}, {"mtu", 1500}, {"up", true}}}},
                            {"domains",
                             {{{"uuid", legacy_uuid},
                               {"name", "legacy"},
                               {"state", "running"},
                               {"managed", false},
                               {"generation", 0},
                               {"persistent", true}}}}}}};
  auto beat = post("/v1/agent/heartbeat", "/v1/agent/heartbeat", agent_token, heartbeat);
  ASSERT_EQ(beat.status, 200u) << beat.body;
  EXPECT_GT(beat.json().value("heartbeat_interval_ms", 0), 0);
  json other_host = heartbeat;
  other_host["host"] = "node2";
  EXPECT_EQ(post("/v1/agent/heartbeat", "/v1/agent/heartbeat", agent_token, other_host).status,
            403u);
  EXPECT_EQ(post("/v1/agent/heartbeat", "/v1/agent/heartbeat", admin, heartbeat).status, 403u);
  EXPECT_EQ(
      post("/v1/agent/heartbeat", "/v1/agent/heartbeat", agent_token, {{"host", "node1"}}).status,
      400u);
  const json events = {{"host", "node1"},
                       {"events",
                        {{{"uuid", legacy_uuid},
                          {"name", "legacy"},
                          {"state", "paused"},
                          {"reason", "user"},
                          {"at", "2026-01-01T00:00:00.000Z"}}}}};
  EXPECT_EQ(post("/v1/agent/events", "/v1/agent/events", agent_token, events).status, 200u);
  EXPECT_EQ(post("/v1/agent/events", "/v1/agent/events", agent_token,
                 {{"host", "node1"}, {"events", "none"}})
                .status,
            400u);
  EXPECT_EQ(post("/v1/agent/events", "/v1/agent/events", viewer_token, events).status, 403u);
  EXPECT_EQ(post("/v1/agent/elsewhere", "/v1/agent/elsewhere", agent_token, json::object()).status,
            404u);
  EXPECT_EQ(get("/v1/agent/heartbeat", "/v1/agent/heartbeat", agent_token).status, 405u);
  EXPECT_EQ(get("/v1/vms", "/v1/vms", agent_token).status, 403u);

  // ---- networks ------------------------------------------------------------------------
  // node1 reported bridge br0 up; its agent is not there, so network.create records the
  // failed call for node1 and still succeeds.
  auto mgmt =
      post("/v1/networks?wait=60", "/v1/networks", admin, {{"name", "mgmt"}, {"bridge", "br0"}});
  ASSERT_EQ(mgmt.status, 200u) << mgmt.body;
  EXPECT_EQ(mgmt.json().value("kind", ""), "network.create");
  EXPECT_EQ(mgmt.json().value("state", ""), "succeeded") << mgmt.body;
  EXPECT_EQ(mgmt.json()["target"].value("type", ""), "network");
  EXPECT_EQ(mgmt.json()["result"].value("hosts_ready", -1), 0) << mgmt.body;
  auto lab = post("/v1/networks", "/v1/networks", admin,
                  {{"name", "lab"}, {"bridge", "br-lab"}, {"vlan", 42}, {"uplink", "eth1"}});
  EXPECT_EQ(lab.status, 202u) << lab.body;
  EXPECT_EQ(
      post("/v1/networks", "/v1/networks", admin, {{"name", "mgmt"}, {"bridge", "br1"}}).status,
      409u);
  auto odd = post("/v1/networks", "/v1/networks", admin, {{"name", "odd"}, {"bridge", "br 0"}});
  EXPECT_EQ(odd.status, 400u);
  EXPECT_EQ(odd.json()["error"]["details"].value("reason", ""), "invalid_interface_name");
  auto no_vlan = post("/v1/networks", "/v1/networks", admin,
                      {{"name", "v"}, {"bridge", "br9"}, {"vlan", 4095}, {"uplink", "eth1"}});
  EXPECT_EQ(no_vlan.status, 400u);
  EXPECT_EQ(no_vlan.json()["error"]["details"].value("reason", ""), "vlan_out_of_range");
  EXPECT_EQ(post("/v1/networks", "/v1/networks", operator_token, {{"name", "x"}, {"bridge", "br9"}})
                .status,
            403u);
  auto shown = get("/v1/networks/mgmt", "/v1/networks/{name}", viewer_token);
  ASSERT_EQ(shown.status, 200u) << shown.body;
  EXPECT_TRUE(shown.json()["hosts"]["node1"].value("usable", false)) << shown.body;
  EXPECT_EQ(shown.json()["hosts"]["node1"].value("setup", ""), "failed") << shown.body;
  EXPECT_EQ(get("/v1/networks", "/v1/networks", viewer_token).status, 200u);
  EXPECT_EQ(get("/v1/networks/ghost", "/v1/networks/{name}", viewer_token).status, 404u);
  EXPECT_EQ(get("/v1/networks/Bad_Name", "/v1/networks/{name}", viewer_token).status, 400u);
  // The dry run: node1 carries mgmt; an unknown network is 404 there and for a create.
  auto placed = post("/v1/placements", "/v1/placements", operator_token,
                     {{"name", "n1"}, {"memory_mib", 64}, {"nics", {{{"network", "mgmt"}}}}});
  ASSERT_EQ(placed.status, 200u) << placed.body;
  EXPECT_EQ(placed.json().value("host", ""), "node1") << placed.body;
  EXPECT_EQ(post("/v1/placements", "/v1/placements", operator_token,
                 {{"name", "n1"}, {"memory_mib", 64}, {"nics", {{{"network", "ghost"}}}}})
                .status,
            404u);
  auto ghost_net = post("/v1/vms", "/v1/vms", operator_token,
                        {{"name", "n1"}, {"memory_mib", 64}, {"nics", {{{"network", "ghost"}}}}});
  EXPECT_EQ(ghost_net.status, 404u) << ghost_net.body;
  EXPECT_EQ(ghost_net.json()["error"]["details"].value("reason", ""), "unknown_network");
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token,
                 {{"name", "n1"},
                  {"memory_mib", 64},
                  {"nics", {{{"network", "mgmt"}, {"mac", "01:00:5e:00:00:01"}}}}})
                .status,
            400u);
  // NIC hot plug: the request is checked before the VM is looked up in the operation.
  const std::string nics_t = "/v1/vms/{id}/nics";
  const std::string nic_t = "/v1/vms/{id}/nics/{mac}";
  EXPECT_EQ(post("/v1/vms/ghost/nics", nics_t, operator_token, {{"network", "mgmt"}}).status, 404u);
  auto stray = post("/v1/vms/ghost/nics", nics_t, operator_token, {{"network", "mgmt"}, {"x", 1}});
  EXPECT_EQ(stray.status, 400u) << stray.body;
  EXPECT_EQ(post("/v1/vms/ghost/nics", nics_t, viewer_token, {{"network", "mgmt"}}).status, 403u);
  EXPECT_EQ(del("/v1/vms/ghost/nics/52:54:00:00:00:01", nic_t, operator_token).status, 404u);
  EXPECT_EQ(del("/v1/vms/ghost/nics/nope", nic_t, operator_token).status, 400u);
  EXPECT_EQ(del("/v1/vms/ghost/nics/52:54:00:00:00:01", nic_t, viewer_token).status, 403u);
  EXPECT_EQ(del("/v1/networks/mgmt", "/v1/networks/{name}", operator_token).status, 403u);
  EXPECT_EQ(del("/v1/networks/mgmt", "/v1/networks/{name}", admin).status, 200u);
  EXPECT_EQ(del("/v1/networks/mgmt", "/v1/networks/{name}", admin).status, 404u);

  // ---- images ----------------------------------------------------------------------------
  // A record, then its data streamed in and checked with the real qemu-img.
  auto image = post("/v1/images", "/v1/images", operator_token, {{"name", "disk1"}});
  EXPECT_EQ(image.status, 201u) << image.body;
  EXPECT_EQ(image.json().value("state", ""), "uploading") << image.body;
  EXPECT_EQ(post("/v1/images", "/v1/images", operator_token, {{"name", "disk1"}}).status, 409u);
  EXPECT_EQ(post("/v1/images", "/v1/images", viewer_token, {{"name", "x1"}}).status, 403u);
  EXPECT_EQ(
      post("/v1/images", "/v1/images", operator_token, {{"name", "x1"}, {"sha256", "12"}}).status,
      400u);
  auto upload = [&](const std::string& name, const std::string& token) {
    return send({.method = "PUT",
                 .target = "/v1/images/" + name + "/data",
                 .path_template = "/v1/images/{name}/data",
                 .token = token,
                 .body = std::string(64 * 1024, '\0'),
                 .content_type = "application/octet-stream"});
  };
  EXPECT_EQ(upload("disk1", viewer_token).status, 403u);
  EXPECT_EQ(upload("ghost", operator_token).status, 404u);
  auto uploaded = upload("disk1", operator_token);
  EXPECT_EQ(uploaded.status, 200u) << uploaded.body;
  EXPECT_EQ(uploaded.json().value("state", ""), "ready") << uploaded.body;
  EXPECT_EQ(upload("disk1", operator_token).status, 409u);
  // A VM from an image: refusals with stable reasons; a host's agent fetches its data in
  // pieces.
  auto from_ghost = post(
      "/v1/vms", "/v1/vms", operator_token,
      {{"name", "img1"}, {"memory_mib", 64}, {"disks", json::array({json{{"image", "ghost"}}})}});
  EXPECT_EQ(from_ghost.status, 404u) << from_ghost.body;
  EXPECT_EQ(from_ghost.json()["error"]["details"].value("reason", ""), "unknown_image");
  auto bad_yaml = post("/v1/vms", "/v1/vms", operator_token,
                       {{"name", "img1"},
                        {"memory_mib", 64},
                        {"disks", json::array({json{{"image", "disk1"}}})},
                        {"cloud_init", {{"user_data", "#cloud-config\nkey: [oops\n"}}}});
  EXPECT_EQ(bad_yaml.status, 400u) << bad_yaml.body;
  EXPECT_EQ(bad_yaml.json()["error"]["details"].value("reason", ""), "malformed_yaml");
  auto piece = send({.method = "GET",
                     .target = "/v1/agent/images/disk1/data?offset=1024&length=4096",
                     .path_template = "/v1/agent/images/{name}/data",
                     .token = agent_token});
  EXPECT_EQ(piece.status, 200u) << piece.body;
  EXPECT_EQ(piece.body.size(), 4096u);
  EXPECT_EQ(get("/v1/agent/images/disk1/data", "/v1/agent/images/{name}/data", viewer_token).status,
            403u);
  EXPECT_EQ(get("/v1/images", "/v1/images", viewer_token).status, 200u);
  EXPECT_EQ(get("/v1/images/disk1", "/v1/images/{name}", viewer_token).status, 200u);
  EXPECT_EQ(get("/v1/images/ghost", "/v1/images/{name}", viewer_token).status, 404u);
  EXPECT_EQ(del("/v1/images/disk1", "/v1/images/{name}", viewer_token).status, 403u);
  EXPECT_EQ(del("/v1/images/disk1", "/v1/images/{name}", operator_token).status, 200u);
  EXPECT_EQ(del("/v1/images/disk1", "/v1/images/{name}", operator_token).status, 404u);

  auto hosts = get("/v1/hosts", "/v1/hosts", viewer_token);
  ASSERT_EQ(hosts.status, 200u);
  ASSERT_EQ(hosts.json()["items"].size(), 1u);
  EXPECT_EQ(hosts.json()["items"][0].value("state", ""), "up");
  EXPECT_EQ(hosts.json()["items"][0]["unmanaged_domains"].size(), 1u);
  EXPECT_EQ(get("/v1/hosts?verbose=1", "/v1/hosts", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/hosts/node1", "/v1/hosts/{name}", viewer_token).status, 200u);
  EXPECT_EQ(get("/v1/hosts/ghost", "/v1/hosts/{name}", viewer_token).status, 404u);
  EXPECT_EQ(get("/v1/hosts/Bad_Name", "/v1/hosts/{name}", viewer_token).status, 400u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = "/v1/hosts/node1",
                  .path_template = "/v1/hosts/{name}",
                  .token = admin,
                  .body = "{}"})
                .status,
            405u);
  auto patch = [&](const std::string& name, const std::string& body, const std::string& token) {
    return send({.method = "PATCH",
                 .target = "/v1/hosts/" + name,
                 .path_template = "/v1/hosts/{name}",
                 .token = token,
                 .body = body});
  };
  auto cordoned = patch("node1", R"({"schedulable":false})", admin);
  ASSERT_EQ(cordoned.status, 200u) << cordoned.body;
  EXPECT_FALSE(cordoned.json().value("schedulable", true));
  EXPECT_EQ(patch("node1", R"({"schedulable":"no"})", admin).status, 400u);
  EXPECT_EQ(patch("node1", R"({})", admin).status, 400u);
  EXPECT_EQ(patch("node1", R"({"schedulable":true})", operator_token).status, 403u);
  EXPECT_EQ(patch("ghost", R"({"schedulable":true})", admin).status, 404u);
  // Nothing can be placed while the only host is cordoned.
  EXPECT_EQ(
      post("/v1/vms", "/v1/vms", operator_token, {{"name", "early"}, {"memory_mib", 64}}).status,
      422u);
  EXPECT_EQ(patch("node1", R"({"schedulable":true})", admin).status, 200u);
  // Maintenance: an operation either way; with no running VM the drain ends at once.
  const std::string maint = "/v1/hosts/{name}/maintenance";
  auto drain = post("/v1/hosts/node1/maintenance?wait=60", maint, admin,
                    {{"enabled", true}, {"policy", {{"max_downtime_ms", 300}}}});
  ASSERT_EQ(drain.status, 200u) << drain.body;
  EXPECT_EQ(drain.json().value("kind", ""), "host.maintenance");
  EXPECT_EQ(drain.json().value("state", ""), "succeeded") << drain.body;
  EXPECT_FALSE(
      get("/v1/hosts/node1", "/v1/hosts/{name}", viewer_token).json().value("schedulable", true));
  auto undrain = post("/v1/hosts/node1/maintenance", maint, admin, {{"enabled", false}});
  EXPECT_EQ(undrain.status, 202u) << undrain.body;
  EXPECT_EQ(get("/v1/operations/" + undrain.json().value("id", "") + "?wait=60",
                "/v1/operations/{id}", viewer_token)
                .json()
                .value("state", ""),
            "succeeded");
  EXPECT_TRUE(
      get("/v1/hosts/node1", "/v1/hosts/{name}", viewer_token).json().value("schedulable", false));
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, admin, {{"enabled", "yes"}}).status, 400u);
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, admin, json::object()).status, 400u);
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, admin, {{"enabled", true}, {"drain", true}})
                .status,
            400u);
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, admin,
                 {{"enabled", false}, {"policy", json::object()}})
                .status,
            400u);
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, admin,
                 {{"enabled", true}, {"policy", {{"max_downtime_ms", 0}}}})
                .status,
            400u);
  EXPECT_EQ(post("/v1/hosts/node1/maintenance", maint, operator_token, {{"enabled", true}}).status,
            403u);
  EXPECT_EQ(post("/v1/hosts/ghost/maintenance", maint, admin, {{"enabled", true}}).status, 404u);
  EXPECT_EQ(get("/v1/hosts/node1/maintenance", maint, admin).status, 405u);
  ASSERT_EQ(
      post("/v1/hosts", "/v1/hosts", admin, {{"name", "node2"}, {"agent_url", agent_url()}}).status,
      201u);
  // Fencing: devices (the real fence_ipmilan of Debian's fence-agents), a fence refused
  // for a host without devices, confirm-down refused for an up host and given for node2,
  // which was never heard.
  const std::string fencing = "/v1/hosts/{name}/fencing";
  auto put_fencing = [&](const std::string& name, const json& body, const std::string& token) {
    return send({.method = "PUT",
                 .target = "/v1/hosts/" + name + "/fencing",
                 .path_template = fencing,
                 .token = token,
                 .body = body.dump()});
  };
  EXPECT_EQ(get("/v1/hosts/node2/fencing", fencing, admin).status, 200u);
  EXPECT_EQ(get("/v1/hosts/node2/fencing", fencing, viewer_token).status, 403u);
  EXPECT_EQ(get("/v1/hosts/ghost/fencing", fencing, admin).status, 404u);
  const json ipmi = {{"devices",
                      {{{"agent", "fence_ipmilan"},
                        {"options",
                         {{"ip", "127.0.0.1"},
                          {"ipport", 9},
                          {"username", "admin"},
                          {"password", "contract-secret"},
                          {"lanplus", true}}}}}}};
  auto set = put_fencing("node2", ipmi, admin);
  ASSERT_EQ(set.status, 200u) << set.body;
  EXPECT_EQ(set.body.find("contract-secret"), std::string::npos);
  EXPECT_EQ(set.json()["devices"][0]["options"]["password"], json({{"set", true}}));
  EXPECT_EQ(put_fencing("node2", {{"devices", {{{"agent", "ipmitool"}}}}}, admin).status, 400u);
  EXPECT_EQ(put_fencing("node2", ipmi, operator_token).status, 403u);
  EXPECT_EQ(put_fencing("ghost", ipmi, admin).status, 404u);
  ASSERT_EQ(put_fencing("node2", {{"devices", json::array()}}, admin).status, 200u);
  const std::string fence = "/v1/hosts/{name}/fence";
  auto no_devices = post("/v1/hosts/node2/fence", fence, admin, json::object());
  EXPECT_EQ(no_devices.status, 409u) << no_devices.body;
  EXPECT_EQ(post("/v1/hosts/node2/fence", fence, operator_token, json::object()).status, 403u);
  EXPECT_EQ(post("/v1/hosts/ghost/fence", fence, admin, json::object()).status, 404u);
  EXPECT_EQ(post("/v1/hosts/node2/fence", fence, admin, {{"force", true}}).status, 400u);
  const std::string confirm = "/v1/hosts/{name}/confirm-down";
  EXPECT_EQ(post("/v1/hosts/node1/confirm-down", confirm, admin, {{"reason", "x"}}).status, 409u);
  EXPECT_EQ(post("/v1/hosts/node2/confirm-down", confirm, admin, json::object()).status, 400u);
  EXPECT_EQ(post("/v1/hosts/ghost/confirm-down", confirm, admin, {{"reason", "x"}}).status, 404u);
  EXPECT_EQ(post("/v1/hosts/node2/confirm-down", confirm, operator_token, {{"reason", "x"}}).status,
            403u);
  auto confirmed = post("/v1/hosts/node2/confirm-down", confirm, admin, {{"reason", "unplugged"}});
  ASSERT_EQ(confirmed.status, 200u) << confirmed.body;
  EXPECT_EQ(confirmed.json().value("state", ""), "fenced");
  EXPECT_EQ(confirmed.json()["proven_down"].value("kind", ""), "confirm_down");
  EXPECT_EQ(get("/v1/hosts/node2", "/v1/hosts/{name}", viewer_token).json().value("state", ""),
            "fenced");
  EXPECT_EQ(del("/v1/hosts/node2", "/v1/hosts/{name}", operator_token).status, 403u);
  EXPECT_EQ(del("/v1/hosts/node2", "/v1/hosts/{name}", admin).status, 200u);
  EXPECT_EQ(del("/v1/hosts/node2", "/v1/hosts/{name}", admin).status, 404u);

  // ---- VMs ----------------------------------------------------------------------------
  const json web1 = {{"name", "web1"},
                     {"vcpus", 1},
                     {"memory_mib", 256},
                     {"disks", {{{"size_gib", 1}, {"bus", "virtio"}}}}};
  EXPECT_EQ(post("/v1/vms", "/v1/vms", viewer_token, web1).status, 403u);
  auto create1 = post("/v1/vms", "/v1/vms", operator_token, web1);
  ASSERT_EQ(create1.status, 202u) << create1.body;
  const std::string create1_op = create1.json().value("id", "");
  const std::string web1_id = create1.json()["target"].value("id", "");
  EXPECT_EQ(create1.header("location"), "/v1/operations/" + create1_op);
  EXPECT_EQ(create1.json().value("kind", ""), "vm.create");
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token, web1).status, 409u);

  const json web2 = {{"name", "web2"}, {"memory_mib", 128}};
  auto keyed = [&](const json& body, const std::string& key) {
    return send({.method = "POST",
                 .target = "/v1/vms",
                 .path_template = "/v1/vms",
                 .token = operator_token,
                 .body = body.dump(),
                 .headers = {{"Idempotency-Key", key}}});
  };
  auto first = keyed(web2, "create-web2");
  ASSERT_EQ(first.status, 202u) << first.body;
  EXPECT_EQ(first.json().value("idempotency_key", ""), "create-web2");
  auto again = keyed(web2, "create-web2");
  EXPECT_EQ(again.status, 202u);
  EXPECT_EQ(again.header("idempotent-replayed"), "true");
  EXPECT_EQ(again.json().value("id", ""), first.json().value("id", ""));
  EXPECT_EQ(keyed({{"name", "web2b"}, {"memory_mib", 128}}, "create-web2").status, 409u);
  EXPECT_EQ(keyed({{"name", "web2c"}, {"memory_mib", 128}}, std::string(129, 'k')).status, 400u);

  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token,
                 {{"name", "web3"},
                  {"vcpus", 2},
                  {"memory_mib", 512},
                  {"host", "node1"},
                  {"anti_affinity_group", "front"},
                  {"ha", {{"enabled", true}, {"priority", 100}, {"max_restarts", 2}}},
                  {"start", true}})
                .status,
            202u);
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token,
                 {{"name", "web4"},
                  {"memory_mib", 64},
                  {"host", nullptr},
                  {"disks", nullptr},
                  {"ha", nullptr}})
                .status,
            202u);
  auto waited =
      post("/v1/vms?wait=30", "/v1/vms", operator_token,
           {{"name", "web5"}, {"memory_mib", 64}, {"disks", {{{"size_gib", 2}, {"bus", "scsi"}}}}});
  EXPECT_TRUE(waited.status == 200u || waited.status == 202u) << waited.status;
  EXPECT_EQ(waited.status == 200u, is_terminal_state(waited.json().value("state", "")));

  // Pagination: pages of two, in name order, until next_cursor is null.
  std::vector<std::string> names;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto res = get("/v1/vms?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), "/v1/vms",
                   viewer_token);
    ASSERT_EQ(res.status, 200u) << res.body;
    const json body = res.json();
    EXPECT_LE(body["items"].size(), 2u);
    for (const auto& vm : body["items"]) names.push_back(vm.value("name", ""));
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"].get<std::string>();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"web1", "web2", "web3", "web4", "web5"}));
  EXPECT_EQ(get("/v1/vms?host=node1&state=pending&limit=1000", "/v1/vms", viewer_token).status,
            200u);
  EXPECT_EQ(get("/v1/vms?limit=0", "/v1/vms", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/vms?limit=1001", "/v1/vms", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/vms?limit=1&limit=2", "/v1/vms", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/vms?cursor=Not_A_Name", "/v1/vms", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/vms?state=sleeping", "/v1/vms", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/vms?sort=name", "/v1/vms", viewer_token).status, 400u);

  auto by_name = get("/v1/vms/web1", "/v1/vms/{id}", viewer_token);
  EXPECT_EQ(by_name.status, 200u);
  EXPECT_EQ(by_name.json().value("id", ""), web1_id);
  EXPECT_EQ(get("/v1/vms/" + web1_id, "/v1/vms/{id}", viewer_token).json().value("name", ""),
            "web1");
  EXPECT_EQ(get("/v1/vms/ghost", "/v1/vms/{id}", viewer_token).status, 404u);
  EXPECT_EQ(get("/v1/vms/" + missing_uuid, "/v1/vms/{id}", viewer_token).status, 404u);
  EXPECT_EQ(get("/v1/vms/Bad_Name", "/v1/vms/{id}", viewer_token).status, 400u);
  // The console is a WebSocket: a plain GET is refused (the upgrade itself is the e2e
  // test's, tests/e2e/console_e2e_test.cpp); its log is a plain read.
  EXPECT_EQ(get("/v1/vms/web1/console", "/v1/vms/{id}/console", operator_token).status, 400u);
  EXPECT_EQ(get("/v1/vms/web1/console", "/v1/vms/{id}/console", viewer_token).status, 403u);
  EXPECT_EQ(get("/v1/vms/ghost/console", "/v1/vms/{id}/console", operator_token).status, 400u);
  EXPECT_EQ(get("/v1/vms/web1/console/log?tail=0", "/v1/vms/{id}/console/log", viewer_token).status,
            400u);
  EXPECT_EQ(
      get("/v1/vms/web1/console/log?tail=10001", "/v1/vms/{id}/console/log", viewer_token).status,
      400u);
  EXPECT_EQ(get("/v1/vms/ghost/console/log", "/v1/vms/{id}/console/log", viewer_token).status,
            404u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = "/v1/vms",
                  .path_template = "/v1/vms",
                  .token = operator_token,
                  .body = web1.dump()})
                .status,
            405u);
  EXPECT_EQ(send({.method = "PATCH",
                  .target = "/v1/vms/web1",
                  .path_template = "/v1/vms/{id}",
                  .token = operator_token,
                  .body = "{}"})
                .status,
            405u);

  // ---- request errors -----------------------------------------------------------------
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token, {{"name", "huge"}, {"memory_mib", 4194304}})
                .status,
            422u);
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token,
                 {{"name", "x"}, {"memory_mib", 64}, {"colour", "red"}})
                .status,
            400u);
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token, {{"name", "x"}, {"memory_mib", 8}}).status,
            400u);
  EXPECT_EQ(
      post("/v1/vms", "/v1/vms", operator_token, {{"name", "x"}, {"memory_mib", 64}, {"vcpus", 0}})
          .status,
      400u);
  EXPECT_EQ(
      post("/v1/vms", "/v1/vms", operator_token,
           {{"name", "x"}, {"memory_mib", 64}, {"disks", {{{"size_gib", 1}, {"bus", "ide"}}}}})
          .status,
      400u);
  EXPECT_EQ(
      post("/v1/vms", "/v1/vms", operator_token,
           {{"name", "x"}, {"memory_mib", 64}, {"disks", json::array({json{{"size_gib", 1}}})}})
          .status,
      202u);
  json many_disks = json::array();
  for (int i = 0; i < 17; ++i) many_disks.push_back({{"size_gib", 1}});
  EXPECT_EQ(post("/v1/vms", "/v1/vms", operator_token,
                 {{"name", "y"}, {"memory_mib", 64}, {"disks", many_disks}})
                .status,
            400u);
  auto raw_post = [&](const std::string& target, const std::string& body, const std::string& type) {
    return send({.method = "POST",
                 .target = target,
                 .path_template = "/v1/vms",
                 .token = operator_token,
                 .body = body,
                 .content_type = type});
  };
  EXPECT_EQ(raw_post("/v1/vms", R"({"name": "z", "memory_mib": )", "application/json").status,
            400u);
  EXPECT_EQ(raw_post("/v1/vms", "[1, 2]", "application/json").status, 400u);
  EXPECT_EQ(raw_post("/v1/vms", "", "application/json").status, 400u);
  EXPECT_EQ(raw_post("/v1/vms", "name=z&memory_mib=64", "text/plain").status, 415u);
  EXPECT_EQ(raw_post("/v1/vms",
                     R"({"name":"z","memory_mib":64,"pad":")" + std::string(20000, 'p') + "\"}",
                     "application/json")
                .status,
            413u);
  EXPECT_EQ(
      raw_post("/v1/vms?wait=301", R"({"name":"z","memory_mib":64})", "application/json").status,
      400u);
  EXPECT_EQ(
      raw_post("/v1/vms?wait=soon", R"({"name":"z","memory_mib":64})", "application/json").status,
      400u);
  EXPECT_EQ(
      raw_post("/v1/vms?bogus=1", R"({"name":"z","memory_mib":64})", "application/json").status,
      400u);
  EXPECT_EQ(
      raw_post("/v1/vms?wait=%zz", R"({"name":"z","memory_mib":64})", "application/json").status,
      400u);

  // ---- operations ---------------------------------------------------------------------
  // No agent listens at node1's agent_url, so the create fails when it calls the agent.
  auto done =
      get("/v1/operations/" + create1_op + "?wait=120", "/v1/operations/{id}", viewer_token);
  ASSERT_EQ(done.status, 200u) << done.body;
  EXPECT_EQ(done.json().value("state", ""), "failed") << done.body;
  EXPECT_EQ(done.json()["error"].value("code", ""), "unavailable") << done.body;
  EXPECT_EQ(get("/v1/operations/" + create1_op, "/v1/operations/{id}", viewer_token).status, 200u);
  auto ops = get("/v1/operations", "/v1/operations", viewer_token);
  ASSERT_EQ(ops.status, 200u);
  EXPECT_GE(ops.json()["items"].size(), 5u);
  EXPECT_EQ(get("/v1/operations?limit=1", "/v1/operations", viewer_token).json()["items"].size(),
            1u);
  EXPECT_EQ(
      get("/v1/operations?state=failed&target=" + web1_id, "/v1/operations", viewer_token).status,
      200u);
  EXPECT_EQ(get("/v1/operations?state=done", "/v1/operations", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/operations?cursor=web1", "/v1/operations", viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/operations/" + missing_uuid, "/v1/operations/{id}", viewer_token).status,
            404u);
  EXPECT_EQ(get("/v1/operations/not-a-uuid", "/v1/operations/{id}", viewer_token).status, 400u);
  EXPECT_EQ(
      get("/v1/operations/" + create1_op + "?wait=301", "/v1/operations/{id}", viewer_token).status,
      400u);
  EXPECT_EQ(del("/v1/operations/" + create1_op, "/v1/operations/{id}", operator_token).status,
            409u);
  EXPECT_EQ(del("/v1/operations/" + create1_op, "/v1/operations/{id}", viewer_token).status, 403u);
  EXPECT_EQ(del("/v1/operations/" + missing_uuid, "/v1/operations/{id}", operator_token).status,
            404u);
  EXPECT_EQ(post("/v1/operations", "/v1/operations", operator_token, json::object()).status, 405u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = "/v1/operations/" + create1_op,
                  .path_template = "/v1/operations/{id}",
                  .token = operator_token,
                  .body = "{}"})
                .status,
            405u);
  // Cancelling a fresh operation races its worker: cancelled before it started (200),
  // asked to stop while it runs (202), or already ended (409). The contract describes
  // all three.
  auto fresh = post("/v1/vms", "/v1/vms", operator_token, {{"name", "web7"}, {"memory_mib", 64}});
  ASSERT_EQ(fresh.status, 202u) << fresh.body;
  const std::string fresh_op = fresh.json().value("id", "");
  auto cancel = del("/v1/operations/" + fresh_op, "/v1/operations/{id}", operator_token);
  EXPECT_TRUE(cancel.status == 200u || cancel.status == 202u || cancel.status == 409u)
      << cancel.status << " " << cancel.body;
  EXPECT_EQ(
      get("/v1/operations/" + fresh_op + "?wait=120", "/v1/operations/{id}", viewer_token).status,
      200u);

  // ---- VM actions -----------------------------------------------------------------------
  // web1 stays pending (its create failed), so actions are refused until it is defined.
  for (const std::string action : {"start", "stop", "reboot", "destroy"}) {
    SCOPED_TRACE(action);
    auto res =
        post("/v1/vms/web1/" + action, "/v1/vms/{id}/" + action, operator_token, json::object());
    EXPECT_EQ(res.status, 409u) << res.body;
    res = send({.method = "POST",
                .target = "/v1/vms/" + web1_id + "/" + action + "?wait=1",
                .path_template = "/v1/vms/{id}/" + action,
                .token = operator_token});
    EXPECT_EQ(res.status, 409u) << res.body;
    EXPECT_EQ(post("/v1/vms/web1/" + action, "/v1/vms/{id}/" + action, viewer_token, json::object())
                  .status,
              403u);
    EXPECT_EQ(
        post("/v1/vms/ghost/" + action, "/v1/vms/{id}/" + action, operator_token, json::object())
            .status,
        404u);
  }
  EXPECT_EQ(post("/v1/vms/web1/stop", "/v1/vms/{id}/stop", operator_token,
                 {{"timeout_s", 30}, {"force", true}})
                .status,
            409u);
  EXPECT_EQ(
      post("/v1/vms/web1/stop", "/v1/vms/{id}/stop", operator_token, {{"timeout_s", 0}}).status,
      400u);
  // Migration pre-checks: a VM that is not running, a bad policy, an unknown target.
  EXPECT_EQ(
      post("/v1/vms/web1/migrate", "/v1/vms/{id}/migrate", operator_token, json::object()).status,
      409u);
  EXPECT_EQ(
      post("/v1/vms/web1/migrate", "/v1/vms/{id}/migrate", operator_token, {{"max_downtime_ms", 0}})
          .status,
      400u);
  EXPECT_EQ(post("/v1/vms/ghost/migrate", "/v1/vms/{id}/migrate", operator_token,
                 {{"target_host", "node1"}})
                .status,
            404u);
  EXPECT_EQ(
      post("/v1/vms/web1/migrate", "/v1/vms/{id}/migrate", viewer_token, json::object()).status,
      403u);
  EXPECT_EQ(
      post("/v1/vms/web1/start", "/v1/vms/{id}/start", operator_token, {{"now", true}}).status,
      400u);
  EXPECT_EQ(send({.method = "POST",
                  .target = "/v1/vms/web1/start",
                  .path_template = "/v1/vms/{id}/start",
                  .token = operator_token,
                  .body = "go",
                  .content_type = "text/plain"})
                .status,
            415u);
  EXPECT_EQ(post("/v1/vms/web1/start?bogus=1", "/v1/vms/{id}/start", operator_token, json::object())
                .status,
            400u);
  EXPECT_EQ(
      post("/v1/vms/web1/explode", "/v1/vms/{id}/explode", operator_token, json::object()).status,
      404u);
  EXPECT_EQ(get("/v1/vms/web1/start", "/v1/vms/{id}/start", operator_token).status, 405u);
  // An action on a VM whose create is still in flight is queued behind it (202), unless
  // the create has already ended (409).
  auto web8 = post("/v1/vms", "/v1/vms", operator_token,
                   {{"name", "web8"}, {"memory_mib", 64}, {"start", true}});
  ASSERT_EQ(web8.status, 202u);
  auto queued = send({.method = "POST",
                      .target = "/v1/vms/web8/start",
                      .path_template = "/v1/vms/{id}/start",
                      .token = operator_token,
                      .headers = {{"Idempotency-Key", "start-web8"}}});
  EXPECT_TRUE(queued.status == 202u || queued.status == 409u)
      << queued.status << " " << queued.body;
  if (queued.status == 202u) {
    auto ended = get("/v1/operations/" + queued.json().value("id", "") + "?wait=120",
                     "/v1/operations/{id}", viewer_token);
    EXPECT_EQ(ended.status, 200u);
  }

  // Delete asks the (missing) agent to undefine the domain, so the operation fails, but
  // the request itself is accepted.
  auto deleted = del("/v1/vms/web1?wait=120", "/v1/vms/{id}", operator_token);
  EXPECT_EQ(deleted.status, 200u) << deleted.body;
  EXPECT_EQ(deleted.json().value("kind", ""), "vm.delete");
  EXPECT_EQ(del("/v1/vms/web2?force=true", "/v1/vms/{id}", operator_token).status, 202u);
  EXPECT_EQ(send({.method = "DELETE",
                  .target = "/v1/vms/web3?force=1",
                  .path_template = "/v1/vms/{id}",
                  .token = operator_token,
                  .headers = {{"Idempotency-Key", "delete-web3"}}})
                .status,
            202u);
  EXPECT_EQ(del("/v1/vms/web4?force=maybe", "/v1/vms/{id}", operator_token).status, 400u);
  EXPECT_EQ(del("/v1/vms/web4?purge=1", "/v1/vms/{id}", operator_token).status, 400u);
  EXPECT_EQ(del("/v1/vms/ghost", "/v1/vms/{id}", operator_token).status, 404u);
  EXPECT_EQ(del("/v1/vms/web4", "/v1/vms/{id}", viewer_token).status, 403u);

  // ---- placements ---------------------------------------------------------------------
  auto fits = post("/v1/placements", "/v1/placements", operator_token,
                   {{"name", "p1"}, {"memory_mib", 512}});
  ASSERT_EQ(fits.status, 200u) << fits.body;
  EXPECT_EQ(fits.json().value("host", ""), "node1");
  auto no_fit = post("/v1/placements", "/v1/placements", operator_token,
                     {{"name", "p2"}, {"memory_mib", 4194304}});
  ASSERT_EQ(no_fit.status, 200u) << no_fit.body;
  EXPECT_TRUE(no_fit.json()["host"].is_null());
  EXPECT_EQ(post("/v1/placements", "/v1/placements", operator_token,
                 {{"name", "p3"}, {"memory_mib", 512}, {"start", true}})
                .status,
            400u);
  EXPECT_EQ(
      post("/v1/placements", "/v1/placements", viewer_token, {{"name", "p1"}, {"memory_mib", 512}})
          .status,
      403u);
  EXPECT_EQ(get("/v1/placements", "/v1/placements", operator_token).status, 405u);

  // ---- shared storage ---------------------------------------------------------------------
  // No agent answers, so no pool ever becomes ready: what is reachable is every refusal
  // at the door, the empty collections, and the pool operations failing and rolling back.
  const std::string pools = "/v1/storage-pools";
  const std::string pool_t = "/v1/storage-pools/{name}";
  const std::string volumes = "/v1/volumes";
  const std::string volume_t = "/v1/volumes/{id}";
  const std::string grow_t = "/v1/volumes/{id}/grow";
  const std::string snaps_t = "/v1/volumes/{id}/snapshots";
  const std::string snap_t = "/v1/volumes/{id}/snapshots/{snapshot}";
  const std::string revert_t = "/v1/volumes/{id}/snapshots/{snapshot}/revert";
  auto field_of = [](const HttpAnswer& a) {
    return a.json()["error"]["details"].value("field", "");
  };

  auto pool_list = get(pools, pools, viewer_token);
  ASSERT_EQ(pool_list.status, 200u) << pool_list.body;
  EXPECT_EQ(pool_list.json()["items"], json::array());
  auto volume_list = get(volumes, volumes, viewer_token);
  ASSERT_EQ(volume_list.status, 200u) << volume_list.body;
  EXPECT_EQ(volume_list.json()["items"], json::array());
  EXPECT_EQ(get("/v1/volumes?pool=pool1", volumes, viewer_token).json()["items"], json::array());
  EXPECT_EQ(get("/v1/volumes?pool=", volumes, viewer_token).status, 200u);
  EXPECT_EQ(get("/v1/volumes?pool=Bad_Pool", volumes, viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/volumes?limit=1", volumes, viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/storage-pools?verbose=1", pools, viewer_token).status, 400u);
  EXPECT_EQ(get(volumes, volumes, "").status, 401u);
  EXPECT_EQ(get(pools, pools, agent_token).status, 403u);
  EXPECT_EQ(get("/v1/storage-pools/pool1", pool_t, viewer_token).status, 404u);
  EXPECT_EQ(get("/v1/storage-pools/Pool_1", pool_t, viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/storage-pools/pool1", pool_t, agent_token).status, 403u);

  // Pool bodies: each refusal names the field.
  auto pool_with = [&](const std::string& key, const json& value) {
    json b = pool1;
    b[key] = value;
    return b;
  };
  auto target_with = [&](const std::string& key, const json& value) {
    json b = pool1;
    b["targets"][0][key] = value;
    return b;
  };
  struct BadPool {
    const char* why;
    json body;
    const char* field;
  };
  const std::vector<BadPool> bad_pools = {
      {"IQN month 13", target_with("iqn", "iqn.2026-13.io.kvmfleet:san"), "targets[0].iqn"},
      {"IQN upper case", target_with("iqn", "iqn.2026-01.IO.kvmfleet:san"), "targets[0].iqn"},
      {"not an iSCSI name", target_with("iqn", "san-lun-1"), "targets[0].iqn"},
      {"portal port", target_with("portal", "10.77.0.1:99999"), "targets[0].portal"},
      {"portal host", target_with("portal", "san..example"), "targets[0].portal"},
      {"portal all digits", target_with("portal", "10.77.1"), "targets[0].portal"},
      {"LUN out of range", target_with("lun", 16384), "targets[0].lun"},
      {"unknown target field", target_with("port", 3260), "port"},
      {"short CHAP secret", target_with("chap", {{"username", "kvm"}, {"password", "short"}}),
       "targets[0].chap"},
      {"LUN twice", pool_with("targets", {pool1["targets"][0], pool1["targets"][0]}), "targets[1]"},
      {"no targets", pool_with("targets", json::array()), "targets"},
      {"unknown field", pool_with("colour", "red"), "colour"},
      {"VG name LVM reserves", pool_with("name", "lvm"), "name"},
      {"bad name", pool_with("name", "Pool_1"), "name"},
      {"unknown type", pool_with("type", "nfs"), "type"},
      {"wwids on iSCSI", pool_with("wwids", {"3600a0b80000f1e2d"}), "wwids"},
      {"bad host name", pool_with("hosts", {"Node_1"}), "hosts"},
      {"FC with targets",
       {{"name", "fc1"}, {"type", "fc"}, {"wwids", {"3600a0b8"}}, {"targets", json::array()}},
       "targets"},
      {"FC bad WWID", {{"name", "fc1"}, {"type", "fc"}, {"wwids", {"36-00"}}}, "wwids"},
      {"FC WWID twice",
       {{"name", "fc1"}, {"type", "fc"}, {"wwids", {"3600a0b8", "3600a0b8"}}},
       "wwids"},
  };
  for (const auto& bad : bad_pools) {
    SCOPED_TRACE(bad.why);
    auto res = post(pools, pools, admin, bad.body);
    EXPECT_EQ(res.status, 400u) << res.body;
    EXPECT_EQ(field_of(res), bad.field) << res.body;
  }
  EXPECT_EQ(post(pools, pools, operator_token, pool1).status, 403u);
  EXPECT_EQ(post(pools, pools, viewer_token, pool1).status, 403u);
  EXPECT_EQ(post("/v1/storage-pools?wait=301", pools, admin, pool1).status, 400u);
  EXPECT_EQ(post("/v1/storage-pools?force=1", pools, admin, pool1).status, 400u);
  EXPECT_EQ(send({.method = "POST",
                  .target = pools,
                  .path_template = pools,
                  .token = admin,
                  .body = "pool1",
                  .content_type = "text/plain"})
                .status,
            415u);
  EXPECT_EQ(send({.method = "PATCH",
                  .target = "/v1/storage-pools/pool1",
                  .path_template = pool_t,
                  .token = admin,
                  .body = "{}"})
                .status,
            405u);
  EXPECT_EQ(del(pools, pools, admin).status, 405u);
  EXPECT_EQ(del("/v1/storage-pools/pool1", pool_t, admin).status, 404u);
  EXPECT_EQ(del("/v1/storage-pools/pool1?force=1", pool_t, admin).status, 400u);
  EXPECT_EQ(del("/v1/storage-pools/Pool_1", pool_t, admin).status, 400u);
  EXPECT_EQ(del("/v1/storage-pools/pool1", pool_t, operator_token).status, 403u);
  EXPECT_EQ(
      get("/v1/storage-pools/pool1/volumes", "/v1/storage-pools/{name}/volumes", admin).status,
      404u);

  // Hosts joining a pool: role, query and body are judged before the pool is looked up.
  const std::string pool_hosts_t = "/v1/storage-pools/{name}/hosts";
  const json join_node1 = {{"hosts", {"node1"}}};
  auto join_no_pool = post("/v1/storage-pools/pool1/hosts", pool_hosts_t, admin, join_node1);
  EXPECT_EQ(join_no_pool.status, 404u) << join_no_pool.body;
  EXPECT_EQ(join_no_pool.json()["error"]["details"].value("pool", ""), "pool1")
      << join_no_pool.body;
  const std::vector<BadPool> bad_joins = {
      {"no hosts", json::object(), "hosts"},
      {"hosts empty", {{"hosts", json::array()}}, "hosts"},
      {"hosts null", {{"hosts", nullptr}}, "hosts"},
      {"hosts as text", {{"hosts", "node1"}}, "hosts"},
      {"bad host name", {{"hosts", {"Node_1"}}}, "hosts"},
      {"a host twice", {{"hosts", {"node1", "node1"}}}, "hosts"},
      {"unknown field", {{"hosts", {"node1"}}, {"all", true}}, "all"},
  };
  for (const auto& bad : bad_joins) {
    SCOPED_TRACE(bad.why);
    auto res = post("/v1/storage-pools/pool1/hosts", pool_hosts_t, admin, bad.body);
    EXPECT_EQ(res.status, 400u) << res.body;
    EXPECT_EQ(field_of(res), bad.field) << res.body;
  }
  EXPECT_EQ(post("/v1/storage-pools/pool1/hosts", pool_hosts_t, operator_token, join_node1).status,
            403u);
  EXPECT_EQ(post("/v1/storage-pools/pool1/hosts?wait=301", pool_hosts_t, admin, join_node1).status,
            400u);
  EXPECT_EQ(post("/v1/storage-pools/pool1/hosts?force=1", pool_hosts_t, admin, join_node1).status,
            400u);
  EXPECT_EQ(post("/v1/storage-pools/Pool_1/hosts", pool_hosts_t, admin, join_node1).status, 400u);
  EXPECT_EQ(get("/v1/storage-pools/pool1/hosts", pool_hosts_t, admin).status, 405u);
  EXPECT_EQ(send({.method = "POST",
                  .target = "/v1/storage-pools/pool1/hosts",
                  .path_template = pool_hosts_t,
                  .token = admin,
                  .body = "node1",
                  .content_type = "text/plain"})
                .status,
            415u);

  // With node1 up the pool is accepted. The operation fails at node1's first iSCSI call
  // (no agent answers) and removes the pool again. While it runs, the pool is `creating`.
  auto pool_keyed = [&](const json& body, const std::string& key) {
    return send({.method = "POST",
                 .target = pools,
                 .path_template = pools,
                 .token = admin,
                 .body = body.dump(),
                 .headers = {{"Idempotency-Key", key}}});
  };
  json chap_pool = pool1;
  chap_pool["targets"][0]["chap"] = {{"username", "kvmfleet"}, {"password", "0123456789abcdef"}};
  chap_pool["targets"].push_back(
      {{"portal", "[fd00::1]:3260"}, {"iqn", "iqn.2026-01.io.kvmfleet:san"}, {"lun", 2}});
  auto pool_op = pool_keyed(chap_pool, "pool1-create");
  ASSERT_EQ(pool_op.status, 202u) << pool_op.body;
  EXPECT_EQ(pool_op.json().value("kind", ""), "storage_pool.create");
  EXPECT_EQ(pool_op.header("location"), "/v1/operations/" + pool_op.json().value("id", ""));
  EXPECT_EQ(pool_op.body.find("0123456789abcdef"), std::string::npos) << "the CHAP secret is shown";
  auto creating = get("/v1/storage-pools/pool1", pool_t, viewer_token);
  EXPECT_TRUE(creating.status == 200u || creating.status == 404u)
      << creating.status << " " << creating.body;
  if (creating.status == 200u) {
    EXPECT_EQ(creating.json().value("state", ""), "creating") << creating.body;
    EXPECT_EQ(creating.body.find("0123456789abcdef"), std::string::npos)
        << "the CHAP secret is shown";
  }
  auto early_volume = post(volumes, volumes, operator_token,
                           {{"name", "vol1"}, {"pool", "pool1"}, {"size_gib", 1}});
  EXPECT_TRUE(early_volume.status == 409u || early_volume.status == 404u)
      << early_volume.status << " " << early_volume.body;
  auto early_delete =
      del("/v1/storage-pools/pool1", pool_t, admin);  // its create is in progress, or it is gone
  auto early_join =
      post("/v1/storage-pools/pool1/hosts", pool_hosts_t, admin, join_node1);  // not ready yet
  EXPECT_TRUE(early_join.status == 409u || early_join.status == 404u)
      << early_join.status << " " << early_join.body;
  EXPECT_TRUE(early_delete.status == 409u || early_delete.status == 404u)
      << early_delete.status << " " << early_delete.body;
  auto pool_done = get("/v1/operations/" + pool_op.json().value("id", "") + "?wait=120",
                       "/v1/operations/{id}", viewer_token);
  ASSERT_EQ(pool_done.status, 200u) << pool_done.body;
  {
    const json op = pool_done.json();
    EXPECT_EQ(op.value("state", ""), "failed") << pool_done.body;
    ASSERT_TRUE(op["error"].is_object()) << pool_done.body;
    EXPECT_EQ(op["error"].value("code", ""), "unavailable") << pool_done.body;
    EXPECT_TRUE(op["error"]["details"].value("rolled_back", false)) << pool_done.body;
    EXPECT_NE(op["error"]["details"]["hosts"].value("node1", "").find("unavailable"),
              std::string::npos)
        << pool_done.body;
    EXPECT_EQ(pool_done.body.find("0123456789abcdef"), std::string::npos)
        << "the CHAP secret is shown";
  }
  EXPECT_EQ(get("/v1/storage-pools/pool1", pool_t, viewer_token).status, 404u);
  EXPECT_EQ(get(pools, pools, viewer_token).json()["items"], json::array());
  auto pool_replay = pool_keyed(chap_pool, "pool1-create");
  EXPECT_EQ(pool_replay.status, 200u) << pool_replay.body;
  EXPECT_EQ(pool_replay.header("idempotent-replayed"), "true");
  EXPECT_EQ(pool_replay.json().value("id", ""), pool_op.json().value("id", ""));
  EXPECT_EQ(pool_keyed(pool1, "pool1-create").status, 409u);
  EXPECT_EQ(pool_keyed(pool1, std::string(129, 'k')).status, 400u);
  // An FC pool fails the same way, at listing node1's FC LUNs.
  auto fc_pool = post("/v1/storage-pools?wait=60", pools, admin,
                      {{"name", "fc1"},
                       {"type", "fc"},
                       {"wwids", {"3600a0b80000f1e2d0000a1b2c3d4e5f6"}},
                       {"hosts", nullptr}});
  ASSERT_EQ(fc_pool.status, 200u) << fc_pool.body;
  EXPECT_EQ(fc_pool.json().value("state", ""), "failed") << fc_pool.body;
  EXPECT_EQ(fc_pool.json()["params"].value("type", ""), "fc");

  // Volume bodies.
  const json vol1 = {{"name", "vol1"}, {"pool", "pool1"}, {"size_bytes", 1073741824}};
  auto volume_with = [&](const std::string& key, const json& value) {
    json b = vol1;
    if (value.is_discarded())
      b.erase(key);
    else
      b[key] = value;
    return b;
  };
  const json gone = json(json::value_t::discarded);
  struct BadBody {
    const char* why;
    json body;
    const char* field;
  };
  const std::vector<BadBody> bad_volumes = {
      {"size not a multiple of 512", volume_with("size_bytes", 1000000), "size_bytes"},
      {"size 0", volume_with("size_bytes", 0), "size_bytes"},
      {"size above 1 PiB", volume_with("size_bytes", 1125899906843136LL), "size_bytes"},
      {"size as text", volume_with("size_bytes", "1073741824"), "size_bytes"},
      {"both sizes", volume_with("size_gib", 1), "size_bytes"},
      {"no size", volume_with("size_bytes", gone), "size_bytes"},
      {"size_gib 0", {{"name", "vol1"}, {"pool", "pool1"}, {"size_gib", 0}}, "size_gib"},
      {"LVM reserves snapshot*", volume_with("name", "snapshot1"), "name"},
      {"LVM reserves pvmove*", volume_with("name", "pvmove0"), "name"},
      {"lvmlockd reserves lvmlock", volume_with("name", "lvmlock"), "name"},
      {"bad name", volume_with("name", "Vol_1"), "name"},
      {"no name", volume_with("name", gone), "name"},
      {"bad pool", volume_with("pool", "Pool_1"), "pool"},
      {"no pool", volume_with("pool", gone), "pool"},
      {"unknown field", volume_with("thin", true), "thin"},
  };
  for (const auto& bad : bad_volumes) {
    SCOPED_TRACE(bad.why);
    auto res = post(volumes, volumes, operator_token, bad.body);
    EXPECT_EQ(res.status, 400u) << res.body;
    EXPECT_EQ(field_of(res), bad.field) << res.body;
  }
  auto no_pool = post(volumes, volumes, operator_token, vol1);
  EXPECT_EQ(no_pool.status, 404u) << no_pool.body;
  EXPECT_EQ(no_pool.json()["error"]["details"].value("pool", ""), "pool1") << no_pool.body;
  EXPECT_EQ(post(volumes, volumes, viewer_token, vol1).status, 403u);
  EXPECT_EQ(post("/v1/volumes?wait=soon", volumes, operator_token, vol1).status, 400u);
  EXPECT_EQ(send({.method = "POST",
                  .target = volumes,
                  .path_template = volumes,
                  .token = operator_token,
                  .body = "name=vol1",
                  .content_type = "text/plain"})
                .status,
            415u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = volumes,
                  .path_template = volumes,
                  .token = operator_token,
                  .body = vol1.dump()})
                .status,
            405u);

  // A volume that does not exist, by name and by id, on every route.
  for (const std::string ref : {"ghost", missing_uuid.c_str()}) {
    SCOPED_TRACE(ref);
    const std::string base = "/v1/volumes/" + ref;
    auto missing = get(base, volume_t, viewer_token);
    EXPECT_EQ(missing.status, 404u) << missing.body;
    EXPECT_EQ(missing.json()["error"]["details"].value("volume", ""), ref) << missing.body;
    EXPECT_EQ(del(base, volume_t, operator_token).status, 404u);
    EXPECT_EQ(post(base + "/grow", grow_t, operator_token, {{"size_gib", 2}}).status, 404u);
    EXPECT_EQ(get(base + "/snapshots", snaps_t, viewer_token).status, 404u);
    EXPECT_EQ(post(base + "/snapshots", snaps_t, operator_token, {{"name", "s1"}}).status, 404u);
    EXPECT_EQ(get(base + "/snapshots/s1", snap_t, viewer_token).status, 404u);
    EXPECT_EQ(del(base + "/snapshots/s1", snap_t, operator_token).status, 404u);
    EXPECT_EQ(post(base + "/snapshots/s1/revert", revert_t, operator_token, json::object()).status,
              404u);
    EXPECT_EQ(send({.method = "POST",
                    .target = base + "/snapshots/" + missing_uuid + "/revert?wait=5",
                    .path_template = revert_t,
                    .token = operator_token})
                  .status,
              404u);
  }
  EXPECT_EQ(get("/v1/volumes/Vol_1", volume_t, viewer_token).status, 400u);
  EXPECT_EQ(get("/v1/volumes/ghost/snapshots/Snap_1", snap_t, viewer_token).status, 400u);
  EXPECT_EQ(del("/v1/volumes/ghost", volume_t, viewer_token).status, 403u);
  EXPECT_EQ(del("/v1/volumes/ghost?force=true", volume_t, operator_token).status, 400u);
  EXPECT_EQ(send({.method = "DELETE",
                  .target = "/v1/volumes/ghost",
                  .path_template = volume_t,
                  .token = operator_token,
                  .headers = {{"Idempotency-Key", "bad key"}}})
                .status,
            400u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = "/v1/volumes/ghost",
                  .path_template = volume_t,
                  .token = operator_token,
                  .body = "{}"})
                .status,
            405u);
  // Grow and snapshot bodies are checked before the volume is looked up.
  const std::vector<BadBody> bad_grows = {
      {"size not a multiple of 512", {{"size_bytes", 1073742000}}, "size_bytes"},
      {"both sizes", {{"size_bytes", 1073741824}, {"size_gib", 1}}, "size_bytes"},
      {"no size", json::object(), "size_bytes"},
      {"unknown field", {{"size_gib", 2}, {"shrink", false}}, "shrink"},
  };
  for (const auto& bad : bad_grows) {
    SCOPED_TRACE(bad.why);
    auto res = post("/v1/volumes/ghost/grow", grow_t, operator_token, bad.body);
    EXPECT_EQ(res.status, 400u) << res.body;
    EXPECT_EQ(field_of(res), bad.field) << res.body;
  }
  EXPECT_EQ(send({.method = "POST",
                  .target = "/v1/volumes/ghost/grow",
                  .path_template = grow_t,
                  .token = operator_token})
                .status,
            400u);
  EXPECT_EQ(post("/v1/volumes/ghost/grow", grow_t, viewer_token, {{"size_gib", 2}}).status, 403u);
  EXPECT_EQ(get("/v1/volumes/ghost/grow", grow_t, operator_token).status, 405u);
  const std::vector<BadBody> bad_snapshots = {
      {"both sizes", {{"name", "s1"}, {"size_bytes", 4194304}, {"size_ratio", 0.5}}, "size_ratio"},
      {"ratio 0", {{"name", "s1"}, {"size_ratio", 0}}, "size_ratio"},
      {"ratio above 1", {{"name", "s1"}, {"size_ratio", 1.5}}, "size_ratio"},
      {"size not a multiple of 512", {{"name", "s1"}, {"size_bytes", 4194305}}, "size_bytes"},
      {"size_gib", {{"name", "s1"}, {"size_gib", 1}}, "size_gib"},
      {"bad name", {{"name", "Snap_1"}}, "name"},
      {"no name", {{"quiesce", false}}, "name"},
      {"quiesce as text", {{"name", "s1"}, {"quiesce", "yes"}}, "quiesce"},
      {"unknown field", {{"name", "s1"}, {"memory", true}}, "memory"},
  };
  for (const auto& bad : bad_snapshots) {
    SCOPED_TRACE(bad.why);
    auto res = post("/v1/volumes/ghost/snapshots", snaps_t, operator_token, bad.body);
    EXPECT_EQ(res.status, 400u) << res.body;
    EXPECT_EQ(field_of(res), bad.field) << res.body;
  }
  EXPECT_EQ(post("/v1/volumes/ghost/snapshots", snaps_t, viewer_token, {{"name", "s1"}}).status,
            403u);
  EXPECT_EQ(send({.method = "PUT",
                  .target = "/v1/volumes/ghost/snapshots",
                  .path_template = snaps_t,
                  .token = operator_token,
                  .body = "{}"})
                .status,
            405u);
  EXPECT_EQ(post("/v1/volumes/ghost/snapshots/s1", snap_t, operator_token, json::object()).status,
            405u);
  EXPECT_EQ(del("/v1/volumes/ghost/snapshots/s1", snap_t, viewer_token).status, 403u);
  EXPECT_EQ(
      post("/v1/volumes/ghost/snapshots/s1/revert", revert_t, operator_token, {{"force", true}})
          .status,
      400u);
  EXPECT_EQ(send({.method = "POST",
                  .target = "/v1/volumes/ghost/snapshots/s1/revert",
                  .path_template = revert_t,
                  .token = operator_token,
                  .body = "now",
                  .content_type = "text/plain"})
                .status,
            415u);
  EXPECT_EQ(get("/v1/volumes/ghost/snapshots/s1/revert", revert_t, operator_token).status, 405u);
  EXPECT_EQ(
      post("/v1/volumes/ghost/snapshots/s1/revert", revert_t, viewer_token, json::object()).status,
      403u);
  EXPECT_EQ(
      post("/v1/volumes/ghost/resize", "/v1/volumes/{id}/resize", operator_token, json::object())
          .status,
      404u);
  EXPECT_EQ(post("/v1/volumes/ghost/snapshots/s1/merge",
                 "/v1/volumes/{id}/snapshots/{snapshot}/merge", operator_token, json::object())
                .status,
            404u);

  // VM disks on shared volumes: either size_gib or volume, and the volume must exist.
  auto vm_disk = [&](const json& disk) {
    return post("/v1/vms", "/v1/vms", operator_token,
                {{"name", "shared1"}, {"memory_mib", 64}, {"disks", {disk}}});
  };
  auto no_volume = vm_disk({{"volume", "ghost"}});
  EXPECT_EQ(no_volume.status, 400u) << no_volume.body;
  EXPECT_EQ(field_of(no_volume), "disks[0].volume") << no_volume.body;
  auto both = vm_disk({{"volume", "ghost"}, {"size_gib", 1}});
  EXPECT_EQ(both.status, 400u) << both.body;
  EXPECT_EQ(field_of(both), "disks[0].size_gib") << both.body;
  EXPECT_EQ(vm_disk({{"volume", "Vol_1"}}).status, 400u);
  EXPECT_EQ(vm_disk({{"volume", 7}}).status, 400u);
  EXPECT_EQ(vm_disk({{"volume", nullptr}}).status, 400u);  // then size_gib is required
  EXPECT_EQ(get("/v1/vms/shared1", "/v1/vms/{id}", viewer_token).status, 404u);
  // A VM snapshot takes every disk, and every disk must be a shared volume.
  const std::string vm_snap_t = "/v1/vms/{id}/snapshots";
  auto no_disks = post("/v1/vms/web4/snapshots", vm_snap_t, operator_token, {{"name", "s1"}});
  EXPECT_EQ(no_disks.status, 409u) << no_disks.body;  // no disks (or an operation still on it)
  auto local_disk = post("/v1/vms/web5/snapshots", vm_snap_t, operator_token,
                         {{"name", "s1"}, {"quiesce", false}});
  EXPECT_EQ(local_disk.status, 409u) << local_disk.body;  // its disk is in the host's image pool
  EXPECT_EQ(post("/v1/vms/ghost/snapshots", vm_snap_t, operator_token, {{"name", "s1"}}).status,
            404u);
  EXPECT_EQ(post("/v1/vms/web5/snapshots", vm_snap_t, operator_token, {{"name", "S1"}}).status,
            400u);
  EXPECT_EQ(
      post("/v1/vms/web5/snapshots", vm_snap_t, operator_token, {{"name", "s1"}, {"size_ratio", 2}})
          .status,
      400u);
  EXPECT_EQ(send({.method = "POST",
                  .target = "/v1/vms/web5/snapshots",
                  .path_template = vm_snap_t,
                  .token = operator_token})
                .status,
            400u);  // the name is required
  EXPECT_EQ(post("/v1/vms/web5/snapshots", vm_snap_t, viewer_token, {{"name", "s1"}}).status, 403u);
  EXPECT_EQ(get("/v1/vms/web5/snapshots", vm_snap_t, viewer_token).status, 405u);
  // The placement dry run checks volumes as a create does: an unknown one is 400.
  auto dry = post(
      "/v1/placements", "/v1/placements", operator_token,
      {{"name", "p4"}, {"memory_mib", 64}, {"disks", {{{"volume", "ghost"}, {"bus", "scsi"}}}}});
  EXPECT_EQ(dry.status, 400u) << dry.body;

  // ---- what the state forbids -----------------------------------------------------------
  auto busy_host = del("/v1/hosts/node1", "/v1/hosts/{name}", admin);
  EXPECT_EQ(busy_host.status, 409u) << busy_host.body;
  auto tokens = get("/v1/tokens", "/v1/tokens", admin);
  ASSERT_EQ(tokens.status, 200u);
  std::string agent_token_id;
  const json token_list = tokens.json();
  for (const auto& t : token_list["items"])
    if (t.value("role", "") == "agent") agent_token_id = t.value("id", "");
  ASSERT_FALSE(agent_token_id.empty()) << tokens.body;
  EXPECT_EQ(del("/v1/tokens/" + agent_token_id, "/v1/tokens/{id}", admin).status, 409u);

  // ---- answers of the HTTP server itself --------------------------------------------------
  auto malformed =
      http_->send_raw("GET /v1/healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n", "GET",
                      "/v1/healthz", "/v1/healthz");
  ASSERT_TRUE(malformed.ok()) << malformed.error().message;
  EXPECT_EQ(malformed->status, 400u);
  // A body that never arrives: the server gives up after its read timeout. Its 408
  // answer is part of the contract, but today the stream's own timeout closes the socket
  // before the answer can be written, so a closed connection is accepted too; an answer
  // that does come must be the 408 (and is checked against the contract below).
  auto slow = http_->send_raw(
      "POST /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + operator_token +
          "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
      "POST", "/v1/vms", "/v1/vms");
  if (slow.ok())
    EXPECT_EQ(slow->status, 408u);
  else
    std::fprintf(stderr, "note: no 408 answer to an unfinished request (%s)\n",
                 slow.error().message.c_str());

  EXPECT_EQ(get("/metrics", "/metrics", viewer_token).status, 200u);
  EXPECT_EQ(get("/metrics", "/metrics", agent_token).status, 403u);

  // ---- the contract -------------------------------------------------------------------
  ASSERT_GT(http_->recorded(), 100u);
  const ProcessOutput check = run_checker({record_path_, "--require-coverage"});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml does not describe what the controller answered (" << record_path_
      << "):\n"
      << check.out << check.err;
}

// ---- moves and drains ------------------------------------------------------------------
// The operations of moves and a drain as the real controller records them, checked
// against their kinds' params and result schemas: no agent answers, so each move fails
// after its first steps, with the partial result it recorded (how it moves, from where
// to where), and the drain fails naming the VM that could not move.
TEST_F(ControllerContract, MoveAndDrainOperationsAnswerAsTheContractSays) {
  const std::string admin = controller_->admin_token();
  std::map<std::string, std::string> agent_tokens;
  for (const std::string host : {"node1", "node2"}) {
    auto reg = post("/v1/hosts", "/v1/hosts", admin, {{"name", host}, {"agent_url", agent_url()}});
    ASSERT_EQ(reg.status, 201u) << reg.body;
    agent_tokens[host] = reg.json().value("agent_token", "");
  }
  auto beat = [&](const std::string& host, const json& domains) {
    const json inventory = {{"cpus", 8},
                            {"memory_total_mib", 16384},
                            {"memory_free_mib", 12000},
                            {"domain_type", "kvm"},
                            {"migration_address", host == "node1" ? "127.0.0.11" : "127.0.0.12"},
                            {"domains", domains}};
    auto a = post("/v1/agent/heartbeat", "/v1/agent/heartbeat", agent_tokens[host],
                  {{"host", host}, {"agent_url", agent_url()}, {"inventory", inventory}});
    EXPECT_EQ(a.status, 200u) << a.body;
  };
  beat("node1", json::array());
  beat("node2", json::array());

  // A VM whose create failed (no agent) stays pending on node1 until node1 reports it.
  auto created = post("/v1/vms?wait=60", "/v1/vms", admin,
                      {{"name", "mover"}, {"memory_mib", 64}, {"host", "node1"}});
  ASSERT_EQ(created.status, 200u) << created.body;
  const std::string id = created.json()["target"].value("id", "");
  auto domain = [&](const std::string& state) {
    return json::array({{{"uuid", id},
                         {"name", "mover"},
                         {"state", state},
                         {"managed", true},
                         {"persistent", true}}});
  };
  beat("node1", domain("running"));
  ASSERT_EQ(get("/v1/vms/mover", "/v1/vms/{id}", admin).json().value("state", ""), "running");

  // A live move: its result says so from the start, and where it was going.
  auto live = post("/v1/vms/mover/migrate?wait=60", "/v1/vms/{id}/migrate", admin,
                   {{"target_host", "node2"}});
  ASSERT_EQ(live.status, 200u) << live.body;
  {
    const json op = live.json();
    EXPECT_EQ(op.value("kind", ""), "vm.migrate");
    EXPECT_EQ(op.value("state", ""), "failed") << live.body;
    EXPECT_EQ(op["params"].value("mode", ""), "live");
    EXPECT_EQ(op["params"].value("target_host", ""), "node2");
    EXPECT_EQ(op["result"].value("mode", ""), "live") << live.body;
    EXPECT_EQ(op["result"].value("source_host", ""), "node1") << live.body;
    EXPECT_EQ(op["result"].value("target_host", ""), "node2") << live.body;
  }

  // A drain: its migration fails too, and its result says so for the VM.
  const std::string maint = "/v1/hosts/{name}/maintenance";
  auto drain = post("/v1/hosts/node1/maintenance?wait=60", maint, admin, {{"enabled", true}});
  ASSERT_EQ(drain.status, 200u) << drain.body;
  {
    const json op = drain.json();
    EXPECT_EQ(op.value("kind", ""), "host.maintenance");
    EXPECT_EQ(op.value("state", ""), "failed") << drain.body;
    EXPECT_EQ(op["result"].value("host", ""), "node1");
    const json entry = op["result"]["vms"].value("mover", json::object());
    EXPECT_EQ(entry.value("state", ""), "failed") << drain.body;
    EXPECT_TRUE(entry.contains("operation")) << drain.body;
    EXPECT_TRUE(entry["error"].is_object()) << drain.body;
  }
  auto undrain = post("/v1/hosts/node1/maintenance?wait=60", maint, admin, {{"enabled", false}});
  ASSERT_EQ(undrain.status, 200u) << undrain.body;
  EXPECT_EQ(undrain.json().value("state", ""), "succeeded") << undrain.body;

  // A cold move of the VM once node1 reports it stopped.
  beat("node1", domain("stopped"));
  ASSERT_EQ(get("/v1/vms/mover", "/v1/vms/{id}", admin).json().value("state", ""), "stopped");
  auto cold = post("/v1/vms/mover/migrate?wait=60", "/v1/vms/{id}/migrate", admin,
                   {{"target_host", "node2"}});
  ASSERT_EQ(cold.status, 200u) << cold.body;
  EXPECT_EQ(cold.json()["params"].value("mode", ""), "cold");
  EXPECT_EQ(cold.json()["result"].value("mode", ""), "cold") << cold.body;
  EXPECT_EQ(cold.json()["result"].value("source_host", ""), "node1") << cold.body;

  // Every operation once more, as the list shows them.
  auto ops = get("/v1/operations?limit=1000", "/v1/operations", admin);
  ASSERT_EQ(ops.status, 200u);
  const json listed = ops.json();
  std::set<std::string> kinds;
  for (const auto& op : listed["items"]) kinds.insert(op.value("kind", ""));
  EXPECT_EQ(kinds, (std::set<std::string>{"vm.create", "vm.migrate", "host.maintenance"}));

  const ProcessOutput check = run_checker({record_path_});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml does not describe what the controller answered (" << record_path_
      << "):\n"
      << check.out << check.err;
}

// ---- the checker itself ---------------------------------------------------------------

TEST(OpenApiCheck, SpecIsStructurallyValid) {
  const ProcessOutput check = run_checker({});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

// The contract test is only as good as the checker's ability to say no: answers that
// stray from the contract in each way it guards against must be reported.
TEST(OpenApiCheck, RejectsAnswersOutsideTheContract) {
  const json op = {{"id", "0b3a7c1e-5d4f-4e2a-9c8b-7a6f5e4d3c2b"},
                   {"kind", "vm.create"},
                   {"target", {{"type", "vm"}, {"id", "1b3a7c1e-5d4f-4e2a-9c8b-7a6f5e4d3c2b"}}},
                   {"state", "pending"},
                   {"progress", 0},
                   {"step", ""},
                   {"error", nullptr},
                   {"params", {{"name", "web1"}, {"start", false}}},
                   {"result", json::object()},
                   {"attempts", 0},
                   {"requested_by", "ops"},
                   {"created_at", "2026-01-01T00:00:00.000Z"},
                   {"started_at", nullptr},
                   {"finished_at", nullptr}};
  json leaked = op;
  leaked["request_hash"] = std::string(64, 'a');
  json migrate_without_mode = op;
  migrate_without_mode["kind"] = "vm.migrate";
  migrate_without_mode["params"] = {{"target_host", "node2"},
                                    {"source_host", "node1"},
                                    {"mode", "live"},
                                    {"policy",
                                     {{"max_downtime_ms", 300},
                                      {"bandwidth_mib_s", 0},
                                      {"auto_converge", false},
                                      {"allow_post_copy", false},
                                      {"converge_timeout_s", 0},
                                      {"downtime_ceiling_ms", 2000}}}};
  migrate_without_mode["result"] = {{"source_host", "node1"}, {"target_host", "node2"}};
  json stop_with_delete_params = op;
  stop_with_delete_params["kind"] = "vm.stop";
  stop_with_delete_params["params"] = {{"force", true}};
  auto line = [](const std::string& method, const std::string& templ, unsigned status,
                 const std::string& type, const std::string& body,
                 const json& headers = json::object()) {
    return json{{"method", method}, {"path_template", templ}, {"path", templ},
                {"status", status}, {"content_type", type},   {"headers", headers},
                {"body", body}}
        .dump();
  };
  const std::string location = "/v1/operations/" + op["id"].get<std::string>();
  const std::vector<std::string> lines = {
      // 1: a field the contract does not have
      line("GET", "/v1/healthz", 200, "application/json", R"({"status":"ok","uptime_s":5})"),
      // 2: a status the operation does not declare
      line("GET", "/v1/healthz", 418, "application/json", R"({"status":"ok"})"),
      // 3: a content type the response does not declare
      line("GET", "/v1/healthz", 200, "text/html", "<p>ok</p>"),
      // 4: an operation without its Location header
      line("POST", "/v1/vms", 202, "application/json", op.dump()),
      // 5: an internal field leaking into the operation view
      line("GET", "/v1/operations/{id}", 200, "application/json", leaked.dump()),
      // 6: an error code that does not belong to the status
      line("GET", "/v1/hosts", 401, "application/json",
           R"({"error":{"code":"not_found","message":"x","details":{}}})"),
      // 7: an error code outside the closed set
      line("GET", "/v1/hosts", 500, "application/json",
           R"({"error":{"code":"oops","message":"x","details":{}}})"),
      // 8: a valid answer, which must pass
      line("POST", "/v1/vms", 202, "application/json", op.dump(), {{"location", location}}),
      // 9: a move whose result does not say how it moves
      line("GET", "/v1/operations/{id}", 200, "application/json", migrate_without_mode.dump()),
      // 10: params of another kind than the operation's
      line("GET", "/v1/operations/{id}", 200, "application/json", stop_with_delete_params.dump()),
  };
  const std::string path = kRecordDir + "/recorded-checker-negative.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({path});
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  for (int n = 1; n <= 7; ++n)
    EXPECT_NE(check.out.find("FAIL line " + std::to_string(n) + ":"), std::string::npos)
        << "line " << n << " was not reported:\n"
        << check.out;
  EXPECT_EQ(check.out.find("FAIL line 8:"), std::string::npos) << check.out;
  for (int n = 9; n <= 10; ++n)
    EXPECT_NE(check.out.find("FAIL line " + std::to_string(n) + ":"), std::string::npos)
        << "line " << n << " was not reported:\n"
        << check.out;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kvmfleet::contract
