#include "kvmfleet/scheduler/scheduler.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "feasibility.hpp"
#include "host_index.hpp"
#include "ranking.hpp"

namespace kvmfleet::scheduler {

HostView host_view(const Host& h) {
  HostView v;
  v.name = h.name;
  v.state = h.state;
  v.schedulable = h.schedulable;
  v.cpus = h.inventory.cpus;
  v.memory_total_mib = h.inventory.memory_total_mib;
  v.has_migration_address = !h.inventory.migration_address.empty();
  v.domain_type = h.inventory.domain_type;
  return v;
}

void count_vm(HostView& v, const VmSpec& spec) {
  v.allocated_memory_mib += spec.memory_mib;
  v.allocated_vcpus += spec.vcpus;
  const auto& group = spec.anti_affinity_group;
  if (!group.empty() && std::find(v.anti_affinity_groups.begin(), v.anti_affinity_groups.end(),
                                  group) == v.anti_affinity_groups.end())
    v.anti_affinity_groups.push_back(group);
}

Snapshot snapshot_from(const std::vector<Host>& hosts, const std::vector<Vm>& vms) {
  Snapshot snap;
  snap.hosts.reserve(hosts.size());
  std::unordered_map<std::string_view, std::size_t> by_name;
  for (const auto& h : hosts) {
    by_name.emplace(h.name, snap.hosts.size());
    snap.hosts.push_back(host_view(h));
  }
  for (const auto& vm : vms) {
    if (vm.host.empty()) continue;
    const auto it = by_name.find(vm.host);
    // A VM on a host the controller no longer knows holds no capacity anywhere.
    if (it == by_name.end()) continue;
    count_vm(snap.hosts[it->second], vm.spec);
  }
  return snap;
}

void attach_pools(Snapshot& snapshot,
                  const std::map<std::string, std::vector<std::string>>& pools_by_host) {
  for (auto& h : snapshot.hosts) {
    const auto it = pools_by_host.find(h.name);
    if (it != pools_by_host.end()) h.pools = it->second;
  }
}

void attach_networks(Snapshot& snapshot,
                     const std::map<std::string, std::vector<std::string>>& networks_by_host) {
  for (auto& h : snapshot.hosts) {
    const auto it = networks_by_host.find(h.name);
    if (it != networks_by_host.end()) h.networks = it->second;
  }
}

Placement place(const Snapshot& snapshot, const Request& request, const Config& config) {
  Placement p;
  p.verdicts.reserve(snapshot.hosts.size());
  const HostView* best = nullptr;
  std::int64_t best_value = 0;
  for (const auto& h : snapshot.hosts) {
    Verdict& v = p.verdicts.emplace_back();
    v.host = h.name;
    if (auto rejection = first_rejection(h, request, config)) {
      v.filter = rejection->filter;
      v.reason = std::move(rejection->reason);
      continue;
    }
    v.feasible = true;
    const Rank rank = rank_host(h, config);
    add_scores(v, rank, config);
    const auto value = rank.value();
    // Equal scores go to the smaller name so that the choice does not depend on the
    // order the controller happened to list its hosts in.
    if (best == nullptr || value > best_value || (value == best_value && h.name < best->name)) {
      best = &h;
      best_value = value;
    }
  }
  if (best != nullptr) p.host = best->name;
  return p;
}

std::vector<std::string> place_all(Snapshot snapshot, const std::vector<Request>& requests,
                                   const Config& config) {
  std::vector<HostView>& hosts = snapshot.hosts;
  std::vector<std::string> chosen_names(requests.size());
  if (hosts.empty()) return chosen_names;

  HostIndex index(hosts, config);
  std::unordered_map<std::string_view, std::vector<std::size_t>> by_name;
  for (std::size_t i = 0; i < hosts.size(); ++i) by_name[hosts[i].name].push_back(i);
  // Which hosts each anti-affinity group already occupies.
  std::unordered_map<std::string, std::vector<std::size_t>> group_hosts;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    for (const auto& g : hosts[i].anti_affinity_groups) group_hosts[g].push_back(i);
  }
  const std::vector<std::size_t> none;
  auto named = [&](std::string_view name) -> const std::vector<std::size_t>& {
    const auto it = by_name.find(name);
    return it == by_name.end() ? none : it->second;
  };

  std::vector<std::size_t> hidden;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const Request& req = requests[r];
    const VmSpec& spec = req.spec;
    std::size_t chosen = hosts.size();

    if (!spec.pinned_host.empty()) {
      // A pin leaves at most a few candidates: judge them with the full chain.
      std::int64_t best_key = -1;
      for (const std::size_t i : named(spec.pinned_host)) {
        if (first_rejection(hosts[i], req, config)) continue;
        if (const auto k = index.key(i); k > best_key) {
          best_key = k;
          chosen = i;
        }
      }
    } else {
      // Exclusions, pools, a migration's needs and anti-affinity are per request: hide
      // those hosts from the index for this one search, then show them again.
      hidden.clear();
      for (const auto& name : req.exclude_hosts) {
        const auto& ids = named(name);
        hidden.insert(hidden.end(), ids.begin(), ids.end());
      }
      if (!req.pools.empty() || req.migration) {
        for (std::size_t i = 0; i < hosts.size(); ++i)
          if (!reaches_pools(hosts[i], req) || !takes_migration(hosts[i], req)) hidden.push_back(i);
      }
      if (!spec.anti_affinity_group.empty()) {
        if (const auto it = group_hosts.find(spec.anti_affinity_group); it != group_hosts.end())
          hidden.insert(hidden.end(), it->second.begin(), it->second.end());
      }
      for (const std::size_t i : hidden) index.hide(i);
      chosen = index.best_fit(spec.memory_mib, spec.vcpus);
      for (const std::size_t i : hidden) index.show(i);
    }

    if (chosen == hosts.size()) continue;
    HostView& h = hosts[chosen];
    h.allocated_memory_mib += spec.memory_mib;
    h.allocated_vcpus += spec.vcpus;
    const auto& group = spec.anti_affinity_group;
    if (!group.empty() && std::find(h.anti_affinity_groups.begin(), h.anti_affinity_groups.end(),
                                    group) == h.anti_affinity_groups.end()) {
      h.anti_affinity_groups.push_back(group);
      group_hosts[group].push_back(chosen);
    }
    index.refresh(chosen);
    chosen_names[r] = h.name;
  }
  return chosen_names;
}

}  // namespace kvmfleet::scheduler
