#include "kvmfleet/migration/migration_operations.hpp"

#include "migration_steps.hpp"

#include "kvmfleet/migration/migration_planning.hpp"

namespace kvmfleet {
namespace {

// vm.migrate: a running VM moves live, a stopped one cold (plan_migration chose).
Status migrate_vm(OpContext& ctx) {
  if (ctx.op().params.value("mode", "live") == "cold") return cold_move(ctx);
  const auto before = ctx.state().vm(ctx.op().target_id);
  const auto vols = before ? vm_volumes(ctx, *before) : std::vector<VmVolume>{};
  Status st = migrate_live(ctx, vols);
  if (before) settle_volumes(ctx, *before, vols);
  return st;
}

}  // namespace

void register_migration_operations(OperationRunner& runner) {
  runner.register_kind(
      std::string(op_kind::vm_migrate), migrate_vm,
      [&config = runner.config()](const Operation& op, const std::vector<Operation>& running) {
        return migration_slot_refusal(op, running, config.migrations_per_host);
      });
  runner.register_kind(std::string(op_kind::host_maintenance), host_maintenance);
}

}  // namespace kvmfleet
