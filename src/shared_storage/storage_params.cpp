#include "kvmfleet/shared_storage/storage_params.hpp"

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

namespace {

void put_taken(json& j, const SnapshotsTaken& t) {
  put_optional(j, "frozen_filesystems", t.frozen_filesystems);
  put_optional(j, "quiesce_error", t.quiesce_error);
  put_optional(j, "deactivate_error", t.deactivate_error);
  put_optional(j, "snapshot_ids", t.snapshot_ids);
  if (t.consistency) j["consistency"] = std::string(to_string(*t.consistency));
}

void read_taken(const json& j, SnapshotsTaken& t) {
  t.frozen_filesystems = get_optional<int>(j, "frozen_filesystems");
  t.quiesce_error = get_optional<std::string>(j, "quiesce_error");
  t.deactivate_error = get_optional<std::string>(j, "deactivate_error");
  t.snapshot_ids = get_optional<std::vector<std::string>>(j, "snapshot_ids");
  if (const auto c = get_optional<std::string>(j, "consistency")) {
    t.consistency = snapshot_consistency_from_string(*c);
    if (!t.consistency) fail("consistency", "quiesced or crash-consistent");
  }
}

}  // namespace

void to_json(json& j, const StoragePoolCreateParams& p) {
  j = {{"hosts", p.hosts}, {"type", std::string(to_string(p.type))}};
}
void from_json(const json& j, StoragePoolCreateParams& p) {
  expect_object(j, {"hosts", "type"});
  p.hosts = get<std::vector<std::string>>(j, "hosts");
  const auto type = pool_type_from_string(get<std::string>(j, "type"));
  if (!type) fail("type", "iscsi or fc");
  p.type = *type;
}

void to_json(json& j, const StoragePoolCreateResult& r) {
  j = json::object();
  if (r.adopted_existing_vg) j["adopted_existing_vg"] = true;
  put_optional(j, "pool", r.pool);
  put_optional(j, "hosts_usable", r.hosts_usable);
  put_optional(j, "hosts_total", r.hosts_total);
}
void from_json(const json& j, StoragePoolCreateResult& r) {
  expect_object(j, {"adopted_existing_vg", "pool", "hosts_usable", "hosts_total"});
  r.adopted_existing_vg = get_optional<bool>(j, "adopted_existing_vg").value_or(false);
  r.pool = get_optional<std::string>(j, "pool");
  r.hosts_usable = get_optional<int>(j, "hosts_usable");
  r.hosts_total = get_optional<int>(j, "hosts_total");
}

void to_json(json& j, const StoragePoolConnectParams& p) {
  j = {{"hosts", p.hosts}};
}
void from_json(const json& j, StoragePoolConnectParams& p) {
  expect_object(j, {"hosts"});
  p.hosts = get<std::vector<std::string>>(j, "hosts");
}

void to_json(json& j, const StoragePoolConnectResult& r) {
  j = json::object();
  put_optional(j, "pool", r.pool);
  put_optional(j, "hosts", r.hosts);
  put_optional(j, "hosts_usable", r.hosts_usable);
  put_optional(j, "hosts_total", r.hosts_total);
}
void from_json(const json& j, StoragePoolConnectResult& r) {
  expect_object(j, {"pool", "hosts", "hosts_usable", "hosts_total"});
  r.pool = get_optional<std::string>(j, "pool");
  r.hosts = get_optional<std::map<std::string, std::string>>(j, "hosts");
  r.hosts_usable = get_optional<int>(j, "hosts_usable");
  r.hosts_total = get_optional<int>(j, "hosts_total");
}

void to_json(json& j, const VolumeCreateParams& p) {
  j = {{"name", p.name}, {"pool", p.pool}, {"size_bytes", p.size_bytes}};
}
void from_json(const json& j, VolumeCreateParams& p) {
  expect_object(j, {"name", "pool", "size_bytes"});
  p.name = get<std::string>(j, "name");
  p.pool = get<std::string>(j, "pool");
  p.size_bytes = get<std::uint64_t>(j, "size_bytes");
}

void to_json(json& j, const VolumeCreateResult& r) {
  j = json::object();
  put_optional(j, "volume_id", r.volume_id);
}
void from_json(const json& j, VolumeCreateResult& r) {
  expect_object(j, {"volume_id"});
  r.volume_id = get_optional<std::string>(j, "volume_id");
}

void to_json(json& j, const VolumeGrowParams& p) {
  j = {{"size_bytes", p.size_bytes}};
}
void from_json(const json& j, VolumeGrowParams& p) {
  expect_object(j, {"size_bytes"});
  p.size_bytes = get<std::uint64_t>(j, "size_bytes");
}

void to_json(json& j, const VolumeGrowResult& r) {
  j = json::object();
  put_optional(j, "size_bytes", r.size_bytes);
  put_optional(j, "vm_resized", r.vm_resized);
}
void from_json(const json& j, VolumeGrowResult& r) {
  expect_object(j, {"size_bytes", "vm_resized"});
  r.size_bytes = get_optional<std::uint64_t>(j, "size_bytes");
  r.vm_resized = get_optional<bool>(j, "vm_resized");
}

void to_json(json& j, const VolumeDeleteParams& p) {
  j = {{"name", p.name}};
}
void from_json(const json& j, VolumeDeleteParams& p) {
  expect_object(j, {"name"});
  p.name = get<std::string>(j, "name");
}

void to_json(json& j, const SnapshotCreateParams& p) {
  j = {{"snapshot_id", p.snapshot_id},
       {"name", p.name},
       {"size_bytes", p.size_bytes},
       {"quiesce", p.quiesce}};
}
void from_json(const json& j, SnapshotCreateParams& p) {
  expect_object(j, {"snapshot_id", "name", "size_bytes", "quiesce"});
  p.snapshot_id = get<std::string>(j, "snapshot_id");
  p.name = get<std::string>(j, "name");
  p.size_bytes = get<std::uint64_t>(j, "size_bytes");
  p.quiesce = get<bool>(j, "quiesce");
}

void to_json(json& j, const SnapshotCreateResult& r) {
  j = json::object();
  put_optional(j, "snapshot_id", r.snapshot_id);
  put_taken(j, r);
}
void from_json(const json& j, SnapshotCreateResult& r) {
  expect_object(j, {"snapshot_id", "frozen_filesystems", "quiesce_error", "deactivate_error",
                    "snapshot_ids", "consistency"});
  r.snapshot_id = get_optional<std::string>(j, "snapshot_id");
  read_taken(j, r);
}

void to_json(json& j, const VmSnapshotDisk& d) {
  j = {{"volume_id", d.volume_id}, {"snapshot_id", d.snapshot_id}, {"size_bytes", d.size_bytes}};
}
void from_json(const json& j, VmSnapshotDisk& d) {
  expect_object(j, {"volume_id", "snapshot_id", "size_bytes"});
  d.volume_id = get<std::string>(j, "volume_id");
  d.snapshot_id = get<std::string>(j, "snapshot_id");
  d.size_bytes = get<std::uint64_t>(j, "size_bytes");
}

void to_json(json& j, const VmSnapshotParams& p) {
  j = {{"name", p.name}, {"quiesce", p.quiesce}, {"snapshots", p.snapshots}};
}
void from_json(const json& j, VmSnapshotParams& p) {
  expect_object(j, {"name", "quiesce", "snapshots"});
  p.name = get<std::string>(j, "name");
  p.quiesce = get<bool>(j, "quiesce");
  p.snapshots = get<std::vector<VmSnapshotDisk>>(j, "snapshots");
}

void to_json(json& j, const VmSnapshotResult& r) {
  j = json::object();
  put_taken(j, r);
}
void from_json(const json& j, VmSnapshotResult& r) {
  expect_object(j, {"frozen_filesystems", "quiesce_error", "deactivate_error", "snapshot_ids",
                    "consistency"});
  read_taken(j, r);
}

void to_json(json& j, const SnapshotDeleteParams& p) {
  j = {{"snapshot_id", p.snapshot_id}, {"snapshot", p.snapshot}};
}
void from_json(const json& j, SnapshotDeleteParams& p) {
  expect_object(j, {"snapshot_id", "snapshot"});
  p.snapshot_id = get<std::string>(j, "snapshot_id");
  p.snapshot = get<std::string>(j, "snapshot");
}

void to_json(json& j, const SnapshotRevertParams& p) {
  j = {{"snapshot_id", p.snapshot_id}, {"snapshot", p.snapshot}};
}
void from_json(const json& j, SnapshotRevertParams& p) {
  expect_object(j, {"snapshot_id", "snapshot"});
  p.snapshot_id = get<std::string>(j, "snapshot_id");
  p.snapshot = get<std::string>(j, "snapshot");
}

void to_json(json& j, const SnapshotRevertResult& r) {
  j = json::object();
  put_optional(j, "merge_pending", r.merge_pending);
  put_optional(j, "deactivate_error", r.deactivate_error);
}
void from_json(const json& j, SnapshotRevertResult& r) {
  expect_object(j, {"merge_pending", "deactivate_error"});
  r.merge_pending = get_optional<bool>(j, "merge_pending");
  r.deactivate_error = get_optional<std::string>(j, "deactivate_error");
}

}  // namespace kvmfleet
