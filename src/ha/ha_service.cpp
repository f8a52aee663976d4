#include "kvmfleet/ha/ha_service.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/ha/ha_params.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

namespace kvmfleet {

namespace {

// Who HA's operations are attributed to.
Principal ha_principal() {
  Principal p;
  p.name = "kvmfleet-ha";
  p.role = Role::admin;
  return p;
}

bool any_proven_down(const ClusterState::Data& d) {
  return std::any_of(d.hosts.begin(), d.hosts.end(),
                     [](const auto& h) { return ha::proven_down(h.second); });
}

}  // namespace

HaService::HaService(ClusterState& state, Operations& operations, const ControllerConfig& config,
                     const Clock& clock, std::function<bool()> guard_active)
    : state_(state),
      operations_(operations),
      config_(config),
      clock_(clock),
      guard_active_(std::move(guard_active)) {
  // HA VMs that crash are seen as their records change; those crashed before this
  // controller started, by the first pass.
  state_.on_vm_change([this](const std::vector<Vm>& put, const std::vector<std::string>& gone) {
    std::lock_guard lk(mu_);
    for (const Vm& vm : put) {
      if (vm.spec.ha.enabled && vm.state == VmState::crashed)
        crashed_.insert(vm.id);
      else
        crashed_.erase(vm.id);
    }
    for (const auto& id : gone) crashed_.erase(id);
  });
}

std::chrono::milliseconds HaService::backoff(int failures) {
  std::chrono::milliseconds d{5'000};
  for (int i = 1; i < failures && d < std::chrono::minutes{5}; ++i) d *= 2;
  return std::min<std::chrono::milliseconds>(d, std::chrono::minutes{5});
}

void HaService::follow(const ClusterState::Data& d, Clock::time_point now) {
  for (auto it = attempts_.begin(); it != attempts_.end();) {
    Attempt& a = it->second;
    const Operation* op = a.op_id.empty() ? nullptr : d.find_operation(a.op_id);
    if (!op) {
      // Failed before (the failures count on toward the next backoff), or its operation
      // was pruned: forgotten once nothing was tried for a restart window.
      it = a.retry_at + ha::kRestartWindow <= now ? attempts_.erase(it) : std::next(it);
      continue;
    }
    if (op->state == OpState::succeeded) {
      ++status_.succeeded;
      // From the failed host's last heartbeat to the VM running again.
      const auto params = params_of<VmHaRestartParams>(*op);
      const Host* from = params ? d.find_host(params->from_host) : nullptr;
      if (from && from->last_heartbeat && op->finished_at) {
        const double s =
            std::chrono::duration<double>(*op->finished_at - *from->last_heartbeat).count();
        for (std::size_t i = 0; i < buckets_.size(); ++i)
          if (s <= buckets_[i]) ++bucket_counts_[i];
        ++recovery_count_;
        recovery_sum_ += s;
      }
      it = attempts_.erase(it);
      continue;
    }
    if (op->state == OpState::failed || op->state == OpState::cancelled) {
      ++status_.failed;
      ++a.failures;
      a.retry_at = now + backoff(a.failures);
      spdlog::warn("HA: restarting VM {} failed (attempt {}): {}; retried in {} s", it->first,
                   a.failures, op->error ? op->error->message : "cancelled",
                   std::chrono::duration_cast<std::chrono::seconds>(backoff(a.failures)).count());
      a.op_id.clear();
    }
    ++it;
  }
}

void HaService::tick() {
  const auto now = clock_.now();
  const bool guard = guard_active_ && guard_active_();
  bool work = false;
  state_.read([&](const ClusterState::Data& d) {
    std::lock_guard lk(mu_);
    if (!scanned_) {
      for (const auto& [id, vm] : d.vms)
        if (vm.spec.ha.enabled && vm.state == VmState::crashed) crashed_.insert(id);
      scanned_ = true;
    }
    follow(d, now);
    work = !attempts_.empty() || !crashed_.empty() || any_proven_down(d);
  });
  {
    std::lock_guard lk(mu_);
    if (guard && !status_.held_by_guard)
      spdlog::error("HA: the liveness mass-failure guard is active: no VM is restarted elsewhere");
    status_.held_by_guard = guard;
  }
  if (guard || !work) {
    if (!work) {
      std::lock_guard lk(mu_);
      status_.waiting.clear();
    }
    return;
  }

  ha::Plan plan;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    std::set<std::string> hold, crashed;
    {
      std::lock_guard lk(mu_);
      for (const auto& [id, a] : attempts_)
        if (!a.op_id.empty() || a.retry_at > now) hold.insert(id);
      crashed = crashed_;
    }
    plan = ha::plan(d, config_.scheduler, now, hold, crashed);
    b = plan.settle;
    return {};
  });
  if (!st) {
    spdlog::warn("HA: recording the VMs of fenced hosts stopped failed: {}", st.error().message);
    return;
  }
  for (const Vm& v : plan.settle.put_vms)
    spdlog::info("HA: VM {} ({}) runs nowhere: its host {} is proven down", v.spec.name, v.id,
                 v.host);
  {
    std::lock_guard lk(mu_);
    for (const auto& w : plan.waiting)
      if (!logged_[{w.vm, w.reason}])
        spdlog::warn("HA: VM {} of {} waits ({}): {}", w.name, w.host, w.reason, w.message);
    logged_.clear();
    for (const auto& w : plan.waiting) logged_[{w.vm, w.reason}] = true;
    status_.waiting = plan.waiting;
  }

  for (const auto& r : plan.restarts) {
    Operation op;
    op.target_type = "vm";
    op.target_id = r.vm;
    set_params(op, VmHaRestartParams{r.reason, r.from_host, r.target_host, r.evidence});
    auto submitted = operations_.submit(
        ha_principal(), op, {},
        [&](const ClusterState::Data& d, WriteBatch&, Operation&) -> Status {
          const Vm* vm = d.find_vm(r.vm);
          if (!vm) return not_found("VM no longer exists", {{"vm", r.vm}});
          if (d.active_operation_for(r.vm))
            return conflict("VM has an operation in flight", {{"vm", r.vm}});
          if (r.reason == kCrashed)
            return ha::crashed_in_place(d, *vm)
                       ? Status{}
                       : conflict("VM is no longer crashed", {{"vm", r.vm}});
          const Host* from = d.find_host(r.from_host);
          if (vm->host != r.from_host || !from || !ha::proven_down(*from))
            return conflict("VM's host is no longer proven down", {{"vm", r.vm}});
          return {};
        });
    std::lock_guard lk(mu_);
    Attempt& a = attempts_[r.vm];
    if (!submitted) {
      ++a.failures;
      a.retry_at = now + backoff(a.failures);
      continue;
    }
    a.op_id = submitted->operation.id;
    ++status_.submitted;
    spdlog::warn("HA: restarting VM {} of {} on {} (priority {}; {} by {}: {}), operation {}",
                 r.name, r.from_host, r.target_host, r.priority, r.evidence.kind, r.evidence.by,
                 r.evidence.detail, a.op_id);
  }
}

HaStatus HaService::status() const {
  std::lock_guard lk(mu_);
  return status_;
}

nlohmann::json HaService::view() const {
  const HaStatus s = status();
  nlohmann::json waiting = nlohmann::json::array();
  for (const auto& w : s.waiting)
    waiting.push_back({{"vm", w.vm},
                       {"name", w.name},
                       {"host", w.host},
                       {"reason", w.reason},
                       {"message", w.message}});
  return {
      {"held_by_guard", s.held_by_guard},
      {"waiting", std::move(waiting)},
      {"restarts", {{"submitted", s.submitted}, {"succeeded", s.succeeded}, {"failed", s.failed}}}};
}

std::string HaService::metrics() const {
  std::lock_guard lk(mu_);
  std::ostringstream out;
  out << "# HELP kvmfleet_ha_restarts_total HA restarts of VMs of failed hosts, by result.\n"
         "# TYPE kvmfleet_ha_restarts_total counter\n"
      << "kvmfleet_ha_restarts_total{result=\"submitted\"} " << status_.submitted << "\n"
      << "kvmfleet_ha_restarts_total{result=\"succeeded\"} " << status_.succeeded << "\n"
      << "kvmfleet_ha_restarts_total{result=\"failed\"} " << status_.failed << "\n";
  out << "# HELP kvmfleet_ha_held_by_guard Whether HA restarts are held by the liveness "
         "mass-failure guard.\n# TYPE kvmfleet_ha_held_by_guard gauge\n"
      << "kvmfleet_ha_held_by_guard " << (status_.held_by_guard ? 1 : 0) << "\n";
  out << "# HELP kvmfleet_ha_waiting_vms HA VMs of failed hosts not restarted now, by reason.\n"
         "# TYPE kvmfleet_ha_waiting_vms gauge\n";
  std::map<std::string, int> by_reason;
  for (auto r :
       {ha::wait_reason::restart_limit, ha::wait_reason::local_disks, ha::wait_reason::pinned,
        ha::wait_reason::double_run, ha::wait_reason::no_capacity, ha::wait_reason::backoff})
    by_reason[std::string(r)] = 0;
  for (const auto& w : status_.waiting) ++by_reason[w.reason];
  for (const auto& [reason, n] : by_reason)
    out << "kvmfleet_ha_waiting_vms{reason=\"" << reason << "\"} " << n << "\n";
  out << "# HELP kvmfleet_ha_recovery_seconds From a failed host's last heartbeat to its VM "
         "running elsewhere.\n# TYPE kvmfleet_ha_recovery_seconds histogram\n";
  for (std::size_t i = 0; i < buckets_.size(); ++i)
    out << "kvmfleet_ha_recovery_seconds_bucket{le=\"" << buckets_[i] << "\"} " << bucket_counts_[i]
        << "\n";
  out << "kvmfleet_ha_recovery_seconds_bucket{le=\"+Inf\"} " << recovery_count_ << "\n"
      << "kvmfleet_ha_recovery_seconds_sum " << recovery_sum_ << "\n"
      << "kvmfleet_ha_recovery_seconds_count " << recovery_count_ << "\n";
  return out.str();
}

}  // namespace kvmfleet
