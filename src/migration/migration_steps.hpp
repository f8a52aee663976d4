#pragma once

// The steps of the migration operations (internal to src/migration): vm.migrate moves
// a running VM live (live_migration.cpp) with its shared volumes handed over
// (volume_handover.cpp), or a stopped VM cold (cold_move.cpp); host.maintenance drains
// a host by spawning such migrations (drain.cpp).

#include "kvmfleet/core/operation_runner.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/shared_storage/vm_volumes.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

#include <string>
#include <vector>

namespace kvmfleet {

// A registered host, or conflict.
Result<Host> load_host(OpContext& ctx, const std::string& name);
// Records the move once the destination runs the VM: from here on it lives there.
// `there`: the destination's answer; `source`: what the source last answered (the
// domain, or none: gone).
Status adopt_on(OpContext& ctx, const std::string& id, const std::string& host,
                const DomainStatus& there, const HostAnswer& source);

// Live migration from the VM's host to p.target_host, driven by the source agent.
// Safe to run again after a controller restart: it first asks both sides what they
// see and continues from there, so the VM never ends up started twice.
Status migrate_live(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r,
                    const std::vector<VmVolume>& vols);

// Both QEMUs hold the disks open while the guest moves: the VM's shared volumes are
// active shared on both hosts for the move only. Refused for an origin with COW
// snapshots (lvmlockd cannot share it). Recorded in r.volumes_shared.
Status share_volumes_for_move(OpContext& ctx, VmMigrateResult& r, const Vm& vm,
                              const std::vector<VmVolume>& vols, const Host& source,
                              const Host& target);
// After a migration, the shared volumes become exclusive again on the host that runs
// the VM and inactive on the other. Only a definite outcome is acted on: while it is
// unclear where the VM runs, both hosts keep their shared locks (no third host can
// take the LVs meanwhile). What could not be settled is r.storage_warning.
void settle_volumes(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r, const Vm& before,
                    const std::vector<VmVolume>& vols);

// A VM with CD-ROMs (spec.cdrom, spec.cloud_init): before a live move the target makes
// their files as a define would (the ISO fetched from the controller, checked and
// cached; the seed written from the spec), and `req` names them. Recorded in
// r.media_prepared before the target acts.
Status prepare_media_for_move(OpContext& ctx, VmMigrateResult& r, const Vm& vm, const Host& target,
                              MigrationRequest& req);
// After a move, live or cold, the CD-ROM files leave the host the VM does not run on:
// the source once it moved, the target (what it prepared) when it did not. Only a
// host's agent decides it may remove them (never while it has the domain defined).
// What could not be removed is r.media_warning.
void settle_media(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r, const Vm& before);

// A stopped VM moves to p.target_host: its definition goes there and leaves the
// source; its shared volumes are inactive, so the next start activates them on the
// target. The source host must be up and confirm the domain is not running: a VM is
// never defined to run in two places while one of them might still run it. Each step
// can be repeated, so a resumed run finishes the move.
Status cold_move(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r);

// host.maintenance: enabled makes the host unschedulable and moves every running VM
// away by live migration (each a vm.migrate operation of its own, under the per-host
// budgets), each VM's progress in r.vms; it ends when no running VM is left on the
// host, or fails naming those that could not move and why. Disabled makes it
// schedulable.
Status host_maintenance(OpContext& ctx, const HostMaintenanceParams& p, HostMaintenanceResult& r);

}  // namespace kvmfleet
