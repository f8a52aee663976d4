#pragma once

// Strict parsing of untrusted API input: every field checked for type and range,
// unknown fields refused, names matched against the one pattern. Pure functions.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/migration.hpp"
#include "kvmfleet/model/storage.hpp"
#include "kvmfleet/model/vm.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet::api {

inline constexpr std::int64_t kMaxVcpus = 256;
inline constexpr std::int64_t kMinMemoryMib = 16;
inline constexpr std::int64_t kMaxMemoryMib = 4 * 1024 * 1024;  // 4 TiB
inline constexpr std::int64_t kMaxDiskGib = 64 * 1024;
inline constexpr std::size_t kMaxDisks = 16;
inline constexpr int kMaxWaitSeconds = 300;

// A JSON body: must parse, must be an object.
Result<nlohmann::json> parse_body(std::string_view body);

struct VmCreateRequest {
  VmSpec spec;
  bool start = false;
};
// POST /v1/vms and POST /v1/placements bodies.
Result<VmCreateRequest> parse_vm_create(const nlohmann::json& body, bool allow_start = true);
// POST /v1/vms' "boot": 1 to 3 of "disk", "cdrom", "network", each once, each a device
// the VM has (invalid_argument, details.reason bad_boot_order).
Result<std::vector<BootDevice>> parse_boot_order(const nlohmann::json& j, const VmSpec& spec);

struct StopRequest {
  int timeout_s = 0;  // 0: the controller's default
  bool force = false;
};
Result<StopRequest> parse_stop(const nlohmann::json& body);

struct MigrateRequest {
  std::string target_host;  // empty: the scheduler chooses
  MigrationPolicy policy;
};
// POST /v1/vms/{id}/migrate; `defaults` is the cluster's policy.
Result<MigrateRequest> parse_migrate(const nlohmann::json& body, const MigrationPolicy& defaults);

struct MaintenanceRequest {
  bool enabled = true;
  MigrationPolicy policy;  // for the migrations of the drain
};
// POST /v1/hosts/{name}/maintenance: {"enabled": bool, "policy": {...}?}.
Result<MaintenanceRequest> parse_maintenance(const nlohmann::json& body,
                                             const MigrationPolicy& defaults);

// Shared storage.
inline constexpr std::size_t kMaxPoolLuns = 16;
inline constexpr std::size_t kMaxPoolHosts = 256;

struct PoolCreateRequest {
  StoragePool pool;                // name, type, targets or wwids
  std::vector<std::string> hosts;  // empty: every host that is up
};
// POST /v1/storage-pools: {"name", "type": "iscsi", "targets": [{"portal", "iqn", "lun"?,
// "chap": {"username", "password"}?}], "hosts"?} or {"name", "type": "fc", "wwids": [..]}.
Result<PoolCreateRequest> parse_pool_create(const nlohmann::json& body);

// POST /v1/storage-pools/{name}/hosts: {"hosts": [1 to 256 host names, each once]}.
Result<std::vector<std::string>> parse_pool_hosts(const nlohmann::json& body);

struct VolumeCreateRequest {
  std::string name;
  std::string pool;
  std::uint64_t size_bytes = 0;
};
// POST /v1/volumes: {"name", "pool", and exactly one of "size_bytes", "size_gib"}.
Result<VolumeCreateRequest> parse_volume_create(const nlohmann::json& body);
// POST /v1/volumes/{id}/grow: {exactly one of "size_bytes", "size_gib"}.
Result<std::uint64_t> parse_volume_grow(const nlohmann::json& body);

struct SnapshotCreateRequest {
  std::string name;
  std::uint64_t size_bytes = 0;  // 0: by ratio
  double ratio = 0.25;           // of the volume's size
  bool quiesce = true;
};
// POST /v1/volumes/{id}/snapshots: {"name", "size_bytes"? | "size_ratio"?, "quiesce"?}.
Result<SnapshotCreateRequest> parse_snapshot_create(const nlohmann::json& body);

// Query strings: percent-decoded key → value; a key given twice is an error.
Result<std::map<std::string, std::string>> parse_query(std::string_view query);
// Refuses keys not in `allowed`.
Status check_query_keys(const std::map<std::string, std::string>& q,
                        const std::vector<std::string_view>& allowed);
Result<int> query_int(const std::map<std::string, std::string>& q, const std::string& key,
                      int fallback, int min, int max);
Result<bool> query_bool(const std::map<std::string, std::string>& q, const std::string& key,
                        bool fallback);

// An agent's report of its host (POST /v1/agent/heartbeat's "inventory"): every field
// of its type and in range, each domain with a canonical uuid and a VM state's name.
// Fields the controller does not read are left to the model.
inline constexpr std::size_t kMaxInventoryDomains = 4096;
inline constexpr std::size_t kMaxInventoryLinks = 4096;
Result<HostInventory> parse_inventory(const nlohmann::json& j);

// POST /v1/agent/events: a domain event's state is a VM state's name or "undefined".
bool is_event_state(std::string_view state);

// http://HOST:PORT or https://HOST:PORT with a plain host name or IPv4 address.
Status check_agent_url(std::string_view url);

}  // namespace kvmfleet::api
