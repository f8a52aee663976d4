#pragma once

// The double of Clock (include/kvmfleet/common/clock.hpp): time moves only when a test
// says so, and every sleep on it wakes when it has moved far enough. advance() moves
// both readings; jump() moves the wall clock alone, as NTP or an operator does.

#include "kvmfleet/common/clock.hpp"

#include <algorithm>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvmfleet {

class ManualClock final : public Clock {
 public:
  explicit ManualClock(time_point start = time_point{std::chrono::seconds{1'700'000'000}})
      : now_(start) {}

  time_point now() const override {
    std::lock_guard lk(mu_);
    return now_;
  }

  steady_time_point steady_now() const override {
    std::lock_guard lk(mu_);
    return steady_now_;
  }

  bool sleep_until_steady(steady_time_point deadline, const Interrupt& interrupt) const override {
    {
      std::lock_guard lk(mu_);
      sleepers_.push_back(interrupt);
    }
    bool reached = false;
    for (;;) {
      const std::uint64_t seen = interrupt.epoch();
      if (interrupt.raised()) break;
      if (steady_now() >= deadline) {
        reached = true;
        break;
      }
      interrupt.wait_for_change(seen, std::nullopt);
    }
    std::lock_guard lk(mu_);
    // One entry of this sleep goes (copies share their state: any equal one will do).
    sleepers_.erase(std::find_if(sleepers_.begin(), sleepers_.end(),
                                 [&](const Interrupt& i) { return i.same_as(interrupt); }));
    return reached;
  }

  void advance(std::chrono::milliseconds d) {
    std::vector<Interrupt> wake;
    {
      std::lock_guard lk(mu_);
      now_ += d;
      steady_now_ += d;
      wake = sleepers_;
    }
    for (const auto& i : wake) i.poke();
  }

  // Steps the wall clock by `d` (either way); the monotonic reading, and so every
  // wait, stays where it is.
  void jump(std::chrono::milliseconds d) {
    std::lock_guard lk(mu_);
    now_ += d;
  }

  // How many threads sleep on this clock now.
  std::size_t sleepers() const {
    std::lock_guard lk(mu_);
    return sleepers_.size();
  }

  // Moves time on in `step`s, giving the threads that woke a moment of real time
  // after each, until `done` holds; false if it still does not after `limit`.
  bool advance_until(const std::function<bool()>& done,
                     std::chrono::milliseconds step = std::chrono::milliseconds{100},
                     std::chrono::milliseconds limit = std::chrono::minutes{10}) {
    for (std::chrono::milliseconds moved{0}; !done(); moved += step) {
      if (moved >= limit) return false;
      advance(step);
      std::this_thread::sleep_for(std::chrono::microseconds{200});
    }
    return true;
  }

 private:
  mutable std::mutex mu_;
  time_point now_;
  steady_time_point steady_now_{std::chrono::hours{1}};
  mutable std::vector<Interrupt> sleepers_;
};

}  // namespace kvmfleet
