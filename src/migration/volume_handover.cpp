// A live migration's shared volumes: shared on both hosts while both QEMUs hold the
// disks open, then exclusive again wherever the VM ended up.
#include "migration_steps.hpp"

#include "kvmfleet/migration/migration_planning.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {

Status share_volumes_for_move(OpContext& ctx, VmMigrateResult& r, const Vm& vm,
                              const std::vector<VmVolume>& vols, const Host& source,
                              const Host& target) {
  if (vols.empty()) return {};
  for (const auto& v : vols)
    if (!v.snapshots.empty()) return live_move_snapshot_refusal(vm.spec.name, v.name, v.snapshots);
  // Recorded before the first lock changes, so that a resumed run settles them.
  r.volumes_shared = true;
  ctx.progress(3, "activating shared volumes shared on " + source.name + " and " + target.name);
  if (auto st = set_volume_activation(ctx, vols, source, LvMode::shared, "source-shared"); !st)
    return st;
  return set_volume_activation(ctx, vols, target, LvMode::shared, "target-shared", true);
}

void settle_volumes(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r, const Vm& before,
                    const std::vector<VmVolume>& vols) {
  const std::string& source_name = p.source_host;
  const std::string& target_name = p.target_host;
  if (vols.empty() || !r.volumes_shared || source_name.empty() || target_name.empty() ||
      source_name == target_name)
    return;
  const auto now = ctx.state().vm(before.id);
  auto source = load_host(ctx, source_name);
  auto target = load_host(ctx, target_name);
  if (!now || !source || !target) return;
  const Host* runs_on = nullptr;
  const Host* other = nullptr;
  if (now->host == target_name) {
    runs_on = &*target;
    other = &*source;
  } else if (auto here = ctx.agents().get_domain(*source, before.id);
             here && vm_state_from_domain(here->state) == VmState::running) {
    runs_on = &*source;
    other = &*target;
  } else {
    r.storage_warning = "where the VM runs is unclear; its volumes stay shared on both hosts";
    return;
  }
  const bool moved = runs_on == &*target;
  auto off = set_volume_activation(ctx, vols, *other, LvMode::inactive,
                                   moved ? "source-inactive" : "target-inactive");
  Status ex = off ? set_volume_activation(ctx, vols, *runs_on, LvMode::exclusive,
                                          moved ? "target-exclusive" : "source-exclusive")
                  : Status{};
  if (!off || !ex) {
    const Error& e = !off ? off.error() : ex.error();
    r.storage_warning = "volumes not settled after the migration: " + e.message;
    spdlog::warn("migration {}: volumes not settled: {}", ctx.op().id, e.message);
  }
}

}  // namespace kvmfleet
