#pragma once

#include <condition_variable>
#include <mutex>

namespace kvmfleet::doubles {

// A gate for doubles that stand for something which can hang (a store's fsync, a hung
// NFS share): while held, every call that passes through it waits until release().
class Gate {
 public:
  void hold() {
    std::lock_guard lk(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lk(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  // Calls blocked in the gate now.
  int waiting() const {
    std::lock_guard lk(mu_);
    return waiting_;
  }
  // Blocks until at least `n` calls wait in the gate.
  void wait_for_waiting(int n) const {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return waiting_ >= n; });
  }
  // Called by the double: returns once the gate is open.
  void pass() {
    std::unique_lock lk(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return !held_; });
    --waiting_;
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

}  // namespace kvmfleet::doubles
