#pragma once

// Clustered LVM on shared LUNs: the VG, its lockspace, the LVs that are VM disks,
// their activation and COW snapshots.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::storage {

struct PhysicalVolume {
  std::string name;     // device path
  std::string vg_name;  // empty when the PV belongs to no VG
  std::string uuid;
  std::uint64_t size_bytes = 0;
  std::uint64_t free_bytes = 0;
};

struct VolumeGroup {
  std::string name;
  std::string uuid;
  std::uint64_t size_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::uint64_t extent_bytes = 0;
  std::string lock_type;  // "sanlock", "dlm" or "" (a local VG)
  bool shared = false;
  int pv_count = 0;
  int lv_count = 0;
  int snap_count = 0;
};

// How an LV is active on this host.
enum class LvActivation { inactive, exclusive, shared };
std::string_view to_string(LvActivation a);

struct LogicalVolume {
  std::string name;
  std::string vg_name;
  std::string uuid;
  std::uint64_t size_bytes = 0;
  std::string attr;     // lv_attr, e.g. "-wi-a-----"
  std::string path;     // /dev/VG/LV
  bool active = false;  // active on this host
  // The lock lvmlockd holds for it on this host: exclusive or shared when active
  // under lvmlockd; inactive otherwise. (lvs alone cannot tell shared from
  // exclusive: it reports "active exclusively" for both on a sanlock VG.)
  LvActivation activation = LvActivation::inactive;
  std::string origin;  // for a COW snapshot: the LV it snapshots
  bool is_snapshot = false;
  bool is_origin = false;              // has COW snapshots
  std::optional<double> data_percent;  // a snapshot's COW fill
  // A COW snapshot that overflowed (lv_attr state 'I'): LVM dropped it, its data
  // is gone; only removal is left.
  bool snapshot_invalid = false;
  bool merging = false;  // a merge into its origin is pending/under way
};

struct LvCreateOptions {
  // Activate exclusively on this host after creating it. LVM zeroes the start of
  // an LV only when it is active, so an inactive create is not zeroed.
  bool activate_exclusive = false;
};

class VolumeManager {
 public:
  virtual ~VolumeManager() = default;

  virtual Result<std::vector<PhysicalVolume>> list_pvs() = 0;
  virtual Result<std::vector<VolumeGroup>> list_vgs() = 0;
  virtual Result<VolumeGroup> get_vg(std::string_view vg) = 0;
  // LVs of a VG (hidden ones such as lvmlock left out), with this host's locks.
  virtual Result<std::vector<LogicalVolume>> list_lvs(std::string_view vg) = 0;
  virtual Result<LogicalVolume> get_lv(std::string_view vg, std::string_view lv) = 0;

  // vgcreate --shared on `devices` (each must be one of the configured devices);
  // this also starts the VG's lockspace on this host.
  virtual Status create_shared_vg(std::string_view vg, const std::vector<std::string>& devices) = 0;
  // vgchange --lockstart (waits until the lockspace is joined; ~20-30 s with sanlock);
  // starting a started lockspace is a success.
  virtual Status lock_start(std::string_view vg) = 0;
  // vgchange --lockstop; conflict while LVs of the VG are active here.
  virtual Status lock_stop(std::string_view vg) = 0;

  virtual Status create_lv(std::string_view vg, std::string_view lv, std::uint64_t size_bytes,
                           const LvCreateOptions& options) = 0;
  // Grows an LV to `new_size_bytes`; a size not larger than the current one is
  // invalid_argument (LVs are never shrunk under a VM).
  virtual Status extend_lv(std::string_view vg, std::string_view lv,
                           std::uint64_t new_size_bytes) = 0;
  virtual Status remove_lv(std::string_view vg, std::string_view lv) = 0;
  // lvchange -aey / -asy / -an. conflict when another host holds the LV's lock.
  virtual Status activate(std::string_view vg, std::string_view lv, LvActivation mode) = 0;

  // A COW snapshot of `origin` with `cow_bytes` of room for changed blocks.
  virtual Status create_snapshot(std::string_view vg, std::string_view origin,
                                 std::string_view snapshot, std::uint64_t cow_bytes) = 0;
  // lvconvert --merge: the origin returns to the snapshot's content and the snapshot
  // goes away. Done at once when neither is open; otherwise LVM defers it to the
  // origin's next activation (get_lv then reports merging).
  virtual Status merge_snapshot(std::string_view vg, std::string_view snapshot) = 0;
  // Lets LVM see one more cluster device from now on (a LUN this host logged in to);
  // a path already known is a success.
  virtual Status add_device(std::string_view path) = 0;
};

struct LvmOptions {
  // The only devices LVM may scan (the cluster's LUNs); everything else is
  // rejected by the filter. Required: an empty list is refused at every call.
  std::vector<std::string> devices;
  // sanlock's host_id for this host (1..2000), unique in the cluster.
  int host_id = 0;
  bool use_lvmlockd = true;
  // Without udev (containers, the kernel lab) LVM must make its /dev nodes itself.
  bool udev = true;
  std::string lvm = "lvm";  // lvm2's multi-call binary: "lvm lvs ...", "lvm vgcreate ..."
  std::string lvmlockctl = "lvmlockctl";
  std::chrono::milliseconds timeout{std::chrono::seconds{120}};
  // vgcreate --shared and --lockstart wait for sanlock's host_id lease.
  std::chrono::milliseconds lockstart_timeout{std::chrono::seconds{300}};
  // Without udev the first lockstart on a host may find no /dev node for the
  // lvmlock LV yet ("invalid parameters for sanlock"); it is retried this often.
  int lockstart_attempts = 3;
};

// lvm2 through its commands, each with --config built from LvmOptions.
class Lvm2Cli final : public VolumeManager {
 public:
  Lvm2Cli(ProcessRunner& runner, LvmOptions options)
      : runner_(runner), options_(std::move(options)) {}

  Result<std::vector<PhysicalVolume>> list_pvs() override;
  Result<std::vector<VolumeGroup>> list_vgs() override;
  Result<VolumeGroup> get_vg(std::string_view vg) override;
  Result<std::vector<LogicalVolume>> list_lvs(std::string_view vg) override;
  Result<LogicalVolume> get_lv(std::string_view vg, std::string_view lv) override;
  Status create_shared_vg(std::string_view vg, const std::vector<std::string>& devices) override;
  Status lock_start(std::string_view vg) override;
  Status lock_stop(std::string_view vg) override;
  Status create_lv(std::string_view vg, std::string_view lv, std::uint64_t size_bytes,
                   const LvCreateOptions& options) override;
  Status extend_lv(std::string_view vg, std::string_view lv, std::uint64_t new_size_bytes) override;
  Status remove_lv(std::string_view vg, std::string_view lv) override;
  Status activate(std::string_view vg, std::string_view lv, LvActivation mode) override;
  Status create_snapshot(std::string_view vg, std::string_view origin, std::string_view snapshot,
                         std::uint64_t cow_bytes) override;
  Status merge_snapshot(std::string_view vg, std::string_view snapshot) override;
  Status add_device(std::string_view path) override;

  // The --config value every command gets (exposed for tests and docs).
  Result<std::string> config_string() const;

 private:
  Result<ProcessOutput> lvm(const std::string& command, std::vector<std::string> args,
                            std::chrono::milliseconds timeout);
  Result<ProcessOutput> lvm(const std::string& command, std::vector<std::string> args) {
    return lvm(command, std::move(args), options_.timeout);
  }
  Status check_options() const;

  ProcessRunner& runner_;
  LvmOptions options_;
  // Guards options_.devices, which add_device extends while commands run.
  mutable std::mutex devices_mu_;
};

// LVM's messages as error categories: `command` names the lvm command, `err` is
// what it wrote to stderr, exit_code its status.
Error lvm_error(std::string_view command, int exit_code, std::string_view err);

// Parsers of `--reportformat json` reports (untrusted: anything malformed is an
// internal error naming `command`, never a crash).
Result<std::vector<PhysicalVolume>> parse_pvs_report(std::string_view json);
Result<std::vector<VolumeGroup>> parse_vgs_report(std::string_view json);
Result<std::vector<LogicalVolume>> parse_lvs_report(std::string_view json);

// `lvmlockctl --info`: for each VG with a started lockspace, the LV locks held
// here, by LV uuid.
struct LvmlockdVg {
  std::string name;
  std::string lock_type;
  bool lockspace = false;  // an "LS" line: lvmlockd has (or is adding) the lockspace
  std::vector<std::pair<std::string, LvActivation>> lv_locks;  // uuid, ex/sh
};
Result<std::vector<LvmlockdVg>> parse_lvmlockctl_info(std::string_view text);

}  // namespace kvmfleet::storage
