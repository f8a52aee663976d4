// The controller's shared-storage requests and operations over the FakeAgentApi,
// whose in-memory LVM keeps lvmlockd's rules (exclusive on one host or shared on
// several; an origin with snapshots is never shared).
#include "kvmfleet/migration/migration_planning.hpp"
#include "kvmfleet/shared_storage/storage_monitor.hpp"
#include "tests/unit/controller_fixture.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

class StorageControllerTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
  }

  StoragePool iscsi_pool(const std::string& name,
                         const std::string& iqn = "iqn.2026-01.io.kvmfleet:lun1") {
    StoragePool p;
    p.name = name;
    p.type = PoolType::iscsi;
    p.targets.push_back(IscsiPoolTarget{"10.77.0.1:3260", iqn, 1, "", ""});
    return p;
  }

  Operation run(Result<Submitted> s) {
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    if (!s.ok()) return Operation{};
    return wait_done(s->operation.id);
  }

  void make_pool(const std::string& name = "pool1") {
    auto op = run(ctl_->storage().create_pool(admin(), iscsi_pool(name), {}, {}));
    ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  }
  std::string make_volume(const std::string& name, std::uint64_t bytes = kGiB) {
    auto op = run(ctl_->storage().create_volume(admin(), name, "pool1", bytes, {}));
    EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
    return op.result.value("volume_id", "");
  }
  StoragePool pool(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) {
      const StoragePool* p = d.find_pool(name);
      return p ? *p : StoragePool{};
    });
  }
  Volume volume(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) {
      const Volume* v = d.find_volume(name);
      return v ? *v : Volume{};
    });
  }
  VmSpec spec_on(const std::string& name, const std::string& vol) {
    VmSpec s = spec(name);
    DiskSpec d;
    d.volume = vol;
    s.disks.push_back(d);
    return s;
  }
  std::map<std::string, LvMode> holders(const std::string& lv) {
    return agents_.holders("pool1", lv);
  }

  // A pool with volumes "os" and "data", and VM "vm1" running with both as its disks.
  void vm1_on_os_and_data() {
    make_pool();
    make_volume("os");
    make_volume("data");
    VmSpec s = spec_on("vm1", "os");
    DiskSpec second;
    second.volume = "data";
    s.disks.push_back(second);
    ASSERT_EQ(run(ctl_->vms().create_vm(admin(), s, true, {})).state, OpState::succeeded);
  }

  // A pool with volume "disk1", and VM "vm1" on it pinned to node1 (started or not).
  void vm1_on_disk1(bool start) {
    make_pool();
    make_volume("disk1");
    VmSpec s = spec_on("vm1", "disk1");
    s.pinned_host = "node1";
    ASSERT_EQ(run(ctl_->vms().create_vm(admin(), s, start, {})).state, OpState::succeeded);
  }
};

TEST_F(StorageControllerTest, PoolLogsEveryHostInMakesTheVgOnceAndStartsLockspaces) {
  make_pool();
  const auto p = pool("pool1");
  EXPECT_EQ(p.state, PoolState::ready);
  EXPECT_EQ(p.size_bytes, agents_.lun_bytes);
  EXPECT_EQ(p.free_bytes, agents_.lun_bytes);
  ASSERT_EQ(p.hosts.size(), 2u);
  for (const auto& h : {"node1", "node2"}) {
    EXPECT_TRUE(p.usable_on(h)) << h;
    EXPECT_EQ(p.hosts.at(h).devices.size(), 1u);
  }
  EXPECT_EQ(agents_.count("iscsi_login"), 2);
  EXPECT_EQ(agents_.count("vg_create"), 1);
  EXPECT_EQ(agents_.count("vg_lockstart"), 1);
}

TEST_F(StorageControllerTest, PoolWhoseVgCannotBeMadeIsRolledBack) {
  agents_.fail_next("vg_create", conflict("Physical volume /dev/sda is already in a VG"));
  auto op = run(ctl_->storage().create_pool(admin(), iscsi_pool("pool1"), {}, {}));
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_TRUE(op.error->details.value("rolled_back", false));
  EXPECT_TRUE(pool("pool1").name.empty());
  EXPECT_EQ(agents_.count("iscsi_logout"), 2);
  EXPECT_TRUE(agents_.sessions["node1"].empty());
}

TEST_F(StorageControllerTest, HostThatCannotLogInIsRecordedAndFilteredByTheScheduler) {
  agents_.fail_next("iscsi_login:node2", Error(ErrorCode::unavailable, "no route to host"), 3);
  make_pool();
  const auto p = pool("pool1");
  EXPECT_TRUE(p.usable_on("node1"));
  EXPECT_FALSE(p.usable_on("node2"));
  EXPECT_NE(p.hosts.at("node2").error.find("no route to host"), std::string::npos);
  make_volume("disk1");
  // node2 has more free memory, but it cannot reach the pool.
  auto placed = ctl_->vms().place(spec_on("vm1", "disk1"));
  ASSERT_TRUE(placed.ok()) << placed.error().message;
  const auto& pl = *placed;
  EXPECT_EQ(pl.host, "node1");
  for (const auto& v : pl.verdicts)
    if (v.host == "node2") {
      EXPECT_EQ(v.filter, "storage");
    }
}

TEST_F(StorageControllerTest, SecondPoolOnTheSameLunIsRefused) {
  make_pool();
  auto again = ctl_->storage().create_pool(admin(), iscsi_pool("pool2"), {}, {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST_F(StorageControllerTest, VolumeIsCreatedInactiveAndSizedByLvm) {
  make_pool();
  const auto id = make_volume("disk1", 10 * 1024 * 1024 + 512);
  const auto v = volume("disk1");
  EXPECT_EQ(v.id, id);
  EXPECT_EQ(v.state, VolumeState::ready);
  EXPECT_EQ(v.size_bytes, 12u * 1024 * 1024);  // three 4 MiB extents
  EXPECT_TRUE(holders("disk1").empty());       // zeroed while active, then deactivated
  EXPECT_EQ(pool("pool1").free_bytes, agents_.lun_bytes - v.size_bytes);
}

TEST_F(StorageControllerTest, VolumeLargerThanFreeSpaceIsRefusedAndNothingIsWritten) {
  make_pool();
  const int before = store_.commits;
  auto s = ctl_->storage().create_volume(admin(), "huge", "pool1", agents_.lun_bytes + kGiB, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::insufficient_capacity);
  EXPECT_EQ(store_.commits, before);
  EXPECT_TRUE(volume("huge").id.empty());
}

TEST_F(StorageControllerTest, FailedLvCreateRollsTheVolumeBack) {
  make_pool();
  agents_.fail_next("lv_create", Error(ErrorCode::internal, "lvcreate failed"));
  auto op = run(ctl_->storage().create_volume(admin(), "disk1", "pool1", kGiB, {}));
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_TRUE(op.error->details.value("rolled_back", false));
  EXPECT_TRUE(volume("disk1").id.empty());
}

TEST_F(StorageControllerTest, VmOnAVolumeActivatesItExclusivelyWhereItRunsAndReleasesOnStop) {
  make_pool();
  make_volume("disk1");
  auto op = run(ctl_->vms().create_vm(admin(), spec_on("vm1", "disk1"), true, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  const Vm v = vm("vm1");
  ASSERT_EQ(v.spec.disks.size(), 1u);
  EXPECT_EQ(v.spec.disks[0].device, "/dev/pool1/disk1");
  EXPECT_EQ(volume("disk1").attached_to, v.id);
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{v.host, LvMode::exclusive}}));

  // A second VM may not take the same volume.
  auto twice = ctl_->vms().create_vm(admin(), spec_on("vm2", "disk1"), false, {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::conflict);

  auto stop = run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_stop, VmStopParams{5}, {}));
  ASSERT_EQ(stop.state, OpState::succeeded);
  EXPECT_TRUE(holders("disk1").empty());
  // Attached volumes are not deleted.
  auto del = ctl_->storage().delete_volume(admin(), "disk1", {});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  // Deleting the VM releases the volume, which then can go.
  auto gone = run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_delete, VmDeleteParams{}, {}));
  ASSERT_EQ(gone.state, OpState::succeeded);
  EXPECT_TRUE(volume("disk1").attached_to.empty());
  auto del2 = run(ctl_->storage().delete_volume(admin(), "disk1", {}));
  EXPECT_EQ(del2.state, OpState::succeeded);
  EXPECT_TRUE(volume("disk1").id.empty());
  EXPECT_EQ(pool("pool1").free_bytes, agents_.lun_bytes);
}

TEST_F(StorageControllerTest, StartRefusedWhileAnotherHostHoldsTheVolume) {
  vm1_on_disk1(false);
  // Something on node2 holds the LV (a VM the controller lost track of, say).
  Host node2 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node2"); });
  ASSERT_TRUE(agents_.lv_activate(node2, "x", "pool1", "disk1", LvMode::exclusive).ok());
  auto start = run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_start, {}, {}));
  ASSERT_EQ(start.state, OpState::failed);
  EXPECT_EQ(start.error->code, ErrorCode::conflict);
  EXPECT_EQ(vm("vm1").state, VmState::stopped);
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));
}

TEST_F(StorageControllerTest,
       LiveMigrationSharesTheVolumeForTheMoveAndLeavesItExclusiveOnTheTarget) {
  vm1_on_disk1(true);
  agents_.hold_migrations = true;
  auto sub = ctl_->migration().migrate_vm(admin(), "vm1", "node2", MigrationPolicy{}, {});
  ASSERT_TRUE(sub.ok()) << sub.error().message;
  // While the guest moves, both hosts hold the LV shared.
  for (int i = 0; i < 2000 && agents_.count("migrate") == 0; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(agents_.count("migrate"), 1);
  EXPECT_EQ(holders("disk1"),
            (std::map<std::string, LvMode>{{"node1", LvMode::shared}, {"node2", LvMode::shared}}));
  agents_.complete_migration(vm("vm1").id);
  auto op = wait_done(sub->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("vm1").host, "node2");
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));
  EXPECT_FALSE(op.result.contains("storage_warning")) << op.result.dump();
}

TEST_F(StorageControllerTest, FailedMigrationLeavesTheVolumeExclusiveOnTheSource) {
  vm1_on_disk1(true);
  agents_.fail_next("migrate", Error(ErrorCode::internal, "migration failed"));
  auto op = run(ctl_->migration().migrate_vm(admin(), "vm1", "node2", MigrationPolicy{}, {}));
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(vm("vm1").host, "node1");
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
}

TEST_F(StorageControllerTest, SnapshotOfARunningVmIsQuiescedAndBlocksLiveMigration) {
  vm1_on_disk1(true);
  auto op =
      run(ctl_->storage().create_snapshot(admin(), "disk1", "before-upgrade", 0, 0.25, true, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("consistency", ""), "quiesced");
  EXPECT_EQ(agents_.frozen, 0);  // thawed again
  const auto v = volume("disk1");
  ASSERT_EQ(v.snapshots.size(), 1u);
  EXPECT_EQ(v.snapshots[0].lv, "disk1.snap.before-upgrade");
  EXPECT_EQ(v.snapshots[0].size_bytes, kGiB / 4);
  // lvmlockd cannot share an origin with snapshots: the migration is refused up front.
  auto mig = ctl_->migration().migrate_vm(admin(), "vm1", "node2", MigrationPolicy{}, {});
  ASSERT_FALSE(mig.ok());
  EXPECT_EQ(mig.error().code, ErrorCode::conflict);
  EXPECT_EQ(mig.error().details["snapshots"][0], "before-upgrade");
  // Nor can the volume be deleted while it has snapshots (nor while attached).
  EXPECT_EQ(ctl_->storage().delete_volume(admin(), "disk1", {}).error().code, ErrorCode::conflict);
}

TEST_F(StorageControllerTest, SnapshotWithoutGuestAgentIsCrashConsistent) {
  vm1_on_disk1(true);
  agents_.guest_agent = false;
  auto op = run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 64 << 20, 0, true, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("consistency", ""), "crash-consistent");
  EXPECT_TRUE(op.result.contains("quiesce_error"));
  EXPECT_EQ(volume("disk1").snapshots.at(0).consistency, SnapshotConsistency::crash_consistent);
}

TEST_F(StorageControllerTest, RevertNeedsTheVmStoppedAndRemovesTheSnapshot) {
  vm1_on_disk1(true);
  ASSERT_EQ(run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 0, 0.1, false, {})).state,
            OpState::succeeded);
  auto running =
      ctl_->storage().snapshot_action(admin(), "disk1", "s1", op_kind::snapshot_revert, {});
  ASSERT_FALSE(running.ok());
  EXPECT_EQ(running.error().code, ErrorCode::conflict);
  ASSERT_EQ(run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_stop, VmStopParams{5}, {})).state,
            OpState::succeeded);
  EXPECT_TRUE(holders("disk1").empty());
  auto op =
      run(ctl_->storage().snapshot_action(admin(), "disk1", "s1", op_kind::snapshot_revert, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_FALSE(op.result.value("merge_pending", true));
  EXPECT_TRUE(volume("disk1").snapshots.empty());
  EXPECT_TRUE(holders("disk1").empty());
  EXPECT_EQ(agents_.count("lv_merge"), 1);
}

TEST_F(StorageControllerTest, SnapshotOfAStoppedVolumeActivatesItBrieflyAndDeleteRemovesIt) {
  make_pool();
  make_volume("disk1");
  auto op = run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 0, 0.5, true, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("consistency", ""), "crash-consistent");
  EXPECT_TRUE(holders("disk1").empty());
  EXPECT_EQ(agents_.count("fs_freeze"), 0);
  auto missing =
      ctl_->storage().snapshot_action(admin(), "disk1", "nope", op_kind::snapshot_delete, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::not_found);
  auto del =
      run(ctl_->storage().snapshot_action(admin(), "disk1", "s1", op_kind::snapshot_delete, {}));
  ASSERT_EQ(del.state, OpState::succeeded) << (del.error ? del.error->message : "");
  EXPECT_TRUE(volume("disk1").snapshots.empty());
  EXPECT_EQ(agents_.vgs["pool1"].lvs.count("disk1.snap.s1"), 0u);
}

TEST_F(StorageControllerTest, GrowNeedsALargerSize) {
  make_pool();
  make_volume("disk1");
  auto smaller = ctl_->storage().grow_volume(admin(), "disk1", kGiB / 2, {});
  ASSERT_FALSE(smaller.ok());
  EXPECT_EQ(smaller.error().code, ErrorCode::invalid_argument);
  auto op = run(ctl_->storage().grow_volume(admin(), "disk1", 2 * kGiB, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(volume("disk1").size_bytes, 2 * kGiB);
}

// A running VM's volume grows where the VM runs (the LV's exclusive lock is there, so
// no other host could extend it), and QEMU is told the new size.
TEST_F(StorageControllerTest, GrowingARunningVmsVolumeExtendsItOnItsHostAndTellsQemu) {
  vm1_on_disk1(true);
  const Vm v = vm("vm1");
  ASSERT_EQ(v.state, VmState::running);
  auto op = run(ctl_->storage().grow_volume(admin(), "disk1", 2 * kGiB, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(volume("disk1").size_bytes, 2 * kGiB);
  EXPECT_EQ(agents_.vgs["pool1"].lvs["disk1"].size, 2 * kGiB);
  EXPECT_EQ(agents_.disk_sizes[v.id]["/dev/pool1/disk1"], 2 * kGiB);
  EXPECT_EQ(op.result.value("vm_resized", false), true);
  for (const auto& c : agents_.calls()) {
    if (c.name == "lv_grow" || c.name == "block_resize") {
      EXPECT_EQ(c.host, v.host) << c.name;
    }
  }
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{v.host, LvMode::exclusive}}));
}

TEST_F(StorageControllerTest, GrowingAVolumeOfAVmOnTheOtherHostRunsThere) {
  make_pool();
  make_volume("disk1");
  VmSpec s = spec_on("vm1", "disk1");
  s.pinned_host = "node2";  // not the pool's first host: any_usable_host would pick node1
  ASSERT_EQ(run(ctl_->vms().create_vm(admin(), s, true, {})).state, OpState::succeeded);
  auto op = run(ctl_->storage().grow_volume(admin(), "disk1", 2 * kGiB, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(agents_.disk_sizes[vm("vm1").id]["/dev/pool1/disk1"], 2 * kGiB);
}

TEST_F(StorageControllerTest, GrowThatQemuDoesNotTakeKeepsTheNewSizeAndSaysSo) {
  vm1_on_disk1(true);
  agents_.fail_next("block_resize", conflict("QEMU refused"));
  auto op = run(ctl_->storage().grow_volume(admin(), "disk1", 2 * kGiB, {}));
  ASSERT_EQ(op.state, OpState::failed);
  ASSERT_TRUE(op.error);
  EXPECT_NE(op.error->message.find("still sees the old size"), std::string::npos)
      << op.error->message;
  EXPECT_EQ(op.error->details["remains"]["sees_new_size"], false);
  // The record follows LVM: a second grow to that size has nothing to do.
  EXPECT_EQ(volume("disk1").size_bytes, 2 * kGiB);
}

TEST_F(StorageControllerTest, GrowWaitsWhileTheVmIsBetweenStates) {
  vm1_on_disk1(true);
  record_vm_state("vm1", VmState::paused);
  auto refused = ctl_->storage().grow_volume(admin(), "disk1", 2 * kGiB, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(agents_.count("lv_grow"), 0);
}

// A stopped VM on a volume moves cold to node2 (even with snapshots: nothing is shared
// between hosts); its next start activates the volume exclusively there.
TEST_F(StorageControllerTest, StoppedVmOnAVolumeMovesColdAndStartsOnTheTarget) {
  vm1_on_disk1(true);
  ASSERT_EQ(
      run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 64 << 20, 0, false, {})).state,
      OpState::succeeded);
  ASSERT_EQ(run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_stop, VmStopParams{5}, {})).state,
            OpState::succeeded);
  // Left active on node1 as if the guest had powered itself off: the move releases it.
  Host node1 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node1"); });
  ASSERT_TRUE(agents_.lv_activate(node1, "x", "pool1", "disk1", LvMode::exclusive).ok());
  auto op = run(ctl_->migration().migrate_vm(admin(), "vm1", "node2", {}, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("vm1").host, "node2");
  EXPECT_TRUE(holders("disk1").empty());
  auto start = run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_start, {}, {}));
  ASSERT_EQ(start.state, OpState::succeeded) << (start.error ? start.error->message : "");
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));
}

// The dry run checks volumes as a create does (placing by their pools:
// HostThatCannotLogInIsRecordedAndFilteredByTheScheduler).
TEST_F(StorageControllerTest, PlacementDryRunChecksVolumesAsACreateDoes) {
  make_pool();
  make_volume("disk1");
  make_volume("disk2");
  auto fits = ctl_->vms().place(spec_on("p1", "disk2"));
  ASSERT_TRUE(fits.ok()) << fits.error().message;
  EXPECT_FALSE(fits->host.empty());
  auto ghost = ctl_->vms().place(spec_on("p1", "ghost"));
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.error().code, ErrorCode::invalid_argument);
  VmSpec twice = spec_on("p1", "disk2");
  twice.disks.push_back(twice.disks[0]);
  EXPECT_EQ(ctl_->vms().place(twice).error().code, ErrorCode::invalid_argument);
  VmSpec s = spec_on("vm1", "disk1");
  ASSERT_EQ(run(ctl_->vms().create_vm(admin(), s, false, {})).state, OpState::succeeded);
  auto taken = ctl_->vms().place(spec_on("p1", "disk1"));
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, ErrorCode::conflict);
}

TEST_F(StorageControllerTest, PoolsAndVolumesSurviveARestart) {
  make_pool();
  make_volume("disk1");
  shutdown();
  boot();
  EXPECT_EQ(pool("pool1").state, PoolState::ready);
  EXPECT_TRUE(pool("pool1").usable_on("node2"));
  EXPECT_EQ(volume("disk1").state, VolumeState::ready);
}

}  // namespace

namespace {

class StorageMonitorTest : public StorageControllerTest {};

TEST_F(StorageMonitorTest, ReadsFillWarnsAndGrowsSnapshotsPastTheThreshold) {
  config_.snapshot_warn_percent = 70;
  config_.snapshot_autoextend_threshold_percent = 80;
  config_.snapshot_autoextend_percent = 50;
  vm1_on_disk1(true);
  ASSERT_EQ(
      run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 64 << 20, 0, false, {})).state,
      OpState::succeeded);
  StorageMonitor monitor(*state_, agents_, config_, clock_);

  agents_.vgs["pool1"].lvs["disk1.snap.s1"].fill = 75.0;
  monitor.refresh();
  EXPECT_EQ(volume("disk1").snapshots.at(0).fill_percent, 75.0);
  EXPECT_NE(monitor.metrics().find("kvmfleet_snapshot_fill_warnings_total 1"), std::string::npos);
  EXPECT_EQ(agents_.count("lv_grow"), 0);

  agents_.vgs["pool1"].lvs["disk1.snap.s1"].fill = 85.0;
  monitor.refresh();
  EXPECT_EQ(agents_.count("lv_grow"), 1);
  EXPECT_EQ(agents_.vgs["pool1"].lvs["disk1.snap.s1"].size, std::uint64_t{96} << 20);
  monitor.refresh();  // the new size is read back
  EXPECT_EQ(volume("disk1").snapshots.at(0).size_bytes, std::uint64_t{96} << 20);
  // Still one warning: it was above the warn level all along.
  EXPECT_NE(monitor.metrics().find("kvmfleet_snapshot_fill_warnings_total 1"), std::string::npos);
}

TEST_F(StorageMonitorTest, PendingMergeIsForgottenOnceLvmHasDoneIt) {
  make_pool();
  make_volume("disk1");
  ASSERT_EQ(
      run(ctl_->storage().create_snapshot(admin(), "disk1", "s1", 64 << 20, 0, false, {})).state,
      OpState::succeeded);
  // A revert whose merge LVM deferred (the origin was busy) was recorded pending; LVM
  // has since completed it, and the snapshot LV is gone.
  agents_.vgs["pool1"].lvs.erase("disk1.snap.s1");
  Volume v = volume("disk1");
  ASSERT_EQ(v.snapshots.size(), 1u);
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
                    v.snapshots[0].merge_pending = true;
                    b.put_volumes.push_back(v);
                    return {};
                  })
                  .ok());
  StorageMonitor monitor(*state_, agents_, config_, clock_);
  monitor.refresh();
  EXPECT_TRUE(volume("disk1").snapshots.empty());
}

}  // namespace

namespace {

TEST_F(StorageControllerTest, VmSnapshotTakesEveryDiskAtOneFreeze) {
  vm1_on_os_and_data();
  auto op = run(ctl_->storage().create_vm_snapshot(admin(), "vm1", "nightly", 0, 0.1, true, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result.value("consistency", ""), "quiesced");
  EXPECT_EQ(op.result["snapshot_ids"].size(), 2u);
  EXPECT_EQ(agents_.count("fs_freeze"), 1);
  EXPECT_EQ(agents_.count("fs_thaw"), 1);
  EXPECT_EQ(volume("os").snapshots.at(0).name, "nightly");
  EXPECT_EQ(volume("data").snapshots.at(0).name, "nightly");
}

TEST_F(StorageControllerTest, VmSnapshotThatFailsHalfWayRemovesWhatItMadeAndThaws) {
  vm1_on_os_and_data();
  // Room for one of the two snapshots only: the second fails, the first is removed
  // again, the guest is thawed.
  agents_.vgs["pool1"].size = agents_.vgs["pool1"].used() + (std::uint64_t{200} << 20);
  auto op = run(ctl_->storage().create_vm_snapshot(admin(), "vm1", "big", 150 << 20, 0, true, {}));
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_TRUE(op.error->details.value("rolled_back", false)) << op.error->details.dump();
  EXPECT_EQ(agents_.frozen, 0);
  EXPECT_TRUE(volume("os").snapshots.empty());
  EXPECT_TRUE(volume("data").snapshots.empty());
  EXPECT_EQ(agents_.vgs["pool1"].lvs.count("os.snap.big") +
                agents_.vgs["pool1"].lvs.count("data.snap.big"),
            0u);
}

TEST_F(StorageControllerTest, VmSnapshotRefusesLocalDisks) {
  make_pool();
  VmSpec s = spec("vm1");
  DiskSpec local;
  local.size_gib = 1;
  s.disks.push_back(local);
  ASSERT_EQ(run(ctl_->vms().create_vm(admin(), s, false, {})).state, OpState::succeeded);
  auto r = ctl_->storage().create_vm_snapshot(admin(), "vm1", "x", 0, 0.1, true, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
}

}  // namespace

namespace {

TEST_F(StorageControllerTest, PoolOnATargetThePortalDoesNotOfferIsRefusedPerHost) {
  agents_.portal_targets["10.77.0.1:3260"] = {"iqn.2026-01.io.kvmfleet:other"};
  auto op = run(ctl_->storage().create_pool(admin(), iscsi_pool("pool1"), {}, {}));
  ASSERT_EQ(op.state, OpState::failed);
  const auto hosts = op.error->details["hosts"];
  EXPECT_NE(hosts["node1"].get<std::string>().find("does not offer target"), std::string::npos)
      << hosts.dump();
  EXPECT_EQ(agents_.count("iscsi_login"), 0);
  EXPECT_TRUE(pool("pool1").name.empty());
}

}  // namespace

namespace {

TEST_F(StorageControllerTest, PoolDeleteNeedsNoVolumesDetachesEveryHostAndARecreateAdoptsTheVg) {
  make_pool();
  make_volume("disk1");
  auto busy = ctl_->storage().delete_pool(admin(), "pool1", {});
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code, ErrorCode::conflict);
  EXPECT_EQ(busy.error().details["volumes"][0], "disk1");
  ASSERT_EQ(run(ctl_->storage().delete_volume(admin(), "disk1", {})).state, OpState::succeeded);
  auto op = run(ctl_->storage().delete_pool(admin(), "pool1", {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_TRUE(pool("pool1").name.empty());
  EXPECT_TRUE(agents_.sessions["node1"].empty());
  EXPECT_TRUE(agents_.sessions["node2"].empty());
  EXPECT_TRUE(agents_.vgs["pool1"].lockstarted.empty());
  // The VG stayed on the LUN: the same pool made again adopts it, no second vgcreate.
  make_pool();
  EXPECT_EQ(agents_.count("vg_create"), 1);
  EXPECT_TRUE(pool("pool1").usable_on("node1"));
  EXPECT_TRUE(pool("pool1").usable_on("node2"));
  EXPECT_EQ(agents_.vgs["pool1"].lockstarted, (std::set<std::string>{"node1", "node2"}));
}

}  // namespace

namespace {

TEST_F(StorageMonitorTest, HostStorageIsReportedAndALostLockspaceIsStartedAgain) {
  make_pool();
  StorageMonitor monitor(*state_, agents_, config_, clock_);
  monitor.refresh();
  auto node2 = [&] {
    return state_->read([](const ClusterState::Data& d) { return *d.find_host("node2"); });
  };
  ASSERT_TRUE(node2().storage.is_object());
  EXPECT_TRUE(node2().storage["locks"]["lvmlockd"].get<bool>());
  EXPECT_EQ(node2().storage["vgs"][0]["name"], "pool1");

  // node2 rebooted with lvmlockd down: its lockspace is gone, it cannot be started,
  // and the pool is no longer usable there (the scheduler filters it).
  agents_.drop_lockspaces("node2");
  agents_.lock_daemons_down["node2"] = true;
  monitor.refresh();
  EXPECT_FALSE(pool("pool1").usable_on("node2"));
  EXPECT_NE(pool("pool1").hosts.at("node2").error.find("lvmlockd is not running"),
            std::string::npos);
  EXPECT_FALSE(node2().storage["locks"]["lvmlockd"].get<bool>());
  EXPECT_TRUE(pool("pool1").usable_on("node1"));

  // lvmlockd is back: the monitor starts the lockspace again.
  agents_.lock_daemons_down["node2"] = false;
  monitor.refresh();
  EXPECT_TRUE(pool("pool1").usable_on("node2"));
  EXPECT_TRUE(pool("pool1").hosts.at("node2").error.empty());
  EXPECT_TRUE(agents_.vgs["pool1"].lockstarted.count("node2"));
}

}  // namespace
