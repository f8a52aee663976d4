#include "kvmfleet/hosts/host_service.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/core/reconciler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvmfleet {

HostService::HostService(ClusterState& state, const ControllerConfig& config, const Clock& clock)
    : state_(state), config_(config), clock_(clock), started_at_(clock.now()) {}

Result<std::pair<Host, std::string>> HostService::register_host(const std::string& name,
                                                                const std::string& agent_url) {
  if (auto st = check_name("name", name); !st) return st.take_error();
  Host h;
  h.name = name;
  h.agent_url = agent_url;
  h.state = HostState::down;
  h.agent_secret = new_token();
  h.created_at = clock_.now();
  TokenRecord rec;
  rec.id = new_uuid();
  rec.name = "host:" + name;
  rec.role = Role::agent;
  rec.host = name;
  rec.hash = sha256_hex(h.agent_secret);
  rec.created_at = h.created_at;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_host(name)) return conflict("host already registered", {{"host", name}});
    b.put_hosts.push_back(h);
    b.put_tokens.push_back(rec);
    return {};
  });
  if (!st) return st.take_error();
  return std::pair{h, h.agent_secret};
}

Status HostService::set_schedulable(const std::string& name, bool schedulable) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Host* h = d.find_host(name);
    if (!h) return not_found("no such host", {{"host", name}});
    if (h->schedulable == schedulable) return {};
    Host next = *h;
    next.schedulable = schedulable;
    b.put_hosts.push_back(std::move(next));
    return {};
  });
}

Status HostService::delete_host(const std::string& name) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (!d.find_host(name)) return not_found("no such host", {{"host", name}});
    std::vector<std::string> vms;
    for (const auto& [_, vm] : d.vms)
      if (vm.host == name) vms.push_back(vm.spec.name);
    if (!vms.empty())
      return conflict("host still has VMs; move or delete them first", {{"vms", vms}});
    b.delete_hosts.push_back(name);
    for (const auto& [id, t] : d.tokens)
      if (t.role == Role::agent && t.host == name) b.delete_tokens.push_back(id);
    return {};
  });
}

Status HostService::heartbeat(const Principal& who, const std::string& host,
                              const std::string& agent_url, const HostInventory& inventory) {
  if (who.role != Role::agent || who.host != host)
    return Error(ErrorCode::permission_denied, "this credential does not speak for host " + host);
  const auto now = clock_.now();
  bool persist = false;
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        Host next = *h;
        const bool material = h->state != HostState::up || h->agent_url != agent_url ||
                              h->inventory.host_uuid != inventory.host_uuid ||
                              h->inventory.cpus != inventory.cpus ||
                              h->inventory.memory_total_mib != inventory.memory_total_mib ||
                              h->inventory.libvirt_version != inventory.libvirt_version ||
                              h->inventory.qemu_version != inventory.qemu_version;
        if (h->state != HostState::up) spdlog::info("host {} is up", host);
        next.state = HostState::up;
        if (!agent_url.empty()) next.agent_url = agent_url;
        next.inventory = inventory;
        next.last_heartbeat = now;
        b.put_hosts.push_back(std::move(next));
        persist = material;
        return {};
      },
      false);
  if (!st) return st;
  // Host facts that matter across restarts are persisted; the heartbeat time is not.
  if (persist) {
    st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      if (const Host* h = d.find_host(host)) b.put_hosts.push_back(*h);
      return {};
    });
    if (!st) return st;
  }
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_host(d, host, inventory.domains, now, started_at_);
    return {};
  });
}

Status HostService::domain_events(const Principal& who, const std::string& host,
                                  const std::vector<DomainEvent>& events) {
  if (who.role != Role::agent || who.host != host)
    return Error(ErrorCode::permission_denied, "this credential does not speak for host " + host);
  // An event updates the host's last known domain list, then the same reconcile
  // as a heartbeat runs: one code path for "what is observed".
  std::vector<DomainStatus> domains;
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        Host next = *h;
        for (const auto& e : events) {
          auto it = std::find_if(next.inventory.domains.begin(), next.inventory.domains.end(),
                                 [&](const DomainStatus& s) { return s.uuid == e.uuid; });
          if (e.state == "undefined") {
            if (it != next.inventory.domains.end()) next.inventory.domains.erase(it);
            continue;
          }
          if (it == next.inventory.domains.end()) {
            DomainStatus s;
            s.uuid = e.uuid;
            s.name = e.name;
            s.managed = d.find_vm(e.uuid) != nullptr;
            next.inventory.domains.push_back(s);
            it = std::prev(next.inventory.domains.end());
          }
          it->state = e.state;
        }
        domains = next.inventory.domains;
        b.put_hosts.push_back(std::move(next));
        return {};
      },
      false);
  if (!st) return st;
  const auto now = clock_.now();
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_host(d, host, domains, now, started_at_);
    return {};
  });
}

void HostService::check_liveness() {
  const auto now = clock_.now();
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_liveness(d, now, started_at_, config_.unreachable_after, config_.down_after);
    return {};
  });
  if (!st) spdlog::warn("liveness pass failed: {}", st.error().message);
}

}  // namespace kvmfleet
