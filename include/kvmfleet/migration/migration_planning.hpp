#pragma once

// Pure decisions about live migrations: where a VM may go, and whether a queued
// migration may start now under the per-host budgets. No I/O; the controller's
// service and operations call these with what the cluster state holds.
#include "kvmfleet/common/error.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/model/migration.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <optional>
#include <string>
#include <vector>

namespace kvmfleet {

// Checks that `vm` may be live-migrated now and picks its destination: `target_host`
// when given (404/409 when it cannot take the VM), else the scheduler's best host
// other than the source. Memory and CPUs already promised to migrations in flight
// count on their destinations, so a drain never overcommits a host. On success,
// `next` becomes a vm.migrate of the VM (VmMigrateParams; `maintenance_of` names the
// host whose drain asks for it, if any) whose result says from the start whether it
// moves live or cold.
Status plan_migration(const ClusterState::Data& d, const scheduler::Config& config, const Vm& vm,
                      const std::string& target_host, const MigrationPolicy& policy,
                      Operation& next, const std::string& maintenance_of = "");

// A live move of a VM whose volume has COW snapshots is refused (conflict): lvmlockd
// cannot activate an origin with snapshots on two hosts at once.
Error live_move_snapshot_refusal(const std::string& vm, const std::string& volume,
                                 const std::vector<std::string>& snapshots);

// Whether `target` can receive a live migration at all: it needs a migration address.
Status check_live_destination(const Host& target);

// Why the migration `candidate` must wait, or nothing when it may start: at most
// `per_host` migrations leave any host at once and at most `per_host` arrive.
// `running` holds the operations being carried out now.
std::optional<std::string> migration_slot_refusal(const Operation& candidate,
                                                  const std::vector<Operation>& running,
                                                  int per_host);

}  // namespace kvmfleet
