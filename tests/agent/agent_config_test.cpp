#include "kvmfleet/agent/agent_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

json minimal() {
  return {{"host", "node1"},
          {"controller_url", "http://127.0.0.1:7000"},
          {"token_file", "/etc/kvmfleet/agent.token"}};
}

TEST(AgentConfig, DefaultsAndDerivedUrl) {
  auto c = parse_agent_config(minimal());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->listen_address, "127.0.0.1");
  EXPECT_EQ(c->listen_port, 7100);
  EXPECT_EQ(c->agent_url, "http://127.0.0.1:7100");
  EXPECT_EQ(c->libvirt_uri, "qemu:///system");
  EXPECT_EQ(c->image_pool_path, "/var/lib/kvmfleet/images");
  EXPECT_EQ(c->heartbeat_interval, std::chrono::milliseconds(5000));

  auto j = minimal();
  j["tls_cert_file"] = "/c.pem";
  j["tls_key_file"] = "/k.pem";
  j["listen_address"] = "::1";
  j["listen_port"] = 7443;
  auto t = parse_agent_config(j);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->agent_url, "https://[::1]:7443");
}

TEST(AgentConfig, MigrationAddressIsAnAddressOrAHostName) {
  auto plain = parse_agent_config(minimal());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->migration_address, "");
  for (const char* good : {"10.77.0.11", "node1", "node1.example.org"}) {
    auto j = minimal();
    j["migration_address"] = good;
    auto c = parse_agent_config(j);
    ASSERT_TRUE(c.ok()) << good << ": " << c.error().message;
    EXPECT_EQ(c->migration_address, good);
  }
  for (const char* bad : {"10.0.0.256", "node1/system", "a b", "-node", "node:16509",
                          "tcp://10.0.0.1", "10.0.0.1;reboot"}) {
    auto j = minimal();
    j["migration_address"] = bad;
    auto c = parse_agent_config(j);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(c.error().details.value("field", ""), "migration_address") << bad;
  }
  auto j = minimal();
  j["migration_address"] = 7;
  EXPECT_FALSE(parse_agent_config(j).ok());
}

TEST(AgentConfig, RefusesBadValues) {
  auto with = [](const char* k, json v) {
    auto j = minimal();
    j[k] = std::move(v);
    return j;
  };
  for (const auto& j : {with("unknown", 1), with("host", "Node_1"), with("listen_port", 0),
                        with("listen_port", 70000), with("controller_url", "ftp://x"),
                        with("token_file", "relative"), with("heartbeat_interval_ms", 5),
                        with("tls_cert_file", "/only-cert.pem"), with("agent_url", "node1:7100"),
                        with("worker_threads", 0), json::array()}) {
    auto c = parse_agent_config(j);
    ASSERT_FALSE(c.ok()) << j.dump();
    EXPECT_EQ(c.error().code, ErrorCode::invalid_argument) << j.dump();
  }
}

TEST(AgentConfig, LoadsTheTokenFile) {
  char dir_template[] = "/tmp/kvmfleet-agent-config-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir(dir_template);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  auto j = minimal();
  j["token_file"] = (dir / "token").string();
  std::ofstream(dir / "agent.json") << j.dump();
  std::ofstream(dir / "token") << "kvf_secret\n";
  std::filesystem::permissions(dir / "token", std::filesystem::perms::owner_read);
  auto c = load_agent_config((dir / "agent.json").string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->token, "kvf_secret");

  std::ofstream(dir / "token", std::ios::trunc) << "\n";
  EXPECT_FALSE(load_agent_config((dir / "agent.json").string()).ok());
  std::ofstream(dir / "agent.json", std::ios::trunc) << "{";
  EXPECT_FALSE(load_agent_config((dir / "agent.json").string()).ok());
  EXPECT_FALSE(load_agent_config((dir / "missing.json").string()).ok());
}

}  // namespace
}  // namespace kvmfleet::agent
