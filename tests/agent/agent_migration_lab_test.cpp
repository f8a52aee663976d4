// Live migration through the agents' API, for real: two lab hosts, each with its own
// libvirtd and a kvmfleet-agent inside its namespaces, a disk-less guest started on
// one and migrated peer to peer to the other. Needs root; uses /dev/kvm when the
// machine has it. The agents have no controller: their heartbeats go to a loopback
// port inside their own network namespace where nothing listens, and are only logged.
// For a guest with a CD-ROM, the test itself serves the controller's image data route
// (GET /v1/agent/images/NAME/data) on the lab bridge, from a real ISO made by
// genisoimage.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/http/server.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/migration.hpp"
#include "lab.hpp"

namespace kvmfleet::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kToken = "kvf_lab-agent-token";
constexpr int kAgentPort = 7100;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!trim(l).empty()) out.push_back(trim(l));
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class AgentMigrationLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the lab needs root (namespaces, libvirtd); not run";
    lab::LabOptions o;
    o.capabilities_cache = KVMFLEET_LAB_CACHE_DIR;
    auto lab = lab::Lab::create(runner_, o);
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    lab_ = std::move(lab).value();
  }

  void TearDown() override {
    if (!lab_) return;
    // The agents' logs go with the lab's work dir: show them when something failed.
    if (HasFailure()) {
      for (const auto& h : lab_->hosts()) {
        std::ifstream in(lab_->work_dir() / ("agent-" + h.name) / "agent.log");
        std::stringstream ss;
        ss << in.rdbuf();
        std::cout << "---- agent log of " << h.name << " ----\n" << ss.str() << std::endl;
      }
    }
    auto st = lab_->teardown();
    EXPECT_TRUE(st.ok()) << st.error().message;
  }

  // A lab host with a kvmfleet-agent running inside it, serving on the host's address.
  lab::Host add_agent_host(const std::string& name,
                           const std::string& controller_url = "http://127.0.0.1:9") {
    auto h = lab_->add_host(name);
    if (!h.ok()) {
      ADD_FAILURE() << "add_host " << name << ": " << h.error().message;
      return {};
    }
    const fs::path dir = lab_->work_dir() / ("agent-" + name);
    fs::create_directories(dir);
    const fs::path token = dir / "agent.token";
    std::ofstream(token) << kToken << "\n";
    ::chmod(token.c_str(), 0600);
    const json config = {{"host", name},
                         {"listen_address", h->address},
                         {"listen_port", kAgentPort},
                         {"controller_url", controller_url},
                         {"token_file", token.string()},
                         {"libvirt_uri", "qemu:///system"},
                         {"image_pool_path", (dir / "images").string()},
                         {"heartbeat_interval_ms", 60'000},
                         {"migration_address", h->address}};
    std::ofstream(dir / "agent.json") << config.dump(2);
    SpawnOptions so;
    so.stdout_path = (dir / "agent.log").string();
    so.stderr_path = (dir / "agent.log").string();
    auto pid =
        lab_->run_in_host(*h, {KVMFLEET_AGENT_BIN, "--config", (dir / "agent.json").string()}, so);
    if (!pid.ok()) {
      ADD_FAILURE() << "starting the agent on " << name << ": " << pid.error().message;
      return {};
    }
    return *h;
  }

  static std::string url(const lab::Host& h, const std::string& path) {
    return "http://" + h.address + ":" + std::to_string(kAgentPort) + path;
  }

  Result<json> call(const lab::Host& h, std::string_view method, const std::string& path,
                    const json* body = nullptr) {
    return http::call_json(client_, method, url(h, path), kToken, body, 60s);
  }

  // The agent answers once its server is up; the deadline only keeps a broken build
  // from hanging.
  Result<HostInventory> wait_for_agent(const lab::Host& h) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
      auto inv = call(h, "GET", "/agent/v1/inventory");
      if (inv.ok()) return inv->get<HostInventory>();
      if (std::chrono::steady_clock::now() > deadline) return inv.take_error();
      std::this_thread::sleep_for(200ms);
    }
  }

  // Polls the source agent until the migration is no longer running; the deadline
  // only keeps a broken build from hanging.
  MigrationStatus wait_for_end(const lab::Host& h, const std::string& uuid) {
    const auto deadline = std::chrono::steady_clock::now() + 180s;
    for (;;) {
      auto polled = call(h, "GET", "/agent/v1/domains/" + uuid + "/migration");
      if (!polled.ok()) {
        ADD_FAILURE() << "polling the migration: " << polled.error().message;
        return {};
      }
      auto status = polled->get<MigrationStatus>();
      if (status.state != MigrationState::running) return status;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "the migration never ended";
        return status;
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  std::string virsh_ok(const lab::Host& h, const std::vector<std::string>& args) {
    RunOptions o;
    o.timeout = 60s;
    auto r = lab_->virsh(h, args, o);
    if (!r.ok()) {
      ADD_FAILURE() << "virsh " << args.front() << " on " << h.name << ": " << r.error().message;
      return {};
    }
    EXPECT_EQ(r->exit_code, 0) << "virsh " << args.front() << " on " << h.name << ": " << r->err;
    return trim(r->out);
  }

  SystemProcessRunner runner_;
  http::BeastClient client_;
  std::unique_ptr<lab::Lab> lab_;
};

std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", digest[i]);
    hex += b;
  }
  return hex;
}

// The controller's agent image route, for one image, on the lab bridge: each agent
// fetches the ISO from here as it would from the controller. Reads are counted.
class ImageRoute {
 public:
  ImageRoute(std::string address, std::string image, std::string data)
      : image_(std::move(image)), data_(std::move(data)) {
    http::ServerOptions o;
    o.address = std::move(address);
    server_ = std::make_unique<http::Server>(
        ioc_, o, [this](http::Request&& req, http::Responder respond) { respond(serve(req)); });
  }
  ~ImageRoute() {
    if (server_) server_->stop();
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }
  Status start() {
    if (auto st = server_->start(); !st) return st;
    thread_ = std::thread([this] { ioc_.run(); });
    return {};
  }
  std::uint16_t port() const { return server_->port(); }
  int reads() const { return reads_; }

 private:
  http::Response serve(const http::Request& req) {
    const std::string target(req.target());
    const std::string prefix = "/v1/agent/images/" + image_ + "/data?offset=";
    if (req[http::bhttp::field::authorization] != std::string("Bearer ") + kToken ||
        !target.starts_with(prefix))
      return http::json_response(http::HttpStatus::not_found, {{"error", {{"code", "not_found"}}}});
    const auto amp = target.find("&length=");
    const std::uint64_t offset = std::stoull(target.substr(prefix.size(), amp - prefix.size()));
    const std::size_t length = std::stoul(target.substr(amp + 8));
    ++reads_;
    http::Response res{http::HttpStatus::ok, req.version()};
    res.set(http::bhttp::field::content_type, "application/octet-stream");
    res.body() = offset < data_.size() ? data_.substr(offset, length) : std::string();
    res.prepare_payload();
    return res;
  }

  std::string image_;
  std::string data_;
  std::atomic<int> reads_{0};
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      ioc_.get_executor()};
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(AgentMigrationLabTest, AgentMigratesARunningGuestToItsPeer) {
  const lab::Host a = add_agent_host("src");
  const lab::Host b = add_agent_host("dst");
  ASSERT_FALSE(a.name.empty());
  ASSERT_FALSE(b.name.empty());
  auto inv_a = wait_for_agent(a);
  ASSERT_TRUE(inv_a.ok()) << inv_a.error().message;
  auto inv_b = wait_for_agent(b);
  ASSERT_TRUE(inv_b.ok()) << inv_b.error().message;
  EXPECT_EQ(inv_a->migration_address, a.address);
  EXPECT_EQ(inv_b->migration_address, b.address);

  const std::string uuid = new_uuid();
  const std::string name = "mig-" + uuid.substr(0, 8);
  const json define = {{"op_id", "lab-op-1"},
                       {"spec",
                        {{"uuid", uuid},
                         {"name", name},
                         {"vcpus", 1},
                         {"memory_mib", 64},
                         {"domain_type", inv_a->domain_type},
                         {"generation", 1}}}};
  auto defined = call(a, "POST", "/agent/v1/domains/define", &define);
  ASSERT_TRUE(defined.ok()) << defined.error().message;
  const json op = {{"op_id", "lab-op-1"}};
  auto started = call(a, "POST", "/agent/v1/domains/" + uuid + "/start", &op);
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_EQ(started->at("state"), "running");

  // A destination that cannot work (the lab has no TLS certificates, and the peer's
  // libvirtd does not listen for TLS): the migration fails, the guest keeps running
  // here and the domain is not left busy.
  const json refused = {{"op_id", "lab-op-fail"},
                        {"destination_uri", "qemu+tls://" + inv_b->migration_address + "/system"},
                        {"migrate_uri", "tcp://" + inv_b->migration_address}};
  auto failing = call(a, "POST", "/agent/v1/domains/" + uuid + "/migrate", &refused);
  ASSERT_TRUE(failing.ok()) << failing.error().message;
  auto failed = wait_for_end(a, uuid);
  ASSERT_EQ(failed.state, MigrationState::failed);
  EXPECT_EQ(failed.op_id, "lab-op-fail");
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_FALSE(failed.error->message.empty());
  EXPECT_TRUE(contains(lines(virsh_ok(a, {"list", "--name", "--state-running"})), name));
  EXPECT_FALSE(contains(lines(virsh_ok(b, {"list", "--name", "--all"})), name));

  const json migrate = {{"op_id", "lab-op-2"},
                        {"destination_uri", "qemu+tcp://" + inv_b->migration_address + "/system"},
                        {"migrate_uri", "tcp://" + inv_b->migration_address},
                        {"max_downtime_ms", 500}};
  auto first = call(a, "POST", "/agent/v1/domains/" + uuid + "/migrate", &migrate);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->at("op_id"), "lab-op-2");

  // While it runs the domain is busy; once it ended, the guest is gone from here.
  const json other_op = {{"op_id", "lab-op-3"}};
  auto destroy = call(a, "POST", "/agent/v1/domains/" + uuid + "/destroy", &other_op);
  ASSERT_FALSE(destroy.ok());
  EXPECT_TRUE(destroy.error().code == ErrorCode::conflict ||
              destroy.error().code == ErrorCode::not_found)
      << destroy.error().message;

  const MigrationStatus status = wait_for_end(a, uuid);
  ASSERT_EQ(status.state, MigrationState::completed)
      << (status.error ? status.error->message : std::string("no error"));
  EXPECT_EQ(status.op_id, "lab-op-2");
  EXPECT_FALSE(status.error.has_value());

  // A repeat reports the outcome and starts nothing.
  auto repeat = call(a, "POST", "/agent/v1/domains/" + uuid + "/migrate", &migrate);
  ASSERT_TRUE(repeat.ok()) << repeat.error().message;
  EXPECT_EQ(repeat->at("state"), "completed");

  // Running and persistent on the destination only; undefined on the source.
  auto running_b = lines(virsh_ok(b, {"list", "--name", "--state-running"}));
  auto persistent_b = lines(virsh_ok(b, {"list", "--name", "--all", "--persistent"}));
  auto all_a = lines(virsh_ok(a, {"list", "--name", "--all"}));
  EXPECT_TRUE(contains(running_b, name));
  EXPECT_TRUE(contains(persistent_b, name));
  EXPECT_FALSE(contains(all_a, name));

  auto on_b = call(b, "GET", "/agent/v1/domains/" + uuid);
  ASSERT_TRUE(on_b.ok()) << on_b.error().message;
  auto dom = on_b->get<DomainStatus>();
  EXPECT_EQ(dom.state, "running");
  EXPECT_TRUE(dom.managed);
  EXPECT_TRUE(dom.persistent);
  auto on_a = call(a, "GET", "/agent/v1/domains/" + uuid);
  ASSERT_FALSE(on_a.ok());
  EXPECT_EQ(on_a.error().code, ErrorCode::not_found);
}

// A guest with a CD-ROM (a real ISO, fetched from the image route) and a cloud-init
// seed (made by genisoimage) live-migrates: the destination prepares both first, the
// source sends a definition naming the destination's files (the two agents' image
// pools are different directories), and afterwards the source gives its copies up.
TEST_F(AgentMigrationLabTest, AGuestWithACdromAndASeedMigratesWithItsMedia) {
  // The ISO: genisoimage on a file of known text.
  const fs::path iso_dir = lab_->work_dir() / "iso-src";
  fs::create_directories(iso_dir);
  std::ofstream(iso_dir / "README.TXT") << "kvmfleet lab installer\n";
  const fs::path iso_path = lab_->work_dir() / "installer.iso";
  auto made = runner_.run({"genisoimage", "-quiet", "-output", iso_path.string(), "-volid",
                           "INSTALLER", iso_dir.string()});
  ASSERT_TRUE(made.ok() && made->exit_code == 0) << "genisoimage";
  std::ifstream in(iso_path, std::ios::binary);
  const std::string iso((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(iso.size(), 0u);
  ASSERT_TRUE(lab_->has_network());
  ImageRoute images(lab_->bridge_address(), "installer", iso);
  ASSERT_TRUE(images.start().ok());
  const std::string controller =
      "http://" + lab_->bridge_address() + ":" + std::to_string(images.port());

  const lab::Host a = add_agent_host("msrc", controller);
  const lab::Host b = add_agent_host("mdst", controller);
  ASSERT_FALSE(a.name.empty());
  ASSERT_FALSE(b.name.empty());
  auto inv_a = wait_for_agent(a);
  ASSERT_TRUE(inv_a.ok()) << inv_a.error().message;
  auto inv_b = wait_for_agent(b);
  ASSERT_TRUE(inv_b.ok()) << inv_b.error().message;
  std::cout << "guests run as domain type " << inv_a->domain_type << std::endl;

  const std::string uuid = new_uuid();
  const std::string name = "media-" + uuid.substr(0, 8);
  const json spec = {
      {"uuid", uuid},
      {"name", name},
      {"vcpus", 1},
      {"memory_mib", 64},
      {"domain_type", inv_a->domain_type},
      {"generation", 1},
      {"cdrom",
       {{"image", "installer"}, {"image_sha256", sha256_hex(iso)}, {"image_size", iso.size()}}},
      {"boot", {"cdrom"}},
      {"cloud_init", {{"hostname", "media-guest"}}}};
  const json define = {{"op_id", "media-op-1"}, {"spec", spec}};
  auto defined = call(a, "POST", "/agent/v1/domains/define", &define);
  ASSERT_TRUE(defined.ok()) << defined.error().message;
  const json op = {{"op_id", "media-op-1"}};
  auto started = call(a, "POST", "/agent/v1/domains/" + uuid + "/start", &op);
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_EQ(started->at("state"), "running");
  const fs::path pool_a = lab_->work_dir() / "agent-msrc" / "images";
  const fs::path pool_b = lab_->work_dir() / "agent-mdst" / "images";
  const fs::path iso_a = pool_a / "cache" / (sha256_hex(iso) + ".img");
  const fs::path seed_a = pool_a / (uuid + "-seed.iso");
  ASSERT_TRUE(fs::exists(iso_a));
  ASSERT_TRUE(fs::exists(seed_a));

  // Without the destination's files the source refuses before libvirt is asked.
  json migrate = {{"op_id", "media-op-2"},
                  {"destination_uri", "qemu+tcp://" + inv_b->migration_address + "/system"},
                  {"migrate_uri", "tcp://" + inv_b->migration_address},
                  {"max_downtime_ms", 500}};
  auto refused = call(a, "POST", "/agent/v1/domains/" + uuid + "/migrate", &migrate);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(refused.error().details.value("reason", ""), "boot_media_not_prepared");
  EXPECT_TRUE(contains(lines(virsh_ok(a, {"list", "--name", "--state-running"})), name));

  // The destination prepares them: the ISO fetched and checked, the seed written.
  const json prepare = {{"op_id", "media-op-2"}, {"spec", spec}};
  auto prepared = call(b, "POST", "/agent/v1/domains/" + uuid + "/media/prepare", &prepare);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const std::string cdrom_b = prepared->value("cdrom", "");
  const std::string seed_b = prepared->value("seed", "");
  EXPECT_EQ(cdrom_b, (pool_b / "cache" / (sha256_hex(iso) + ".img")).string());
  EXPECT_EQ(seed_b, (pool_b / (uuid + "-seed.iso")).string());
  ASSERT_TRUE(fs::exists(cdrom_b));
  ASSERT_TRUE(fs::exists(seed_b));
  EXPECT_GE(images.reads(), 2);  // each host fetched the ISO

  migrate["cdrom_path"] = cdrom_b;
  migrate["seed_path"] = seed_b;
  auto first = call(a, "POST", "/agent/v1/domains/" + uuid + "/migrate", &migrate);
  ASSERT_TRUE(first.ok()) << first.error().message;
  const MigrationStatus status = wait_for_end(a, uuid);
  ASSERT_EQ(status.state, MigrationState::completed)
      << (status.error ? status.error->message : std::string("no error"));

  // Running on the destination, its CD-ROMs there the destination's own files, in
  // the live definition and in the persistent one.
  EXPECT_TRUE(contains(lines(virsh_ok(b, {"list", "--name", "--state-running"})), name));
  EXPECT_FALSE(contains(lines(virsh_ok(a, {"list", "--name", "--all"})), name));
  for (const bool inactive : {false, true}) {
    std::vector<std::string> args{"dumpxml", name};
    if (inactive) args.push_back("--inactive");
    auto info = read_domain_xml(virsh_ok(b, args));
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->cdrom_sources, (std::vector<std::string>{cdrom_b, seed_b}))
        << (inactive ? "persistent" : "live");
    EXPECT_TRUE(info->managed);
  }
  // The guest reads its CD-ROM there: QEMU has the destination's ISO open.
  auto blk = lab_->virsh(b, {"domblklist", name, "--details"});
  ASSERT_TRUE(blk.ok());
  EXPECT_NE(blk->out.find(cdrom_b), std::string::npos) << blk->out;
  EXPECT_NE(blk->out.find(seed_b), std::string::npos) << blk->out;

  // The source gives its copies up; the destination refuses to (it runs the domain).
  const json remove = {{"op_id", "media-op-3"}, {"cdrom_sha256", sha256_hex(iso)}};
  auto removed = call(a, "POST", "/agent/v1/domains/" + uuid + "/media/remove", &remove);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed->at("removed").size(), 2u) << removed->dump();
  EXPECT_FALSE(fs::exists(iso_a));
  EXPECT_FALSE(fs::exists(seed_a));
  auto kept = call(b, "POST", "/agent/v1/domains/" + uuid + "/media/remove", &remove);
  ASSERT_FALSE(kept.ok());
  EXPECT_EQ(kept.error().code, ErrorCode::conflict);
  EXPECT_TRUE(fs::exists(cdrom_b));
  EXPECT_TRUE(fs::exists(seed_b));

  // Cleaned up by its recorded name: the guest and its definition on the destination.
  (void)virsh_ok(b, {"destroy", name});
  (void)virsh_ok(b, {"undefine", name});
}

// NIC hot plug on a running guest, for real: the agent attaches a NIC on a bridge of its
// host (virDomainAttachDeviceFlags, LIVE|CONFIG) and libvirt's live XML shows it. The lab
// guest is firmware only: it never answers an ACPI hot unplug, so a live removal is
// reported pending (and the definition keeps the NIC) until the guest stops; then the
// removal changes the definition only.
TEST_F(AgentMigrationLabTest, ANicJoinsARunningGuestAndLeavesItsDefinition) {
  const lab::Host a = add_agent_host("nics");
  ASSERT_FALSE(a.name.empty());
  auto inv = wait_for_agent(a);
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  std::cout << "guests run as domain type " << inv->domain_type << std::endl;
  // A bridge of the host's own (in its network namespace, gone with it).
  for (const auto& argv :
       std::vector<std::vector<std::string>>{{"ip", "link", "add", "br-hot", "type", "bridge"},
                                             {"ip", "link", "set", "br-hot", "up"}}) {
    auto r = lab_->exec_in_host(a, argv);
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << argv[1] << " " << argv[2];
  }

  const std::string uuid = new_uuid();
  const std::string name = "nic-" + uuid.substr(0, 8);
  const json define = {{"op_id", "nic-op-1"},
                       {"spec",
                        {{"uuid", uuid},
                         {"name", name},
                         {"vcpus", 1},
                         {"memory_mib", 64},
                         {"domain_type", inv->domain_type},
                         {"generation", 1}}}};
  ASSERT_TRUE(call(a, "POST", "/agent/v1/domains/define", &define).ok());
  const json op = {{"op_id", "nic-op-1"}};
  auto started = call(a, "POST", "/agent/v1/domains/" + uuid + "/start", &op);
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_EQ(started->at("state"), "running");

  const std::string mac = "52:54:00:7a:00:01";
  auto macs_of = [&](bool inactive) {
    std::vector<std::string> args{"dumpxml", name};
    if (inactive) args.push_back("--inactive");
    auto info = read_domain_xml(virsh_ok(a, args));
    EXPECT_TRUE(info.ok());
    return info.ok() ? info->nic_macs : std::vector<std::string>{};
  };
  const json attach = {
      {"op_id", "nic-op-2"},
      {"nic", {{"mac", mac}, {"bridge", "br-hot"}, {"model", "virtio"}, {"mtu", 1500}}},
      {"generation", 2}};
  auto attached = call(a, "POST", "/agent/v1/domains/" + uuid + "/nics/attach", &attach);
  ASSERT_TRUE(attached.ok()) << attached.error().message;
  EXPECT_EQ(attached->at("state"), "running");
  EXPECT_EQ(attached->at("generation"), 2);
  EXPECT_EQ(macs_of(false), (std::vector<std::string>{mac}));  // the running guest has it
  EXPECT_EQ(macs_of(true), (std::vector<std::string>{mac}));   // and its definition
  const std::string live = virsh_ok(a, {"dumpxml", name});
  auto iface = interface_xml_of(live, mac);
  ASSERT_TRUE(iface.ok() && iface->has_value());
  // (libxml2 writes the copy with double quotes.)
  EXPECT_NE((*iface)->find("bridge=\"br-hot\""), std::string::npos) << **iface;
  EXPECT_NE((*iface)->find("<model type=\"virtio\"/>"), std::string::npos) << **iface;
  // QEMU has the device: the host's bridge got the guest's tap.
  auto ports = lab_->exec_in_host(a, {"ip", "-o", "link", "show", "master", "br-hot"});
  ASSERT_TRUE(ports.ok());
  EXPECT_FALSE(trim(ports->out).empty()) << "no tap on br-hot";
  // A repeat (another op id) changes nothing.
  json again = attach;
  again["op_id"] = "nic-op-3";
  ASSERT_TRUE(call(a, "POST", "/agent/v1/domains/" + uuid + "/nics/attach", &again).ok());
  EXPECT_EQ(macs_of(false).size(), 1u);

  // The firmware-only guest does not let it go: pending, the definition keeps it.
  const json detach = {{"op_id", "nic-op-4"}, {"mac", mac}, {"generation", 3}};
  auto pending = call(a, "POST", "/agent/v1/domains/" + uuid + "/nics/detach", &detach);
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(pending.error().code, ErrorCode::conflict) << pending.error().message;
  EXPECT_EQ(pending.error().details.value("reason", ""), "detach_pending");
  EXPECT_EQ(macs_of(true), (std::vector<std::string>{mac}));

  // Stopped, the removal is the definition's only.
  auto destroyed = call(a, "POST", "/agent/v1/domains/" + uuid + "/destroy", &op);
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  json detach2 = detach;
  detach2["op_id"] = "nic-op-5";
  auto removed = call(a, "POST", "/agent/v1/domains/" + uuid + "/nics/detach", &detach2);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed->at("generation"), 3);
  EXPECT_TRUE(macs_of(true).empty());
  // And it starts without it.
  const json op2 = {{"op_id", "nic-op-6"}};
  ASSERT_TRUE(call(a, "POST", "/agent/v1/domains/" + uuid + "/start", &op2).ok());
  EXPECT_TRUE(macs_of(false).empty());
  (void)virsh_ok(a, {"destroy", name});
  (void)virsh_ok(a, {"undefine", name});
}

}  // namespace
}  // namespace kvmfleet::agent
