#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>

namespace kvmfleet {

// Time is injected so that timeouts, heartbeats and backoff can be tested in
// simulated time.
class Clock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::system_clock::now(); }
  static SystemClock& instance();
};

// A clock that only moves when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(time_point start = time_point{std::chrono::seconds{1'700'000'000}})
      : now_(start) {}
  time_point now() const override {
    std::lock_guard lk(mu_);
    return now_;
  }
  void advance(std::chrono::milliseconds d) {
    std::lock_guard lk(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  time_point now_;
};

// RFC 3339 UTC with milliseconds, e.g. 2026-11-24T17:10:44.123Z.
std::string format_time(Clock::time_point t);
// Parses what format_time writes (the milliseconds are optional); nullopt otherwise.
std::optional<Clock::time_point> parse_time(std::string_view s);
// Milliseconds since the Unix epoch, for the store.
std::int64_t to_unix_ms(Clock::time_point t);
Clock::time_point from_unix_ms(std::int64_t ms);

}  // namespace kvmfleet
