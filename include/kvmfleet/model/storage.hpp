#pragma once

// Shared block storage as the controller keeps it (docs/storage.md): a storage pool
// is one shared lvmlockd VG on iSCSI or FC LUNs that several hosts reach; a volume is
// an LV of it, a VM disk; a snapshot is a COW LV of a volume.

#include "kvmfleet/common/clock.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

enum class PoolType { iscsi, fc };
std::string_view to_string(PoolType t);
std::optional<PoolType> pool_type_from_string(std::string_view s);

// `creating`: hosts are logging in / the VG is being made; `ready`: usable;
// `failed`: creation failed and what it made is listed in the operation's error.
enum class PoolState { creating, ready, failed };
std::string_view to_string(PoolState s);
std::optional<PoolState> pool_state_from_string(std::string_view s);

struct IscsiPoolTarget {
  std::string portal;  // host:port
  std::string iqn;
  int lun = 1;
  std::string chap_username;  // empty: no CHAP
  std::string chap_password;  // kept in the store, never shown by the API
  bool operator==(const IscsiPoolTarget&) const = default;
};

// How one host sees a pool.
struct PoolHostStatus {
  bool connected = false;            // logged in / LUNs present, devices known
  std::vector<std::string> devices;  // the pool's LUNs as block devices on this host
  bool lockspace_started = false;    // vgchange --lockstart done here
  std::string error;                 // the last failure, empty when none
  Clock::time_point checked_at{};
  bool operator==(const PoolHostStatus&) const = default;
};

struct StoragePool {
  std::string name;  // also the VG's name
  PoolType type = PoolType::iscsi;
  std::vector<IscsiPoolTarget> targets;  // iscsi
  std::vector<std::string> wwids;        // fc
  PoolState state = PoolState::creating;
  std::uint64_t size_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::map<std::string, PoolHostStatus> hosts;  // by host name
  // Made for every host (the create request named none): a host that comes up and is
  // not listed yet is connected by the storage monitor.
  bool all_hosts = false;
  Clock::time_point created_at{};
  Clock::time_point updated_at{};
  const std::string& vg() const { return name; }
  // Hosts that may use the pool now: connected with the lockspace started.
  bool usable_on(const std::string& host) const {
    auto it = hosts.find(host);
    return it != hosts.end() && it->second.connected && it->second.lockspace_started;
  }
};

enum class VolumeState { creating, ready, deleting };
std::string_view to_string(VolumeState s);
std::optional<VolumeState> volume_state_from_string(std::string_view s);

// Whether a snapshot was taken with the guest's filesystems frozen.
enum class SnapshotConsistency { quiesced, crash_consistent };
std::string_view to_string(SnapshotConsistency c);
std::optional<SnapshotConsistency> snapshot_consistency_from_string(std::string_view s);

struct Snapshot {
  std::string id;                // UUID
  std::string name;              // unique per volume
  std::string lv;                // the COW LV's name
  std::uint64_t size_bytes = 0;  // COW room
  SnapshotConsistency consistency = SnapshotConsistency::crash_consistent;
  std::optional<double> fill_percent;  // COW fill, as last seen
  bool invalid = false;                // overflowed: LVM dropped it
  bool merge_pending = false;          // revert deferred to the origin's next activation
  Clock::time_point created_at{};
  bool operator==(const Snapshot&) const = default;
};

struct Volume {
  std::string id;    // UUID
  std::string name;  // unique in the cluster; also the LV's name
  std::string pool;
  std::uint64_t size_bytes = 0;
  VolumeState state = VolumeState::creating;
  std::string attached_to;  // VM id; empty when free
  std::vector<Snapshot> snapshots;
  Clock::time_point created_at{};
  Clock::time_point updated_at{};
  const std::string& lv() const { return name; }
  std::string device() const { return "/dev/" + pool + "/" + name; }
  const Snapshot* find_snapshot(const std::string& id_or_name) const {
    for (const auto& s : snapshots)
      if (s.id == id_or_name || s.name == id_or_name) return &s;
    return nullptr;
  }
};

// The LV name of a volume's snapshot: "<volume>.snap.<snapshot>" (a '.' cannot
// appear in a kvmfleet volume or snapshot name, so it never collides with a volume).
std::string snapshot_lv_name(const std::string& volume, const std::string& snapshot);

}  // namespace kvmfleet
