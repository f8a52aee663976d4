#include "kvmfleet/migration/migration_service.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/migration/migration_planning.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {

Result<Submitted> MigrationService::migrate_vm(const Principal& who, const std::string& id_or_name,
                                               const std::string& target_host,
                                               const MigrationPolicy& policy,
                                               const SubmitOptions& opts) {
  Operation op;
  op.kind = VmMigrateParams::kind;
  op.target_type = "vm";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Vm* vm = d.find_vm(id_or_name);
        if (!vm) return not_found("no such VM", {{"vm", id_or_name}});
        if (auto st = check_single_copy(*vm); !st) return st;
        return plan_migration(d, config_.scheduler, *vm, target_host, policy, next);
      });
}

Result<Submitted> MigrationService::set_maintenance(const Principal& who, const std::string& host,
                                                    bool enabled, const MigrationPolicy& policy,
                                                    const SubmitOptions& opts) {
  Operation op;
  op.kind = HostMaintenanceParams::kind;
  op.target_type = "host";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation& next) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        if (const Operation* other = d.active_operation_for(h->name))
          return conflict("host has an operation in progress; cancel it or wait for it",
                          {{"host", host}, {"operation", other->id}, {"kind", other->kind}});
        if (enabled && h->state != HostState::up) {
          bool running = false;
          for (const auto& id : d.vm_ids_on(host))
            running |= d.vms.at(id).state == VmState::running;
          if (running)
            return conflict("host is " + std::string(to_string(h->state)) +
                                "; its VMs can be moved live only from a host that is up",
                            {{"host", host}});
        }
        // Unschedulable with the request itself: nothing is placed there from now on.
        if (enabled && h->schedulable) {
          Host cordoned = *h;
          cordoned.schedulable = false;
          b.put_hosts.push_back(std::move(cordoned));
        }
        next.target_id = h->name;
        set_params(next,
                   HostMaintenanceParams{enabled, enabled ? std::optional(policy) : std::nullopt});
        return {};
      });
}

}  // namespace kvmfleet
