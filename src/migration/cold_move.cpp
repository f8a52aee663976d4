// vm.migrate of a stopped VM: a cold move of its definition to params.target_host.
#include "migration_steps.hpp"

#include "kvmfleet/model/json.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {

Status cold_move(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string& target_name = p.target_host;
  const std::string uuid = t->vm.id;
  r.mode = MigrationMode::cold;
  r.source_host = t->host.name;
  r.target_host = target_name;
  if (t->host.name == target_name) return {};  // moved already (a resumed run)
  auto target = load_host(ctx, target_name);
  if (!target) return target.take_error();
  if (target->state != HostState::up)
    return unavailable(
        "target host " + target_name + " is " + std::string(to_string(target->state)),
        {{"host", target_name}});

  ctx.progress(10, "checking that the VM is stopped on " + t->host.name);
  auto here = ctx.with_retry([&] { return ctx.agents().get_domain(t->host, uuid); });
  if (!here && here.error().code != ErrorCode::not_found) return here.take_error();
  if (here) {
    const VmState s = vm_state_from_domain(here->state);
    if (s != VmState::stopped && s != VmState::crashed)
      return conflict("VM is " + here->state + " on " + t->host.name + "; stop it before moving it",
                      {{"vm", t->vm.spec.name}, {"host", t->host.name}, {"state", here->state}});
  }
  // A guest that powered itself off may have left its LVs active here.
  if (const auto vols = vm_volumes(ctx, t->vm); !vols.empty()) {
    ctx.progress(25, "making sure the shared volumes are inactive on " + t->host.name);
    if (auto st = set_volume_activation(ctx, vols, t->host, LvMode::inactive, "deactivate"); !st)
      return st;
  }
  const std::string domain_type =
      target->inventory.domain_type.empty() ? "kvm" : target->inventory.domain_type;
  ctx.progress(40, "defining the domain on " + target_name);
  auto defined = ctx.with_retry([&] {
    return ctx.agents().define(*target, ctx.op().id, domain_spec_for(t->vm, domain_type));
  });
  if (!defined) return defined.take_error();
  ctx.progress(70, "undefining the domain on " + t->host.name);
  auto gone =
      ctx.with_retry([&] { return ctx.agents().undefine(t->host, ctx.op().id, uuid, false); });
  if (!gone) {
    Error e = gone.take_error();
    e.message = "the VM is defined on " + target_name + " but could not be undefined on " +
                t->host.name + " (it stays recorded there): " + e.message;
    e.details["remains"] = {{"defined_on", {t->host.name, target_name}}};
    return e;
  }
  ctx.progress(90, "recording the VM on " + target_name);
  return save_vm(ctx, uuid,
                 [&](Vm& vm) {
                   vm.host = target_name;
                   vm.state = vm_state_from_domain(defined->state);
                 },
                 {answer_from(target_name, *defined), HostAnswer{t->host.name, {}, {}}});
}

}  // namespace kvmfleet
