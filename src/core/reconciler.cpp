#include "kvmfleet/core/reconciler.hpp"

#include "kvmfleet/model/vm.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>

namespace kvmfleet {

namespace {

// Whether the host's last report has VM `id` running.
bool runs(const ClusterState::Data& data, const std::string& host, const std::string& id) {
  return data.hosts_running(id).count(host) > 0;
}

// The up hosts other than `except` whose last report has VM `id` running.
std::vector<std::string> running_elsewhere(const ClusterState::Data& data, const std::string& id,
                                           const std::string& except) {
  std::vector<std::string> out;
  for (const auto& name : data.hosts_running(id)) {
    if (name == except) continue;
    const Host* h = data.find_host(name);
    if (h && h->state == HostState::up) out.push_back(name);
  }
  return out;
}

}  // namespace

bool heard_since_start(const Host& host, Clock::time_point started_at) {
  return host.last_heartbeat && *host.last_heartbeat >= started_at;
}

bool heard_from_every_up_host(const ClusterState::Data& data, Clock::time_point started_at) {
  const auto oldest = data.oldest_up_heartbeat();
  return !oldest || *oldest >= started_at;
}

WriteBatch reconcile_host(const ClusterState::Data& data, const std::string& host,
                          const std::vector<DomainStatus>& domains, Clock::time_point now,
                          Clock::time_point started_at) {
  WriteBatch b;
  // The reporting host's own list is only whole once it heartbeated (an event alone
  // patches a list a previous controller kept), and the other hosts' lists are what
  // tell "stopped here" from "moved there": until all are fresh, nothing is decided.
  const Host* reporter = data.find_host(host);
  if (!reporter || !heard_since_start(*reporter, started_at) ||
      !heard_from_every_up_host(data, started_at)) {
    spdlog::debug("report from {} left for later: not every host has heartbeated since start",
                  host);
    return b;
  }
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
  auto flag_on_two_hosts = [&](const Vm& vm, const std::string& a, const std::string& b2) {
    spdlog::error("VM {} ({}) reported running on both {} and {}", vm.spec.name, vm.id, a, b2);
    if (vm.state != VmState::unknown) changed(vm, VmState::unknown, std::nullopt, vm.host);
  };

  // Only VMs recorded on this host or reported by it can change: O(its VMs), not O(all).
  std::set<std::string> candidates = data.vm_ids_on(host);
  for (const auto& d : domains) candidates.insert(d.uuid);
  for (const auto& id : candidates) {
    const auto found = data.vms.find(id);
    if (found == data.vms.end()) continue;
    const Vm& vm = found->second;
    if (data.active_operation_for(id)) continue;  // the operation owns this VM for now
    auto it = by_uuid.find(id);
    const bool here = it != by_uuid.end();
    // What this host's agent told of the VM (its entry, or its absence from the list) is
    // no news if an operation had a later answer from that agent (domain_reports.hpp).
    if (auto seen = vm.seen.find(host);
        seen != vm.seen.end() &&
        older_than(here ? it->second->stamp : reporter->inventory.stamp, seen->second))
      continue;
    if (vm.host == host) {
      const std::optional<VmState> observed =
          here ? std::optional(vm_state_from_domain(it->second->state)) : std::nullopt;
      if (observed != VmState::running) {
        // Not running where recorded, but running elsewhere: it moved (a live migration
        // that ended while no controller watched). Follow it; it did not stop.
        const auto others = running_elsewhere(data, id, host);
        if (others.size() > 1) {
          flag_on_two_hosts(vm, others[0], others[1]);
          continue;
        }
        if (others.size() == 1) {
          spdlog::info("VM {} now runs on {} (was recorded on {})", vm.spec.name, others[0], host);
          changed(vm, VmState::running, DesiredState::running, others[0]);
          continue;
        }
      }
      if (!observed) {
        // Defined here before, gone now, and no operation of ours removed it.
        if (vm.state != VmState::pending && vm.state != VmState::unknown) {
          spdlog::warn("VM {} ({}) is no longer defined on {}", vm.spec.name, id, host);
          changed(vm, VmState::unknown, std::nullopt, vm.host);
        }
        continue;
      }
      if (*observed == vm.state) continue;
      std::optional<DesiredState> desired;
      if (*observed == VmState::running && vm.desired == DesiredState::stopped)
        desired = DesiredState::running;
      if ((*observed == VmState::stopped || *observed == VmState::crashed) &&
          vm.desired == DesiredState::running)
        desired = DesiredState::stopped;
      if (desired)
        spdlog::info("VM {} changed outside kvmfleet: now {}", vm.spec.name, to_string(*observed));
      changed(vm, *observed, desired, vm.host);
    } else if (here) {
      // Our VM is defined on another host than recorded. Adopt the new host only when
      // it runs there and the recorded host is not known to run it; otherwise flag it.
      const VmState observed = vm_state_from_domain(it->second->state);
      if (observed != VmState::running) continue;
      const Host* recorded = data.find_host(vm.host);
      if (recorded && recorded->state == HostState::up && runs(data, vm.host, id)) {
        flag_on_two_hosts(vm, vm.host, host);
        continue;
      }
      spdlog::info("VM {} now runs on {} (was recorded on {})", vm.spec.name, host, vm.host);
      changed(vm, VmState::running, DesiredState::running, host);
    }
  }
  return b;
}

}  // namespace kvmfleet
