#include "kvmfleet/vms/vm_steps.hpp"

#include "kvmfleet/core/domain_reports.hpp"

#include <algorithm>

namespace kvmfleet {

Status check_single_copy(const Vm& vm) {
  if (!vm.double_run) return {};
  return conflict(
      "VM " + vm.spec.name + " may be running on more than one host; nothing acts on it until " +
          vm.host + " reports where it runs or is fenced",
      {{"vm", vm.spec.name}, {"reason", "suspected_double_run"}, {"hosts", vm.double_run->hosts}});
}

Result<Target> load_target(OpContext& ctx, bool need_host_up) {
  const std::string id = ctx.op().target_id;
  auto t = ctx.state().read([&](const ClusterState::Data& d) -> Result<Target> {
    const Vm* vm = d.find_vm(id);
    if (!vm) return not_found("VM no longer exists", {{"vm", id}});
    if (auto st = check_single_copy(*vm); !st) return st.take_error();
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

HostAnswer answer_from(const std::string& host, const DomainStatus& dom) {
  return {host, dom, dom.stamp};
}

Status save_vm(OpContext& ctx, const std::string& id, const std::function<void(Vm&)>& mutate,
               const std::vector<HostAnswer>& answers) {
  auto st = ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Vm* cur = d.find_vm(id);
    if (!cur) return not_found("VM no longer exists", {{"vm", id}});
    Vm next = *cur;
    mutate(next);
    next.generation = cur->generation + 1;
    next.updated_at = ctx.clock().now();
    if (!answers.empty()) {
      // Kept for the hosts this operation heard from and the VM's host; an older
      // answer from elsewhere has been overtaken by reports since.
      std::erase_if(next.seen, [&](const auto& e) {
        return e.first != next.host &&
               std::none_of(answers.begin(), answers.end(),
                            [&](const auto& a) { return a.host == e.first; });
      });
      for (const auto& a : answers)
        if (!a.stamp.empty()) next.seen[a.host] = a.stamp;
    }
    b.put_vms.push_back(std::move(next));
    return {};
  });
  if (!st || answers.empty()) return st;
  // The hosts' lists are observations, kept in memory as heartbeats keep them.
  return ctx.state().update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        for (const auto& a : answers) {
          const Host* h = d.find_host(a.host);
          if (!h) continue;
          Host next = *h;
          note_domain_answer(next.inventory.domains, id, a.domain ? &*a.domain : nullptr, a.stamp);
          b.put_hosts.push_back(std::move(next));
        }
        return {};
      },
      false);
}

Status observe(OpContext& ctx, const std::string& id, const std::string& host,
               const DomainStatus& dom) {
  const VmState s = vm_state_from_domain(dom.state);
  return save_vm(ctx, id, [&](Vm& vm) { vm.state = s; }, {answer_from(host, dom)});
}

}  // namespace kvmfleet
