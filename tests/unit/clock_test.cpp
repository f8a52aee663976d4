#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace kvmfleet {
namespace {

using namespace std::chrono_literals;

TEST(ManualClock, SleepEndsWhenTimeReachesTheDeadline) {
  ManualClock clock;
  std::atomic<int> result{-1};
  std::thread sleeper([&] { result = clock.sleep_for(5s, Interrupt{}) ? 1 : 0; });
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.advance(4s);
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(result.load(), -1);  // not yet: 1 s of simulated time is left
  clock.advance(1s);
  sleeper.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(clock.sleepers(), 0u);
}

TEST(ManualClock, RaisedInterruptEndsSleepWithoutTimeMoving) {
  ManualClock clock;
  Interrupt stop;
  std::atomic<int> result{-1};
  std::thread sleeper([&] { result = clock.sleep_for(1h, stop) ? 1 : 0; });
  while (clock.sleepers() == 0) std::this_thread::yield();
  stop.raise();
  sleeper.join();
  EXPECT_EQ(result.load(), 0);
  // Raised for good: a later sleep on it returns at once.
  EXPECT_FALSE(clock.sleep_for(1h, stop));
}

TEST(ManualClock, AdvanceUntilMovesTimeUntilTheConditionHolds) {
  ManualClock clock;
  const auto start = clock.now();
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.sleep_for(30s);
    woke = true;
  });
  EXPECT_TRUE(clock.advance_until([&] { return woke.load(); }, 1s));
  sleeper.join();
  EXPECT_GE(clock.now() - start, 30s);
  EXPECT_FALSE(clock.advance_until([] { return false; }, 1s, 3s));
}

TEST(ManualClock, AWallClockStepMovesNeitherTheMonotonicReadingNorAWait) {
  ManualClock clock;
  const auto wall = clock.now();
  const auto steady = clock.steady_now();
  std::atomic<int> result{-1};
  std::thread sleeper([&] { result = clock.sleep_for(5s, Interrupt{}) ? 1 : 0; });
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.jump(1h);
  clock.jump(-3h);
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(result.load(), -1);
  EXPECT_EQ(clock.now() - wall, -2h);
  EXPECT_EQ(clock.steady_now(), steady);
  clock.advance(5s);
  sleeper.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(clock.now() - wall, -2h + 5s);
  EXPECT_EQ(clock.steady_now() - steady, 5s);
}

TEST(ManualClock, SleepUntilAWallDeadlineWaitsForTheTimeLeftThen) {
  ManualClock clock;
  std::atomic<int> result{-1};
  const auto deadline = clock.now() + 10s;
  std::thread sleeper([&] { result = clock.sleep_until(deadline, Interrupt{}) ? 1 : 0; });
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.advance(9s);
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(result.load(), -1);
  clock.advance(1s);
  sleeper.join();
  EXPECT_EQ(result.load(), 1);
  // A deadline already passed returns at once.
  EXPECT_TRUE(clock.sleep_until(clock.now() - 1s, Interrupt{}));
}

TEST(SystemClock, TheMonotonicReadingMovesWithRealTime) {
  auto& clock = SystemClock::instance();
  const auto t0 = clock.steady_now();
  std::this_thread::sleep_for(5ms);
  EXPECT_GE(clock.steady_now() - t0, 5ms);
}

TEST(SystemClock, SleepsInRealTimeAndStopsWhenInterrupted) {
  auto& clock = SystemClock::instance();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(clock.sleep_for(20ms, Interrupt{}));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  Interrupt stop;
  std::thread raiser([&] {
    std::this_thread::sleep_for(10ms);
    stop.raise();
  });
  EXPECT_FALSE(clock.sleep_for(1h, stop));
  raiser.join();
}

}  // namespace
}  // namespace kvmfleet
