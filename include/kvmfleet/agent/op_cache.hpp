#pragma once

// Remembers the answers to recent mutating requests by operation id, so that a
// controller retrying a request (after a timeout, a restart...) gets the first answer
// instead of acting twice.

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kvmfleet/http/types.hpp"

namespace kvmfleet::agent {

class OpCache {
 public:
  explicit OpCache(std::size_t capacity = 1024);

  // The first call for `key` runs `act`; a successful (2xx) answer is remembered and
  // returned to every later call with that key without running `act` again. A call
  // while the first is still running waits for it. Failures are not remembered, so a
  // retry after one acts again. A key reused with another `fingerprint` (a different
  // request body) is answered with a conflict.
  http::Response run(const std::string& key, const std::string& fingerprint,
                     const std::function<http::Response()>& act);

  std::size_t size() const;

 private:
  struct Entry {
    bool done = false;
    std::string fingerprint;
    http::Response response;
    std::list<std::string>::iterator order;
  };

  std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> order_;  // completed keys, oldest first
};

}  // namespace kvmfleet::agent
