// vm.nic_add and vm.nic_remove: the VM's host attaches or detaches the NIC (in the
// running guest too when it runs), and only once its agent confirms does the VM's spec
// (and generation) change. A resumed run asks the agent again (a repeat is harmless)
// unless the spec already says it is done.
#include "kvmfleet/network/network_operations.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/network/network_params.hpp"

#include <algorithm>
#include <functional>

namespace kvmfleet {
namespace {

bool has_nic(const Vm& vm, const std::string& mac) {
  return std::any_of(vm.spec.nics.begin(), vm.spec.nics.end(),
                     [&](const NicSpec& n) { return n.mac == mac; });
}

// The VM and its host, which must be up: a NIC changes only where the VM is.
struct NicTarget {
  Vm vm;
  Host host;
};
Result<NicTarget> load(OpContext& ctx) {
  auto vm = ctx.state().vm(ctx.op().target_id);
  if (!vm) return not_found("VM no longer exists", {{"vm", ctx.op().target_id}});
  auto host = ctx.state().host(vm->host);
  if (!host) return conflict("the VM's host " + vm->host + " is not registered");
  if (host->state != HostState::up)
    return unavailable("the VM's host " + host->name + " is " + std::string(to_string(host->state)),
                       {{"host", host->name}});
  return NicTarget{std::move(*vm), std::move(*host)};
}

// Records the change the agent confirmed, on the host it was made on.
Status record(OpContext& ctx, const NicTarget& t, const DomainStatus& dom,
              const std::function<void(Vm&)>& change) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Vm* cur = d.find_vm(t.vm.id);
    if (!cur) return not_found("VM no longer exists", {{"vm", t.vm.id}});
    if (cur->host != t.host.name)
      return conflict("the VM moved to " + cur->host + " meanwhile", {{"host", cur->host}});
    Vm next = *cur;
    change(next);
    next.generation = cur->generation + 1;
    next.state = vm_state_from_domain(dom.state);
    next.updated_at = ctx.clock().now();
    b.put_vms.push_back(std::move(next));
    return {};
  });
}

Status add_nic(OpContext& ctx, const VmNicAddParams& p, VmNicResult& r) {
  auto t = load(ctx);
  if (!t) return t.take_error();
  r.mac = p.nic.mac;
  r.host = t->host.name;
  if (has_nic(t->vm, p.nic.mac)) return {};  // recorded by an earlier run
  ctx.progress(20, "attaching NIC " + p.nic.mac + " on " + t->host.name);
  const DomainNic nic{p.nic.mac, p.nic.bridge, p.nic.model, p.nic.mtu};
  auto dom = ctx.with_retry([&] {
    return ctx.agents().attach_nic(t->host, ctx.op().id, t->vm.id, nic, t->vm.generation + 1);
  });
  if (!dom) return dom.take_error();
  r.live = vm_state_from_domain(dom->state) == VmState::running;
  ctx.progress(90, "recording NIC " + p.nic.mac);
  return record(ctx, *t, *dom, [&](Vm& vm) { vm.spec.nics.push_back(p.nic); });
}

Status remove_nic(OpContext& ctx, const VmNicRemoveParams& p, VmNicResult& r) {
  auto t = load(ctx);
  if (!t) return t.take_error();
  r.mac = p.mac;
  r.host = t->host.name;
  if (!has_nic(t->vm, p.mac)) return {};  // recorded by an earlier run
  ctx.progress(20, "detaching NIC " + p.mac + " on " + t->host.name);
  auto dom = ctx.with_retry([&] {
    return ctx.agents().detach_nic(t->host, ctx.op().id, t->vm.id, p.mac, t->vm.generation + 1);
  });
  if (!dom) return dom.take_error();
  r.live = vm_state_from_domain(dom->state) == VmState::running;
  ctx.progress(90, "recording the removal of NIC " + p.mac);
  return record(ctx, *t, *dom, [&](Vm& vm) {
    std::erase_if(vm.spec.nics, [&](const NicSpec& n) { return n.mac == p.mac; });
  });
}

}  // namespace

void register_vm_nic_operations(OperationRunner& runner) {
  register_operation(runner, add_nic);
  register_operation(runner, remove_nic);
}

}  // namespace kvmfleet
