#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "guest_runner.hpp"
#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"
#include "lab_journal.hpp"

namespace kvmfleet::klab {

// Where prepare.sh and guest/ live; CMake passes the source dir in.
#ifndef KVMFLEET_KLAB_SOURCE_DIR
#define KVMFLEET_KLAB_SOURCE_DIR "tests/kernel-lab"
#endif

struct LabOptions {
  // Names the lab's state dir and network namespace: [a-z0-9][a-z0-9-]{0,62}.
  std::string name = "default";
  int guests = 2;  // 0..16; each is one TCG guest
  int memory_mib = 1024;
  std::filesystem::path state_root = "/var/tmp/kvmfleet-kernel-lab";
  std::filesystem::path source_dir = KVMFLEET_KLAB_SOURCE_DIR;
  std::chrono::seconds boot_timeout{300};
  // A persistent lab outlives the process that made it (the klab CLI); otherwise the
  // lab belongs to its maker, is torn down with it, and is stale once it died.
  bool persistent = false;
};

struct GuestInfo {
  int index = 0;         // 1..K
  std::string hostname;  // node1..nodeK
  std::string address;   // on the lab network, without prefix length
  int host_id = 0;       // sanlock host_id (lvmlocal.conf), equal to index
  std::string iqn;       // the guest's iSCSI initiator name
  ProcessId qemu;
  std::filesystem::path job_dir;
  std::filesystem::path console_log;
};

struct LunInfo {
  std::string name;
  std::string iqn;  // target name; the LUN is lun 1 of it
  int tid = 0;
  std::string portal;  // address:3260 on the lab network
  std::filesystem::path backing_file;
  std::uint64_t size_bytes = 0;
};

// K TCG guests running Debian's own kernel with this machine's root filesystem over
// 9p (so device-mapper, LVM, lvmlockd+sanlock, open-iscsi and NFS work in them),
// each with a NIC on one bridge inside a network namespace the lab made, and a
// tgtd in that namespace serving iSCSI LUNs to them.
//
// Everything made is written to a journal (lab_journal.hpp) before or right after it
// is made; down() and a later up() of any lab tear down by those records only.
class KernelLab {
 public:
  // The lab network, inside the lab's own namespace: tgtd listens on kBridgeAddress,
  // guest N is kGuestPrefix + (10 + N).
  static constexpr const char* kBridgeAddress = "10.77.0.1";
  static constexpr const char* kGuestPrefix = "10.77.0.";
  static constexpr const char* kIqnPrefix = "iqn.2026-01.io.kvmfleet.klab";

  // Boots a lab. Tears down stale labs first (those whose owner died); a lab of the
  // same name is torn down if persistent, a conflict error while its owner lives.
  static Result<std::unique_ptr<KernelLab>> up(LabOptions options);
  // Binds to a running lab (made by another process) by its name.
  static Result<std::unique_ptr<KernelLab>> attach(
      const std::string& name, const std::filesystem::path& state_root = LabOptions{}.state_root);
  // Tears down the named lab by its journal, whoever made it.
  static Status destroy(const std::string& name,
                        const std::filesystem::path& state_root = LabOptions{}.state_root);
  // Tears down every lab whose owner has died. Persistent labs are left alone.
  static Status cleanup_stale(const std::filesystem::path& state_root = LabOptions{}.state_root);

  KernelLab(const KernelLab&) = delete;
  KernelLab& operator=(const KernelLab&) = delete;
  // A non-persistent lab is torn down here if down() was not called.
  ~KernelLab();

  Status down();

  int guest_count() const { return static_cast<int>(guests_.size()); }
  const GuestInfo& guest(int index) const {
    return guests_.at(static_cast<std::size_t>(index - 1));
  }
  // Runs programs inside guest `index` (1-based).
  GuestRunner& runner(int index) { return *runners_.at(static_cast<std::size_t>(index - 1)); }
  Result<ProcessOutput> exec(int index, const std::vector<std::string>& argv,
                             RunOptions options = {});

  // A new tgtd target with one LUN backed by a sparse file of `size_bytes`, open to
  // every initiator. `name` is [a-z0-9][a-z0-9-]{0,62}.
  Result<LunInfo> add_lun(const std::string& name, std::uint64_t size_bytes);
  const std::vector<LunInfo>& luns() const { return luns_; }

  // Starts a program of this machine inside the lab's network namespace (so it
  // reaches the guests and tgtd on the bridge, and nothing else), e.g. a
  // kvmfleet-controller listening on kBridgeAddress. Recorded in the journal right
  // after it starts: down(), and a later stale cleanup, stop it by pid and start
  // time. `what` names it in the journal and in messages.
  Result<ProcessId> spawn_in_netns(const std::vector<std::string>& argv,
                                   const SpawnOptions& options, std::string_view what);

  const std::string& name() const { return name_; }
  const std::string& netns() const { return netns_; }
  const std::filesystem::path& state_dir() const { return state_dir_; }
  const std::string& kernel_version() const { return kernel_version_; }
  // From starting the first QEMU to every guest's agent being ready.
  std::chrono::milliseconds boot_time() const { return boot_time_; }
  // The end of guest `index`'s serial console, for failure messages.
  std::string console_tail(int index, std::size_t bytes = 4000) const;

 private:
  KernelLab() = default;

  static Status cleanup_stale_locked(const std::filesystem::path& state_root);
  Status boot(const LabOptions& options);
  Status save_description() const;
  static Result<std::unique_ptr<KernelLab>> load(const std::filesystem::path& state_dir);
  Result<ProcessOutput> host(const std::vector<std::string>& argv,
                             std::chrono::seconds timeout = std::chrono::seconds{30});

  std::string name_;
  std::string netns_;
  std::filesystem::path state_root_;
  std::filesystem::path state_dir_;
  std::filesystem::path tgt_socket_;
  std::string kernel_version_;
  bool persistent_ = false;
  // Set once this handle has claimed the lab's name; a handle that failed before
  // that must not tear down a lab someone else holds.
  bool owned_ = false;
  bool down_ = false;
  std::chrono::milliseconds boot_time_{0};
  std::vector<GuestInfo> guests_;
  std::vector<std::unique_ptr<GuestRunner>> runners_;
  std::vector<LunInfo> luns_;
  std::unique_ptr<LabJournal> journal_;
  SystemProcessRunner system_;
};

}  // namespace kvmfleet::klab
