#include "kvmfleet/hosts/liveness.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvmfleet {

namespace {

long long ms_of(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

Vm unknown(const Vm& vm, Clock::time_point now) {
  Vm v = vm;
  v.state = VmState::unknown;
  v.generation = vm.generation + 1;
  v.updated_at = now;
  return v;
}

}  // namespace

WriteBatch plan_unreachable(const ClusterState::Data& data, const SilenceOf& silence,
                            std::chrono::milliseconds unreachable_after, Clock::time_point now) {
  WriteBatch b;
  for (const auto& [name, h] : data.hosts) {
    if (h.state != HostState::up) continue;
    const auto quiet = silence(h);
    if (quiet < unreachable_after) continue;
    Host next = h;
    next.state = HostState::unreachable;
    spdlog::warn("host {} is unreachable (silent for {} ms)", name, ms_of(quiet));
    b.put_hosts.push_back(std::move(next));
    for (const auto& id : data.vm_ids_on(name)) {
      const Vm& vm = data.vms.at(id);
      if (vm.state != VmState::unknown && vm.state != VmState::pending)
        b.put_vms.push_back(unknown(vm, now));
    }
  }
  return b;
}

WriteBatch plan_down(const ClusterState::Data& data, const SilenceOf& silence,
                     std::chrono::milliseconds down_after, Clock::time_point now) {
  WriteBatch b;
  for (const auto& [name, h] : data.hosts) {
    if (h.state != HostState::unreachable) continue;
    const auto quiet = silence(h);
    if (quiet < down_after) continue;
    Host next = h;
    next.state = HostState::down;
    spdlog::warn("host {} is down (silent for {} ms)", name, ms_of(quiet));
    b.put_hosts.push_back(std::move(next));
    for (const auto& id : data.vm_ids_on(name)) {
      const Vm& vm = data.vms.at(id);
      if (vm.state == VmState::pending) continue;
      b.put_vms.push_back(vm.state == VmState::unknown ? vm : unknown(vm, now));
    }
  }
  return b;
}

void ControllerLag::observe(Clock::steady_time_point from, Clock::steady_time_point to) {
  if (to <= from) return;
  const auto lag = to - from;
  max_since_take_ = std::max(max_since_take_, lag);
  if (lag < threshold_) return;
  total_ += lag - lagged_between(from, to);
  // Merge with every span it overlaps or touches.
  auto it = spans_.upper_bound(from);
  if (it != spans_.begin() && std::prev(it)->second >= from) --it;
  auto start = from;
  auto end = to;
  while (it != spans_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = spans_.erase(it);
  }
  spans_.emplace(start, end);
  hold_until_ = std::max(hold_until_, to + grace_);
}

Clock::duration ControllerLag::lagged_between(Clock::steady_time_point from,
                                              Clock::steady_time_point to) const {
  Clock::duration sum{0};
  if (to <= from) return sum;
  auto it = spans_.upper_bound(from);
  if (it != spans_.begin()) --it;
  for (; it != spans_.end() && it->first < to; ++it) {
    const auto s = std::max(it->first, from);
    const auto e = std::min(it->second, to);
    if (e > s) sum += e - s;
  }
  return sum;
}

void ControllerLag::forget_before(Clock::steady_time_point before) {
  std::erase_if(spans_, [&](const auto& span) { return span.second < before; });
}

Clock::duration ControllerLag::take_recent_max() {
  recent_lag_ = max_since_take_;
  max_since_take_ = Clock::duration{0};
  return recent_lag_;
}

void ArrivalGaps::arrived(const std::string& host, Clock::steady_time_point at,
                          Clock::duration gap) {
  if (gap <= Clock::duration{0}) return;
  samples_.push_back({at, gap, host});
  ++hosts_[host];
}

Clock::duration ArrivalGaps::lateness(Clock::steady_time_point now) {
  while (!samples_.empty() && now - samples_.front().at > window_) {
    auto it = hosts_.find(samples_.front().host);
    if (--it->second == 0) hosts_.erase(it);
    samples_.pop_front();
  }
  if (static_cast<int>(hosts_.size()) < min_hosts_) return Clock::duration{0};
  std::vector<Clock::duration> gaps;
  gaps.reserve(samples_.size());
  for (const auto& s : samples_) gaps.push_back(s.gap);
  auto mid = gaps.begin() + static_cast<std::ptrdiff_t>(gaps.size() / 2);
  std::nth_element(gaps.begin(), mid, gaps.end());
  return std::max(*mid - Clock::duration(interval_), Clock::duration{0});
}

void MassFailureGuard::turned_unreachable(const std::string& host, Clock::steady_time_point at) {
  lost_[host] = at;
}

void MassFailureGuard::heard(const std::string& host) {
  lost_.erase(host);
}

bool MassFailureGuard::evaluate(Clock::steady_time_point now, int up, int unreachable) {
  std::erase_if(lost_, [&](const auto& entry) { return now - entry.second > rules_.window; });
  if (active_) {
    const bool still = unreachable >= rules_.min_hosts &&
                       unreachable > rules_.share * static_cast<double>(unreachable + up);
    if (!still) {
      active_ = false;
      spdlog::warn("liveness guard released: {} of {} hosts unreachable", unreachable,
                   unreachable + up);
    }
    return false;
  }
  const int lost = static_cast<int>(lost_.size());
  if (lost >= rules_.min_hosts && lost > rules_.share * static_cast<double>(lost + up)) {
    active_ = true;
    ++trips_;
    return true;
  }
  return false;
}

}  // namespace kvmfleet
