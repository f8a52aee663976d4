// host.maintenance: a host drained by live migration.
#include "migration_steps.hpp"

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

// One VM of a drain, as the operation's result shows it under "vms".{name}:
//   state: waiting | queued | migrating | moved | failed | stays
//   operation, target_host, progress, step, error (when failed), reason (when it stays)
struct Scan {
  int on_host = 0;      // VMs still recorded on the host
  int active = 0;       // migrations of this drain not finished yet
  int blocked = 0;      // VMs waiting for another operation to end
  int unmovable = 0;    // failed: they will stay
};

// Brings result["vms"] up to date with the cluster and starts a migration for each
// running VM that has none yet. Safe to repeat, also after a controller restart: an
// entry's operation id is the thread back to what was started before.
Scan drain_step(OpContext& ctx, const std::string& host, const MigrationPolicy& policy,
                bool start_new) {
  json& vms = ctx.result()["vms"];
  if (!vms.is_object()) vms = json::object();
  struct Todo {
    Vm vm;
  };
  std::vector<Todo> to_start;
  Scan scan;
  ctx.state().read([&](const ClusterState::Data& d) {
    // Migrations started earlier: follow them to their end.
    for (auto& [name, entry] : vms.items()) {
      const std::string op_id = entry.value("operation", "");
      if (op_id.empty()) continue;
      const std::string st = entry.value("state", "");
      if (st == "moved" || st == "failed") continue;
      const Operation* op = d.find_operation(op_id);
      if (!op) {
        entry["state"] = "failed";
        entry["error"] = Error(ErrorCode::internal, "its migration operation is gone").to_json();
        continue;
      }
      entry["progress"] = op->progress;
      entry["step"] = op->step;
      if (op->state == OpState::succeeded) {
        entry["state"] = "moved";
        entry["target_host"] = op->params.value("target_host", "");
      } else if (op->state == OpState::failed || op->state == OpState::cancelled) {
        entry["state"] = "failed";
        entry["error"] = op->error.value_or(Error(ErrorCode::internal, "migration failed")).to_json();
      } else {
        entry["state"] = op->state == OpState::pending ? "queued" : "migrating";
        ++scan.active;
      }
    }
    for (const auto& [_, vm] : d.vms) {
      if (vm.host != host) continue;
      ++scan.on_host;
      json& entry = vms[vm.spec.name];
      if (!entry.is_object()) entry = json::object();
      const std::string st = entry.value("state", "");
      if (st == "failed") {
        ++scan.unmovable;
        continue;
      }
      if (st == "queued" || st == "migrating") continue;  // counted above
      if (const Operation* other = d.active_operation_for(vm.id)) {
        entry["state"] = "waiting";
        entry["step"] = "waiting for operation " + other->id + " (" + other->kind + ") to end";
        ++scan.blocked;
        continue;
      }
      if (vm.state == VmState::running) {
        if (start_new) to_start.push_back({vm});
        else entry = {{"state", "stays"}, {"reason", "the drain was cancelled"}};
      } else if (vm.state == VmState::stopped) {
        entry = {{"state", "stays"}, {"reason", "stopped: only running VMs move live"}};
      } else {
        entry = {{"state", "failed"},
                 {"error", Error(ErrorCode::conflict, "VM is " + std::string(to_string(vm.state)) +
                                                          "; only running VMs move live")
                               .to_json()}};
        ++scan.unmovable;
      }
    }
  });
  for (const auto& t : to_start) {
    Operation child;
    child.kind = op_kind::vm_migrate;
    auto spawned = ctx.spawn(std::move(child), [&](const ClusterState::Data& d, Operation& next) -> Status {
      const Vm* vm = d.find_vm(t.vm.id);
      if (!vm || vm->host != host) return conflict("VM left the host meanwhile");
      auto st = plan_migration(d, ctx.config().scheduler, *vm, "", policy, next);
      if (st) next.params["maintenance_of"] = host;
      return st;
    });
    json& entry = vms[t.vm.spec.name];
    if (spawned) {
      entry = {{"state", "queued"},
               {"operation", spawned->id},
               {"target_host", spawned->params.value("target_host", "")},
               {"progress", 0}};
      ++scan.active;
    } else if (spawned.error().code == ErrorCode::conflict &&
               spawned.error().message == "VM has an operation in progress") {
      ++scan.blocked;  // someone else started one first: look again next round
    } else {
      entry = {{"state", "failed"}, {"error", spawned.error().to_json()}};
      ++scan.unmovable;
    }
  }
  return scan;
}

}  // namespace

Status host_maintenance(OpContext& ctx) {
  const std::string host = ctx.op().target_id;
  const bool enabled = ctx.op().params.value("enabled", true);
  if (auto st = set_schedulable(ctx, host, !enabled); !st) return st;
  ctx.result()["host"] = host;
  if (!enabled) {
    ctx.progress(100, "host is schedulable again");
    return {};
  }
  const auto policy =
      ctx.op().params.value("policy", json::object()).get<MigrationPolicy>();
  ctx.progress(1, "host is unschedulable; moving its VMs away");
  bool cancelling = false;
  for (;;) {
    const Scan scan = drain_step(ctx, host, policy, !cancelling);
    const json& vms = ctx.result()["vms"];
    int moved = 0, total = 0;
    for (const auto& [_, e] : vms.items()) {
      if (e.value("state", "") == "stays") continue;
      ++total;
      moved += e.value("state", "") == "moved";
    }
    const bool done = scan.active == 0 && scan.blocked == 0;
    ctx.progress(total == 0 ? 99 : std::min(99, 1 + 98 * moved / total),
                 std::to_string(moved) + " of " + std::to_string(total) + " VMs moved" +
                     (scan.active ? ", " + std::to_string(scan.active) + " migrating or queued" : ""));
    if (done) break;
    if (!ctx.sleep_for(std::chrono::milliseconds(500))) {
      if (!ctx.cancel_requested()) return unavailable("controller stopping during a drain");
      if (!cancelling) {
        for (const auto& [_, e] : vms.items()) {
          const std::string st = e.value("state", "");
          if (st == "queued" || st == "migrating") (void)ctx.cancel(e.value("operation", ""));
        }
        cancelling = true;
      }
      // Its migrations end (aborted: their VMs stay on the host) before it does.
      ctx.clock().sleep_for(std::chrono::milliseconds(200));
    }
  }
  json failed = json::object();
  json stays = json::array();
  for (const auto& [name, e] : ctx.result()["vms"].items()) {
    if (e.value("state", "") == "failed")
      failed[name] = e.contains("error") ? e["error"].value("message", "failed") : "failed";
    if (e.value("state", "") == "stays") stays.push_back(name);
  }
  if (cancelling)
    return Error(ErrorCode::cancelled, "drain cancelled; the host stays unschedulable",
                 {{"host", host}, {"not_moved", failed}});
  if (!failed.empty())
    return Error(ErrorCode::conflict,
                 std::to_string(failed.size()) + " VM(s) could not move off " + host +
                     "; the host stays unschedulable",
                 {{"host", host}, {"vms", failed}});
  ctx.progress(100, stays.empty() ? "no VM left on the host"
                                  : "no running VM left on the host; stopped VMs stay defined there");
  return {};
}

}  // namespace kvmfleet
