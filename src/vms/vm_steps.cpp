#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {

Result<Target> load_target(OpContext& ctx, bool need_host_up) {
  const std::string id = ctx.op().target_id;
  auto t = ctx.state().read([&](const ClusterState::Data& d) -> Result<Target> {
    const Vm* vm = d.find_vm(id);
    if (!vm) return not_found("VM no longer exists", {{"vm", id}});
    if (vm->host.empty()) return conflict("VM has no host", {{"vm", id}});
    const Host* h = d.find_host(vm->host);
    if (!h) return conflict("VM's host is not registered", {{"vm", id}, {"host", vm->host}});
    return Target{*vm, *h};
  });
  if (!t) return t;
  if (need_host_up && t->host.state != HostState::up)
    return unavailable("host " + t->host.name + " is " + std::string(to_string(t->host.state)),
                       {{"host", t->host.name}});
  return t;
}

Status save_vm(OpContext& ctx, const std::string& id, const std::function<void(Vm&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Vm* cur = d.find_vm(id);
    if (!cur) return not_found("VM no longer exists", {{"vm", id}});
    Vm next = *cur;
    mutate(next);
    next.generation = cur->generation + 1;
    next.updated_at = ctx.clock().now();
    b.put_vms.push_back(std::move(next));
    return {};
  });
}

Status observe(OpContext& ctx, const std::string& id, const DomainStatus& dom) {
  const VmState s = vm_state_from_domain(dom.state);
  return save_vm(ctx, id, [&](Vm& vm) { vm.state = s; });
}

}  // namespace kvmfleet
