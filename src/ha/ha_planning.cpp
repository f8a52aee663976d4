#include "kvmfleet/ha/ha_planning.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/ha/ha_params.hpp"

#include <algorithm>
#include <tuple>

namespace kvmfleet::ha {

bool proven_down(const Host& host) {
  return host.state == HostState::fenced && host.proven_down.has_value();
}

int recent_restarts(const Vm& vm, Clock::time_point now) {
  return static_cast<int>(std::count_if(vm.ha_restarts.begin(), vm.ha_restarts.end(),
                                        [&](auto t) { return t > now - kRestartWindow; }));
}

std::optional<Waiting> restart_refusal(const ClusterState::Data& d, const Vm& vm,
                                       Clock::time_point now) {
  auto wait = [&](std::string_view reason, std::string message) {
    return Waiting{vm.id, vm.spec.name, vm.host, std::string(reason), std::move(message)};
  };
  if (vm.double_run)
    return wait(wait_reason::double_run,
                "it may run on more than one host; it waits until that is settled");
  if (const int n = recent_restarts(vm, now); n >= vm.spec.ha.max_restarts)
    return wait(wait_reason::restart_limit,
                "restarted " + std::to_string(n) + " times within the hour (max_restarts " +
                    std::to_string(vm.spec.ha.max_restarts) + "); it waits for an operator");
  if (!vm.spec.pinned_host.empty() && vm.spec.pinned_host == vm.host)
    return wait(wait_reason::pinned, "pinned to " + vm.host + ", which failed");
  for (std::size_t i = 0; i < vm.spec.disks.size(); ++i)
    if (vm.spec.disks[i].volume.empty() || !d.find_volume(vm.spec.disks[i].volume))
      return wait(wait_reason::local_disks,
                  "disk " + std::to_string(i) + " lived in " + vm.host +
                      "'s local image pool; only VMs whose disks are all shared volumes restart "
                      "elsewhere");
  return std::nullopt;
}

bool crashed_in_place(const ClusterState::Data& d, const Vm& vm) {
  const Host* h = d.find_host(vm.host);
  return vm.spec.ha.enabled && vm.desired == DesiredState::running &&
         vm.state == VmState::crashed && h && h->state == HostState::up;
}

Plan plan(const ClusterState::Data& d, const scheduler::Config& config, Clock::time_point now,
          const std::set<std::string>& hold, const std::set<std::string>& crashed) {
  Plan out;
  for (const auto& id : crashed) {
    const Vm* vm = d.find_vm(id);
    if (!vm || !crashed_in_place(d, *vm) || d.active_operation_for(id)) continue;
    Waiting w{id, vm->spec.name, vm->host, "", ""};
    if (vm->double_run) {
      w.reason = wait_reason::double_run;
      w.message = "it may run on more than one host; it waits until that is settled";
    } else if (const int n = recent_restarts(*vm, now); n >= vm->spec.ha.max_restarts) {
      w.reason = wait_reason::restart_limit;
      w.message = "crashed again after " + std::to_string(n) +
                  " restarts within the hour (max_restarts " +
                  std::to_string(vm->spec.ha.max_restarts) +
                  "): a crash loop; it waits for an "
                  "operator";
    } else if (hold.count(id)) {
      w.reason = wait_reason::backoff;
      w.message = "its last restart attempt failed; it is retried shortly";
    }
    if (!w.reason.empty()) {
      out.waiting.push_back(std::move(w));
      continue;
    }
    out.restarts.push_back(
        Restart{std::string(kCrashed), id, vm->spec.name, vm->host, vm->host, vm->spec.ha.priority,
                ProvenDown{std::string(kCrashed), vm->host + "'s agent reported the domain crashed",
                           vm->host, now}});
  }
  // Restarts underway are counted on their targets.
  std::vector<Vm> arriving;
  for (const Operation* op : d.active_operations()) {
    if (op->kind != op_kind::vm_ha_restart) continue;
    const Vm* vm = d.find_vm(op->target_id);
    const auto p = params_of<VmHaRestartParams>(*op);
    if (!vm || !p || vm->host == p->target_host) continue;
    Vm phantom = *vm;
    phantom.host = p->target_host;
    arriving.push_back(std::move(phantom));
  }

  std::vector<const Vm*> candidates;
  for (const auto& [name, host] : d.hosts) {
    if (!proven_down(host)) continue;
    for (const auto& id : d.vm_ids_on(name)) {
      const Vm* vm = d.find_vm(id);
      if (!vm) continue;
      const bool busy = d.active_operation_for(id) != nullptr;
      // It runs nowhere: the host that had it is off.
      if (!busy && vm->state != VmState::stopped && vm->state != VmState::pending &&
          !vm->double_run) {
        Vm next = *vm;
        next.state = VmState::stopped;
        next.generation = vm->generation + 1;
        next.updated_at = now;
        out.settle.put_vms.push_back(std::move(next));
      }
      if (!vm->spec.ha.enabled || vm->desired != DesiredState::running || busy) continue;
      if (auto refusal = restart_refusal(d, *vm, now)) {
        out.waiting.push_back(std::move(*refusal));
        continue;
      }
      if (hold.count(id)) {
        out.waiting.push_back(Waiting{id, vm->spec.name, name, std::string(wait_reason::backoff),
                                      "its last restart attempt failed; it is retried shortly"});
        continue;
      }
      candidates.push_back(vm);
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Vm* a, const Vm* b) {
    return std::tuple(-a->spec.ha.priority, a->created_at, a->id) <
           std::tuple(-b->spec.ha.priority, b->created_at, b->id);
  });

  std::vector<scheduler::Request> requests;
  requests.reserve(candidates.size());
  for (const Vm* vm : candidates) {
    scheduler::Request req{vm->spec, {vm->host}, d.pools_of(*vm)};
    // Defined anew on the target, for its accelerator.
    req.migration = scheduler::Migration{vm->host, false, ""};
    requests.push_back(std::move(req));
  }
  const auto placed =
      scheduler::place_all(scheduler_snapshot(d, std::move(arriving)), requests, config);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const Vm& vm = *candidates[i];
    if (placed[i].empty()) {
      out.waiting.push_back(Waiting{vm.id, vm.spec.name, vm.host,
                                    std::string(wait_reason::no_capacity),
                                    "no host can take it now; it is placed when one can"});
      continue;
    }
    out.restarts.push_back(Restart{std::string(kHostFailed), vm.id, vm.spec.name, vm.host,
                                   placed[i], vm.spec.ha.priority,
                                   *d.find_host(vm.host)->proven_down});
  }
  return out;
}

}  // namespace kvmfleet::ha
