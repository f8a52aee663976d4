#include "kvmfleet/hosts/host_service.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/core/domain_reports.hpp"
#include "kvmfleet/core/reconciler.hpp"
#include "kvmfleet/model/vm.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

namespace kvmfleet {

namespace {

double seconds_of(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

HostService::HostService(ClusterState& state, const ControllerConfig& config, const Clock& clock)
    : state_(state),
      config_(config),
      clock_(clock),
      started_at_(clock.now()),
      started_steady_(clock.steady_now()),
      lag_(config.liveness_lag_threshold, config.liveness_lag_grace),
      // A window of two intervals holds about two heartbeats of every live host.
      gaps_(config.heartbeat_interval, 2 * config.heartbeat_interval),
      guard_(GuardRules{config.liveness_guard_share, config.liveness_guard_min_hosts,
                        config.liveness_guard_window}) {}

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
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (!d.find_host(name)) return not_found("no such host", {{"host", name}});
    std::vector<std::string> vms;
    for (const auto& id : d.vm_ids_on(name)) vms.push_back(d.vms.at(id).spec.name);
    if (!vms.empty())
      return conflict("host still has VMs; move or delete them first", {{"vms", vms}});
    b.delete_hosts.push_back(name);
    for (const auto& [id, t] : d.tokens)
      if (t.role == Role::agent && t.host == name) b.delete_tokens.push_back(id);
    return {};
  });
  if (!st) return st;
  std::lock_guard lk(mu_);
  heard_.erase(name);
  guard_.heard(name);
  std::erase_if(unknown_logged_, [&](const auto& e) { return e.first == name; });
  return {};
}

Status HostService::heartbeat(const Principal& who, const std::string& host,
                              const std::string& agent_url, const HostInventory& inventory) {
  return heartbeat(who, host, agent_url, inventory, Arrival::now(clock_));
}

Status HostService::heartbeat(const Principal& who, const std::string& host,
                              const std::string& agent_url, const HostInventory& inventory,
                              const Arrival& arrived) {
  if (who.role != Role::agent || who.host != host)
    return Error(ErrorCode::permission_denied, "this credential does not speak for host " + host);
  bool persist = false;
  // The host's list with this report merged in: what the reconciler then judges.
  std::vector<DomainStatus> domains;
  std::vector<const DomainStatus*> unknown;  // managed domains of no VM the controller has
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        // Processing starts here, after any wait for the state's other writers: the time
        // since the request arrived is the controller's own lag.
        const auto processing = clock_.steady_now();
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        {
          std::lock_guard lk(mu_);
          lag_.observe(arrived.steady, processing);
          auto [it, fresh] = heard_.try_emplace(host, arrived.steady);
          if (!fresh && it->second < arrived.steady) {
            // Only an up host's gap tells how heartbeats travel now: one back from
            // silence tells of its own absence.
            if (h->state == HostState::up)
              gaps_.arrived(host, arrived.steady, arrived.steady - it->second);
            it->second = arrived.steady;
          }
          guard_.heard(host);
        }
        // What is persisted: a host that was down (the store says so) coming back, and
        // changed facts. An unreachable host heard again, like a host turning unreachable
        // (check_liveness), is an observation kept in memory: after a restart every host
        // the store holds up is timed from the start (liveness.hpp), so a flap lost with
        // the process is found again within unreachable_after, and the store is not
        // written twice per flap.
        // A fenced (or fencing) host heard again runs after all: it is up, and the evidence
        // that it ran nothing no longer holds.
        const bool material =
            h->state == HostState::down || h->state == HostState::fencing ||
            h->state == HostState::fenced || (!agent_url.empty() && h->agent_url != agent_url) ||
            h->inventory.host_uuid != inventory.host_uuid || h->inventory.cpus != inventory.cpus ||
            h->inventory.memory_total_mib != inventory.memory_total_mib ||
            h->inventory.libvirt_version != inventory.libvirt_version ||
            h->inventory.qemu_version != inventory.qemu_version;
        if (h->state == HostState::fenced || h->state == HostState::fencing)
          spdlog::warn("host {} was {} and is heard again: up", host, to_string(h->state));
        else if (h->state != HostState::up)
          spdlog::info("host {} is up", host);
        Host next = *h;
        next.state = HostState::up;
        next.proven_down.reset();
        if (!agent_url.empty()) next.agent_url = agent_url;
        domains =
            merge_domain_report(d, host, h->inventory.domains, inventory.domains, inventory.stamp);
        next.inventory = inventory;
        next.inventory.domains = domains;
        // The time it counts for is when it arrived; a heartbeat overtaken by a later
        // one does not move it back.
        if (!next.last_heartbeat || *next.last_heartbeat < arrived.wall)
          next.last_heartbeat = arrived.wall;
        for (const auto& dom : domains)
          if (dom.managed && !d.find_vm(dom.uuid)) unknown.push_back(&dom);
        b.put_hosts.push_back(std::move(next));
        restore_vms(d, host, domains, b);
        persist = material;
        return {};
      },
      false);
  if (!st) return st;
  note_unknown_domains(host, unknown);
  // Host facts that matter across restarts are persisted; the heartbeat time is not.
  if (persist) {
    st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      if (const Host* h = d.find_host(host)) b.put_hosts.push_back(*h);
      return {};
    });
    if (!st) return st;
  }
  const auto now = clock_.now();
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_host(d, host, domains, now, started_at_);
    return {};
  });
}

void HostService::restore_vms(const ClusterState::Data& d, const std::string& host,
                              const std::vector<DomainStatus>& domains, WriteBatch& b) {
  std::lock_guard lk(mu_);
  auto hidden = hidden_.find(host);
  if (hidden == hidden_.end()) return;
  for (const auto& [_, stored] : hidden->second) {
    // Only a VM nothing else has written since (the record is still the one liveness
    // made), that the host reports as it was, is put back as the store holds it; for
    // anything else the reconciler decides, and writes, as for any report.
    auto vm = d.vms.find(stored.id);
    auto dom = std::find_if(domains.begin(), domains.end(),
                            [&](const DomainStatus& s) { return s.uuid == stored.id; });
    if (vm != d.vms.end() && vm->second.state == VmState::unknown &&
        vm->second.generation == stored.generation + 1 && vm->second.host == stored.host &&
        !d.active_operation_for(stored.id) && dom != domains.end() &&
        vm_state_from_domain(dom->state) == stored.state)
      b.put_vms.push_back(stored);
  }
  hidden_.erase(hidden);
}

void HostService::note_unknown_domains(const std::string& host,
                                       const std::vector<const DomainStatus*>& unknown) {
  std::lock_guard lk(mu_);
  // Forget the ones no longer listed, so that one coming back is reported again.
  std::erase_if(unknown_logged_, [&](const auto& e) {
    return e.first == host && std::none_of(unknown.begin(), unknown.end(),
                                           [&](const auto* d) { return d->uuid == e.second; });
  });
  for (const DomainStatus* d : unknown)
    if (unknown_logged_.emplace(host, d->uuid).second)
      spdlog::warn(
          "host {} has domain {} ({}) with kvmfleet's metadata but the controller has no such "
          "VM: left alone (not adopted, not deleted)",
          host, d->name, d->uuid);
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
        for (const auto& e : events)
          apply_domain_event(d, host, next.inventory.domains,
                             ObservedChange{e.uuid, e.name, e.state, e.stamp});
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

Clock::duration HostService::silence_of(const std::string& host,
                                        Clock::steady_time_point now) const {
  // A host not heard since the start is timed from the start: the controller's own
  // absence is not the host's silence.
  auto it = heard_.find(host);
  const auto at = it != heard_.end() ? it->second : started_steady_;
  // The time the controller itself was behind since is not the host's.
  const auto quiet = (now - at) - lag_.lagged_between(at, now);
  return std::max(quiet, Clock::duration{0});
}

void HostService::observe_tick(Clock::steady_time_point due, Clock::steady_time_point ran) {
  std::lock_guard lk(mu_);
  lag_.observe(due, ran);
  lag_.take_recent_max();
}

// Up → unreachable reaches memory only; unreachable → down is persisted. That is enough
// after a restart: the store then holds such a host as up (or down, once it was
// persisted so), its VMs in their last persisted state, and a host the store holds up is
// timed from the new start, so if it is still silent it turns unreachable again after
// unreachable_after and its VMs unknown, before anything is decided on its account
// (reconciler.hpp). Down, which HA acts on, is never lost.
void HostService::check_liveness() {
  const auto now = clock_.now();
  const auto steady = clock_.steady_now();
  bool holding = false;
  bool guarded = false;
  bool tripped = false;
  int lost = 0, up = 0, unreachable = 0;
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        std::lock_guard lk(mu_);
        // Spans older than any silence still judged are of no use.
        lag_.forget_before(
            steady - std::max<Clock::duration>(std::chrono::hours{1}, 2 * config_.down_after));
        // Heartbeats arriving late across the cluster: held up on their way in, for
        // that long (ArrivalGaps).
        if (const auto late = gaps_.lateness(steady); late > Clock::duration{0})
          lag_.observe(steady - late, steady);
        holding = lag_.holding(steady);
        // While the controller is behind, hosts' heartbeats may sit in its queues: no host
        // is declared anything.
        if (!holding)
          b = plan_unreachable(
              d, [&](const Host& h) { return silence_of(h.name, steady); },
              config_.unreachable_after, now);
        // Their VMs turn unknown in memory only; the records the store holds are kept, to
        // be put back if the host reports them unchanged when it is heard again.
        for (const Vm& v : b.put_vms) hidden_[v.host].try_emplace(v.id, d.vms.at(v.id));
        up = unreachable = 0;
        for (const auto& [name, h] : d.hosts) {
          const bool turned = std::any_of(b.put_hosts.begin(), b.put_hosts.end(),
                                          [&](const Host& t) { return t.name == name; });
          if (turned) guard_.turned_unreachable(name, steady);
          if (turned || h.state == HostState::unreachable)
            ++unreachable;
          else if (h.state == HostState::up)
            ++up;
        }
        tripped = guard_.evaluate(steady, up, unreachable);
        guarded = guard_.active();
        lost = guard_.lost();
        return {};
      },
      false);
  if (!st) {
    spdlog::warn("liveness pass failed: {}", st.error().message);
    return;
  }
  if (tripped)
    spdlog::error(
        "liveness guard tripped: {} hosts turned unreachable within {} s ({} of {} not up); "
        "taken as a controller or network failure: no host becomes down, nothing is fenced "
        "or restarted elsewhere until enough of them are heard again",
        lost, config_.liveness_guard_window.count() / 1000, unreachable, unreachable + up);
  if (holding || guarded) return;
  std::vector<std::pair<std::string, std::string>> written;  // (host, VM id)
  st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    std::lock_guard lk(mu_);
    b = plan_down(
        d, [&](const Host& h) { return silence_of(h.name, steady); }, config_.down_after, now);
    for (const Vm& v : b.put_vms) written.emplace_back(v.host, v.id);
    return {};
  });
  if (!st) {
    spdlog::warn("liveness pass failed: {}", st.error().message);
    return;
  }
  std::lock_guard lk(mu_);
  // The store holds them unknown now.
  for (const auto& [host, id] : written) {
    auto it = hidden_.find(host);
    if (it == hidden_.end()) continue;
    it->second.erase(id);
    if (it->second.empty()) hidden_.erase(it);
  }
}

bool HostService::liveness_guard_active() const {
  std::lock_guard lk(mu_);
  return guard_.active();
}

LivenessStatus HostService::liveness_status() const {
  LivenessStatus s;
  // ClusterState first, then mu_: never the other way round.
  s.unknown_managed_domains = state_.read([](const ClusterState::Data& d) {
    int n = 0;
    for (const auto& [_, h] : d.hosts)
      for (const auto& dom : h.inventory.domains) n += dom.managed && !d.find_vm(dom.uuid);
    return n;
  });
  const auto steady = clock_.steady_now();
  std::lock_guard lk(mu_);
  s.lag_seconds = seconds_of(lag_.recent_lag());
  s.lag_total_seconds = seconds_of(lag_.lag_total());
  s.holding = lag_.holding(steady);
  s.guard_active = guard_.active();
  s.guard_trips = guard_.trips();
  return s;
}

std::string HostService::liveness_metrics() const {
  const auto s = liveness_status();
  std::ostringstream out;
  out << "# HELP kvmfleet_controller_lag_seconds The controller's own lag in its last periodic "
         "pass: how late it ran, or how long a heartbeat waited to be processed.\n"
         "# TYPE kvmfleet_controller_lag_seconds gauge\n"
         "kvmfleet_controller_lag_seconds "
      << s.lag_seconds
      << "\n# HELP kvmfleet_controller_lag_seconds_total Time the controller was behind, not "
         "counted against hosts' silence.\n"
         "# TYPE kvmfleet_controller_lag_seconds_total counter\n"
         "kvmfleet_controller_lag_seconds_total "
      << s.lag_total_seconds
      << "\n# HELP kvmfleet_liveness_holding 1 while the controller is behind (or within the "
         "grace after): no host is declared unreachable or down.\n"
         "# TYPE kvmfleet_liveness_holding gauge\n"
         "kvmfleet_liveness_holding "
      << (s.holding ? 1 : 0)
      << "\n# HELP kvmfleet_liveness_guard_active 1 while the mass-failure guard holds: no host "
         "becomes down, nothing is fenced.\n"
         "# TYPE kvmfleet_liveness_guard_active gauge\n"
         "kvmfleet_liveness_guard_active "
      << (s.guard_active ? 1 : 0)
      << "\n# HELP kvmfleet_liveness_guard_trips_total Times the mass-failure guard tripped.\n"
         "# TYPE kvmfleet_liveness_guard_trips_total counter\n"
         "kvmfleet_liveness_guard_trips_total "
      << s.guard_trips
      << "\n# HELP kvmfleet_unknown_managed_domains Domains carrying kvmfleet's metadata that "
         "the controller has no VM for.\n"
         "# TYPE kvmfleet_unknown_managed_domains gauge\n"
         "kvmfleet_unknown_managed_domains "
      << s.unknown_managed_domains << "\n";
  return out.str();
}

nlohmann::json HostService::liveness_health() const {
  const auto s = liveness_status();
  return {{"healthy", !s.holding && !s.guard_active},
          {"lag_seconds", s.lag_seconds},
          {"guard_active", s.guard_active}};
}

}  // namespace kvmfleet
