#pragma once

// Per-domain serialization: two requests for one domain never interleave, requests for
// different domains run in parallel.

#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kvmfleet::agent::libvirt {

class DomainLocks {
 public:
  // The domain's mutex; it lives while someone holds it.
  std::shared_ptr<std::mutex> get(const std::string& uuid) {
    std::lock_guard lk(mu_);
    if (locks_.size() > 1024) {
      for (auto it = locks_.begin(); it != locks_.end();) {
        it = it->second.expired() ? locks_.erase(it) : std::next(it);
      }
    }
    auto& weak = locks_[uuid];
    auto m = weak.lock();
    if (!m) {
      m = std::make_shared<std::mutex>();
      weak = m;
    }
    return m;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<std::mutex>> locks_;
};

}  // namespace kvmfleet::agent::libvirt
