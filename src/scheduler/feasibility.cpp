#include "feasibility.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "capacity.hpp"

namespace kvmfleet::scheduler {
namespace {

using Reason = std::optional<std::string>;

Reason migration_source(const HostView& h, const Request& r, const Config&) {
  if (!r.migration || r.migration->source_host != h.name) return std::nullopt;
  return "the VM's own host";
}

Reason migration_address(const HostView& h, const Request& r, const Config&) {
  if (!r.migration || !r.migration->live || h.has_migration_address) return std::nullopt;
  return "takes no migrations (no migration_address)";
}

Reason accelerator(const HostView& h, const Request& r, const Config&) {
  if (!r.migration || r.migration->domain_type.empty() || h.domain_type == r.migration->domain_type)
    return std::nullopt;
  return "runs " + h.domain_type + " guests, not " + r.migration->domain_type;
}

Reason host_up(const HostView& h, const Request&, const Config&) {
  if (h.state == HostState::up) return std::nullopt;
  return "host is " + std::string(to_string(h.state));
}

Reason schedulable(const HostView& h, const Request&, const Config&) {
  if (h.schedulable) return std::nullopt;
  return "host is cordoned (not schedulable)";
}

Reason excluded(const HostView& h, const Request& r, const Config&) {
  if (std::find(r.exclude_hosts.begin(), r.exclude_hosts.end(), h.name) == r.exclude_hosts.end())
    return std::nullopt;
  return "host is excluded by the request";
}

Reason pinned_host(const HostView& h, const Request& r, const Config&) {
  if (r.spec.pinned_host.empty() || r.spec.pinned_host == h.name) return std::nullopt;
  return "VM is pinned to host '" + r.spec.pinned_host + "'";
}

Reason storage(const HostView& h, const Request& r, const Config&) {
  for (const auto& pool : r.pools)
    if (std::find(h.pools.begin(), h.pools.end(), pool) == h.pools.end())
      return "host does not reach storage pool '" + pool + "'";
  return std::nullopt;
}

// Every network the VM's NICs are on must be usable on the host (its bridge, and for
// a VLAN network the sub-interface in it, as the host last reported).
Reason networks(const HostView& h, const Request& r, const Config&) {
  for (const auto& nic : r.spec.nics)
    if (std::find(h.networks.begin(), h.networks.end(), nic.network) == h.networks.end())
      return "network '" + nic.network + "' is not usable on this host";
  return std::nullopt;
}

Reason memory(const HostView& h, const Request& r, const Config& c) {
  const auto allocatable = allocatable_memory_mib(h, c);
  if (h.allocated_memory_mib + r.spec.memory_mib <= allocatable) return std::nullopt;
  const auto free = std::max<std::int64_t>(0, allocatable - h.allocated_memory_mib);
  return "needs " + std::to_string(r.spec.memory_mib) + " MiB, " + std::to_string(free) + " of " +
         std::to_string(std::max<std::int64_t>(0, allocatable)) + " MiB allocatable free";
}

Reason vcpus(const HostView& h, const Request& r, const Config& c) {
  const auto allocatable = allocatable_vcpus(h, c);
  if (h.allocated_vcpus + static_cast<std::int64_t>(r.spec.vcpus) <= allocatable)
    return std::nullopt;
  const auto free = std::max<std::int64_t>(0, allocatable - h.allocated_vcpus);
  return "needs " + std::to_string(r.spec.vcpus) + " vCPUs, " + std::to_string(free) + " of " +
         std::to_string(allocatable) + " allocatable free";
}

Reason anti_affinity(const HostView& h, const Request& r, const Config&) {
  const auto& group = r.spec.anti_affinity_group;
  if (group.empty()) return std::nullopt;
  const auto& groups = h.anti_affinity_groups;
  if (std::find(groups.begin(), groups.end(), group) == groups.end()) return std::nullopt;
  return "anti-affinity group '" + group + "' already has a VM on this host";
}

// A migration's checks come first: they say whether the host could ever take this
// VM, whatever its state or room today, so that is the reason a refused migration
// gives for the host.
constexpr std::array<Filter, 12> kChain{{
    {"migration_source", migration_source},
    {"migration_address", migration_address},
    {"accelerator", accelerator},
    {"host_up", host_up},
    {"schedulable", schedulable},
    {"excluded", excluded},
    {"pinned_host", pinned_host},
    {"storage", storage},
    {"networks", networks},
    {"memory", memory},
    {"vcpus", vcpus},
    {"anti_affinity", anti_affinity},
}};

}  // namespace

bool reaches_pools(const HostView& host, const Request& request) {
  return !storage(host, request, Config{}).has_value();
}

bool takes_migration(const HostView& host, const Request& request) {
  return !migration_source(host, request, Config{}) &&
         !migration_address(host, request, Config{}) && !accelerator(host, request, Config{});
}

std::span<const Filter> filter_chain() {
  return kChain;
}

std::optional<Rejection> first_rejection(const HostView& host, const Request& request,
                                         const Config& config) {
  for (const auto& f : kChain) {
    if (auto reason = f.check(host, request, config)) return Rejection{f.name, std::move(*reason)};
  }
  return std::nullopt;
}

}  // namespace kvmfleet::scheduler
