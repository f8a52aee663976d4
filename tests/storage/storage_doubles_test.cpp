// The storage doubles (tests/doubles/storage/fake_shared_storage.hpp) follow what the
// kernel lab showed the real lvmlockd and iscsiadm do.
#include <gtest/gtest.h>

#include "tests/doubles/storage/fake_shared_storage.hpp"

namespace kvmfleet::doubles {
namespace {

using storage::LvActivation;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

TEST(StorageDoubles, LocksBehaveLikeLvmlockd) {
  FakeSharedStorage san;
  san.add_device("/dev/sdb", std::uint64_t{2} << 30);
  FakeVolumeManager h1(san, 1), h2(san, 2);
  ASSERT_TRUE(h1.create_shared_vg("kvmvg", {"/dev/sdb"}).ok());
  EXPECT_EQ(h2.create_lv("kvmvg", "x", kMiB, {}).error().code, ErrorCode::unavailable);
  ASSERT_TRUE(h2.lock_start("kvmvg").ok());
  ASSERT_TRUE(h1.create_lv("kvmvg", "vol1", 64 * kMiB, {}).ok());
  EXPECT_EQ(h1.create_lv("kvmvg", "big", std::uint64_t{100} << 30, {}).error().code,
            ErrorCode::insufficient_capacity);

  ASSERT_TRUE(h1.activate("kvmvg", "vol1", LvActivation::exclusive).ok());
  EXPECT_EQ(h2.activate("kvmvg", "vol1", LvActivation::exclusive).error().code,
            ErrorCode::conflict);
  EXPECT_EQ(h2.activate("kvmvg", "vol1", LvActivation::shared).error().code, ErrorCode::conflict);
  // The migration handover.
  ASSERT_TRUE(h1.activate("kvmvg", "vol1", LvActivation::shared).ok());
  ASSERT_TRUE(h2.activate("kvmvg", "vol1", LvActivation::shared).ok());
  EXPECT_EQ(h1.activate("kvmvg", "vol1", LvActivation::exclusive).error().code,
            ErrorCode::conflict);
  ASSERT_TRUE(h1.activate("kvmvg", "vol1", LvActivation::inactive).ok());
  ASSERT_TRUE(h2.activate("kvmvg", "vol1", LvActivation::exclusive).ok());
  EXPECT_EQ(h2.get_lv("kvmvg", "vol1")->activation, LvActivation::exclusive);
  EXPECT_FALSE(h1.get_lv("kvmvg", "vol1")->active);
  EXPECT_EQ(h1.lock_stop("kvmvg").ok(), true);
  EXPECT_EQ(h2.lock_stop("kvmvg").error().code, ErrorCode::conflict);
}

TEST(StorageDoubles, SnapshotsAndRemoval) {
  FakeSharedStorage san;
  san.add_device("/dev/sdb", std::uint64_t{2} << 30);
  FakeVolumeManager h1(san, 1), h2(san, 2);
  ASSERT_TRUE(h1.create_shared_vg("kvmvg", {"/dev/sdb"}).ok());
  ASSERT_TRUE(h2.lock_start("kvmvg").ok());
  ASSERT_TRUE(h1.create_lv("kvmvg", "vol1", 64 * kMiB, {true}).ok());
  ASSERT_TRUE(h1.create_snapshot("kvmvg", "vol1", "snap1", 16 * kMiB).ok());
  EXPECT_TRUE(h1.get_lv("kvmvg", "vol1")->is_origin);
  EXPECT_EQ(h1.get_lv("kvmvg", "snap1")->origin, "vol1");
  EXPECT_EQ(h1.remove_lv("kvmvg", "vol1").error().code, ErrorCode::conflict);
  ASSERT_TRUE(h1.activate("kvmvg", "vol1", LvActivation::shared).ok());
  EXPECT_EQ(h2.activate("kvmvg", "vol1", LvActivation::shared).error().code, ErrorCode::conflict);
  EXPECT_EQ(h1.merge_snapshot("kvmvg", "vol1").error().code, ErrorCode::invalid_argument);
  ASSERT_TRUE(h1.merge_snapshot("kvmvg", "snap1").ok());
  EXPECT_EQ(h1.get_lv("kvmvg", "snap1").error().code, ErrorCode::not_found);
  EXPECT_EQ(h1.remove_lv("kvmvg", "vol1").error().code, ErrorCode::conflict);  // active
  ASSERT_TRUE(h1.activate("kvmvg", "vol1", LvActivation::inactive).ok());
  ASSERT_TRUE(h1.remove_lv("kvmvg", "vol1").ok());
  san.fail_next("create_lv", unavailable("injected"));
  EXPECT_EQ(h1.create_lv("kvmvg", "vol2", kMiB, {}).error().code, ErrorCode::unavailable);
  EXPECT_TRUE(h1.create_lv("kvmvg", "vol2", kMiB, {}).ok());
}

TEST(StorageDoubles, IscsiLoginNeedsDiscoveryAndChap) {
  FakeIscsiInitiator iscsi;
  const std::string iqn = "iqn.2026-01.io.kvmfleet.test:pool1";
  iscsi.add_target("10.0.0.1:3260", iqn, storage::ChapCredentials{"u", "secret123456"});
  EXPECT_EQ(iscsi.login(iqn, "10.0.0.1", std::nullopt).error().code, ErrorCode::not_found);
  ASSERT_TRUE(iscsi.discover("10.0.0.1").ok());
  EXPECT_EQ(iscsi.login(iqn, "10.0.0.1", std::nullopt).error().code, ErrorCode::invalid_argument);
  ASSERT_TRUE(iscsi.login(iqn, "10.0.0.1", storage::ChapCredentials{"u", "secret123456"}).ok());
  EXPECT_EQ(iscsi.sessions()->size(), 1u);
  EXPECT_EQ(*iscsi.lun_device(iqn, "10.0.0.1:3260", 1),
            storage::iscsi_by_path(iqn, "10.0.0.1:3260", 1));
  EXPECT_EQ(iscsi.discover("10.0.0.9").error().code, ErrorCode::unavailable);
}

}  // namespace
}  // namespace kvmfleet::doubles
