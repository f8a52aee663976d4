#include "kvmfleet/vms/vm_service.hpp"

#include "kvmfleet/vms/vm_steps.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/network/vm_nics.hpp"
#include "kvmfleet/shared_storage/vm_volumes.hpp"

namespace kvmfleet {
namespace {

// The operation of `kind` with its params, when `params` fit the kind.
Status set_action_params(Operation& op, std::string_view kind, const VmActionParams& params) {
  const bool none = std::holds_alternative<std::monostate>(params);
  if (kind == VmStartParams::kind && none) {
    set_params(op, VmStartParams{});
  } else if (kind == VmRebootParams::kind && none) {
    set_params(op, VmRebootParams{});
  } else if (kind == VmDestroyParams::kind && none) {
    set_params(op, VmDestroyParams{});
  } else if (const auto* stop = std::get_if<VmStopParams>(&params);
             stop && kind == VmStopParams::kind) {
    set_params(op, *stop);
  } else if (const auto* del = std::get_if<VmDeleteParams>(&params);
             del && kind == VmDeleteParams::kind) {
    set_params(op, *del);
  } else {
    return invalid("these params do not fit a VM action of this kind", {{"kind", kind}});
  }
  return {};
}

}  // namespace

Result<scheduler::Placement> VmService::place(const VmSpec& spec) const {
  return state_.read([&](const ClusterState::Data& d) -> Result<scheduler::Placement> {
    // The same volume checks as a create: a dry run that places a VM on a volume that
    // is missing or taken would promise what the create then refuses.
    if (auto vols = free_volumes_of(d, spec); !vols) return vols.take_error();
    // And the same NIC checks (networks that exist, MACs not taken).
    Vm probe;
    probe.spec = spec;
    if (auto st = resolve_nics(d, probe, config_.mac_prefix); !st) return st.take_error();
    scheduler::Request req{spec, {}, d.pools_of(spec)};
    return scheduler::place(scheduler_snapshot(d), req, config_.scheduler);
  });
}

Result<Submitted> VmService::create_vm(const Principal& who, const VmSpec& spec, bool start,
                                       const SubmitOptions& opts) {
  Vm vm;
  vm.id = new_uuid();
  vm.spec = spec;
  vm.desired = start ? DesiredState::running : DesiredState::stopped;
  vm.state = VmState::pending;
  vm.created_at = vm.updated_at = clock_.now();
  Operation op;
  set_params(op, VmCreateParams{spec.name, start});
  op.target_type = "vm";
  op.target_id = vm.id;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation&) -> Status {
        if (d.vm_ids.count(spec.name))
          return conflict("a VM with this name exists", {{"name", spec.name}});
        // Placement is a pure function of the snapshot taken under the same lock that
        // commits it, so two concurrent creates cannot both take the last free memory.
        scheduler::Request req{spec, {}, d.pools_of(spec)};
        if (auto st = claim_volumes(d, vm, b); !st) return st;
        if (auto st = resolve_nics(d, vm, config_.mac_prefix); !st) return st;
        auto placement = scheduler::place(scheduler_snapshot(d), req, config_.scheduler);
        if (placement.host.empty()) {
          nlohmann::json reasons = nlohmann::json::object();
          for (const auto& v : placement.verdicts) reasons[v.host] = v.reason;
          return Error(ErrorCode::insufficient_capacity, "no host can take this VM",
                       {{"hosts", reasons}});
        }
        vm.host = placement.host;
        b.put_vms.push_back(vm);
        return {};
      });
}

Result<Submitted> VmService::vm_action(const Principal& who, const std::string& id_or_name,
                                       std::string_view kind, const VmActionParams& params,
                                       const SubmitOptions& opts) {
  Operation op;
  op.target_type = "vm";
  if (auto st = set_action_params(op, kind, params); !st) return st.take_error();
  const auto* del = std::get_if<VmDeleteParams>(&params);
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Vm* vm = d.find_vm(id_or_name);
        if (!vm) return not_found("no such VM", {{"vm", id_or_name}});
        if (auto st = check_single_copy(*vm); !st) return st;
        const bool busy = d.active_operation_for(vm->id) != nullptr;
        if (del && !busy && !del->force &&
            (vm->state == VmState::running || vm->state == VmState::paused ||
             vm->state == VmState::shutting_down))
          return conflict("VM is running; stop it first or delete with force=true",
                          {{"vm", vm->spec.name}, {"state", to_string(vm->state)}});
        if (kind != op_kind::vm_delete && !busy && vm->state == VmState::pending)
          return conflict("VM is not defined on a host yet", {{"vm", vm->spec.name}});
        // Its volumes' own operations (a snapshot, say) and the VM's do not overlap.
        for (const Volume* v : d.volumes_of(*vm))
          if (const Operation* other = d.active_operation_for(v->id))
            return conflict("volume " + v->name + " of the VM has an operation in progress",
                            {{"volume", v->name}, {"operation", other->id}, {"kind", other->kind}});
        // The operation names the VM by id, whatever the caller named it by.
        next.target_id = vm->id;
        return {};
      });
}

}  // namespace kvmfleet
