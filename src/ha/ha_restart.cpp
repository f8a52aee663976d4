// vm.ha_restart: an HA VM of a failed host defined and started anew on another host.
#include "kvmfleet/ha/ha_operations.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/ha/ha_params.hpp"
#include "kvmfleet/ha/ha_planning.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/shared_storage/vm_volumes.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvmfleet {
namespace {

// The VM and the hosts as they are now, checked against the rule again: the VM is still
// recorded on `from_host`, that host is still proven down, the VM may still restart,
// and the target can take it.
struct Now {
  Vm vm;
  Host target;
};
Result<Now> recheck(OpContext& ctx, const VmHaRestartParams& p) {
  const std::string id = ctx.op().target_id;
  const auto now = ctx.clock().now();
  return ctx.state().read([&](const ClusterState::Data& d) -> Result<Now> {
    const Vm* vm = d.find_vm(id);
    if (!vm) return not_found("VM no longer exists", {{"vm", id}});
    if (auto st = check_single_copy(*vm); !st) return st.take_error();
    const Host* target = d.find_host(p.target_host);
    if (!target) return not_found("target host is not registered", {{"host", p.target_host}});
    if (vm->host == p.target_host) return Now{*vm, *target};  // a resumed run
    if (vm->host != p.from_host)
      return conflict("VM is recorded on " + vm->host + " now, not on " + p.from_host,
                      {{"vm", vm->spec.name}, {"host", vm->host}});
    const Host* from = d.find_host(p.from_host);
    if (!from || !ha::proven_down(*from))
      return conflict(
          "host " + p.from_host + " is no longer proven down (" +
              (from ? std::string(to_string(from->state)) : "gone") +
              "): the VM is not restarted elsewhere",
          {{"vm", vm->spec.name}, {"host", p.from_host}, {"reason", "host_not_proven_down"}});
    if (auto refusal = ha::restart_refusal(d, *vm, now))
      return conflict(refusal->message, {{"vm", vm->spec.name}, {"reason", refusal->reason}});
    if (!vm->spec.ha.enabled || vm->desired != DesiredState::running)
      return conflict("VM is no longer an HA VM meant to run", {{"vm", vm->spec.name}});
    if (target->state != HostState::up || !target->schedulable)
      return unavailable("target host " + p.target_host + " is " +
                             std::string(to_string(target->state)) +
                             (target->schedulable ? "" : " (not schedulable)"),
                         {{"host", p.target_host}});
    return Now{*vm, *target};
  });
}

// Records one HA restart of the VM at `at`, dropping those older than the window.
void count_restart(Vm& vm, Clock::time_point at) {
  std::erase_if(vm.ha_restarts, [&](auto t) { return t <= at - ha::kRestartWindow; });
  vm.ha_restarts.push_back(at);
}

// A VM that crashed on its (healthy) host is started there again.
Status restart_in_place(OpContext& ctx, const VmHaRestartParams& p, VmHaRestartResult& r) {
  ctx.progress(5, "checking that the VM is still crashed on " + p.from_host);
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const auto now = ctx.clock().now();
  auto ok = ctx.state().read([&](const ClusterState::Data& d) -> Status {
    const Vm* vm = d.find_vm(t->vm.id);
    if (!vm || vm->host != p.from_host || !ha::crashed_in_place(d, *vm))
      return conflict("VM is no longer crashed on " + p.from_host,
                      {{"vm", t->vm.spec.name}, {"reason", "not_crashed"}});
    if (const int n = ha::recent_restarts(*vm, now); n >= vm->spec.ha.max_restarts)
      return conflict("VM has been restarted " + std::to_string(n) + " times within the hour",
                      {{"vm", t->vm.spec.name}, {"reason", "restart_limit"}});
    return {};
  });
  if (!ok) return ok;
  if (const auto vols = vm_volumes(ctx, t->vm); !vols.empty())
    if (auto st = set_volume_activation(ctx, vols, t->host, LvMode::exclusive, "activate", true);
        !st)
      return st;
  r.host = t->host.name;
  ctx.progress(50, "starting the VM again on " + t->host.name);
  auto started =
      ctx.with_retry([&] { return ctx.agents().start(t->host, ctx.step_id("start"), t->vm.id); });
  if (!started) return started.take_error();
  r.started = vm_state_from_domain(started->state) == VmState::running;
  spdlog::warn("HA: VM {} ({}) crashed on {} and was started again", t->vm.spec.name, t->vm.id,
               t->host.name);
  return save_vm(ctx, t->vm.id,
                 [&](Vm& vm) {
                   vm.state = vm_state_from_domain(started->state);
                   count_restart(vm, now);
                 },
                 {answer_from(t->host.name, *started)});
}

Status ha_restart(OpContext& ctx, const VmHaRestartParams& p, VmHaRestartResult& r) {
  if (p.reason == kCrashed) return restart_in_place(ctx, p, r);
  ctx.progress(5,
               "checking that " + p.from_host + " is still proven down (" + p.evidence.kind + ")");
  auto now = recheck(ctx, p);
  if (!now) return now.take_error();
  const std::string uuid = now->vm.id;
  const Host& target = now->target;
  const auto vols = vm_volumes(ctx, now->vm);
  if (now->vm.host != target.name) {
    // The failed host is off: its exclusive locks end with its storage lease, and
    // lvmlockd grants them to the target only then (the split-brain guard holds even if
    // the evidence was wrong).
    if (!vols.empty()) {
      ctx.progress(20, "activating " + std::to_string(vols.size()) +
                           " shared volume(s) exclusively on " + target.name);
      if (auto st = set_volume_activation(ctx, vols, target, LvMode::exclusive, "activate", true);
          !st)
        return st;
    }
    const std::string domain_type =
        target.inventory.domain_type.empty() ? "kvm" : target.inventory.domain_type;
    ctx.progress(40, "defining the domain on " + target.name);
    auto defined = ctx.with_retry([&] {
      return ctx.agents().define(target, ctx.step_id("define"),
                                 domain_spec_for(now->vm, domain_type));
    });
    if (!defined) return defined.take_error();
    const auto at = ctx.clock().now();
    if (auto st = save_vm(ctx, uuid,
                          [&](Vm& vm) {
                            vm.host = target.name;
                            vm.state = vm_state_from_domain(defined->state);
                            count_restart(vm, at);
                          },
                          {answer_from(target.name, *defined)});
        !st)
      return st;
    spdlog::warn("HA: VM {} ({}) of {} ({}: {}) defined on {}", now->vm.spec.name, uuid,
                 p.from_host, p.evidence.kind, p.evidence.detail, target.name);
  } else if (!vols.empty()) {
    if (auto st = set_volume_activation(ctx, vols, target, LvMode::exclusive, "activate", true);
        !st)
      return st;
  }
  r.host = target.name;
  ctx.progress(70, "starting the VM on " + target.name);
  auto started =
      ctx.with_retry([&] { return ctx.agents().start(target, ctx.step_id("start"), uuid); });
  if (!started) return started.take_error();
  r.started = vm_state_from_domain(started->state) == VmState::running;
  return save_vm(ctx, uuid,
                 [&](Vm& vm) {
                   vm.desired = DesiredState::running;
                   vm.state = vm_state_from_domain(started->state);
                 },
                 {answer_from(target.name, *started)});
}

}  // namespace

void register_ha_operations(OperationRunner& runner) {
  register_operation<VmHaRestartParams, VmHaRestartResult>(runner, ha_restart);
}

}  // namespace kvmfleet
