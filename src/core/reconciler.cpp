#include "kvmfleet/core/reconciler.hpp"

#include "kvmfleet/model/vm.hpp"

#include <spdlog/fmt/ranges.h>
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

// The VM's state in `host`'s last report (nullopt: not listed).
std::optional<VmState> state_on(const Host& host, const std::string& id) {
  for (const auto& d : host.inventory.domains)
    if (d.uuid == id) return vm_state_from_domain(d.state);
  return std::nullopt;
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

  // Writes `next` when it differs from `vm` in what the reconciler decides.
  auto write = [&](const Vm& vm, Vm next) {
    if (next.state == vm.state && next.desired == vm.desired && next.host == vm.host &&
        next.double_run == vm.double_run)
      return;
    if (vm.double_run && !next.double_run)
      spdlog::info("VM {} ({}) runs on one host again: {}", vm.spec.name, vm.id,
                   next.state == VmState::running ? next.host : "none reports it running");
    next.generation = vm.generation + 1;
    next.updated_at = now;
    b.put_vms.push_back(std::move(next));
  };
  // It may run on every one of `hosts`: nothing acts on it until that is settled.
  auto suspect = [&](const Vm& vm, const std::vector<std::string>& hosts) {
    Vm next = vm;
    next.state = VmState::unknown;
    if (!vm.double_run || vm.double_run->hosts != hosts) {
      spdlog::error(
          "VM {} ({}) may be running on more than one host ({}); recorded on {}: no operation "
          "acts on it until {} reports it stopped there or is fenced",
          vm.spec.name, vm.id, fmt::join(hosts, ", "), vm.host, vm.host);
      next.double_run = DoubleRun{hosts, vm.double_run ? vm.double_run->since : now};
    }
    write(vm, std::move(next));
  };
  auto adopt = [&](const Vm& vm, const std::string& there) {
    spdlog::info("VM {} now runs on {} (was recorded on {})", vm.spec.name, there, vm.host);
    Vm next = vm;
    next.state = VmState::running;
    next.desired = DesiredState::running;
    next.host = there;
    next.double_run.reset();
    write(vm, std::move(next));
  };
  // The VM as another host than its recorded one reports it (running there, or part of
  // a suspected double run), judged on every host's last report. Adopted only on the
  // recorded host's own word that it does not run it: a recorded host that is not up
  // has said nothing, so a copy elsewhere is a suspected double run, not a move.
  auto judge_elsewhere = [&](const Vm& vm, bool runs_here) {
    const Host* recorded = data.find_host(vm.host);
    // The other hosts' last reports, with this one's as it is now.
    auto others = running_elsewhere(data, vm.id, vm.host);
    std::erase(others, host);
    if (runs_here) others.insert(std::upper_bound(others.begin(), others.end(), host), host);
    // A fenced host (proven off, or confirmed down) runs nothing: its word is as good as
    // a report that it does not run the VM.
    const bool fenced =
        recorded && recorded->state == HostState::fenced && recorded->proven_down.has_value();
    const bool silent = recorded && recorded->state != HostState::up && !fenced;
    const bool runs_there = recorded && !fenced && runs(data, vm.host, vm.id);
    if (others.empty()) {
      if (!vm.double_run) return;
      Vm next = vm;
      next.double_run.reset();
      next.state = fenced       ? VmState::stopped
                   : silent     ? VmState::unknown
                   : runs_there ? VmState::running
                                : state_on(*recorded, vm.id).value_or(VmState::unknown);
      write(vm, std::move(next));
      return;
    }
    if (!recorded || (!silent && !runs_there)) {
      if (others.size() == 1)
        adopt(vm, others[0]);
      else
        suspect(vm, others);
      return;
    }
    std::vector<std::string> hosts{vm.host};
    hosts.insert(hosts.end(), others.begin(), others.end());
    suspect(vm, hosts);
  };

  // Only VMs recorded on this host, reported by it, or suspected of running on it can
  // change: O(its VMs), not O(all).
  std::set<std::string> candidates = data.vm_ids_on(host);
  for (const auto& d : domains) candidates.insert(d.uuid);
  for (const auto& id : data.double_runs()) {
    const Vm* vm = data.find_vm(id);
    if (vm && std::count(vm->double_run->hosts.begin(), vm->double_run->hosts.end(), host))
      candidates.insert(id);
  }
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
    if (vm.host != host) {
      const bool runs_here = here && vm_state_from_domain(it->second->state) == VmState::running;
      if (runs_here || vm.double_run) judge_elsewhere(vm, runs_here);
      continue;
    }
    // The recorded host's own report.
    const std::optional<VmState> observed =
        here ? std::optional(vm_state_from_domain(it->second->state)) : std::nullopt;
    const auto others = running_elsewhere(data, id, host);
    if (observed == VmState::running && !others.empty()) {
      std::vector<std::string> hosts{host};
      hosts.insert(hosts.end(), others.begin(), others.end());
      suspect(vm, hosts);
      continue;
    }
    if (observed != VmState::running && !others.empty()) {
      // Not running where recorded, by its own word, but running elsewhere: it moved (a
      // live migration that ended while no controller watched). Follow it.
      if (others.size() == 1)
        adopt(vm, others[0]);
      else
        suspect(vm, others);
      continue;
    }
    Vm next = vm;
    next.double_run.reset();
    if (!observed) {
      // Defined here before, gone now, and no operation of ours removed it.
      if (vm.state != VmState::pending && vm.state != VmState::unknown) {
        spdlog::warn("VM {} ({}) is no longer defined on {}", vm.spec.name, id, host);
        next.state = VmState::unknown;
      }
      write(vm, std::move(next));
      continue;
    }
    if (*observed != vm.state) {
      std::optional<DesiredState> desired;
      if (*observed == VmState::running && vm.desired == DesiredState::stopped)
        desired = DesiredState::running;
      // A crash is no one's wish: an HA VM that crashed is meant to run still (HA
      // restarts it where it is, src/ha/); a guest that shut itself down is.
      if ((*observed == VmState::stopped ||
           (*observed == VmState::crashed && !vm.spec.ha.enabled)) &&
          vm.desired == DesiredState::running)
        desired = DesiredState::stopped;
      if (*observed == VmState::crashed && vm.spec.ha.enabled)
        spdlog::warn("HA VM {} ({}) crashed on {}", vm.spec.name, id, host);
      if (desired) {
        spdlog::info("VM {} changed outside kvmfleet: now {}", vm.spec.name, to_string(*observed));
        next.desired = *desired;
      }
      next.state = *observed;
    }
    write(vm, std::move(next));
  }
  return b;
}

}  // namespace kvmfleet
