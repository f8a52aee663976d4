#include "kvmfleet/storage/storage_names.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kvmfleet::storage {
namespace {

TEST(StorageNames, LvmNames) {
  for (const char* ok : {"kvmvg", "vm-disk_1", "a", "x.y+z", "VG01"}) {
    EXPECT_TRUE(check_vg_name(ok).ok()) << ok;
    EXPECT_TRUE(check_lv_name(ok).ok()) << ok;
  }
  const std::string long_name(128, 'a');
  for (const std::string& bad :
       {std::string{}, std::string("-vg"), std::string("."), std::string(".."), std::string("a b"),
        std::string("a/b"), std::string("a;b"), std::string("a\nb"), std::string("ü"), long_name,
        std::string("$(reboot)")}) {
    auto s = check_lv_name(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
    EXPECT_FALSE(check_vg_name(bad).ok()) << bad;
  }
  EXPECT_TRUE(check_lv_name(std::string(127, 'a')).ok());
  for (const char* reserved : {"snapshot", "snapshot1", "pvmove0", "lvmlock", "vm_mlog",
                               "x_mimage_0", "a_tdata", "b_tmeta", "c_rimage", "d_cdata"}) {
    EXPECT_FALSE(check_lv_name(reserved).ok()) << reserved;
  }
  EXPECT_FALSE(check_vg_name("mapper").ok());
}

TEST(StorageNames, Sizes) {
  EXPECT_TRUE(check_size_bytes("size", 512).ok());
  EXPECT_TRUE(check_size_bytes("size", std::uint64_t{64} << 20).ok());
  EXPECT_TRUE(check_size_bytes("size", kMaxVolumeBytes).ok());
  EXPECT_FALSE(check_size_bytes("size", 0).ok());
  EXPECT_FALSE(check_size_bytes("size", 1000).ok());
  EXPECT_FALSE(check_size_bytes("size", kMaxVolumeBytes + 512).ok());
  EXPECT_FALSE(check_size_bytes("size", ~std::uint64_t{0}).ok());
}

TEST(StorageNames, IscsiNames) {
  for (const char* ok :
       {"iqn.2026-01.io.kvmfleet.klab:shared", "iqn.2001-04.com.example",
        "iqn.2001-04.com.example:storage:disk2.sys1.xyz", "iqn.1994-05.com.redhat:8d7e4c1f2a",
        "eui.02004567A425678D", "naa.52004567BA64678D", "naa.6001405abcdef0123456789abcdef012"}) {
    EXPECT_TRUE(check_iscsi_name(ok).ok()) << ok;
  }
  for (const char* bad : {"",
                          "iqn",
                          "iqn.",
                          "iqn.2026.io.x",
                          "iqn.26-01.io.x",
                          "iqn.2026-13.io.x",
                          "iqn.2026-00.io.x",
                          "iqn.2026-01",
                          "iqn.2026-01.",
                          "iqn.2026-01.-io.x",
                          "iqn.2026-01.IO.X",
                          "iqn.2026-01.io.x:",
                          "iqn.2026-01.io.x:a b",
                          "iqn.2026-01.io.x:a;b",
                          "iqn.2026-01.io..x",
                          "eui.0200",
                          "eui.02004567A425678Z",
                          "naa.1234",
                          "foo.bar",
                          "-iqn.2026-01.io.x",
                          "iqn.2026-01.io.x:$(id)"}) {
    auto s = check_iscsi_name(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
  }
  EXPECT_FALSE(check_iscsi_name("iqn.2026-01.io.x:" + std::string(300, 'a')).ok());
}

TEST(StorageNames, Portals) {
  EXPECT_EQ(*normalize_portal("10.77.0.1"), "10.77.0.1:3260");
  EXPECT_EQ(*normalize_portal("10.77.0.1:3261"), "10.77.0.1:3261");
  EXPECT_EQ(*normalize_portal("san-a.example.com"), "san-a.example.com:3260");
  EXPECT_EQ(*normalize_portal("[fd00::1]:3260"), "[fd00::1]:3260");
  EXPECT_EQ(*normalize_portal("[fd00::1]"), "[fd00::1]:3260");
  for (const char* bad :
       {"", ":3260", "10.77.0.1:", "10.77.0.1:0", "10.77.0.1:65536", "10.77.0.1:32a", "10.77.0.256",
        "10.77.0", "010.77.0.1", "fd00::1", "[fd00::1", "[zz::1]:3260", "host name", "-host",
        "a..b", "10.77.0.1:3260:1", "host;reboot", "1.2.3.4.5"}) {
    auto p = normalize_portal(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.error().code, ErrorCode::invalid_argument);
  }
}

TEST(StorageNames, DevicePaths) {
  for (const char* ok :
       {"/dev/sda", "/dev/mapper/mpatha",
        "/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-iqn.2026-01.io.kvmfleet.klab:shared-lun-1",
        "/dev/disk/by-id/wwn-0x6001405abcdef0123456789abcdef012"}) {
    EXPECT_TRUE(check_device_path(ok).ok()) << ok;
  }
  for (const char* bad : {"", "/dev/", "sda", "/tmp/sda", "/dev/../etc/passwd", "/dev/sd a",
                          "/dev/a|b", "/dev/a\"b", "/dev/a$", "/dev//sda", "/dev/sda/"}) {
    EXPECT_FALSE(check_device_path(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kvmfleet::storage
