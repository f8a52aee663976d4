#pragma once

// Host liveness: when a host counts as up, unreachable or down, judged so that it
// never lies under load.
//
// - A heartbeat counts for the time it arrived at the controller, not for when its
//   processing ended.
// - The controller measures its own lag: how late its periodic pass runs against when
//   it was due, and how long a heartbeat waits between arrival and processing. Time in
//   which it was behind does not count against a host's silence, and while it is behind
//   (and for a grace after) it declares no host unreachable or down: the hosts'
//   heartbeats may be sitting in its own queues.
// - Mass-failure guard: when more than a share of the hosts turn unreachable within a
//   window, the cause is taken to be the controller or the network. They are still
//   marked unreachable, but no host is moved to down (what HA and fencing act on) while
//   the guard is active.
//
// Every function here takes the time it works on as an argument: the rules are
// tested in simulated time.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvmfleet {

// A host's silence as the liveness rules count it: time since it was last heard, net of
// the time the controller itself was behind.
using SilenceOf = std::function<Clock::duration(const Host&)>;

// Up hosts silent for `unreachable_after` or longer become unreachable; their VMs'
// observed state becomes unknown (nobody may assume they stopped). Meant to reach
// memory only: see HostService::check_liveness for why that is enough.
WriteBatch plan_unreachable(const ClusterState::Data& data, const SilenceOf& silence,
                            std::chrono::milliseconds unreachable_after, Clock::time_point now);

// Unreachable hosts silent for `down_after` or longer become down, with every VM on them
// recorded unknown (those already unknown too: an unreachable host's VMs became unknown
// in memory only, and down must reach the store whole). Meant to be persisted.
WriteBatch plan_down(const ClusterState::Data& data, const SilenceOf& silence,
                     std::chrono::milliseconds down_after, Clock::time_point now);

// The controller's own lag. An observation is a span of the monotonic clock in which the
// controller was behind: a periodic pass that was due at `from` and ran at `to`, or a
// heartbeat that arrived at `from` and was processed at `to`. Spans shorter than
// `threshold` are ordinary processing time. Longer ones are kept as a union (spans that
// overlap count once, in whatever order they are observed): the part of a host's
// silence during which the controller was behind, lagged_between(heard, now), does not
// count against the host.
class ControllerLag {
 public:
  ControllerLag(std::chrono::milliseconds threshold, std::chrono::milliseconds grace)
      : threshold_(threshold), grace_(grace) {}

  void observe(Clock::steady_time_point from, Clock::steady_time_point to);
  // How much of [from, to] the controller was behind.
  Clock::duration lagged_between(Clock::steady_time_point from, Clock::steady_time_point to) const;
  // All the time it was behind (only grows).
  Clock::duration lag_total() const { return total_; }
  // Whether the controller is behind, or was less than `grace` ago: no host is declared
  // unreachable or down meanwhile.
  bool holding(Clock::steady_time_point now) const { return now < hold_until_; }
  // Forgets spans that ended before `before` (lag_total() keeps them).
  void forget_before(Clock::steady_time_point before);
  // The largest lag observed since the last call (for the gauge), then starts over.
  Clock::duration take_recent_max();
  Clock::duration recent_lag() const { return recent_lag_; }

 private:
  std::chrono::milliseconds threshold_;
  std::chrono::milliseconds grace_;
  std::map<Clock::steady_time_point, Clock::steady_time_point> spans_;  // start → end, disjoint
  Clock::duration total_{0};
  Clock::steady_time_point hold_until_{};
  Clock::duration max_since_take_{0};
  Clock::duration recent_lag_{0};
};

// Late arrivals: the lag a starved controller cannot time itself. A heartbeat that waits
// in the kernel's queues, or for a thread to read it, is timed only once it is read, so
// the spans above miss that wait. What shows it is the gap between a host's heartbeat
// and its previous one: agents send one every interval, so when most heartbeats arrive
// later than that, they were held up on the way in, by the controller or by a network
// every host shares. (When some hosts fail, the others' heartbeats still arrive on time,
// and the median stays at the interval.) `lateness` is the median gap of the heartbeats
// that arrived within the window, over at least `min_hosts` hosts, less the interval;
// the liveness pass counts that much of the recent past as the controller's lag.
class ArrivalGaps {
 public:
  ArrivalGaps(std::chrono::milliseconds interval, std::chrono::milliseconds window,
              int min_hosts = 3)
      : interval_(interval), window_(window), min_hosts_(min_hosts) {}

  // `host`'s heartbeat arrived at `at`, `gap` after its previous one.
  void arrived(const std::string& host, Clock::steady_time_point at, Clock::duration gap);
  // How late heartbeats typically arrive now (zero when on time or too few hosts).
  Clock::duration lateness(Clock::steady_time_point now);

 private:
  struct Sample {
    Clock::steady_time_point at;
    Clock::duration gap;
    std::string host;
  };
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds window_;
  int min_hosts_;
  std::deque<Sample> samples_;                  // oldest first
  std::unordered_map<std::string, int> hosts_;  // host → samples of it in samples_
};

struct GuardRules {
  double share = 0.3;                        // more than this share of the up hosts...
  int min_hosts = 3;                         // ...and at least this many...
  std::chrono::milliseconds window{60'000};  // ...turning unreachable within this window
};

// The mass-failure guard. It trips when, counting the hosts that turned unreachable
// within the window and have not been heard since (`lost`), lost >= min_hosts and
// lost > share × (lost + hosts up now). It releases when the hosts unreachable now are
// no longer that many: unreachable < min_hosts or unreachable <= share × (unreachable +
// up), i.e. when enough heartbeats came back. While it is active, no host becomes down.
class MassFailureGuard {
 public:
  explicit MassFailureGuard(GuardRules rules) : rules_(rules) {}

  // `host` turned unreachable at `at`.
  void turned_unreachable(const std::string& host, Clock::steady_time_point at);
  // `host` was heard: it is not lost.
  void heard(const std::string& host);
  // After a liveness pass, with the hosts up and unreachable now. Returns true when this
  // call tripped the guard (to alert once), and sets active().
  bool evaluate(Clock::steady_time_point now, int up, int unreachable);
  bool active() const { return active_; }
  std::uint64_t trips() const { return trips_; }
  int lost() const { return static_cast<int>(lost_.size()); }

 private:
  GuardRules rules_;
  std::map<std::string, Clock::steady_time_point> lost_;  // within the window
  bool active_ = false;
  std::uint64_t trips_ = 0;
};

}  // namespace kvmfleet
