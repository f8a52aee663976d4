#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace kvmfleet {

// A flag that ends waits early: a runner that stops, an operation that is cancelled.
// Copies share the flag. Raising is for good; it wakes every wait on it, present and
// future.
class Interrupt {
 public:
  Interrupt();
  void raise();
  bool raised() const;
  // Whether `other` is a copy of this flag.
  bool same_as(const Interrupt& other) const { return state_ == other.state_; }

  // For clocks. A count that moves on every raise() and poke(): a waiter reads it,
  // looks at the time, then waits for it to move, so no wakeup is lost in between.
  std::uint64_t epoch() const;
  // Wakes the waits on this flag without raising it, so they look at the time again.
  void poke() const;
  // Waits (in real time) until the epoch differs from `seen` or `until` passes.
  void wait_for_change(std::uint64_t seen,
                       std::optional<std::chrono::steady_clock::time_point> until) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Time is injected so that timeouts, heartbeats, polls and backoff can be tested in
// simulated time: every wait of the controller's and the agent's logic goes through
// a Clock, never through std::this_thread or a condition variable's own timeout.
//
// A Clock has two readings. now() is wall-clock time, for the timestamps that are
// stored, shown or compared with other machines'. steady_now() is monotonic: elapsed
// time and the deadlines of waits are measured on it, so that a step of the wall clock
// (NTP, an operator) can neither stretch nor cut a timeout, a poll or a backoff.
class Clock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  using duration = std::chrono::system_clock::duration;
  using steady_time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
  virtual steady_time_point steady_now() const = 0;
  // Blocks until the monotonic reading reaches `deadline` or `interrupt` is raised,
  // whichever is first. Returns false when interrupted.
  virtual bool sleep_until_steady(steady_time_point deadline, const Interrupt& interrupt) const = 0;

  // Until the wall clock reaches `deadline`: the time left then is waited for on the
  // monotonic reading. Returns false when interrupted.
  bool sleep_until(time_point deadline, const Interrupt& interrupt) const;
  bool sleep_for(std::chrono::milliseconds d, const Interrupt& interrupt) const;
  // A wait that nothing interrupts.
  void sleep_for(std::chrono::milliseconds d) const;
};

// The system's clocks: system_clock for now(), steady_clock for steady_now() and waits.
class SystemClock final : public Clock {
 public:
  time_point now() const override;
  steady_time_point steady_now() const override;
  bool sleep_until_steady(steady_time_point deadline, const Interrupt& interrupt) const override;
  static SystemClock& instance();
};

// RFC 3339 UTC with milliseconds, e.g. 2026-11-24T17:10:44.123Z.
std::string format_time(Clock::time_point t);
// Parses what format_time writes (the milliseconds are optional); nullopt otherwise.
std::optional<Clock::time_point> parse_time(std::string_view s);
// Milliseconds since the Unix epoch, for the store.
std::int64_t to_unix_ms(Clock::time_point t);
Clock::time_point from_unix_ms(std::int64_t ms);

}  // namespace kvmfleet
