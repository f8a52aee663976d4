// What the kernel lab is for, each checked with the real tools in ONE boot of two
// guests: kernel modules, open-iscsi logins to one tgtd LUN from both guests,
// lvmlockd+sanlock guarding exclusive activation, LVM snapshots, NFS.
// The steps build on each other and run in the order written.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <future>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"

namespace kvmfleet::klab {
namespace {

using namespace std::chrono_literals;
using testing_support::report_time;
using testing_support::runs_and_fails;
using testing_support::runs_ok;
using steady = std::chrono::steady_clock;

constexpr int kGuests = 2;
constexpr std::uint64_t kLunBytes = std::uint64_t{2} << 30;
constexpr const char* kVg = "klabvg";

// This lab has no udev: LVM makes its /dev nodes itself. use_lvmlockd makes every
// command take its locks from lvmlockd (sanlock underneath).
const std::vector<std::string> kLvmConfig{"--config",
                                          "global { use_lvmlockd = 1 } activation { udev_sync = 0 "
                                          "udev_rules = 0 verify_udev_operations = 1 }"};

std::vector<std::string> lvm(std::vector<std::string> argv) {
  argv.insert(argv.begin() + 1, kLvmConfig.begin(), kLvmConfig.end());
  return argv;
}

// A 4 KiB block starting with `text`, so that O_DIRECT reads and writes line up.
std::string block_of(const std::string& text) {
  std::string b = text;
  b.resize(4096, '\0');
  return b;
}

class KernelLabCapabilities : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_start_ = steady::now();
    LabOptions options;
    options.name = "ctest-capabilities";
    options.guests = kGuests;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) {
      setup_error_ = std::string(to_string(lab.error().code)) + ": " + lab.error().message;
      return;
    }
    lab_ = std::move(*lab);
    std::printf(
        "[   INFO   ] guests run kernel %s under TCG (no /dev/kvm for guests with a stock "
        "kernel)\n",
        lab_->kernel_version().c_str());
    report_time("boot_2_guests_ms", lab_->boot_time());
    auto lun = lab_->add_lun("shared", kLunBytes);
    if (!lun.ok()) {
      setup_error_ = "add_lun: " + lun.error().message;
      return;
    }
    lun_ = *lun;
  }

  static void TearDownTestSuite() {
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

  static std::unique_ptr<KernelLab> lab_;
  static std::string setup_error_;
  static LunInfo lun_;
  static steady::time_point suite_start_;
  // What earlier steps established, for the later ones.
  static std::array<std::string, kGuests + 1> disk_;  // the LUN's block device in guest N
  static bool modules_ok_;
  static bool locking_ok_;
};

std::unique_ptr<KernelLab> KernelLabCapabilities::lab_;
std::string KernelLabCapabilities::setup_error_;
LunInfo KernelLabCapabilities::lun_;
steady::time_point KernelLabCapabilities::suite_start_;
std::array<std::string, kGuests + 1> KernelLabCapabilities::disk_;
bool KernelLabCapabilities::modules_ok_ = false;
bool KernelLabCapabilities::locking_ok_ = false;

// (a) The guest kernel has what this machine's lacks.
TEST_F(KernelLabCapabilities, A_ModulesLoad) {
  for (int g = 1; g <= kGuests; ++g) {
    ProcessOutput out;
    ASSERT_TRUE(runs_ok(lab(), g, {"uname", "-r"}, &out));
    EXPECT_EQ(out.out, lab().kernel_version() + "\n") << "guest must run the lab's Debian kernel";

    ASSERT_TRUE(runs_ok(
        lab(), g, {"modprobe", "-a", "dm_snapshot", "loop", "softdog", "iscsi_tcp", "sd_mod"}));
    for (const char* module : {"dm_mod", "dm_snapshot", "loop", "softdog", "iscsi_tcp", "sd_mod"}) {
      EXPECT_TRUE(runs_ok(lab(), g, {"test", "-d", std::string("/sys/module/") + module}))
          << module << " not loaded on node" << g;
    }
    EXPECT_TRUE(runs_ok(lab(), g, {"test", "-c", "/dev/mapper/control"}));
    EXPECT_TRUE(runs_ok(lab(), g, {"test", "-c", "/dev/watchdog"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"dmsetup", "targets"}, &out));
    EXPECT_NE(out.out.find("snapshot"), std::string::npos) << out.out;
  }
  modules_ok_ = !HasFailure();
}

// (b) Both guests log in to the same tgtd LUN with the kernel initiator and see the
// same bytes on it.
TEST_F(KernelLabCapabilities, B_IscsiLoginFromBothGuests) {
  ASSERT_TRUE(modules_ok_) << "needs A_ModulesLoad";
  const std::string portal = lun_.portal;
  for (int g = 1; g <= kGuests; ++g) {
    ProcessOutput out;
    ASSERT_TRUE(runs_ok(lab(), g, {"iscsid"}));
    ASSERT_TRUE(runs_ok(lab(), g,
                        {"iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portal}, &out));
    EXPECT_NE(out.out.find(lun_.iqn), std::string::npos)
        << "discovery did not list the target: " << out.out;
    ASSERT_TRUE(runs_ok(lab(), g,
                        {"iscsiadm", "-m", "node", "-T", lun_.iqn, "-p", portal, "--login"}, &out));
    EXPECT_NE(out.out.find("successful"), std::string::npos) << out.out;

    // The SCSI scan after login is asynchronous; the session names the disk once
    // it is attached.
    const std::regex attached("Attached scsi disk (sd[a-z]+)");
    std::smatch m;
    for (int attempt = 0; attempt < 60 && disk_[g].empty(); ++attempt) {
      ASSERT_TRUE(runs_ok(lab(), g, {"iscsiadm", "-m", "session", "-P", "3"}, &out));
      if (std::regex_search(out.out, m, attached)) {
        disk_[g] = "/dev/" + m[1].str();
      } else {
        ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "1"}));
      }
    }
    ASSERT_FALSE(disk_[g].empty()) << "no disk attached on node" << g << ": " << out.out;
    ASSERT_TRUE(runs_ok(lab(), g, {"test", "-b", disk_[g]}));
    ASSERT_TRUE(runs_ok(lab(), g, {"blockdev", "--getsize64", disk_[g]}, &out));
    EXPECT_EQ(out.out, std::to_string(kLunBytes) + "\n")
        << "node" << g << " sees a LUN of another size";
  }

  // Bytes node1 writes straight to the LUN are the bytes node2 reads from it.
  const std::string marker = block_of("kvmfleet kernel lab: written by node1 over iSCSI");
  const std::string seek = std::to_string((kLunBytes >> 12) - 1);  // the last 4 KiB block
  ASSERT_TRUE(runs_ok(lab(), 1,
                      {"dd", "of=" + disk_[1], "bs=4096", "seek=" + seek, "count=1", "oflag=direct",
                       "conv=notrunc", "status=none"},
                      nullptr, 60s, marker));
  ProcessOutput read;
  ASSERT_TRUE(runs_ok(
      lab(), 2,
      {"dd", "if=" + disk_[2], "bs=4096", "skip=" + seek, "count=1", "iflag=direct", "status=none"},
      &read));
  EXPECT_TRUE(read.out == marker) << "node2 read other bytes than node1 wrote";
}

// (c) wdmd + sanlock + lvmlockd on both guests; a shared VG; an LV that is active
// exclusively on node1 cannot be activated on node2.
TEST_F(KernelLabCapabilities, C_LvmlockdGuardsExclusiveActivation) {
  ASSERT_FALSE(disk_[1].empty() || disk_[2].empty()) << "needs B_IscsiLoginFromBothGuests";
  for (int g = 1; g <= kGuests; ++g) {
    ASSERT_TRUE(runs_ok(lab(), g, {"wdmd"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"sanlock", "daemon", "-U", "root", "-G", "root"}));
    ASSERT_TRUE(runs_ok(lab(), g, {"lvmlockd", "-g", "sanlock"}));
    // The daemons fork before they listen; wait for both sockets.
    bool up = false;
    for (int attempt = 0; attempt < 60 && !up; ++attempt) {
      auto r = testing_support::run_in(
          lab(), g,
          {"test", "-S", "/run/lvm/lvmlockd.socket", "-a", "-S", "/run/sanlock/sanlock.sock"});
      up = r.ok() && r->exit_code == 0;
      if (!up) {
        ASSERT_TRUE(runs_ok(lab(), g, {"sleep", "0.5"}));
      }
    }
    ASSERT_TRUE(up) << "lvmlockd or sanlock did not start on node" << g;
  }

  const auto t_vg = steady::now();
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, lvm({"vgcreate", "--shared", kVg, disk_[1]}), &out, 300s));
  report_time("vgcreate_shared_ms", steady::now() - t_vg);

  // node1's vgcreate started its lockspace; node2 joins. sanlock's host_id lease
  // takes ~20 s to acquire. Without udev, LVM makes the lvmlock LV's /dev node at
  // the end of its command, so the very first start on a host can find it missing
  // ("invalid parameters for sanlock"): a second start sees it.
  const auto t_ls = steady::now();
  for (int g = 1; g <= kGuests; ++g) {
    bool started = false;
    for (int attempt = 0; attempt < 3 && !started; ++attempt) {
      auto r = testing_support::run_in(lab(), g, lvm({"vgchange", "--lockstart", kVg}), 300s);
      ASSERT_TRUE(r.ok()) << r.error().message;
      started = r->exit_code == 0;
      if (!started) {
        ASSERT_NE(r->err.find("invalid parameters for sanlock"), std::string::npos)
            << "lockstart on node" << g << " failed: " << r->err;
        std::printf("[   INFO   ] lockstart on node%d found no lvmlock node yet; starting again\n",
                    g);
      }
    }
    ASSERT_TRUE(started) << "lockstart never succeeded on node" << g;
  }
  report_time("lockstart_both_ms", steady::now() - t_ls);
  report_time("vgcreate_plus_lockstart_ms", steady::now() - t_vg);
  ASSERT_TRUE(runs_ok(lab(), 2, {"sanlock", "client", "status"}, &out));
  EXPECT_NE(out.out.find(std::string("lvm_") + kVg), std::string::npos)
      << "node2 holds no lockspace: " << out.out;

  // Made inactive so that the activations below are the ones under test.
  ASSERT_TRUE(runs_ok(lab(), 1, lvm({"lvcreate", "-an", "-L", "64M", "-n", "lv1", kVg})));
  ASSERT_TRUE(runs_ok(lab(), 1, lvm({"lvchange", "-aey", std::string(kVg) + "/lv1"})));
  ASSERT_TRUE(runs_ok(
      lab(), 1,
      lvm({"lvs", "--noheadings", "-o", "lv_active_exclusively", std::string(kVg) + "/lv1"}),
      &out));
  EXPECT_NE(out.out.find("active exclusively"), std::string::npos) << out.out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"test", "-b", std::string("/dev/") + kVg + "/lv1"}));

  // The split-brain guard: node2 may activate it neither exclusively nor shared.
  ASSERT_TRUE(runs_and_fails(lab(), 2, lvm({"lvchange", "-aey", std::string(kVg) + "/lv1"}), &out));
  EXPECT_NE(out.err.find("LV locked by other host"), std::string::npos) << out.err;
  ASSERT_TRUE(runs_and_fails(lab(), 2, lvm({"lvchange", "-asy", std::string(kVg) + "/lv1"}), &out));
  EXPECT_NE(out.err.find("LV locked by other host"), std::string::npos) << out.err;
  EXPECT_TRUE(runs_and_fails(lab(), 2, {"dmsetup", "info", std::string(kVg) + "-lv1"}, nullptr))
      << "node2 has a device-mapper device for lv1";
  locking_ok_ = !HasFailure();
}

// (d) A snapshot keeps the bytes the origin had when it was taken.
TEST_F(KernelLabCapabilities, D_SnapshotKeepsOldData) {
  ASSERT_TRUE(locking_ok_) << "needs C_LvmlockdGuardsExclusiveActivation";
  const std::string origin = std::string("/dev/") + kVg + "/lv1";
  const std::string snapshot = std::string("/dev/") + kVg + "/snap1";
  const std::string before = block_of("kvmfleet: before the snapshot");
  const std::string after = block_of("kvmfleet: written after the snapshot");
  const std::vector<std::string> write{"dd",           "of=" + origin, "bs=4096",    "count=1",
                                       "oflag=direct", "conv=notrunc", "status=none"};

  ASSERT_TRUE(runs_ok(lab(), 1, write, nullptr, 60s, before));
  ASSERT_TRUE(runs_ok(
      lab(), 1, lvm({"lvcreate", "-s", "-L", "32M", "-n", "snap1", std::string(kVg) + "/lv1"})));
  ASSERT_TRUE(runs_ok(lab(), 1, write, nullptr, 60s, after));

  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1,
                      {"dd", "if=" + snapshot, "bs=4096", "count=1", "iflag=direct", "status=none"},
                      &out));
  EXPECT_TRUE(out.out == before) << "the snapshot lost the old data: " << out.out.substr(0, 40);
  ASSERT_TRUE(runs_ok(
      lab(), 1, {"dd", "if=" + origin, "bs=4096", "count=1", "iflag=direct", "status=none"}, &out));
  EXPECT_TRUE(out.out == after) << "the origin lacks the new data: " << out.out.substr(0, 40);
}

// NFS: node1 serves a directory with the kernel server, node2 mounts it (v4.2) and
// both see each other's files.
TEST_F(KernelLabCapabilities, E_NfsServerAndClient) {
  ASSERT_TRUE(modules_ok_) << "needs A_ModulesLoad";
  const std::string server = lab().guest(1).address;
  ASSERT_TRUE(runs_ok(lab(), 1, {"modprobe", "-a", "nfsd", "nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"mkdir", "-p", "/srv/klab-nfs"}));
  // An overlay cannot be exported; a tmpfs can.
  ASSERT_TRUE(runs_ok(lab(), 1, {"mount", "-t", "tmpfs", "klab-nfs", "/srv/klab-nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"dd", "of=/srv/klab-nfs/from-node1", "status=none"}, nullptr, 60s,
                      "node1 was here\n"));
  ASSERT_TRUE(runs_ok(lab(), 1,
                      {"exportfs", "-o", "rw,no_root_squash,fsid=0,no_subtree_check",
                       std::string(KernelLab::kGuestPrefix) + "0/24:/srv/klab-nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpcbind", "-w"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.mountd"}));
  // A short grace period: NFSv4 opens wait for it to end after nfsd starts.
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.nfsd", "--grace-time", "10", "--lease-time", "10", "4"}));

  ASSERT_TRUE(runs_ok(lab(), 2, {"modprobe", "nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 2, {"mkdir", "-p", "/mnt/klab-nfs"}));
  const auto t = steady::now();
  ASSERT_TRUE(runs_ok(lab(), 2,
                      {"mount", "-t", "nfs", "-o", "vers=4.2", server + ":/", "/mnt/klab-nfs"},
                      nullptr, 300s));
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 2, {"cat", "/mnt/klab-nfs/from-node1"}, &out, 300s));
  EXPECT_EQ(out.out, "node1 was here\n");
  report_time("nfs_mount_and_first_read_ms", steady::now() - t);
  ASSERT_TRUE(runs_ok(lab(), 2, {"dd", "of=/mnt/klab-nfs/from-node2", "conv=fsync", "status=none"},
                      nullptr, 60s, "node2 was here\n"));
  ASSERT_TRUE(runs_ok(lab(), 1, {"cat", "/srv/klab-nfs/from-node2"}, &out));
  EXPECT_EQ(out.out, "node2 was here\n");
  ASSERT_TRUE(runs_ok(lab(), 2, {"findmnt", "-n", "-o", "FSTYPE", "/mnt/klab-nfs"}, &out));
  EXPECT_EQ(out.out, "nfs4\n");
  ASSERT_TRUE(runs_ok(lab(), 2, {"umount", "/mnt/klab-nfs"}));
}

}  // namespace
}  // namespace kvmfleet::klab
