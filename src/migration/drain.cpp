// host.maintenance: a host drained by live migration.
#include "migration_steps.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/migration/migration_planning.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/migration.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {

using nlohmann::json;

namespace {

Status set_schedulable(OpContext& ctx, const std::string& host, bool schedulable) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Host* h = d.find_host(host);
    if (!h) return not_found("host no longer exists", {{"host", host}});
    if (h->schedulable == schedulable) return {};
    Host next = *h;
    next.schedulable = schedulable;
    b.put_hosts.push_back(std::move(next));
    return {};
  });
}

struct Scan {
  int on_host = 0;    // VMs still recorded on the host
  int active = 0;     // migrations of this drain not finished yet
  int blocked = 0;    // VMs waiting for another operation to end
  int unmovable = 0;  // failed: they will stay
};

// The destination a migration was planned for ("" if its params cannot be read).
std::string target_of(const Operation& migration) {
  auto p = params_of<VmMigrateParams>(migration);
  return p ? p->target_host : "";
}

// Brings `vms` (the result's entries by VM name) up to date with the cluster and starts
// a migration for each running VM that has none yet. Safe to repeat, also after a
// controller restart: an entry's operation id is the thread back to what was started
// before.
Scan drain_step(OpContext& ctx, const std::string& host, const MigrationPolicy& policy,
                bool start_new, std::map<std::string, DrainEntry>& vms) {
  std::vector<Vm> to_start;
  Scan scan;
  ctx.state().read([&](const ClusterState::Data& d) {
    // Migrations started earlier: follow them to their end.
    for (auto& [name, entry] : vms) {
      if (!entry.operation || entry.operation->empty()) continue;
      if (entry.state == DrainState::moved || entry.state == DrainState::failed) continue;
      const Operation* op = d.find_operation(*entry.operation);
      if (!op) {
        entry.state = DrainState::failed;
        entry.error = Error(ErrorCode::internal, "its migration operation is gone");
        continue;
      }
      entry.progress = op->progress;
      entry.step = op->step;
      if (op->state == OpState::succeeded) {
        entry.state = DrainState::moved;
        entry.target_host = target_of(*op);
      } else if (op->state == OpState::failed || op->state == OpState::cancelled) {
        entry.state = DrainState::failed;
        entry.error = op->error.value_or(Error(ErrorCode::internal, "migration failed"));
      } else {
        entry.state = op->state == OpState::pending ? DrainState::queued : DrainState::migrating;
        ++scan.active;
      }
    }
    for (const auto& id : d.vm_ids_on(host)) {
      const Vm& vm = d.vms.at(id);
      ++scan.on_host;
      const auto known = vms.find(vm.spec.name);
      const std::optional<DrainState> st =
          known != vms.end() ? std::optional(known->second.state) : std::nullopt;
      if (st == DrainState::failed) {
        ++scan.unmovable;
        continue;
      }
      if (st == DrainState::queued || st == DrainState::migrating) continue;  // counted above
      if (const Operation* other = d.active_operation_for(vm.id)) {
        DrainEntry& entry = vms[vm.spec.name];
        entry.state = DrainState::waiting;
        entry.step = "waiting for operation " + other->id + " (" + other->kind + ") to end";
        ++scan.blocked;
        continue;
      }
      if (vm.state == VmState::running) {
        if (start_new)
          to_start.push_back(vm);
        else
          vms[vm.spec.name] = {.state = DrainState::stays, .reason = "the drain was cancelled"};
      } else if (vm.state == VmState::stopped) {
        vms[vm.spec.name] = {.state = DrainState::stays,
                             .reason = "stopped: only running VMs move live"};
      } else {
        vms[vm.spec.name] = {
            .state = DrainState::failed,
            .error = Error(ErrorCode::conflict, "VM is " + std::string(to_string(vm.state)) +
                                                    "; only running VMs move live")};
        ++scan.unmovable;
      }
    }
  });
  for (const auto& vm : to_start) {
    Operation child;
    child.kind = op_kind::vm_migrate;
    auto spawned =
        ctx.spawn(std::move(child), [&](const ClusterState::Data& d, Operation& next) -> Status {
          const Vm* now = d.find_vm(vm.id);
          if (!now || now->host != host) return conflict("VM left the host meanwhile");
          return plan_migration(d, ctx.config().scheduler, *now, "", policy, next, host);
        });
    if (spawned) {
      vms[vm.spec.name] = {.state = DrainState::queued,
                           .operation = spawned->id,
                           .target_host = target_of(*spawned),
                           .progress = 0};
      ++scan.active;
    } else if (spawned.error().code == ErrorCode::conflict &&
               spawned.error().message == "VM has an operation in progress") {
      // Someone else started one first: look again next round.
      vms.try_emplace(vm.spec.name,
                      DrainEntry{.state = DrainState::waiting,
                                 .step = "waiting for another operation on the VM to end"});
      ++scan.blocked;
    } else {
      vms[vm.spec.name] = {.state = DrainState::failed, .error = spawned.error()};
      ++scan.unmovable;
    }
  }
  return scan;
}

}  // namespace

Status host_maintenance(OpContext& ctx, const HostMaintenanceParams& p, HostMaintenanceResult& r) {
  const std::string host = ctx.op().target_id;
  const bool enabled = p.enabled;
  if (auto st = set_schedulable(ctx, host, !enabled); !st) return st;
  r.host = host;
  if (!enabled) {
    ctx.progress(100, "host is schedulable again");
    return {};
  }
  const MigrationPolicy policy = p.policy.value_or(MigrationPolicy{});
  ctx.progress(1, "host is unschedulable; moving its VMs away");
  auto& vms = r.vms ? *r.vms : r.vms.emplace();
  bool cancelling = false;
  for (;;) {
    const Scan scan = drain_step(ctx, host, policy, !cancelling, vms);
    int moved = 0, total = 0;
    for (const auto& [_, e] : vms) {
      if (e.state == DrainState::stays) continue;
      ++total;
      moved += e.state == DrainState::moved;
    }
    const bool done = scan.active == 0 && scan.blocked == 0;
    ctx.progress(
        total == 0 ? 99 : std::min(99, 1 + 98 * moved / total),
        std::to_string(moved) + " of " + std::to_string(total) + " VMs moved" +
            (scan.active ? ", " + std::to_string(scan.active) + " migrating or queued" : ""));
    if (done) break;
    if (!ctx.sleep_for(std::chrono::milliseconds(500))) {
      if (!ctx.cancel_requested()) return unavailable("controller stopping during a drain");
      if (!cancelling) {
        for (const auto& [_, e] : vms) {
          if (e.state == DrainState::queued || e.state == DrainState::migrating)
            (void)ctx.cancel(e.operation.value_or(""));
        }
        cancelling = true;
      }
      // Its migrations end (aborted: their VMs stay on the host) before it does.
      ctx.clock().sleep_for(std::chrono::milliseconds(200));
    }
  }
  json failed = json::object();
  json stays = json::array();
  for (const auto& [name, e] : vms) {
    if (e.state == DrainState::failed) failed[name] = e.error ? e.error->message : "failed";
    if (e.state == DrainState::stays) stays.push_back(name);
  }
  if (cancelling)
    return Error(ErrorCode::cancelled, "drain cancelled; the host stays unschedulable",
                 {{"host", host}, {"not_moved", failed}});
  if (!failed.empty())
    return Error(ErrorCode::conflict,
                 std::to_string(failed.size()) + " VM(s) could not move off " + host +
                     "; the host stays unschedulable",
                 {{"host", host}, {"vms", failed}});
  ctx.progress(100, stays.empty()
                        ? "no VM left on the host"
                        : "no running VM left on the host; stopped VMs stay defined there");
  return {};
}

}  // namespace kvmfleet
