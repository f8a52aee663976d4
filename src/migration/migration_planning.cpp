#include "kvmfleet/migration/migration_planning.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet {

Status plan_migration(const ClusterState::Data& d, const scheduler::Config& config, const Vm& vm,
                      const std::string& target_host, const MigrationPolicy& policy,
                      Operation& next, const std::string& maintenance_of) {
  if (d.active_operation_for(vm.id))
    return conflict("VM has an operation in progress", {{"vm", vm.spec.name}});
  // A running VM migrates live; a stopped (or crashed) one moves cold: its definition
  // goes to the target and its shared volumes follow when it next starts.
  const bool cold = vm.state == VmState::stopped || vm.state == VmState::crashed;
  if (!cold && vm.state != VmState::running)
    return conflict("a VM migrates live when it runs and moves cold when it is stopped; it is " +
                        std::string(to_string(vm.state)),
                    {{"vm", vm.spec.name}, {"state", to_string(vm.state)}});
  // A disk in the image pool of the VM's host cannot be reached by the destination,
  // and kvmfleet does not copy disks; shared volumes can be reached from any host.
  nlohmann::json local = nlohmann::json::array();
  for (std::size_t i = 0; i < vm.spec.disks.size(); ++i)
    if (vm.spec.disks[i].volume.empty())
      local.push_back(vm.id + "-disk" + std::to_string(i) + ".qcow2");
  if (!local.empty())
    return conflict("the VM's disks are in " + vm.host +
                        "'s local image pool, which no other host can reach; only VMs "
                        "whose disks are shared volumes (or that have no disks) move",
                    {{"vm", vm.spec.name}, {"host", vm.host}, {"disks", local}});
  const Host* source = d.find_host(vm.host);
  if (cold && (!source || source->state != HostState::up))
    return conflict("the VM's host " + vm.host +
                        " is not up: a stopped VM moves only when its host can confirm it "
                        "is stopped and give up its definition",
                    {{"vm", vm.spec.name}, {"host", vm.host}});
  // lvmlockd cannot activate an origin with COW snapshots on two hosts at once; a cold
  // move never activates anything on two hosts.
  for (const Volume* v : cold ? std::vector<const Volume*>{} : d.volumes_of(vm)) {
    if (v->snapshots.empty()) continue;
    std::vector<std::string> names;
    for (const auto& s : v->snapshots) names.push_back(s.name);
    return live_move_snapshot_refusal(vm.spec.name, v->name, names);
  }
  for (const Volume* v : d.volumes_of(vm)) {
    if (const Operation* busy = d.active_operation_for(v->id))
      return conflict("volume " + v->name + " has an operation in progress",
                      {{"volume", v->name}, {"operation", busy->id}});
  }
  // A cold move defines the VM anew on the target, for the target's accelerator.
  const std::string domain_type = source && !cold ? source->inventory.domain_type : "";
  if (!target_host.empty()) {
    const Host* t = d.find_host(target_host);
    if (!t) return not_found("no such host", {{"host", target_host}});
    if (target_host == vm.host) return conflict("VM is already on " + target_host);
    if (t->state != HostState::up)
      return conflict("target host is " + std::string(to_string(t->state)),
                      {{"host", target_host}});
    if (!t->schedulable)
      return conflict("target host is not schedulable (maintenance)", {{"host", target_host}});
    if (!cold)
      if (auto st = check_live_destination(*t); !st) return st;
    if (!domain_type.empty() && t->inventory.domain_type != domain_type)
      return conflict("target host runs " + t->inventory.domain_type + " guests, the VM runs as " +
                          domain_type + "; a guest cannot change accelerator while it runs",
                      {{"host", target_host}});
  }

  // A VM on its way somewhere is counted there as well as on its source.
  std::vector<Vm> arriving;
  for (const Operation* active : d.active_operations()) {
    const Operation& op = *active;
    if (op.kind != op_kind::vm_migrate) continue;
    const Vm* moving = d.find_vm(op.target_id);
    const auto params = params_of<VmMigrateParams>(op);
    const std::string dest = params ? params->target_host : "";
    if (!moving || dest.empty() || dest == moving->host) continue;
    Vm phantom = *moving;
    phantom.host = dest;
    arriving.push_back(std::move(phantom));
  }
  scheduler::Request req{vm.spec, {}, d.pools_of(vm)};
  req.spec.pinned_host = target_host;
  // The scheduler's migration filters rule out the VM's own host, and for a live
  // move hosts without a migration address or of another accelerator.
  req.migration = scheduler::Migration{vm.host, !cold, domain_type};
  auto placement = scheduler::place(scheduler_snapshot(d, std::move(arriving)), req, config);
  if (placement.host.empty()) {
    nlohmann::json reasons = nlohmann::json::object();
    for (const auto& v : placement.verdicts) reasons[v.host] = v.reason;
    return Error(ErrorCode::insufficient_capacity, "no host can take this VM",
                 {{"vm", vm.spec.name}, {"hosts", reasons}});
  }
  next.target_type = "vm";
  next.target_id = vm.id;
  VmMigrateParams params{placement.host, vm.host, policy,
                         cold ? MigrationMode::cold : MigrationMode::live, std::nullopt};
  if (!maintenance_of.empty()) params.maintenance_of = maintenance_of;
  set_params(next, params);
  next.result = VmMigrateResult{.mode = params.mode};
  return {};
}

Error live_move_snapshot_refusal(const std::string& vm, const std::string& volume,
                                 const std::vector<std::string>& snapshots) {
  return conflict("volume " + volume +
                      " has COW snapshots, which lvmlockd cannot share "
                      "between hosts during a live migration; delete the snapshots first, or "
                      "stop the VM and migrate it cold (the snapshots stay)",
                  {{"vm", vm}, {"volume", volume}, {"snapshots", snapshots}});
}

Status check_live_destination(const Host& target) {
  if (target.inventory.migration_address.empty())
    return conflict("target host " + target.name + " takes no migrations (no migration_address)",
                    {{"host", target.name}});
  return {};
}

std::optional<std::string> migration_slot_refusal(const Operation& candidate,
                                                  const std::vector<Operation>& running,
                                                  int per_host) {
  // A cold move copies no memory: it takes no migration slot. Params that cannot be
  // read take none either: such an operation fails as soon as it starts.
  auto live = [](const Operation& op) -> std::optional<VmMigrateParams> {
    if (op.kind != op_kind::vm_migrate) return std::nullopt;
    auto p = params_of<VmMigrateParams>(op);
    if (!p || p->mode != MigrationMode::live) return std::nullopt;
    return std::move(*p);
  };
  const auto mine = live(candidate);
  if (!mine) return std::nullopt;
  const std::string& source = mine->source_host;
  const std::string& target = mine->target_host;
  int outgoing = 0;
  int incoming = 0;
  for (const auto& op : running) {
    if (op.id == candidate.id) continue;
    const auto other = live(op);
    if (!other) continue;
    if (!source.empty() && other->source_host == source) ++outgoing;
    if (!target.empty() && other->target_host == target) ++incoming;
  }
  const std::string limit = " (limit " + std::to_string(per_host) + ")";
  if (outgoing >= per_host)
    return "queued: " + std::to_string(outgoing) + " migrations are leaving " + source + limit;
  if (incoming >= per_host)
    return "queued: " + std::to_string(incoming) + " migrations are arriving on " + target + limit;
  return std::nullopt;
}

}  // namespace kvmfleet
