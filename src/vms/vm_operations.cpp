// vm.create, vm.start, vm.stop, vm.reboot, vm.destroy, vm.delete.
#include "kvmfleet/vms/vm_operations.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/shared_storage/vm_volumes.hpp"
#include "kvmfleet/vms/vm_params.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {
namespace {

// Shared volumes follow the VM: exclusive on its host before it starts (refused by
// lvmlockd while another host holds them: the split-brain guard).
Status activate_for_start(OpContext& ctx, const Target& t) {
  const auto vols = vm_volumes(ctx, t.vm);
  if (vols.empty()) return {};
  ctx.progress(25, "activating " + std::to_string(vols.size()) +
                       " shared volume(s) exclusively on " + t.host.name);
  return set_volume_activation(ctx, vols, t.host, LvMode::exclusive, "activate", true);
}

// ... and inactive once it has stopped. A failure leaves the LV active on this host
// only (still locked to it), so it is reported (the warning returned), not fatal.
std::optional<std::string> deactivate_after_stop(OpContext& ctx, const Target& t,
                                                 const DomainStatus& dom) {
  if (vm_state_from_domain(dom.state) != VmState::stopped) return std::nullopt;
  const auto vols = vm_volumes(ctx, t.vm);
  if (vols.empty()) return std::nullopt;
  if (auto st = set_volume_activation(ctx, vols, t.host, LvMode::inactive, "deactivate"); !st)
    return "shared volumes left active on " + t.host.name + ": " + st.error().message;
  return std::nullopt;
}

Status create_vm(OpContext& ctx, const VmCreateParams& p, VmCreateResult& r) {
  ctx.progress(10, "checking the target host");
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string domain_type =
      t->host.inventory.domain_type.empty() ? "kvm" : t->host.inventory.domain_type;
  ctx.progress(30, "defining the domain on " + t->host.name);
  auto dom = ctx.with_retry([&] {
    return ctx.agents().define(t->host, ctx.op().id, domain_spec_for(t->vm, domain_type));
  });
  if (!dom) {
    Error e = dom.take_error();
    if (e.code != ErrorCode::unavailable) {
      // The agent refused for good: nothing is left defined, so the VM record goes too.
      (void)ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        if (d.find_vm(t->vm.id)) b.delete_vms.push_back(t->vm.id);
        release_volumes(d, b, t->vm.id);
        return {};
      });
      e.details["rolled_back"] = true;
    }
    return e;
  }
  if (auto st = observe(ctx, t->vm.id, t->host.name, *dom); !st) return st;
  r.host = t->host.name;
  if (p.start) {
    if (auto st = activate_for_start(ctx, *t); !st) return st;
    ctx.progress(70, "starting the domain");
    auto started =
        ctx.with_retry([&] { return ctx.agents().start(t->host, ctx.op().id, t->vm.id); });
    if (!started) return started.take_error();
    return save_vm(ctx, t->vm.id,
                   [&](Vm& vm) {
                     vm.desired = DesiredState::running;
                     vm.state = vm_state_from_domain(started->state);
                   },
                   {answer_from(t->host.name, *started)});
  }
  return {};
}

Status start_vm(OpContext& ctx, const VmStartParams&, VmStartResult&) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  if (t->vm.state == VmState::pending) return conflict("VM is not defined on a host yet");
  if (auto st = activate_for_start(ctx, *t); !st) return st;
  ctx.progress(30, "starting the domain on " + t->host.name);
  auto dom = ctx.with_retry([&] { return ctx.agents().start(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  return save_vm(ctx, t->vm.id,
                 [&](Vm& vm) {
                   vm.desired = DesiredState::running;
                   vm.state = vm_state_from_domain(dom->state);
                 },
                 {answer_from(t->host.name, *dom)});
}

Status stop_vm(OpContext& ctx, const VmStopParams& p, VmStopResult& r) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const int timeout_s = p.timeout_s;
  const bool force = p.force;
  if (auto st = save_vm(ctx, t->vm.id, [](Vm& vm) { vm.desired = DesiredState::stopped; }); !st)
    return st;
  ctx.progress(20, "asking the guest to shut down (ACPI)");
  auto dom = ctx.with_retry([&] { return ctx.agents().shutdown(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  const auto deadline = ctx.clock().steady_now() + std::chrono::seconds(timeout_s);
  while (vm_state_from_domain(dom->state) != VmState::stopped) {
    if (ctx.clock().steady_now() >= deadline) break;
    if (!ctx.sleep_for(std::chrono::milliseconds(500)))
      return Error(ErrorCode::cancelled, "stop cancelled; the guest may still be shutting down");
    auto cur = ctx.agents().get_domain(t->host, t->vm.id);
    if (cur) dom = std::move(cur);
  }
  if (vm_state_from_domain(dom->state) != VmState::stopped) {
    if (!force) {
      (void)observe(ctx, t->vm.id, t->host.name, *dom);
      return Error(ErrorCode::timeout,
                   "guest did not shut down within " + std::to_string(timeout_s) + " s",
                   {{"timeout_s", timeout_s}, {"hint", "retry with force=true to power it off"}});
    }
    ctx.progress(80, "guest did not shut down in time: powering off");
    dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, t->vm.id); });
    if (!dom) return dom.take_error();
    r.forced = true;
  }
  if (auto warning = deactivate_after_stop(ctx, *t, *dom)) r.storage_warning = std::move(warning);
  return observe(ctx, t->vm.id, t->host.name, *dom);
}

Status reboot_vm(OpContext& ctx, const VmRebootParams&, VmRebootResult&) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  ctx.progress(30, "rebooting the guest");
  auto dom = ctx.with_retry([&] { return ctx.agents().reboot(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  return observe(ctx, t->vm.id, t->host.name, *dom);
}

Status destroy_vm(OpContext& ctx, const VmDestroyParams&, VmDestroyResult& r) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  if (auto st = save_vm(ctx, t->vm.id, [](Vm& vm) { vm.desired = DesiredState::stopped; }); !st)
    return st;
  ctx.progress(30, "powering off the domain");
  auto dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  if (auto warning = deactivate_after_stop(ctx, *t, *dom)) r.storage_warning = std::move(warning);
  return observe(ctx, t->vm.id, t->host.name, *dom);
}

Status delete_vm(OpContext& ctx, const VmDeleteParams& p, VmDeleteResult&) {
  const std::string id = ctx.op().target_id;
  auto vm = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* v = d.find_vm(id);
    return v ? std::optional<Vm>(*v) : std::nullopt;
  });
  if (!vm) return {};  // already gone: deleting twice is harmless
  if (!vm->host.empty()) {
    auto t = load_target(ctx);
    if (!t) return t.take_error();
    if (p.force) {
      ctx.progress(20, "powering off the domain");
      auto dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, id); });
      if (!dom && dom.error().code != ErrorCode::not_found) return dom.take_error();
    }
    ctx.progress(50, "undefining the domain and removing its local disks");
    auto st = ctx.with_retry([&] { return ctx.agents().undefine(t->host, ctx.op().id, id, true); });
    if (!st) return st;
    // Shared volumes outlive the VM: deactivated here, released below.
    if (const auto vols = vm_volumes(ctx, t->vm); !vols.empty()) {
      if (auto off = set_volume_activation(ctx, vols, t->host, LvMode::inactive, "deactivate");
          !off)
        return off;
    }
  }
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_vm(id)) b.delete_vms.push_back(id);
    release_volumes(d, b, id);
    return {};
  });
}

}  // namespace

void register_vm_operations(OperationRunner& runner) {
  register_operation(runner, create_vm);
  register_operation(runner, start_vm);
  register_operation(runner, stop_vm);
  register_operation(runner, reboot_vm);
  register_operation(runner, destroy_vm);
  register_operation(runner, delete_vm);
}

}  // namespace kvmfleet
