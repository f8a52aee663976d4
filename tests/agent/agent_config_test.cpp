#include "kvmfleet/agent/agent_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

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

TEST(AgentConfig, GuestAcceleratorIsAutoOrTcg) {
  auto plain = parse_agent_config(minimal());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->guest_accelerator, "auto");
  auto j = minimal();
  j["guest_accelerator"] = "tcg";
  auto tcg = parse_agent_config(j);
  ASSERT_TRUE(tcg.ok()) << tcg.error().message;
  EXPECT_EQ(tcg->guest_accelerator, "tcg");
  for (json bad : {json("kvm"), json("TCG"), json(""), json(1)}) {
    j["guest_accelerator"] = bad;
    auto c = parse_agent_config(j);
    ASSERT_FALSE(c.ok()) << bad.dump();
    EXPECT_EQ(c.error().details.value("field", ""), "guest_accelerator") << bad.dump();
  }
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

TEST(AgentConfig, StorageIsOptionalWithDefaults) {
  auto plain = parse_agent_config(minimal());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_FALSE(plain->storage.has_value());

  auto j = minimal();
  j["storage"] = {{"host_id", 11}};
  auto c = parse_agent_config(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(c->storage.has_value());
  EXPECT_EQ(c->storage->host_id, 11);
  EXPECT_FALSE(c->storage->udev);
  EXPECT_EQ(c->storage->lock_manager, "sanlock");
  EXPECT_TRUE(c->storage->devices.empty());
  EXPECT_FALSE(c->storage->multipath);

  j["storage"] = {{"host_id", 2000},
                  {"udev", true},
                  {"lock_manager", "sanlock"},
                  {"multipath", true},
                  {"devices",
                   {"/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-iqn.2026-01.com.example:san-lun-1",
                    "/dev/mapper/3600140512345678"}}};
  c = parse_agent_config(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->storage->host_id, 2000);
  EXPECT_TRUE(c->storage->udev);
  EXPECT_TRUE(c->storage->multipath);
  ASSERT_EQ(c->storage->devices.size(), 2u);
  EXPECT_EQ(c->storage->devices[1], "/dev/mapper/3600140512345678");

  // null is the same as absent.
  j["storage"] = nullptr;
  c = parse_agent_config(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->storage.has_value());
}

TEST(AgentConfig, StorageIsStrict) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json::array(), "storage"},
      {"sanlock", "storage"},
      {json::object(), "storage.host_id"},
      {{{"udev", true}}, "storage.host_id"},
      {{{"host_id", 0}}, "storage.host_id"},
      {{{"host_id", 2001}}, "storage.host_id"},
      {{{"host_id", -1}}, "storage.host_id"},
      {{{"host_id", "1"}}, "storage.host_id"},
      {{{"host_id", 1.5}}, "storage.host_id"},
      {{{"host_id", 1}, {"udev", "yes"}}, "storage.udev"},
      {{{"host_id", 1}, {"multipath", "yes"}}, "storage.multipath"},
      {{{"host_id", 1}, {"multipath", 1}}, "storage.multipath"},
      {{{"host_id", 1}, {"multipath", {{"enabled", true}}}}, "storage.multipath"},
      {{{"host_id", 1}, {"multipathd", true}}, "storage.multipathd"},
      {{{"host_id", 1}, {"lock_manager", "dlm"}}, "storage.lock_manager"},
      {{{"host_id", 1}, {"lock_manager", 1}}, "storage.lock_manager"},
      {{{"host_id", 1}, {"hostid", 1}}, "storage.hostid"},
      {{{"host_id", 1}, {"devices", "/dev/sdb"}}, "storage.devices"},
      {{{"host_id", 1}, {"devices", {1}}}, "storage.devices"},
      {{{"host_id", 1}, {"devices", {"sdb"}}}, "storage.devices"},
      {{{"host_id", 1}, {"devices", {"/dev/../etc/passwd"}}}, "storage.devices"},
      {{{"host_id", 1}, {"devices", {"/dev/sd|b"}}}, "storage.devices"},
      {{{"host_id", 1}, {"devices", {"/dev/sdb", "/dev/sdb"}}}, "storage.devices"},
  };
  for (const auto& [storage, field] : cases) {
    auto j = minimal();
    j["storage"] = storage;
    auto c = parse_agent_config(j);
    ASSERT_FALSE(c.ok()) << storage.dump();
    EXPECT_EQ(c.error().code, ErrorCode::invalid_argument) << storage.dump();
    EXPECT_EQ(c.error().details.value("field", ""), field) << storage.dump();
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
