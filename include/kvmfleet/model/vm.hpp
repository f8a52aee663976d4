#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/model/host.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

enum class DesiredState { running, stopped };

// What kvmfleet last observed of a VM. `pending`: not defined on any host yet;
// `unknown`: its host cannot be reached, so nobody may assume it stopped.
enum class VmState { pending, stopped, running, paused, shutting_down, crashed, unknown };

std::string_view to_string(DesiredState s);
std::string_view to_string(VmState s);
std::optional<DesiredState> desired_state_from_string(std::string_view s);
std::optional<VmState> vm_state_from_string(std::string_view s);
// A libvirt-level domain state name, as agents report it, as a VmState (unknown when
// it is none).
VmState vm_state_from_domain(std::string_view domain_state);

enum class DiskBus { virtio, sata, scsi };
std::string_view to_string(DiskBus b);
std::optional<DiskBus> disk_bus_from_string(std::string_view s);

struct DiskSpec {
  std::int64_t size_gib = 0;
  DiskBus bus = DiskBus::virtio;
  // A shared volume (POST /v1/volumes) as the disk: its id; empty for a disk in the
  // host's local image pool. `device` is the volume's block device on every host of
  // its pool (/dev/VG/LV), resolved by the controller when the VM is made.
  std::string volume;
  std::string device;
  // An image's name (docs/images.md): the disk starts as a copy of it, grown to size_gib
  // (0: the image's own size). Its SHA-256 and size are resolved by the controller from
  // the image's record when the VM is made, so the host can check what it fetches.
  std::string image;
  std::string image_sha256;
  std::uint64_t image_size = 0;
  std::string image_format;  // raw or qcow2: the host never probes it
  bool operator==(const DiskSpec&) const = default;
};

// An ISO image as a read-only CD-ROM; its SHA-256 and size resolved as a disk's are.
struct CdromSpec {
  std::string image;
  std::string image_sha256;
  std::uint64_t image_size = 0;
  bool operator==(const CdromSpec&) const = default;
};

// What the firmware tries to boot from, in order.
enum class BootDevice { disk, cdrom, network };
std::string_view to_string(BootDevice b);
std::optional<BootDevice> boot_device_from_string(std::string_view s);

// A cloud-init NoCloud seed's content (docs/images.md). Secrets may be in it: it is kept
// with the VM and sent to its host, never logged and never shown in full by the API.
struct CloudInit {
  std::string user_data;       // YAML (#cloud-config) or a script; empty: none
  std::string meta_data;       // YAML; empty: made from instance id and hostname
  std::string hostname;        // empty: the VM's name
  std::string network_config;  // YAML (network config v1 or v2); empty: none
  std::vector<std::string> ssh_authorized_keys;
  bool operator==(const CloudInit&) const = default;
};

// The NIC models a VM may have (a closed set: what QEMU emulates well for guests
// without virtio drivers too).
enum class NicModel { virtio, e1000, rtl8139 };
std::string_view to_string(NicModel m);
std::optional<NicModel> nic_model_from_string(std::string_view s);

struct NicSpec {
  std::string network;  // a logical network's name
  std::string mac;      // lowercase aa:bb:cc:dd:ee:ff, unique in the cluster
  NicModel model = NicModel::virtio;
  // The network's host bridge and MTU, resolved by the controller when the NIC is
  // made (a network in use cannot be deleted, so they stay right).
  std::string bridge;
  int mtu = 0;
  bool operator==(const NicSpec&) const = default;
};

// Whether and how the VM is restarted elsewhere when its host is proven to have failed
// (fenced or confirmed down): higher priorities are placed first, and after
// `max_restarts` HA restarts within an hour the VM waits for an operator.
struct HaPolicy {
  bool enabled = false;
  int priority = 0;      // 0..1000
  int max_restarts = 3;  // 1..100
  bool operator==(const HaPolicy&) const = default;
};

struct VmSpec {
  std::string name;
  int vcpus = 1;
  std::int64_t memory_mib = 0;
  std::vector<DiskSpec> disks;
  std::string pinned_host;          // empty: the scheduler chooses
  std::string anti_affinity_group;  // empty: none
  HaPolicy ha;
  std::vector<NicSpec> nics;
  std::optional<CdromSpec> cdrom;
  std::vector<BootDevice> boot;  // empty: disk, then cdrom
  std::optional<CloudInit> cloud_init;
  bool operator==(const VmSpec&) const = default;
};

// A VM kvmfleet may have running on more than one host: it saw the VM running on a host
// other than the one it is recorded on, while the recorded host had not reported that it
// stopped running it there (it was silent, or reported it running too). Settled only by
// the recorded host's own report, or a fence or confirm-down of it; until then no
// operation acts on the VM (the safe answer is to wait, never to guess).
struct DoubleRun {
  std::vector<std::string> hosts;  // the hosts it may run on, the recorded one first
  Clock::time_point since{};
  bool operator==(const DoubleRun&) const = default;
};

struct Vm {
  std::string id;  // UUID; also the libvirt domain UUID
  VmSpec spec;
  std::string host;  // where it is defined; empty while pending
  DesiredState desired = DesiredState::stopped;
  VmState state = VmState::pending;
  std::int64_t generation = 1;  // bumped on every change to spec, host or desired state
  // By host: the stamp of the last answer about this VM that an operation took from that
  // host's agent. A report that agent observed before it is no news about this VM.
  std::map<std::string, ReportStamp> seen;
  std::optional<DoubleRun> double_run;  // a suspected double run, while it lasts
  // When HA restarted it elsewhere (its most recent restarts, oldest first; those older
  // than the restart window are dropped as new ones are added).
  std::vector<Clock::time_point> ha_restarts;
  Clock::time_point created_at{};
  Clock::time_point updated_at{};
};

}  // namespace kvmfleet
