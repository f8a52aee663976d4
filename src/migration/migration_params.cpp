#include "kvmfleet/migration/migration_params.hpp"

#include <array>
#include <utility>

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

namespace {

constexpr std::array<std::pair<MigrationMode, std::string_view>, 2> kModes{{
    {MigrationMode::live, "live"},
    {MigrationMode::cold, "cold"},
}};

constexpr std::array<std::pair<DrainState, std::string_view>, 6> kDrainStates{{
    {DrainState::waiting, "waiting"},
    {DrainState::queued, "queued"},
    {DrainState::migrating, "migrating"},
    {DrainState::moved, "moved"},
    {DrainState::failed, "failed"},
    {DrainState::stays, "stays"},
}};

MigrationMode mode_from(const json& j) {
  const auto m = get_optional<std::string>(j, "mode");
  if (!m) return MigrationMode::live;
  const auto mode = migration_mode_from_string(*m);
  if (!mode) fail("mode", "live or cold");
  return *mode;
}

}  // namespace

std::string_view to_string(MigrationMode m) {
  for (const auto& [e, n] : kModes)
    if (e == m) return n;
  return "live";
}

std::optional<MigrationMode> migration_mode_from_string(std::string_view s) {
  for (const auto& [e, n] : kModes)
    if (n == s) return e;
  return std::nullopt;
}

std::string_view to_string(DrainState s) {
  for (const auto& [e, n] : kDrainStates)
    if (e == s) return n;
  return "waiting";
}

std::optional<DrainState> drain_state_from_string(std::string_view s) {
  for (const auto& [e, n] : kDrainStates)
    if (n == s) return e;
  return std::nullopt;
}

MigrationPolicy strict_json::Reader<MigrationPolicy>::read(const json& v) {
  expect_object(v, {"max_downtime_ms", "bandwidth_mib_s", "auto_converge", "allow_post_copy",
                    "converge_timeout_s", "downtime_ceiling_ms"});
  MigrationPolicy p;
  p.max_downtime_ms = get<std::int64_t>(v, "max_downtime_ms");
  p.bandwidth_mib_s = get<std::int64_t>(v, "bandwidth_mib_s");
  p.auto_converge = get<bool>(v, "auto_converge");
  p.allow_post_copy = get<bool>(v, "allow_post_copy");
  p.converge_timeout_s = get<std::int64_t>(v, "converge_timeout_s");
  p.downtime_ceiling_ms = get<std::int64_t>(v, "downtime_ceiling_ms");
  return p;
}

MigrationStatus strict_json::Reader<MigrationStatus>::read(const json& v) {
  expect_object(
      v, {"state", "op_id", "data_total", "data_processed", "data_remaining", "memory_iteration",
          "expected_downtime_ms", "elapsed_ms", "ladder_step", "downtime_limit_ms", "error"});
  MigrationStatus s;
  const auto state = migration_state_from_string(get<std::string>(v, "state"));
  if (!state) fail("state", "a migration state");
  s.state = *state;
  s.op_id = get<std::string>(v, "op_id");
  s.data_total = get<std::int64_t>(v, "data_total");
  s.data_processed = get<std::int64_t>(v, "data_processed");
  s.data_remaining = get<std::int64_t>(v, "data_remaining");
  s.memory_iteration = get<std::int64_t>(v, "memory_iteration");
  s.expected_downtime_ms = get<std::int64_t>(v, "expected_downtime_ms");
  s.elapsed_ms = get<std::int64_t>(v, "elapsed_ms");
  s.ladder_step = get<int>(v, "ladder_step");
  s.downtime_limit_ms = get<std::int64_t>(v, "downtime_limit_ms");
  const auto error = v.find("error");
  if (error == v.end()) throw std::invalid_argument("missing field error");
  if (!error->is_null()) s.error = as<Error>(*error, "error");
  return s;
}

void to_json(json& j, const VmMigrateParams& p) {
  j = {{"target_host", p.target_host},
       {"source_host", p.source_host},
       {"policy", p.policy},
       {"mode", std::string(to_string(p.mode))}};
  put_optional(j, "maintenance_of", p.maintenance_of);
}
void from_json(const json& j, VmMigrateParams& p) {
  expect_object(j, {"target_host", "source_host", "policy", "mode", "maintenance_of"});
  p.target_host = get<std::string>(j, "target_host");
  p.source_host = get<std::string>(j, "source_host");
  p.policy = get<MigrationPolicy>(j, "policy");
  p.mode = mode_from(j);
  p.maintenance_of = get_optional<std::string>(j, "maintenance_of");
}

void to_json(json& j, const VmMigrateResult& r) {
  j = {{"mode", std::string(to_string(r.mode))}};
  put_optional(j, "source_host", r.source_host);
  put_optional(j, "target_host", r.target_host);
  if (r.volumes_shared) j["volumes_shared"] = true;
  put_optional(j, "storage_warning", r.storage_warning);
  put_optional(j, "migration", r.migration);
  if (r.media_prepared) j["media_prepared"] = true;
  put_optional(j, "media_warning", r.media_warning);
}
void from_json(const json& j, VmMigrateResult& r) {
  expect_object(j, {"mode", "source_host", "target_host", "volumes_shared", "storage_warning",
                    "migration", "media_prepared", "media_warning"});
  r.mode = mode_from(j);
  r.source_host = get_optional<std::string>(j, "source_host");
  r.target_host = get_optional<std::string>(j, "target_host");
  r.volumes_shared = get_optional<bool>(j, "volumes_shared").value_or(false);
  r.storage_warning = get_optional<std::string>(j, "storage_warning");
  r.migration = get_optional<MigrationStatus>(j, "migration");
  r.media_prepared = get_optional<bool>(j, "media_prepared").value_or(false);
  r.media_warning = get_optional<std::string>(j, "media_warning");
}

void to_json(json& j, const DrainEntry& e) {
  j = {{"state", std::string(to_string(e.state))}};
  put_optional(j, "operation", e.operation);
  put_optional(j, "target_host", e.target_host);
  put_optional(j, "progress", e.progress);
  put_optional(j, "step", e.step);
  if (e.error) j["error"] = e.error->to_json();
  put_optional(j, "reason", e.reason);
}
void from_json(const json& j, DrainEntry& e) {
  expect_object(j, {"state", "operation", "target_host", "progress", "step", "error", "reason"});
  const auto state = drain_state_from_string(get<std::string>(j, "state"));
  if (!state) fail("state", "a drain state");
  e.state = *state;
  e.operation = get_optional<std::string>(j, "operation");
  e.target_host = get_optional<std::string>(j, "target_host");
  e.progress = get_optional<int>(j, "progress");
  e.step = get_optional<std::string>(j, "step");
  e.error = get_optional<Error>(j, "error");
  e.reason = get_optional<std::string>(j, "reason");
}

void to_json(json& j, const HostMaintenanceParams& p) {
  j = {{"enabled", p.enabled}};
  put_optional(j, "policy", p.policy);
}
void from_json(const json& j, HostMaintenanceParams& p) {
  expect_object(j, {"enabled", "policy"});
  p.enabled = get<bool>(j, "enabled");
  p.policy = get_optional<MigrationPolicy>(j, "policy");
}

void to_json(json& j, const HostMaintenanceResult& r) {
  j = json::object();
  put_optional(j, "host", r.host);
  put_optional(j, "vms", r.vms);
}
void from_json(const json& j, HostMaintenanceResult& r) {
  expect_object(j, {"host", "vms"});
  r.host = get_optional<std::string>(j, "host");
  r.vms = get_optional<std::map<std::string, DrainEntry>>(j, "vms");
}

}  // namespace kvmfleet
