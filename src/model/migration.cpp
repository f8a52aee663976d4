#include "kvmfleet/model/migration.hpp"

#include <array>
#include <stdexcept>
#include <utility>

namespace kvmfleet {
namespace {
constexpr std::array<std::pair<MigrationState, std::string_view>, 5> kStates{{
    {MigrationState::none, "none"},
    {MigrationState::running, "running"},
    {MigrationState::completed, "completed"},
    {MigrationState::failed, "failed"},
    {MigrationState::cancelled, "cancelled"}}};
}  // namespace

std::string_view to_string(MigrationState s) {
  for (const auto& [e, n] : kStates)
    if (e == s) return n;
  return "none";
}

std::optional<MigrationState> migration_state_from_string(std::string_view s) {
  for (const auto& [e, n] : kStates)
    if (n == s) return e;
  return std::nullopt;
}

void to_json(nlohmann::json& j, const MigrationPolicy& p) {
  j = {{"max_downtime_ms", p.max_downtime_ms},
       {"bandwidth_mib_s", p.bandwidth_mib_s},
       {"auto_converge", p.auto_converge},
       {"allow_post_copy", p.allow_post_copy}};
}

void from_json(const nlohmann::json& j, MigrationPolicy& p) {
  p.max_downtime_ms = j.value("max_downtime_ms", std::int64_t{300});
  p.bandwidth_mib_s = j.value("bandwidth_mib_s", std::int64_t{0});
  p.auto_converge = j.value("auto_converge", false);
  p.allow_post_copy = j.value("allow_post_copy", false);
}

void to_json(nlohmann::json& j, const MigrationStatus& s) {
  j = {{"state", std::string(to_string(s.state))},
       {"op_id", s.op_id},
       {"data_total", s.data_total},
       {"data_processed", s.data_processed},
       {"data_remaining", s.data_remaining},
       {"memory_iteration", s.memory_iteration},
       {"expected_downtime_ms", s.expected_downtime_ms},
       {"elapsed_ms", s.elapsed_ms},
       {"error", s.error ? s.error->to_json() : nlohmann::json(nullptr)}};
}

void from_json(const nlohmann::json& j, MigrationStatus& s) {
  auto st = migration_state_from_string(j.at("state").get<std::string>());
  if (!st) throw std::invalid_argument("bad migration state");
  s.state = *st;
  s.op_id = j.value("op_id", "");
  s.data_total = j.value("data_total", std::int64_t{0});
  s.data_processed = j.value("data_processed", std::int64_t{0});
  s.data_remaining = j.value("data_remaining", std::int64_t{0});
  s.memory_iteration = j.value("memory_iteration", std::int64_t{0});
  s.expected_downtime_ms = j.value("expected_downtime_ms", std::int64_t{0});
  s.elapsed_ms = j.value("elapsed_ms", std::int64_t{0});
  if (j.contains("error") && !j.at("error").is_null()) s.error = Error::from_json(j.at("error"));
}

}  // namespace kvmfleet
