#include "kvmfleet/common/clock.hpp"

#include <cstdio>
#include <ctime>

namespace kvmfleet {

struct Interrupt::State {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::uint64_t epoch = 0;
  bool raised = false;
};

Interrupt::Interrupt() : state_(std::make_shared<State>()) {}

void Interrupt::raise() {
  {
    std::lock_guard lk(state_->mu);
    state_->raised = true;
    ++state_->epoch;
  }
  state_->cv.notify_all();
}

bool Interrupt::raised() const {
  std::lock_guard lk(state_->mu);
  return state_->raised;
}

std::uint64_t Interrupt::epoch() const {
  std::lock_guard lk(state_->mu);
  return state_->epoch;
}

void Interrupt::poke() const {
  {
    std::lock_guard lk(state_->mu);
    ++state_->epoch;
  }
  state_->cv.notify_all();
}

void Interrupt::wait_for_change(std::uint64_t seen,
                                std::optional<std::chrono::steady_clock::time_point> until) const {
  std::unique_lock lk(state_->mu);
  auto changed = [&] { return state_->epoch != seen; };
  if (until)
    state_->cv.wait_until(lk, *until, changed);
  else
    state_->cv.wait(lk, changed);
}

bool Clock::sleep_until(time_point deadline, const Interrupt& interrupt) const {
  const auto left =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(deadline - now());
  return sleep_until_steady(steady_now() + left, interrupt);
}

bool Clock::sleep_for(std::chrono::milliseconds d, const Interrupt& interrupt) const {
  return sleep_until_steady(steady_now() + d, interrupt);
}

void Clock::sleep_for(std::chrono::milliseconds d) const {
  sleep_for(d, Interrupt{});
}

Clock::time_point SystemClock::now() const {
  return std::chrono::system_clock::now();
}

Clock::steady_time_point SystemClock::steady_now() const {
  return std::chrono::steady_clock::now();
}

bool SystemClock::sleep_until_steady(steady_time_point deadline, const Interrupt& interrupt) const {
  for (;;) {
    const std::uint64_t seen = interrupt.epoch();
    if (interrupt.raised()) return false;
    if (std::chrono::steady_clock::now() >= deadline) return true;
    interrupt.wait_for_change(seen, deadline);
  }
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

std::string format_time(Clock::time_point t) {
  const auto ms = to_unix_ms(t);
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::int64_t to_unix_ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

Clock::time_point from_unix_ms(std::int64_t ms) {
  return Clock::time_point{std::chrono::milliseconds{ms}};
}

}  // namespace kvmfleet

namespace kvmfleet {

std::optional<Clock::time_point> parse_time(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0;
  const std::string str(s);
  int consumed = 0;
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                  &consumed) != 6)
    return std::nullopt;
  std::string_view rest = s.substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    int digits = 0;
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      if (digits < 3) ms = ms * 10 + (rest.front() - '0');
      ++digits;
      rest.remove_prefix(1);
    }
    if (digits == 0) return std::nullopt;
    for (int i = digits; i < 3; ++i) ms *= 10;
  }
  if (rest != "Z") return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const std::time_t secs = timegm(&tm);
  return from_unix_ms(static_cast<std::int64_t>(secs) * 1000 + ms);
}

}  // namespace kvmfleet
