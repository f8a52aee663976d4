// kvmfleet's storage backends (src/storage) driving the real tools in ONE boot of
// two kernel-lab guests: OpenIscsiInitiator logs both guests in to one tgtd LUN,
// LockDaemons sees wdmd/sanlock/lvmlockd, Lvm2Cli makes a shared VG and LVs on it,
// lvmlockd refuses a second host's activation, and a COW snapshot keeps and, merged,
// restores old bytes. The backends run each program inside a guest through
// KernelLab::runner(N), a ProcessRunner; each result is checked again with the
// lvm tools themselves. The steps build on each other and run in the order written.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"
#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/storage_devices.hpp"
#include "kvmfleet/storage/iscsi_initiator.hpp"
#include "kvmfleet/storage/lock_daemons.hpp"
#include "kvmfleet/storage/multipath.hpp"
#include "kvmfleet/storage/volume_manager.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"

namespace kvmfleet::klab {
namespace {

using namespace std::chrono_literals;
using storage::LvActivation;
using testing_support::report_time;
using testing_support::runs_and_fails;
using testing_support::runs_ok;
using steady = std::chrono::steady_clock;

constexpr int kGuests = 2;
constexpr std::uint64_t kLunBytes = std::uint64_t{2} << 30;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr const char* kVg = "kvmvg";
constexpr const char* kChapUser = "kvmfleet";
constexpr const char* kChapSecret = "labsecret0123";

std::string block_of(const std::string& text) {
  std::string b = text;
  b.resize(4096, '\0');
  return b;
}

class KernelLabStorage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_start_ = steady::now();
    LabOptions options;
    options.name = "ctest-storage";
    options.guests = kGuests;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) {
      setup_error_ = lab.error().brief();
      return;
    }
    lab_ = std::move(*lab);
    std::printf("[   INFO   ] guests run kernel %s under TCG\n", lab_->kernel_version().c_str());
    report_time("boot_2_guests_ms", lab_->boot_time());
    auto lun = lab_->add_lun("shared", kLunBytes);
    if (!lun.ok()) {
      setup_error_ = "add_lun: " + lun.error().message;
      return;
    }
    lun_ = *lun;
    for (int g = 1; g <= kGuests; ++g) {
      iscsi_[g] = std::make_unique<storage::OpenIscsiInitiator>(lab_->runner(g));
      daemons_[g] = std::make_unique<storage::LockDaemons>(lab_->runner(g));
    }
  }

  static void TearDownTestSuite() {
    for (auto& l : lvm_) l.reset();
    for (auto& i : iscsi_) i.reset();
    for (auto& d : daemons_) d.reset();
    if (lab_) {
      auto t = steady::now();
      auto s = lab_->down();
      if (!s.ok()) std::printf("[  ERROR   ] teardown: %s\n", s.error().message.c_str());
      report_time("teardown_ms", steady::now() - t);
      lab_.reset();
    }
    report_time("whole_suite_ms", steady::now() - suite_start_);
  }

  void SetUp() override {
    ASSERT_TRUE(lab_ != nullptr && setup_error_.empty()) << "lab did not come up: " << setup_error_;
  }

  void TearDown() override {
    if (HasFailure() && lab_) {
      std::printf("[  REPORT  ] the guests after the failure:\n%s",
                  testing_support::guest_report(*lab_).c_str());
      std::fflush(stdout);
    }
  }

  KernelLab& lab() { return *lab_; }

  // Runs step(g) for every guest at once, one thread each; a guest's runner takes
  // its commands in order, different guests run in parallel. gtest's assertions
  // are thread-safe here; an ASSERT ends only that guest's part.
  template <typename Step>
  static void on_each_guest(Step step) {
    std::vector<std::future<void>> jobs;
    for (int g = 1; g <= kGuests; ++g) jobs.push_back(std::async(std::launch::async, step, g));
    for (auto& j : jobs) j.get();
  }
  storage::Lvm2Cli& lvm(int g) { return *lvm_[g]; }

  // A tgtd CHAP account bound to a second target, set up from this machine in
  // the lab's namespace (tgtd's IPC socket is the lab's own).
  Status add_chap_target(int tid) {
    const std::string socket = (lab().state_dir() / "tgtd" / "ipc").string();
    auto tgtadm = [&](std::vector<std::string> args) -> Status {
      std::vector<std::string> argv{"ip",          "netns", "exec",
                                    lab().netns(), "env",   "TGT_IPC_SOCKET=" + socket,
                                    "tgtadm",      "--lld", "iscsi"};
      argv.insert(argv.end(), args.begin(), args.end());
      auto r = system_.run(argv);
      if (!r.ok()) return r.take_error();
      if (r->exit_code != 0) return internal_error("tgtadm failed: " + r->err);
      return ok_status();
    };
    if (auto s = tgtadm(
            {"--op", "new", "--mode", "account", "--user", kChapUser, "--password", kChapSecret});
        !s) {
      return s;
    }
    return tgtadm(
        {"--op", "bind", "--mode", "account", "--tid", std::to_string(tid), "--user", kChapUser});
  }

  // The dm device and its /dev node appear a moment after the command in a guest
  // without udev; a 4 KiB O_DIRECT read or write of the first block.
  ::testing::AssertionResult write_block(int g, const std::string& device,
                                         const std::string& data) {
    return runs_ok(
        lab(), g,
        {"dd", "of=" + device, "bs=4096", "count=1", "oflag=direct", "conv=notrunc", "status=none"},
        nullptr, 60s, data);
  }
  std::string read_block(int g, const std::string& device) {
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"dd", "if=" + device, "bs=4096", "count=1", "iflag=direct", "status=none"},
                        &out));
    return out.out;
  }
  // One field of `lvs --noheadings` run directly in guest g, blanks trimmed.
  std::string lvs_field(int g, const std::string& field, const std::string& lv) {
    ProcessOutput out;
    auto config = lvm(g).config_string();
    EXPECT_TRUE(config.ok());
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"lvs", "--config", config.ok() ? *config : "", "--noheadings", "-o", field,
                         std::string(kVg) + "/" + lv},
                        &out));
    const auto first = out.out.find_first_not_of(" \n");
    if (first == std::string::npos) return {};
    return out.out.substr(first, out.out.find_last_not_of(" \n") - first + 1);
  }

  static std::unique_ptr<KernelLab> lab_;
  static std::string setup_error_;
  static LunInfo lun_;
  static steady::time_point suite_start_;
  static std::array<std::unique_ptr<storage::OpenIscsiInitiator>, kGuests + 1> iscsi_;
  static std::array<std::unique_ptr<storage::LockDaemons>, kGuests + 1> daemons_;
  static std::array<std::unique_ptr<storage::Lvm2Cli>, kGuests + 1> lvm_;
  static std::array<std::string, kGuests + 1> disk_;
  static bool daemons_ok_;
  static bool vg_ok_;
  static bool lv_ok_;
  SystemProcessRunner system_;
};

std::unique_ptr<KernelLab> KernelLabStorage::lab_;
std::string KernelLabStorage::setup_error_;
LunInfo KernelLabStorage::lun_;
steady::time_point KernelLabStorage::suite_start_;
std::array<std::unique_ptr<storage::OpenIscsiInitiator>, kGuests + 1> KernelLabStorage::iscsi_;
std::array<std::unique_ptr<storage::LockDaemons>, kGuests + 1> KernelLabStorage::daemons_;
std::array<std::unique_ptr<storage::Lvm2Cli>, kGuests + 1> KernelLabStorage::lvm_;
std::array<std::string, kGuests + 1> KernelLabStorage::disk_;
bool KernelLabStorage::daemons_ok_ = false;
bool KernelLabStorage::vg_ok_ = false;
bool KernelLabStorage::lv_ok_ = false;

// Both guests discover the portal and log in through OpenIscsiInitiator; the LUN's
// device comes from the backend and has the LUN's size.
TEST_F(KernelLabStorage, A_IscsiDiscoveryAndLogin) {
  const auto t = steady::now();
  // The guests work in parallel (each guest runs its commands in order).
  auto bring_up = [&](int g) {
    ASSERT_TRUE(
        runs_ok(lab(), g, {"modprobe", "-a", "dm_snapshot", "softdog", "iscsi_tcp", "sd_mod"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"iscsid"}));
    auto& iscsi = *iscsi_[g];

    auto none = iscsi.sessions();
    ASSERT_TRUE(none.ok()) << none.error().brief();
    EXPECT_TRUE(none->empty());

    auto targets = iscsi.discover(KernelLab::kBridgeAddress);  // port 3260 by default
    ASSERT_TRUE(targets.ok()) << targets.error().brief();
    bool listed = false;
    for (const auto& target : *targets) listed = listed || target.iqn == lun_.iqn;
    ASSERT_TRUE(listed) << "discovery did not list " << lun_.iqn;

    auto login = iscsi.login(lun_.iqn, lun_.portal, std::nullopt);
    ASSERT_TRUE(login.ok()) << login.error().brief();
    auto again = iscsi.login(lun_.iqn, lun_.portal, std::nullopt);
    EXPECT_TRUE(again.ok()) << "a second login must be a no-op: " << again.error().brief();

    // The kernel attaches the disk after login returns.
    Result<std::string> device = not_found("not polled");
    for (int attempt = 0; attempt < 60; ++attempt) {
      device = iscsi.lun_device(lun_.iqn, lun_.portal, 1);
      if (device.ok() || device.error().code != ErrorCode::not_found) break;
      ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "1"}));
    }
    ASSERT_TRUE(device.ok()) << device.error().brief();
    disk_[g] = *device;
    std::printf("[   INFO   ] node%d: %s LUN 1 is %s\n", g, lun_.iqn.c_str(), disk_[g].c_str());

    auto sessions = iscsi.sessions();
    ASSERT_TRUE(sessions.ok()) << sessions.error().brief();
    ASSERT_EQ(sessions->size(), 1u);
    EXPECT_TRUE(sessions->front().logged_in());
    EXPECT_EQ(sessions->front().initiator_name, lab().guest(g).iqn);
    EXPECT_TRUE(iscsi.rescan().ok());

    ProcessOutput out;
    ASSERT_TRUE(runs_ok(lab(), g, {"blockdev", "--getsize64", disk_[g]}, &out));
    EXPECT_EQ(out.out, std::to_string(kLunBytes) + "\n");
  };
  on_each_guest(bring_up);
  report_time("iscsi_discover_login_both_ms", steady::now() - t);
}

// CHAP: a target bound to a tgtd account refuses a login without or with a wrong
// secret (invalid_argument, the secret in no message) and accepts the right one.
TEST_F(KernelLabStorage, B_IscsiChapLogin) {
  ASSERT_FALSE(disk_[1].empty()) << "needs A_IscsiDiscoveryAndLogin";
  auto lun = lab().add_lun("chap", 64 * kMiB);
  ASSERT_TRUE(lun.ok()) << lun.error().brief();
  ASSERT_TRUE(add_chap_target(lun->tid).ok());
  auto& iscsi = *iscsi_[1];
  ASSERT_TRUE(iscsi.discover(lun->portal).ok());

  auto without = iscsi.login(lun->iqn, lun->portal, std::nullopt);
  ASSERT_FALSE(without.ok());
  EXPECT_EQ(without.error().code, ErrorCode::invalid_argument) << without.error().brief();

  auto wrong =
      iscsi.login(lun->iqn, lun->portal, storage::ChapCredentials{kChapUser, "wrong0123456"});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::invalid_argument) << wrong.error().brief();
  EXPECT_EQ((wrong.error().message + wrong.error().details.dump()).find("wrong0123456"),
            std::string::npos);

  auto right = iscsi.login(lun->iqn, lun->portal, storage::ChapCredentials{kChapUser, kChapSecret});
  ASSERT_TRUE(right.ok()) << right.error().brief();
  auto sessions = iscsi.sessions();
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->size(), 2u);

  ASSERT_TRUE(iscsi.logout(lun->iqn, lun->portal).ok());
  EXPECT_TRUE(iscsi.logout(lun->iqn, lun->portal).ok()) << "a second logout must be a no-op";
  sessions = iscsi.sessions();
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->size(), 1u);
}

// LockDaemons reports nothing running, then wdmd + sanlock + lvmlockd once started.
TEST_F(KernelLabStorage, C_LockDaemons) {
  ASSERT_FALSE(disk_[1].empty() || disk_[2].empty()) << "needs A_IscsiDiscoveryAndLogin";
  const auto t = steady::now();
  on_each_guest([&](int g) {
    auto before = daemons_[g]->check();
    ASSERT_TRUE(before.ok()) << before.error().brief();
    EXPECT_FALSE(before->wdmd || before->sanlock || before->lvmlockd) << before->to_json().dump();

    ASSERT_TRUE(runs_ok(lab(), g, {"wdmd"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"sanlock", "daemon", "-U", "root", "-G", "root"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"lvmlockd", "-g", "sanlock"}));
    // The daemons fork before they listen.
    Result<storage::LockDaemonStatus> after = internal_error("not polled");
    for (int attempt = 0; attempt < 40; ++attempt) {
      after = daemons_[g]->check();
      ASSERT_TRUE(after.ok()) << after.error().brief();
      if (after->all_running()) break;
      ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
    }
    EXPECT_TRUE(after->all_running()) << after->to_json().dump();
    EXPECT_TRUE(after->lockspaces.empty());
    std::printf("[   INFO   ] node%d lock daemons: %s\n", g, after->to_json().dump().c_str());

    storage::LvmOptions o;
    o.devices = {disk_[g]};
    o.host_id = lab().guest(g).host_id;
    o.udev = false;  // the lab has no udev
    lvm_[g] = std::make_unique<storage::Lvm2Cli>(lab().runner(g), o);
  });
  report_time("lock_daemons_start_both_ms", steady::now() - t);
  daemons_ok_ = !HasFailure() && lvm_[1] && lvm_[2];
}

// node1 makes the shared VG; both start its lockspace through the backend (which
// retries lvmlockd's first "invalid parameters for sanlock" itself).
TEST_F(KernelLabStorage, D_SharedVgAndLockstart) {
  ASSERT_TRUE(daemons_ok_) << "needs C_LockDaemons";
  auto bad = lvm(1).create_shared_vg(kVg, {"/dev/vda"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument) << "a device outside the filter";

  const auto t_vg = steady::now();
  auto made = lvm(1).create_shared_vg(kVg, {disk_[1]});
  ASSERT_TRUE(made.ok()) << made.error().brief();
  report_time("vgcreate_shared_ms", steady::now() - t_vg);

  const auto t_ls = steady::now();
  for (int g = 1; g <= kGuests; ++g) {
    const auto t = steady::now();
    auto started = lvm(g).lock_start(kVg);
    ASSERT_TRUE(started.ok()) << "node" << g << ": " << started.error().brief();
    report_time("lockstart_node" + std::to_string(g) + "_ms", steady::now() - t);
  }
  report_time("lockstart_both_ms", steady::now() - t_ls);
  report_time("vgcreate_plus_lockstart_ms", steady::now() - t_vg);

  on_each_guest([&](int g) {
    auto st = daemons_[g]->check();
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(st->vg_started(kVg)) << "node" << g << ": " << st->to_json().dump();
    auto vg = lvm(g).get_vg(kVg);
    ASSERT_TRUE(vg.ok()) << vg.error().brief();
    EXPECT_TRUE(vg->shared);
    EXPECT_EQ(vg->lock_type, "sanlock");
    EXPECT_GT(vg->free_bytes, 0u);
    // sanlock itself: this host's id holds a lease in the VG's lockspace.
    ProcessOutput out;
    ASSERT_TRUE(runs_ok(lab(), g, {"sanlock", "client", "status"}, &out));
    EXPECT_NE(out.out.find("s lvm_" + std::string(kVg) + ":" + std::to_string(g) + ":"),
              std::string::npos)
        << out.out;
  });
  vg_ok_ = !HasFailure();
}

// Create, grow (never shrink) and delete LVs; each result checked from the other
// host and with lvs.
TEST_F(KernelLabStorage, E_LvCreateGrowDelete) {
  ASSERT_TRUE(vg_ok_) << "needs D_SharedVgAndLockstart";
  const auto t = steady::now();
  ASSERT_TRUE(lvm(1).create_lv(kVg, "vol1", 64 * kMiB, {}).ok());
  auto seen = lvm(2).get_lv(kVg, "vol1");
  ASSERT_TRUE(seen.ok()) << seen.error().brief();
  EXPECT_EQ(seen->size_bytes, 64 * kMiB);
  EXPECT_FALSE(seen->active);

  auto grown = lvm(1).extend_lv(kVg, "vol1", 128 * kMiB);
  ASSERT_TRUE(grown.ok()) << grown.error().brief();
  EXPECT_TRUE(lvm(1).extend_lv(kVg, "vol1", 128 * kMiB).ok()) << "a repeated grow is a no-op";
  auto shrink = lvm(1).extend_lv(kVg, "vol1", 64 * kMiB);
  ASSERT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error().code, ErrorCode::invalid_argument) << shrink.error().brief();
  EXPECT_EQ(lvs_field(2, "lv_size", "vol1"), "128.00m");

  auto dup = lvm(2).create_lv(kVg, "vol1", 64 * kMiB, {});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::conflict) << dup.error().brief();
  auto huge = lvm(1).create_lv(kVg, "huge", std::uint64_t{100} << 30, {});
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ErrorCode::insufficient_capacity) << huge.error().brief();

  ASSERT_TRUE(lvm(2).create_lv(kVg, "scratch", 32 * kMiB, {true}).ok());
  auto scratch = lvm(2).get_lv(kVg, "scratch");
  ASSERT_TRUE(scratch.ok());
  EXPECT_EQ(scratch->activation, LvActivation::exclusive);
  auto busy = lvm(2).remove_lv(kVg, "scratch");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code, ErrorCode::conflict) << "an active LV must not be removed";
  ASSERT_TRUE(lvm(2).activate(kVg, "scratch", LvActivation::inactive).ok());
  auto removed = lvm(2).remove_lv(kVg, "scratch");
  ASSERT_TRUE(removed.ok()) << removed.error().brief();
  EXPECT_EQ(lvm(1).get_lv(kVg, "scratch").error().code, ErrorCode::not_found);
  EXPECT_EQ(lvm(1).remove_lv(kVg, "scratch").error().code, ErrorCode::not_found);
  EXPECT_TRUE(runs_and_fails(
      lab(), 1, {"lvs", "--config", *lvm(1).config_string(), std::string(kVg) + "/scratch"},
      nullptr));
  report_time("lv_create_grow_delete_ms", steady::now() - t);
  lv_ok_ = !HasFailure();
}

// The split-brain guard: vol1 active exclusively on node1 cannot be activated on
// node2, neither exclusively nor shared (conflict from the backend; lvs and
// dmsetup agree). Then the lock handover of a live migration: ex to sh on the
// source, sh on the target, source off, sh to ex on the target.
TEST_F(KernelLabStorage, F_ExclusiveActivationRefusedElsewhere) {
  ASSERT_TRUE(lv_ok_) << "needs E_LvCreateGrowDelete";
  ASSERT_TRUE(lvm(1).activate(kVg, "vol1", LvActivation::exclusive).ok());
  auto lv = lvm(1).get_lv(kVg, "vol1");
  ASSERT_TRUE(lv.ok());
  EXPECT_TRUE(lv->active);
  EXPECT_EQ(lv->activation, LvActivation::exclusive);
  EXPECT_EQ(lvs_field(1, "lv_active_exclusively", "vol1"), "active exclusively");

  for (auto mode : {LvActivation::exclusive, LvActivation::shared}) {
    auto refused = lvm(2).activate(kVg, "vol1", mode);
    ASSERT_FALSE(refused.ok()) << "node2 activated vol1 " << storage::to_string(mode);
    EXPECT_EQ(refused.error().code, ErrorCode::conflict) << refused.error().brief();
    EXPECT_NE(refused.error().message.find("LV locked by other host"), std::string::npos);
  }
  EXPECT_EQ(lvs_field(2, "lv_active", "vol1"), "");
  EXPECT_TRUE(runs_and_fails(lab(), 2, {"dmsetup", "info", std::string(kVg) + "-vol1"}, nullptr))
      << "node2 has a device-mapper device for vol1";
  auto on2 = lvm(2).get_lv(kVg, "vol1");
  ASSERT_TRUE(on2.ok());
  EXPECT_FALSE(on2->active);

  // A live migration's locks, without ever letting go on the source: node1 turns
  // its exclusive lock into a shared one, node2 joins shared (exclusive is refused
  // to either meanwhile), node1 lets go, node2 turns its lock exclusive.
  auto lock_is = [&](int g, LvActivation mode) {
    auto now = lvm(g).get_lv(kVg, "vol1");
    EXPECT_TRUE(now.ok());
    if (now.ok()) {
      EXPECT_EQ(now->activation, mode)
          << "node" << g << " holds vol1 " << storage::to_string(now->activation);
    }
  };
  const auto t = steady::now();
  auto converted = lvm(1).activate(kVg, "vol1", LvActivation::shared);
  ASSERT_TRUE(converted.ok()) << "ex to sh on node1: " << converted.error().brief();
  lock_is(1, LvActivation::shared);
  auto joined = lvm(2).activate(kVg, "vol1", LvActivation::shared);
  ASSERT_TRUE(joined.ok()) << "sh on node2: " << joined.error().brief();
  lock_is(2, LvActivation::shared);
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 2, {"lvmlockctl", "--info"}, &out));
  EXPECT_NE(out.out.find("LK LV sh " + lv->uuid), std::string::npos) << out.out;
  for (int g = 1; g <= kGuests; ++g) {
    auto ex = lvm(g).activate(kVg, "vol1", LvActivation::exclusive);
    ASSERT_FALSE(ex.ok()) << "node" << g << " got vol1 exclusively while both hold it shared";
    EXPECT_EQ(ex.error().code, ErrorCode::conflict) << ex.error().brief();
  }
  ASSERT_TRUE(lvm(1).activate(kVg, "vol1", LvActivation::inactive).ok());
  auto taken = lvm(2).activate(kVg, "vol1", LvActivation::exclusive);
  ASSERT_TRUE(taken.ok()) << "sh to ex on node2: " << taken.error().brief();
  lock_is(2, LvActivation::exclusive);
  auto back = lvm(1).activate(kVg, "vol1", LvActivation::shared);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.error().code, ErrorCode::conflict) << back.error().brief();
  report_time("migration_lock_handover_ms", steady::now() - t);

  // vol1 goes back to node1 for the snapshot step.
  ASSERT_TRUE(lvm(2).activate(kVg, "vol1", LvActivation::inactive).ok());
  ASSERT_TRUE(lvm(1).activate(kVg, "vol1", LvActivation::exclusive).ok());
}

// A COW snapshot keeps the bytes the origin had; merging it restores them.
TEST_F(KernelLabStorage, G_SnapshotKeepsAndMergeRestores) {
  ASSERT_TRUE(lv_ok_) << "needs E_LvCreateGrowDelete";
  const std::string origin = std::string("/dev/") + kVg + "/vol1";
  const std::string snapshot = std::string("/dev/") + kVg + "/snap1";
  const std::string before = block_of("kvmfleet storage: before the snapshot");
  const std::string after = block_of("kvmfleet storage: written after the snapshot");

  ASSERT_TRUE(write_block(1, origin, before));
  auto made = lvm(1).create_snapshot(kVg, "vol1", "snap1", 32 * kMiB);
  ASSERT_TRUE(made.ok()) << made.error().brief();
  ASSERT_TRUE(write_block(1, origin, after));
  EXPECT_TRUE(read_block(1, snapshot) == before) << "the snapshot lost the old bytes";
  EXPECT_TRUE(read_block(1, origin) == after) << "the origin lacks the new bytes";

  auto snap = lvm(1).get_lv(kVg, "snap1");
  ASSERT_TRUE(snap.ok()) << snap.error().brief();
  EXPECT_TRUE(snap->is_snapshot);
  EXPECT_EQ(snap->origin, "vol1");
  ASSERT_TRUE(snap->data_percent.has_value());
  EXPECT_GT(*snap->data_percent, 0.0) << "the overwritten block is in the COW area";
  std::printf("[   INFO   ] snap1 COW fill after one 4 KiB write: %.2f %%\n", *snap->data_percent);
  EXPECT_EQ(lvs_field(1, "origin", "snap1"), "vol1");

  auto origin_lv = lvm(1).get_lv(kVg, "vol1");
  ASSERT_TRUE(origin_lv.ok());
  EXPECT_TRUE(origin_lv->is_origin);
  // Deleting an origin would take its snapshots along.
  auto with_snap = lvm(1).remove_lv(kVg, "vol1");
  ASSERT_FALSE(with_snap.ok());
  EXPECT_EQ(with_snap.error().code, ErrorCode::conflict) << with_snap.error().brief();
  EXPECT_NE(with_snap.error().message.find("snapshots"), std::string::npos);
  // An origin with COW snapshots cannot be active on two hosts.
  auto shared = lvm(2).activate(kVg, "vol1", LvActivation::shared);
  ASSERT_FALSE(shared.ok());
  EXPECT_EQ(shared.error().code, ErrorCode::conflict) << shared.error().brief();

  const auto t = steady::now();
  auto merged = lvm(1).merge_snapshot(kVg, "snap1");
  ASSERT_TRUE(merged.ok()) << merged.error().brief();
  report_time("snapshot_merge_ms", steady::now() - t);
  EXPECT_TRUE(read_block(1, origin) == before) << "the merge did not restore the old bytes";
  EXPECT_EQ(lvm(1).get_lv(kVg, "snap1").error().code, ErrorCode::not_found);
  auto restored = lvm(1).get_lv(kVg, "vol1");
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(restored->is_origin);
  EXPECT_FALSE(restored->merging);

  // node2 leaves the lockspace; without it, node2 may change nothing in the VG.
  auto stopped = lvm(2).lock_stop(kVg);
  ASSERT_TRUE(stopped.ok()) << stopped.error().brief();
  auto st = daemons_[2]->check();
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->vg_started(kVg)) << st->to_json().dump();
  auto no_lock = lvm(2).create_lv(kVg, "late", 32 * kMiB, {});
  ASSERT_FALSE(no_lock.ok());
  EXPECT_EQ(no_lock.error().code, ErrorCode::unavailable) << no_lock.error().brief();
}

// Multipath on node2: udevd and multipathd run there (from here on only), a LUN is
// reached over two iSCSI sessions (two initiator ifaces, as two NICs would), and
// Multipath finds the dm-multipath map over both paths. The agent's storage code
// with storage.multipath picks the map: its login route answers it and adds it, not
// a path, to LVM's filter (LVM then finds a PV made on the map there), and at start
// the sessions' LUNs join through it. Multipath then reports a path taken offline
// as faulty while the map still reads, and sees it come back.
TEST_F(KernelLabStorage, H_MultipathPathHealth) {
  ASSERT_FALSE(disk_[2].empty()) << "needs A_IscsiDiscoveryAndLogin";
  const int g = 2;
  auto lun = lab().add_lun("multipath", 64 * kMiB);
  ASSERT_TRUE(lun.ok()) << lun.error().brief();
  const auto t = steady::now();
  // Maps only for disks seen over two paths or more: the shared LUN keeps its one.
  ASSERT_TRUE(runs_ok(lab(), g, {"dd", "of=/etc/multipath.conf", "status=none"}, nullptr, 60s,
                      "defaults {\n  find_multipaths yes\n  user_friendly_names no\n"
                      "  polling_interval 1\n}\n"));
  ASSERT_TRUE(runs_ok(lab(), g, {"modprobe", "-a", "dm_multipath", "dm_round_robin"}));
  // The guest's agent runs chrooted; systemd's tools refuse that unless told.
  ASSERT_TRUE(runs_ok(
      lab(), g, {"env", "SYSTEMD_IGNORE_CHROOT=1", "/lib/systemd/systemd-udevd", "--daemon"}));
  ASSERT_TRUE(runs_ok(lab(), g, {"multipathd"}));

  auto& iscsi = *iscsi_[g];
  ASSERT_TRUE(iscsi.discover(lun->portal).ok());
  auto login = iscsi.login(lun->iqn, lun->portal, std::nullopt);
  ASSERT_TRUE(login.ok()) << login.error().brief();
  // The second path: the same target through a second initiator iface.
  ASSERT_TRUE(runs_ok(lab(), g, {"iscsiadm", "-m", "iface", "-I", "path2", "-o", "new"}));
  ASSERT_TRUE(runs_ok(
      lab(), g,
      {"iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", lun->portal, "-I", "path2"}));
  ASSERT_TRUE(runs_ok(
      lab(), g,
      {"iscsiadm", "-m", "node", "-T", lun->iqn, "-p", lun->portal, "-I", "path2", "--login"}));

  Result<std::string> device = not_found("not polled");
  for (int attempt = 0; attempt < 60; ++attempt) {
    device = iscsi.lun_device(lun->iqn, lun->portal, 1);
    if (device.ok()) break;
    ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
  }
  ASSERT_TRUE(device.ok()) << device.error().brief();
  std::printf("[   INFO   ] node2: multipath LUN's device from the backend: %s\n", device->c_str());
  auto sessions = iscsi.sessions();
  ASSERT_TRUE(sessions.ok());
  std::vector<std::string> paths;
  for (const auto& s : *sessions) {
    for (const auto& l : s.luns) {
      if (s.target == lun->iqn && !l.disk.empty()) paths.push_back(l.disk);
    }
  }
  ASSERT_EQ(paths.size(), 2u) << "two sessions, one disk each";

  storage::Multipath multipath(lab().runner(g));
  Result<storage::MultipathMap> map = not_found("not polled");
  for (int attempt = 0; attempt < 60; ++attempt) {
    map = multipath.map_with_path(paths[0]);
    if (map.ok() && map->paths.size() == 2 && map->healthy_paths() == 2) break;
    ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
  }
  ASSERT_TRUE(map.ok()) << map.error().brief();
  ASSERT_EQ(map->paths.size(), 2u);
  EXPECT_TRUE(map->has_path(paths[1]));
  EXPECT_EQ(map->healthy_paths(), 2);
  EXPECT_EQ(map->paths[0].target, lun->iqn);
  report_time("multipath_map_two_paths_ms", steady::now() - t);
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), g, {"blockdev", "--getsize64", map->device()}, &out));
  EXPECT_EQ(out.out, std::to_string(64 * kMiB) + "\n");

  // The agent's login route over the real backends in node2, as kvmfleet-agent
  // builds them with storage.multipath (the hypervisor is not used by storage routes).
  const auto t_agent = steady::now();
  storage::LvmOptions lo;
  lo.host_id = lab().guest(g).host_id;
  lo.use_lvmlockd = false;
  lo.udev = false;
  storage::Lvm2Cli agent_lvm(lab().runner(g), lo);
  agent::StorageBackend backend{iscsi, agent_lvm, SystemClock::instance(), nullptr, &multipath};
  // The guest's /dev is not this machine's: the link is read in the guest.
  backend.resolve_device = [&](const std::string& path) -> Result<std::string> {
    ProcessRunner& runner = lab().runner(g);
    auto r = runner.run({"readlink", "-e", path});
    if (!r.ok()) return r.take_error();
    if (r->exit_code != 0) return not_found("readlink -e " + path + " found nothing");
    std::string disk = r->out;
    while (!disk.empty() && disk.back() == '\n') disk.pop_back();
    return disk;
  };
  doubles::FakeHypervisor hv;
  agent::AgentService service(hv, backend, "kvf_lab-agent-token");
  http::Request req{http::Verb::post, "/agent/v1/storage/iscsi/login", 11};
  req.set(http::bhttp::field::authorization, "Bearer kvf_lab-agent-token");
  req.set(http::bhttp::field::content_type, "application/json");
  req.body() =
      nlohmann::json(
          {{"op_id", "lab-mp-login"}, {"target", lun->iqn}, {"portal", lun->portal}, {"lun", 1}})
          .dump();
  req.prepare_payload();
  auto res = service.serve(req);
  ASSERT_EQ(res.result(), http::HttpStatus::ok) << res.body();
  const auto answer = nlohmann::json::parse(res.body());
  std::printf("[   INFO   ] node2: agent login answers %s\n", answer.dump().c_str());
  EXPECT_EQ(answer.value("device", ""), map->device());
  EXPECT_EQ(answer.value("multipath_map", ""), map->name);
  EXPECT_FALSE(answer.contains("multipath_unused"));
  auto filter = agent_lvm.config_string();
  ASSERT_TRUE(filter.ok()) << filter.error().brief();
  EXPECT_NE(filter->find(map->device()), std::string::npos) << *filter;
  for (const auto& p : paths) EXPECT_EQ(filter->find(p + "\""), std::string::npos) << *filter;
  // LVM through that filter: a PV made on the map is found there, by the map's name.
  ASSERT_TRUE(runs_ok(lab(), g, {"lvm", "pvcreate", "--config", *filter, map->device()}));
  auto pvs = agent_lvm.list_pvs();
  EXPECT_TRUE(runs_ok(lab(), g, {"lvm", "pvremove", "--config", *filter, map->device()}));
  ASSERT_TRUE(pvs.ok()) << pvs.error().brief();
  ASSERT_EQ(pvs->size(), 1u);
  EXPECT_EQ(pvs->front().name, map->device());
  // At start: the map once for both sessions, the shared LUN's single path as it is.
  storage::Lvm2Cli start_lvm(lab().runner(g), lo);
  agent::StorageBackend at_start{iscsi, start_lvm, SystemClock::instance(), nullptr, &multipath};
  at_start.resolve_device = backend.resolve_device;
  auto added = agent::add_session_luns(at_start);
  std::string listed;
  for (const auto& d : added) listed += d + " ";
  std::printf("[   INFO   ] node2: agent start adds %s\n", listed.c_str());
  EXPECT_EQ(std::count(added.begin(), added.end(), map->device()), 1) << listed;
  EXPECT_EQ(std::count(added.begin(), added.end(), disk_[g]), 1) << listed;
  for (const auto& p : paths) EXPECT_EQ(std::count(added.begin(), added.end(), p), 0) << listed;
  report_time("multipath_agent_picks_map_ms", steady::now() - t_agent);

  // One path goes away (as a cable pull would look to the SCSI layer).
  const std::string failed = paths[0].substr(5);
  const std::string state = "/sys/block/" + failed + "/device/state";
  ASSERT_TRUE(runs_ok(lab(), g, {"dd", "of=" + state, "status=none"}, nullptr, 60s, "offline\n"));
  const auto t_fail = steady::now();
  for (int attempt = 0; attempt < 60; ++attempt) {
    map = multipath.map_with_path(paths[0]);
    ASSERT_TRUE(map.ok()) << map.error().brief();
    if (map->degraded()) break;
    ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
  }
  EXPECT_TRUE(map->degraded());
  EXPECT_EQ(map->healthy_paths(), 1);
  for (const auto& p : map->paths) {
    if (p.dev == failed) {
      EXPECT_FALSE(p.healthy());
      std::printf("[   INFO   ] path %s: dm %s, device %s, checker %s\n", p.dev.c_str(),
                  p.dm_state.c_str(), p.dev_state.c_str(), p.checker_state.c_str());
    }
  }
  report_time("multipath_path_failure_seen_ms", steady::now() - t_fail);
  EXPECT_TRUE(runs_ok(lab(), g,
                      {"dd", "if=" + map->device(), "bs=4096", "count=1", "iflag=direct",
                       "of=/dev/null", "status=none"}))
      << "the map must still read over the remaining path";

  ASSERT_TRUE(runs_ok(lab(), g, {"dd", "of=" + state, "status=none"}, nullptr, 60s, "running\n"));
  for (int attempt = 0; attempt < 60; ++attempt) {
    map = multipath.map_with_path(paths[0]);
    ASSERT_TRUE(map.ok()) << map.error().brief();
    if (!map->degraded()) break;
    ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
  }
  EXPECT_FALSE(map->degraded()) << "the path did not come back";
  EXPECT_GE(map->path_faults, 1);
  report_time("multipath_whole_ms", steady::now() - t);
}

}  // namespace
}  // namespace kvmfleet::klab
