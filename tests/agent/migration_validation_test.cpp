#include "kvmfleet/agent/migration_validation.hpp"

#include <gtest/gtest.h>

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

json body() {
  return {{"op_id", "op-1"},
          {"destination_uri", "qemu+tcp://10.77.0.11/system"},
          {"migrate_uri", "tcp://10.77.0.11"}};
}

TEST(MigrationValidation, Hosts) {
  for (const char* good :
       {"10.77.0.11", "0.0.0.0", "255.255.255.255", "node1", "a", "node-1.example.org", "n0de.x1"})
    EXPECT_TRUE(is_valid_network_host(good)) << good;
  for (const char* bad : {"", "10.77.0", "10.77.0.256", "10.77.0.011", "10.77.0.11.", "1.2.3.4.5",
                          "-node", "node-", "no_de", "node..x", ".node", "node/x", "node:1",
                          "[::1]", "::1", "user@node", "node%00", "a b"})
    EXPECT_FALSE(is_valid_network_host(bad)) << bad;
  EXPECT_FALSE(is_valid_network_host(std::string(64, 'a')));
  EXPECT_TRUE(is_valid_network_host(std::string(63, 'a')));
}

TEST(MigrationValidation, DestinationUris) {
  for (const char* good : {"qemu+tcp://10.77.0.11/system", "qemu+tls://node2.example/system"})
    EXPECT_TRUE(is_valid_destination_uri(good)) << good;
  for (const char* bad :
       {"", "qemu+tcp:///system", "qemu+ssh://node2/system", "qemu:///system",
        "qemu+unix:///system", "test:///default", "qemu+tcp://node2/session",
        "qemu+tcp://node2/system?socket=/tmp/x", "qemu+tcp://node2:16509/system",
        "qemu+tcp://user@node2/system", "QEMU+TCP://node2/system", "qemu+tcp://node2/system/",
        "qemu+ext://node2/system?command=/bin/sh", "qemu+tcp://node2//system"})
    EXPECT_FALSE(is_valid_destination_uri(bad)) << bad;
}

TEST(MigrationValidation, MigrateUris) {
  for (const char* good :
       {"tcp://10.77.0.11", "tcp://10.77.0.11:49152", "tcp://node2:1", "tcp://node2:65535"})
    EXPECT_TRUE(is_valid_migrate_uri(good)) << good;
  for (const char* bad :
       {"", "tcp://", "tcp://:49152", "tcp://node2:", "tcp://node2:0", "tcp://node2:65536",
        "tcp://node2:049152", "tcp://node2:1:2", "unix:///tmp/sock", "rdma://node2",
        "tcp://node2/x", "tcp:node2", "exec:/bin/sh", "tcp://[::1]:49152"})
    EXPECT_FALSE(is_valid_migrate_uri(bad)) << bad;
}

TEST(MigrationValidation, ParsesWithDefaults) {
  auto r = parse_migration_request(body());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->destination_uri, "qemu+tcp://10.77.0.11/system");
  EXPECT_EQ(r->migrate_uri, "tcp://10.77.0.11");
  EXPECT_EQ(r->policy.max_downtime_ms, 300);
  EXPECT_EQ(r->policy.bandwidth_mib_s, 0);
  EXPECT_FALSE(r->policy.auto_converge);
  EXPECT_FALSE(r->policy.allow_post_copy);

  auto j = body();
  j["max_downtime_ms"] = 600'000;
  j["bandwidth_mib_s"] = 100'000;
  j["auto_converge"] = true;
  j["allow_post_copy"] = true;
  auto full = parse_migration_request(j);
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ(full->policy.max_downtime_ms, 600'000);
  EXPECT_EQ(full->policy.bandwidth_mib_s, 100'000);
  EXPECT_TRUE(full->policy.auto_converge);
  EXPECT_TRUE(full->policy.allow_post_copy);
}

TEST(MigrationValidation, RefusesBadFieldsNamingThem) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"max_downtime_ms", 0},
      {"max_downtime_ms", 600'001},
      {"max_downtime_ms", -1},
      {"max_downtime_ms", "300"},
      {"max_downtime_ms", 1.5},
      {"bandwidth_mib_s", -1},
      {"bandwidth_mib_s", 100'001},
      {"auto_converge", 1},
      {"allow_post_copy", "yes"},
      {"destination_uri", 5},
      {"destination_uri", "qemu+ssh://b/system"},
      {"migrate_uri", "unix:///x"},
      {"migrate_uri", nullptr},
      {"converge_timeout_s", -1},
      {"converge_timeout_s", 86'401},
      {"downtime_ceiling_ms", 100},  // below max_downtime_ms (300 by default)
      {"downtime_ceiling_ms", 600'001},
  };
  for (const auto& c : cases) {
    auto j = body();
    j[c.field] = c.value;
    auto r = parse_migration_request(j);
    ASSERT_FALSE(r.ok()) << c.field << "=" << c.value.dump();
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(r.error().details.value("field", ""), c.field) << c.value.dump();
  }
  auto unknown = body();
  unknown["flags"] = 1;
  EXPECT_FALSE(parse_migration_request(unknown).ok());
  auto missing = body();
  missing.erase("destination_uri");
  auto r = parse_migration_request(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().details.value("field", ""), "destination_uri");
}

TEST(MigrationValidation, SharedBlockDisksMigrateImagePoolDisksDoNot) {
  DomainXmlInfo none;
  EXPECT_TRUE(check_disks_migrate_live("u1", none).ok());

  DomainXmlInfo shared;
  shared.block_sources = {"/dev/pool1/vol1", "/dev/pool1/vol2"};
  EXPECT_TRUE(check_disks_migrate_live("u1", shared).ok());

  DomainXmlInfo local = shared;
  local.disk_sources = {"/var/lib/kvmfleet/images/u1-disk0.qcow2"};
  auto st = check_disks_migrate_live("u1", local);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
  EXPECT_NE(st.error().message.find("image pool"), std::string::npos);
  EXPECT_EQ(st.error().details["uuid"], "u1");
  EXPECT_EQ(st.error().details["disks"], json::array({"/var/lib/kvmfleet/images/u1-disk0.qcow2"}));
}

// CD-ROMs are files of the host too: they pass when the request names the files the
// destination prepared, the seed by its name and the ISO otherwise.
TEST(MigrationValidation, CdromsNeedTheirFilesOnTheDestination) {
  DomainXmlInfo d;
  d.cdrom_sources = {"/pool/cache/abc.img", "/pool/u1-seed.iso"};
  d.disk_sources = d.cdrom_sources;
  auto missing = check_disks_migrate_live("u1", d);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::conflict);
  EXPECT_EQ(missing.error().details["reason"], "boot_media_not_prepared");
  EXPECT_EQ(missing.error().details["cdroms"],
            json::array({"/pool/cache/abc.img", "/pool/u1-seed.iso"}));

  MigrationMedia media{"/there/cache/abc.img", ""};
  auto half = check_disks_migrate_live("u1", d, media);
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.error().details["cdroms"], json::array({"/pool/u1-seed.iso"}));

  media.seed = "/there/u1-seed.iso";
  auto moves = check_disks_migrate_live("u1", d, media);
  ASSERT_TRUE(moves.ok()) << moves.error().message;
  EXPECT_EQ(*moves, (CdromMoves{{"/pool/cache/abc.img", "/there/cache/abc.img"},
                                {"/pool/u1-seed.iso", "/there/u1-seed.iso"}}));

  // An image-pool disk beside them is still refused.
  d.disk_sources.push_back("/pool/u1-disk0.qcow2");
  auto disk = check_disks_migrate_live("u1", d, media);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().details["disks"], json::array({"/pool/u1-disk0.qcow2"}));
}

TEST(MigrationValidation, MediaPathsOfARequestAreAbsolute) {
  json body = {{"destination_uri", "qemu+tcp://10.0.0.2/system"},
               {"migrate_uri", "tcp://10.0.0.2"},
               {"cdrom_path", "/there/cache/abc.img"},
               {"seed_path", "/there/u1-seed.iso"}};
  auto r = parse_migration_request(body);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->media, (MigrationMedia{"/there/cache/abc.img", "/there/u1-seed.iso"}));
  body["seed_path"] = "relative.iso";
  auto bad = parse_migration_request(body);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().details["field"], "seed_path");
  body["seed_path"] = 3;
  EXPECT_FALSE(parse_migration_request(body).ok());
}

}  // namespace
}  // namespace kvmfleet::agent
