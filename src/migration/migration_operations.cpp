#include "kvmfleet/migration/migration_operations.hpp"

#include "migration_steps.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/migration/migration_planning.hpp"

namespace kvmfleet {
namespace {

// vm.migrate: a running VM moves live, a stopped one cold (plan_migration chose).
Status migrate_vm(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r) {
  r.mode = p.mode;
  const auto before = ctx.state().vm(ctx.op().target_id);
  Status st;
  if (p.mode == MigrationMode::cold) {
    st = cold_move(ctx, p, r);
  } else {
    const auto vols = before ? vm_volumes(ctx, *before) : std::vector<VmVolume>{};
    st = migrate_live(ctx, p, r, vols);
    if (before) settle_volumes(ctx, p, r, *before, vols);
  }
  if (before) settle_media(ctx, p, r, *before);
  return st;
}

}  // namespace

void register_migration_operations(OperationRunner& runner) {
  register_operation(
      runner, migrate_vm,
      [&config = runner.config()](const Operation& op, const std::vector<Operation>& running) {
        return migration_slot_refusal(op, running, config.migrations_per_host);
      });
  register_operation(runner, host_maintenance);
}

}  // namespace kvmfleet
