#include "kvmfleet/model/migration.hpp"

#include "kvmfleet/model/json.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

namespace kvmfleet {
namespace {
constexpr std::array<std::pair<MigrationState, std::string_view>, 5> kStates{
    {{MigrationState::none, "none"},
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
  j = {
      {"max_downtime_ms", p.max_downtime_ms},       {"bandwidth_mib_s", p.bandwidth_mib_s},
      {"auto_converge", p.auto_converge},           {"allow_post_copy", p.allow_post_copy},
      {"converge_timeout_s", p.converge_timeout_s}, {"downtime_ceiling_ms", p.downtime_ceiling_ms}};
}

void from_json(const nlohmann::json& j, MigrationPolicy& p) {
  p.max_downtime_ms = j.value("max_downtime_ms", std::int64_t{300});
  p.bandwidth_mib_s = j.value("bandwidth_mib_s", std::int64_t{0});
  p.auto_converge = j.value("auto_converge", false);
  p.allow_post_copy = j.value("allow_post_copy", false);
  p.converge_timeout_s = j.value("converge_timeout_s", std::int64_t{0});
  p.downtime_ceiling_ms = j.value("downtime_ceiling_ms", std::int64_t{2'000});
}

LadderAction next_ladder_action(const MigrationPolicy& p, std::int64_t elapsed_ms,
                                int steps_taken) {
  LadderAction a;
  if (p.converge_timeout_s <= 0 || steps_taken >= 4) return a;
  const int step = steps_taken + 1;
  if (elapsed_ms * 4 < p.converge_timeout_s * 1000 * step) return a;  // not yet
  a.step = step;
  switch (step) {
    case 1:
    case 2: {
      const std::int64_t raised = p.max_downtime_ms << step;  // x2, then x4
      a.kind = LadderAction::Kind::raise_downtime;
      a.downtime_ms = std::max(p.max_downtime_ms, std::min(raised, p.downtime_ceiling_ms));
      break;
    }
    case 3:
      // Without post-copy this step does nothing but is taken, so the abort is next.
      a.kind = p.allow_post_copy ? LadderAction::Kind::post_copy : LadderAction::Kind::none;
      break;
    default:
      a.kind = LadderAction::Kind::abort;
  }
  return a;
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
       {"ladder_step", s.ladder_step},
       {"downtime_limit_ms", s.downtime_limit_ms},
       {"error", s.error ? s.error->to_json() : nlohmann::json(nullptr)}};
  if (!s.stamp.empty()) j["stamp"] = s.stamp;
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
  s.ladder_step = j.value("ladder_step", 0);
  s.downtime_limit_ms = j.value("downtime_limit_ms", std::int64_t{0});
  if (j.contains("error") && !j.at("error").is_null()) s.error = Error::from_json(j.at("error"));
  if (auto it = j.find("stamp"); it != j.end()) s.stamp = it->get<ReportStamp>();
}

}  // namespace kvmfleet
