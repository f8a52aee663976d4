#pragma once

// The params and results of the shared-storage operations (pools, volumes, snapshots,
// and vm.snapshot), as stored and shown by the API (api/openapi.yaml,
// components/schemas/StoragePool*, Volume*, Snapshot* and VmSnapshot*).

#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/storage.hpp"
#include "kvmfleet/model/strict_json.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

struct StoragePoolCreateParams {
  static constexpr std::string_view kind = op_kind::pool_create;
  std::vector<std::string> hosts;  // as the request named them, or every host up then
  PoolType type = PoolType::iscsi;
};
struct StoragePoolCreateResult {
  bool adopted_existing_vg = false;  // the VG was on the LUNs already (written only then)
  std::optional<std::string> pool;
  std::optional<int> hosts_usable;  // connected, lockspace started
  std::optional<int> hosts_total;
};

struct StoragePoolDeleteParams : NoFields {
  static constexpr std::string_view kind = op_kind::pool_delete;
};
struct StoragePoolDeleteResult : NoFields {};

struct StoragePoolConnectParams {
  static constexpr std::string_view kind = op_kind::pool_connect;
  std::vector<std::string> hosts;  // each once, in the order given
};
struct StoragePoolConnectResult {
  std::optional<std::string> pool;
  std::optional<std::map<std::string, std::string>> hosts;  // "usable", or why not
  std::optional<int> hosts_usable;
  std::optional<int> hosts_total;
};

struct VolumeCreateParams {
  static constexpr std::string_view kind = op_kind::volume_create;
  std::string name;
  std::string pool;
  std::uint64_t size_bytes = 0;
};
struct VolumeCreateResult {
  std::optional<std::string> volume_id;
};

struct VolumeGrowParams {
  static constexpr std::string_view kind = op_kind::volume_grow;
  std::uint64_t size_bytes = 0;  // the new size
};
struct VolumeGrowResult {
  std::optional<std::uint64_t> size_bytes;  // as LVM gave it
  std::optional<bool> vm_resized;           // a running VM's: whether QEMU took the new size
};

struct VolumeDeleteParams {
  static constexpr std::string_view kind = op_kind::volume_delete;
  std::string name;
};
struct VolumeDeleteResult : NoFields {};

// What taking snapshots records, for snapshot.create and vm.snapshot alike.
struct SnapshotsTaken {
  std::optional<int> frozen_filesystems;     // by the guest agent, for the instant
  std::optional<std::string> quiesce_error;  // why the guest could not be frozen
  std::optional<std::string> deactivate_error;
  std::optional<std::vector<std::string>> snapshot_ids;  // in disk order
  std::optional<SnapshotConsistency> consistency;
};

struct SnapshotCreateParams {
  static constexpr std::string_view kind = op_kind::snapshot_create;
  std::string snapshot_id;
  std::string name;
  std::uint64_t size_bytes = 0;  // the COW room
  bool quiesce = true;
};
struct SnapshotCreateResult : SnapshotsTaken {
  std::optional<std::string> snapshot_id;
};

// One disk's snapshot of a vm.snapshot.
struct VmSnapshotDisk {
  std::string volume_id;
  std::string snapshot_id;
  std::uint64_t size_bytes = 0;
};
struct VmSnapshotParams {
  static constexpr std::string_view kind = op_kind::vm_snapshot;
  std::string name;
  bool quiesce = true;
  std::vector<VmSnapshotDisk> snapshots;  // one per disk
};
struct VmSnapshotResult : SnapshotsTaken {};

struct SnapshotDeleteParams {
  static constexpr std::string_view kind = op_kind::snapshot_delete;
  std::string snapshot_id;
  std::string snapshot;  // its name
};
struct SnapshotDeleteResult : NoFields {};

struct SnapshotRevertParams {
  static constexpr std::string_view kind = op_kind::snapshot_revert;
  std::string snapshot_id;
  std::string snapshot;  // its name
};
struct SnapshotRevertResult {
  std::optional<bool> merge_pending;  // completes at the origin's next activation
  std::optional<std::string> deactivate_error;
};

void to_json(nlohmann::json& j, const StoragePoolCreateParams& p);
void from_json(const nlohmann::json& j, StoragePoolCreateParams& p);
void to_json(nlohmann::json& j, const StoragePoolCreateResult& r);
void from_json(const nlohmann::json& j, StoragePoolCreateResult& r);
void to_json(nlohmann::json& j, const StoragePoolConnectParams& p);
void from_json(const nlohmann::json& j, StoragePoolConnectParams& p);
void to_json(nlohmann::json& j, const StoragePoolConnectResult& r);
void from_json(const nlohmann::json& j, StoragePoolConnectResult& r);
void to_json(nlohmann::json& j, const VolumeCreateParams& p);
void from_json(const nlohmann::json& j, VolumeCreateParams& p);
void to_json(nlohmann::json& j, const VolumeCreateResult& r);
void from_json(const nlohmann::json& j, VolumeCreateResult& r);
void to_json(nlohmann::json& j, const VolumeGrowParams& p);
void from_json(const nlohmann::json& j, VolumeGrowParams& p);
void to_json(nlohmann::json& j, const VolumeGrowResult& r);
void from_json(const nlohmann::json& j, VolumeGrowResult& r);
void to_json(nlohmann::json& j, const VolumeDeleteParams& p);
void from_json(const nlohmann::json& j, VolumeDeleteParams& p);
void to_json(nlohmann::json& j, const SnapshotCreateParams& p);
void from_json(const nlohmann::json& j, SnapshotCreateParams& p);
void to_json(nlohmann::json& j, const SnapshotCreateResult& r);
void from_json(const nlohmann::json& j, SnapshotCreateResult& r);
void to_json(nlohmann::json& j, const VmSnapshotDisk& d);
void from_json(const nlohmann::json& j, VmSnapshotDisk& d);
void to_json(nlohmann::json& j, const VmSnapshotParams& p);
void from_json(const nlohmann::json& j, VmSnapshotParams& p);
void to_json(nlohmann::json& j, const VmSnapshotResult& r);
void from_json(const nlohmann::json& j, VmSnapshotResult& r);
void to_json(nlohmann::json& j, const SnapshotDeleteParams& p);
void from_json(const nlohmann::json& j, SnapshotDeleteParams& p);
void to_json(nlohmann::json& j, const SnapshotRevertParams& p);
void from_json(const nlohmann::json& j, SnapshotRevertParams& p);
void to_json(nlohmann::json& j, const SnapshotRevertResult& r);
void from_json(const nlohmann::json& j, SnapshotRevertResult& r);

}  // namespace kvmfleet
