#include "kvmfleet/controller/reconciler.hpp"

#include "kvmfleet/controller/vm_operations.hpp"

#include <spdlog/spdlog.h>

#include <unordered_map>

namespace kvmfleet {

WriteBatch reconcile_host(const ClusterState::Data& data, const std::string& host,
                          const std::vector<DomainStatus>& domains, Clock::time_point now) {
  WriteBatch b;
  std::unordered_map<std::string, const DomainStatus*> by_uuid;
  for (const auto& d : domains) by_uuid[d.uuid] = &d;

  auto changed = [&](const Vm& vm, VmState state, std::optional<DesiredState> desired,
                     const std::string& new_host) {
    Vm next = vm;
    next.state = state;
    if (desired) next.desired = *desired;
    next.host = new_host;
    next.generation = vm.generation + 1;
    next.updated_at = now;
    b.put_vms.push_back(std::move(next));
  };

  for (const auto& [id, vm] : data.vms) {
    if (data.active_operation_for(id)) continue;  // the operation owns this VM for now
    auto it = by_uuid.find(id);
    const bool here = it != by_uuid.end();
    if (vm.host == host) {
      if (!here) {
        // Defined here before, gone now, and no operation of ours removed it.
        if (vm.state != VmState::pending && vm.state != VmState::unknown) {
          spdlog::warn("VM {} ({}) is no longer defined on {}", vm.spec.name, id, host);
          changed(vm, VmState::unknown, std::nullopt, vm.host);
        }
        continue;
      }
      const VmState observed = vm_state_from_domain(it->second->state);
      if (observed == vm.state) continue;
      std::optional<DesiredState> desired;
      if (observed == VmState::running && vm.desired == DesiredState::stopped)
        desired = DesiredState::running;
      if ((observed == VmState::stopped || observed == VmState::crashed) &&
          vm.desired == DesiredState::running)
        desired = DesiredState::stopped;
      if (desired)
        spdlog::info("VM {} changed outside kvmfleet: now {}", vm.spec.name, to_string(observed));
      changed(vm, observed, desired, vm.host);
    } else if (here) {
      // Our VM is defined on another host than recorded. Adopt the new host only when
      // it runs there and the recorded host is not known to run it; otherwise flag it.
      const VmState observed = vm_state_from_domain(it->second->state);
      if (observed != VmState::running) continue;
      const Host* recorded = data.find_host(vm.host);
      const bool recorded_runs_it =
          recorded && recorded->state == HostState::up &&
          std::any_of(recorded->inventory.domains.begin(), recorded->inventory.domains.end(),
                      [&](const DomainStatus& d) { return d.uuid == id && d.state == "running"; });
      if (recorded_runs_it) {
        spdlog::error("VM {} ({}) reported running on both {} and {}", vm.spec.name, id, vm.host,
                      host);
        if (vm.state != VmState::unknown) changed(vm, VmState::unknown, std::nullopt, vm.host);
        continue;
      }
      spdlog::info("VM {} now runs on {} (was recorded on {})", vm.spec.name, host, vm.host);
      changed(vm, VmState::running, DesiredState::running, host);
    }
  }
  return b;
}

WriteBatch reconcile_liveness(const ClusterState::Data& data, Clock::time_point now,
                              std::chrono::milliseconds unreachable_after,
                              std::chrono::milliseconds down_after) {
  WriteBatch b;
  for (const auto& [name, h] : data.hosts) {
    if (!h.last_heartbeat) continue;  // never seen: stays as registered (down)
    const auto age = now - *h.last_heartbeat;
    HostState next = HostState::up;
    if (age >= down_after) next = HostState::down;
    else if (age >= unreachable_after) next = HostState::unreachable;
    if (next == h.state || next == HostState::up) continue;
    Host updated = h;
    updated.state = next;
    spdlog::warn("host {} is {} (last heartbeat {} ms ago)", name, to_string(next),
                 std::chrono::duration_cast<std::chrono::milliseconds>(age).count());
    b.put_hosts.push_back(std::move(updated));
    for (const auto& [id, vm] : data.vms) {
      if (vm.host != name || vm.state == VmState::unknown || vm.state == VmState::pending) continue;
      Vm v = vm;
      v.state = VmState::unknown;
      v.generation = vm.generation + 1;
      v.updated_at = now;
      b.put_vms.push_back(std::move(v));
    }
  }
  return b;
}

}  // namespace kvmfleet
