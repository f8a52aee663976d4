#include "kvmfleet/storage/storage_inventory.hpp"

#include <gtest/gtest.h>

#include "captured_output.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet::storage {
namespace {

using testing::captured;

TEST(StorageInventory, CollectsEveryPart) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump"));
  runner.expect({"sanlock"}, captured("sanlock_status_lvs"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_lvs"));
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3"));
  runner.expect({"lvm", "vgs"}, captured("vgs_full"));
  runner.expect({"multipathd"}, captured("multipathd_show_maps_json_failed"));
  OpenIscsiInitiator iscsi(runner);
  LvmOptions o;
  o.devices = {"/dev/sda"};
  o.host_id = 1;
  Lvm2Cli lvm(runner, o);
  LockDaemons locks(runner);

  Multipath multipath(runner);
  auto inv = collect_storage_inventory(&iscsi, &lvm, &locks, &multipath);
  EXPECT_TRUE(inv.errors.empty());
  auto j = inv.to_json();
  EXPECT_EQ(j["locks"]["lvmlockd"], true);
  ASSERT_EQ(j["iscsi_sessions"].size(), 1u);
  EXPECT_EQ(j["iscsi_sessions"][0]["target"], "iqn.2026-01.io.kvmfleet.klab:shared");
  EXPECT_EQ(j["iscsi_sessions"][0]["state"], "LOGGED_IN");
  EXPECT_EQ(j["iscsi_sessions"][0]["disks"][0]["disk"], "/dev/sda");
  ASSERT_EQ(j["vgs"].size(), 1u);
  EXPECT_EQ(j["vgs"][0]["name"], "kvmvg");
  EXPECT_EQ(j["vgs"][0]["free_bytes"], 935329792u);
  EXPECT_EQ(j["vgs"][0]["lockspace_started"], true);
  ASSERT_EQ(j["multipath"].size(), 1u);
  EXPECT_EQ(j["multipath"][0]["healthy_paths"], 1);
  EXPECT_EQ(j["multipath"][0]["failed_paths"], nlohmann::json::array({"sdb"}));
  EXPECT_EQ(j["multipath"][0]["degraded"], true);
  ASSERT_EQ(j["multipath"][0]["path_states"].size(), 2u);
  for (const auto& p : j["multipath"][0]["path_states"]) {
    EXPECT_EQ(p["healthy"], p["dev"] != "sdb") << p.dump();
    if (p["dev"] == "sdb") {
      EXPECT_NE(p["checker_state"], "ready") << p.dump();
    }
  }
}

TEST(StorageInventory, OnePartFailingLeavesTheOthers) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump"));
  runner.expect({"sanlock"}, captured("sanlock_status_empty"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_empty"));
  runner.expect({"iscsiadm"}, FakeProcessRunner::exited(
                                  20, "", "iscsiadm: can not connect to iSCSI daemon (111)!\n"));
  OpenIscsiInitiator iscsi(runner);
  LockDaemons locks(runner);
  auto inv = collect_storage_inventory(&iscsi, nullptr, &locks);
  ASSERT_EQ(inv.errors.size(), 1u);
  EXPECT_NE(inv.errors[0].find("iscsi sessions: unavailable"), std::string::npos) << inv.errors[0];
  EXPECT_TRUE(inv.locks.all_running());
  EXPECT_TRUE(inv.vgs.empty());
}

}  // namespace
}  // namespace kvmfleet::storage
