#include "migration_steps.hpp"

#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {

Result<Host> load_host(OpContext& ctx, const std::string& name) {
  auto h = ctx.state().host(name);
  if (!h) return conflict("host " + name + " is not registered", {{"host", name}});
  return *h;
}

Status adopt_on(OpContext& ctx, const std::string& id, const std::string& host,
                const DomainStatus& there, const HostAnswer& source) {
  return save_vm(ctx, id,
                 [&](Vm& vm) {
                   vm.host = host;
                   vm.state = VmState::running;
                   vm.desired = DesiredState::running;
                 },
                 {answer_from(host, there), source});
}

}  // namespace kvmfleet
