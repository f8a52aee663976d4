#include "kvmfleet/cloud_init/cloud_init.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kvmfleet::cloud_init {
namespace {

using nlohmann::json;

constexpr const char* kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMk5bZ1 user@host";

std::string reason_of(const Error& e) {
  return e.details.value("reason", std::string{});
}

TEST(CloudInit, ParsesEveryField) {
  auto c = parse_cloud_init({{"user_data", "#cloud-config\npackages: [nginx]\n"},
                             {"hostname", "web1"},
                             {"network_config", "version: 2\nethernets: {}\n"},
                             {"ssh_authorized_keys", {std::string(kKey) + "\n"}}});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->hostname, "web1");
  ASSERT_EQ(c->ssh_authorized_keys.size(), 1u);
  EXPECT_EQ(c->ssh_authorized_keys[0], kKey);  // the newline of a .pub file dropped
}

TEST(CloudInit, RefusesUnknownFieldsAndWrongTypes) {
  EXPECT_FALSE(parse_cloud_init({{"userdata", "x"}}).ok());
  EXPECT_FALSE(parse_cloud_init({{"user_data", 5}}).ok());
  EXPECT_FALSE(parse_cloud_init({{"ssh_authorized_keys", kKey}}).ok());
  EXPECT_FALSE(parse_cloud_init(json::array()).ok());
}

TEST(CloudInit, UserDataOverItsLimitIsRefusedWithAStableReason) {
  std::string big = "#cloud-config\n# " + std::string(kMaxUserData, 'x') + "\n";
  auto c = parse_cloud_init({{"user_data", big}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(reason_of(c.error()), "cloud_init_too_large");
  EXPECT_EQ(c.error().details["field"], "cloud_init.user_data");
  // The message never quotes the content.
  EXPECT_EQ(c.error().message.find("xxxx"), std::string::npos);
}

TEST(CloudInit, MalformedYamlIsRefusedWithItsPlaceButNotItsText) {
  auto c = parse_cloud_init({{"user_data", "#cloud-config\npassword: [secret-value\n"}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(reason_of(c.error()), "malformed_yaml");
  EXPECT_NE(c.error().message.find("line"), std::string::npos);
  EXPECT_EQ(c.error().message.find("secret-value"), std::string::npos);
  auto n = parse_cloud_init({{"network_config", "version: 2\n  ethernets: : :\n"}});
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(reason_of(n.error()), "malformed_yaml");
  EXPECT_EQ(n.error().details["field"], "cloud_init.network_config");
  auto m = parse_cloud_init({{"meta_data", "- a list\n- not a mapping\n"}});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(reason_of(m.error()), "malformed_yaml");
}

TEST(CloudInit, AliasBombsAreRefused) {
  std::string bomb = "#cloud-config\na: &a [x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char n = 'b'; n <= 'k'; ++n) {
    bomb += std::string(1, n) + ": &" + n + " [";
    for (int i = 0; i < 9; ++i) bomb += std::string(i ? ", *" : "*") + prev;
    bomb += "]\n";
    prev = n;
  }
  auto c = parse_cloud_init({{"user_data", bomb}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(reason_of(c.error()), "cloud_init_too_large");
}

TEST(CloudInit, UserDataIsCloudConfigOrAScript) {
  EXPECT_TRUE(parse_cloud_init({{"user_data", "#!/bin/sh\necho hi\n"}}).ok());
  auto c = parse_cloud_init({{"user_data", "packages: [nginx]\n"}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(reason_of(c.error()), "unsupported_user_data");
}

TEST(CloudInit, KeysAndHostnamesAreChecked) {
  auto k = parse_cloud_init({{"ssh_authorized_keys", {"not a key"}}});
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(reason_of(k.error()), "bad_ssh_key");
  EXPECT_FALSE(
      parse_cloud_init({{"ssh_authorized_keys", {std::string(kKey) + "\nssh-rsa AAAA"}}}).ok());
  json many = json::array();
  for (std::size_t i = 0; i <= kMaxSshKeys; ++i) many.push_back(kKey);
  EXPECT_EQ(reason_of(parse_cloud_init({{"ssh_authorized_keys", many}}).error()),
            "cloud_init_too_large");
  EXPECT_EQ(reason_of(parse_cloud_init({{"hostname", "bad_host"}}).error()), "bad_hostname");
  EXPECT_EQ(reason_of(parse_cloud_init({{"hostname", "-web"}}).error()), "bad_hostname");
  EXPECT_TRUE(parse_cloud_init({{"hostname", "web-1.example.org"}}).ok());
  EXPECT_EQ(reason_of(parse_cloud_init({{"hostname", "a"}, {"meta_data", "x: 1"}}).error()),
            "meta_data_and_hostname");
}

TEST(CloudInit, SeedFilesFromHostnameAndKeys) {
  CloudInit c;
  c.hostname = "web1";
  c.ssh_authorized_keys = {kKey};
  auto f = seed_files(c, "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "vm-name");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_NE(f->meta_data.find("instance-id: 6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"),
            std::string::npos);
  EXPECT_NE(f->meta_data.find("local-hostname: web1"), std::string::npos);
  EXPECT_NE(f->meta_data.find("public-keys:"), std::string::npos);
  EXPECT_NE(f->meta_data.find(kKey), std::string::npos);
  EXPECT_TRUE(f->user_data.starts_with("#cloud-config"));
  EXPECT_TRUE(f->network_config.empty());
}

TEST(CloudInit, SeedFilesKeepWhatWasGiven) {
  CloudInit c;
  c.user_data = "#cloud-config\nruncmd: [[touch, /ok]]\n";
  c.meta_data = "instance-id: given\n";
  c.network_config = "version: 2\n";
  auto f = seed_files(c, "id", "vm-name");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->user_data, c.user_data);
  EXPECT_NE(f->meta_data.find("instance-id: given"), std::string::npos);
  EXPECT_NE(f->meta_data.find("local-hostname: vm-name"), std::string::npos);
  EXPECT_EQ(f->network_config, c.network_config);
}

}  // namespace
}  // namespace kvmfleet::cloud_init
