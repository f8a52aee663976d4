#pragma once

#include "kvmfleet/common/error.hpp"
#include "kvmfleet/model/host.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace kvmfleet {

// How a live migration should behave; from the request or the cluster config.
struct MigrationPolicy {
  std::int64_t max_downtime_ms = 300;
  std::int64_t bandwidth_mib_s = 0;  // 0: unlimited
  bool auto_converge = false;
  bool allow_post_copy = false;
  // The convergence ladder, when > 0: a migration still running after a quarter of
  // this many seconds gets twice the downtime, after half four times (never above
  // downtime_ceiling_ms), after three quarters it switches to post-copy (if allowed),
  // and at the end it is aborted; the VM keeps running on the source.
  std::int64_t converge_timeout_s = 0;
  std::int64_t downtime_ceiling_ms = 2'000;
};

// What the ladder does next, given how long the migration has run and how many of
// its steps were taken (pure; the source agent applies it).
struct LadderAction {
  enum class Kind { none, raise_downtime, post_copy, abort } kind = Kind::none;
  int step = 0;                  // the step this action is (1..4)
  std::int64_t downtime_ms = 0;  // for raise_downtime
};
LadderAction next_ladder_action(const MigrationPolicy& policy, std::int64_t elapsed_ms,
                                int steps_taken);

// The files of a domain's CD-ROMs on one host (docs/images.md): its ISO in the image
// cache and its cloud-init NoCloud seed; empty when the domain has none.
struct MigrationMedia {
  std::string cdrom;
  std::string seed;
  bool empty() const { return cdrom.empty() && seed.empty(); }
  bool operator==(const MigrationMedia&) const = default;
};

// What the controller asks a source agent to do.
struct MigrationRequest {
  std::string op_id;
  std::string destination_uri;  // e.g. qemu+tcp://10.77.0.11/system
  std::string migrate_uri;      // e.g. tcp://10.77.0.11
  MigrationPolicy policy;
  // Where the destination prepared the domain's CD-ROMs (its media_prepare answer):
  // the domain's definition there names these files.
  MigrationMedia media;
};

enum class MigrationState { none, running, completed, failed, cancelled };
std::string_view to_string(MigrationState s);
std::optional<MigrationState> migration_state_from_string(std::string_view s);

// The last migration of one domain as its source agent saw it (libvirt job stats).
struct MigrationStatus {
  MigrationState state = MigrationState::none;
  std::string op_id;
  std::int64_t data_total = 0;
  std::int64_t data_processed = 0;
  std::int64_t data_remaining = 0;
  std::int64_t memory_iteration = 0;
  std::int64_t expected_downtime_ms = 0;
  std::int64_t elapsed_ms = 0;
  int ladder_step = 0;                 // convergence ladder steps taken (0..4)
  std::int64_t downtime_limit_ms = 0;  // the maximum downtime in force now
  std::optional<Error> error;
  ReportStamp stamp;  // when the agent answered (model/host.hpp)
};

void to_json(nlohmann::json& j, const MigrationPolicy& p);
void from_json(const nlohmann::json& j, MigrationPolicy& p);
void to_json(nlohmann::json& j, const MigrationStatus& s);
void from_json(const nlohmann::json& j, MigrationStatus& s);

}  // namespace kvmfleet
