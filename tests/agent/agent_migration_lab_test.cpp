// Live migration through the agents' API, for real: two lab hosts, each with its own
// libvirtd and a kvmfleet-agent inside its namespaces, a disk-less guest started on
// one and migrated peer to peer to the other. Needs root; uses /dev/kvm when the
// machine has it. The agents have no controller: their heartbeats go to a loopback
// port inside their own network namespace where nothing listens, and are only logged.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/http/client.hpp"
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
  lab::Host add_agent_host(const std::string& name) {
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
                         {"controller_url", "http://127.0.0.1:9"},
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

}  // namespace
}  // namespace kvmfleet::agent
