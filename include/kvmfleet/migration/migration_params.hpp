#pragma once

// The params and results of vm.migrate and host.maintenance, as stored and shown by the
// API (api/openapi.yaml, components/schemas/VmMigrate* and HostMaintenance*).

#include "kvmfleet/common/error.hpp"
#include "kvmfleet/model/migration.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/strict_json.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kvmfleet {

// A running VM moves live, a stopped one cold.
enum class MigrationMode { live, cold };
std::string_view to_string(MigrationMode m);
std::optional<MigrationMode> migration_mode_from_string(std::string_view s);

struct VmMigrateParams {
  static constexpr std::string_view kind = op_kind::vm_migrate;
  std::string target_host;
  std::string source_host;
  MigrationPolicy policy;
  // Absent in records made before cold moves existed, which were all live.
  MigrationMode mode = MigrationMode::live;
  std::optional<std::string> maintenance_of;  // the host whose drain started it
};
struct VmMigrateResult {
  // Always written, from the submission on. Absent only in records made before every
  // move recorded it, when only cold moves did: those were live.
  MigrationMode mode = MigrationMode::live;
  std::optional<std::string> source_host;
  std::optional<std::string> target_host;
  // The VM's shared volumes were made shared on both hosts (written only then), so
  // they must be settled afterwards, also by a resumed run.
  bool volumes_shared = false;
  std::optional<std::string> storage_warning;
  std::optional<MigrationStatus> migration;  // the source agent's last report (live)
  // The destination made the VM's CD-ROM files (written only then), so that the host
  // the VM does not run on afterwards gives them up, also after a resumed run.
  bool media_prepared = false;
  std::optional<std::string> media_warning;  // what of that could not be removed
};

// One VM of a drain:
//   waiting    another operation on the VM must end first (step says which)
//   queued     its migration waits for a slot; migrating: it moves
//   moved      it runs on target_host; failed: it could not move (error says why)
//   stays      it is not moved (reason says why: stopped, or the drain was cancelled)
enum class DrainState { waiting, queued, migrating, moved, failed, stays };
std::string_view to_string(DrainState s);
std::optional<DrainState> drain_state_from_string(std::string_view s);

struct DrainEntry {
  DrainState state = DrainState::waiting;
  std::optional<std::string> operation;  // the vm.migrate that moves it
  std::optional<std::string> target_host;
  std::optional<int> progress;
  std::optional<std::string> step;
  std::optional<Error> error;
  std::optional<std::string> reason;
};

struct HostMaintenanceParams {
  static constexpr std::string_view kind = op_kind::host_maintenance;
  bool enabled = true;
  std::optional<MigrationPolicy> policy;  // when enabled: how its VMs move
};
struct HostMaintenanceResult {
  std::optional<std::string> host;
  std::optional<std::map<std::string, DrainEntry>> vms;  // by VM name, once a drain looked
};

void to_json(nlohmann::json& j, const VmMigrateParams& p);
void from_json(const nlohmann::json& j, VmMigrateParams& p);
void to_json(nlohmann::json& j, const VmMigrateResult& r);
void from_json(const nlohmann::json& j, VmMigrateResult& r);
void to_json(nlohmann::json& j, const DrainEntry& e);
void from_json(const nlohmann::json& j, DrainEntry& e);
void to_json(nlohmann::json& j, const HostMaintenanceParams& p);
void from_json(const nlohmann::json& j, HostMaintenanceParams& p);
void to_json(nlohmann::json& j, const HostMaintenanceResult& r);
void from_json(const nlohmann::json& j, HostMaintenanceResult& r);

// A policy and a migration status inside params and results are read strictly: every
// field, of its type (their own from_json, for the agent's wire, fills in defaults).
template <>
struct strict_json::Reader<MigrationPolicy> {
  static MigrationPolicy read(const nlohmann::json& v);
};
template <>
struct strict_json::Reader<MigrationStatus> {
  static MigrationStatus read(const nlohmann::json& v);
};

}  // namespace kvmfleet
