#include "kvmfleet/agent/op_cache.hpp"

namespace kvmfleet::agent {

OpCache::OpCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

http::Response OpCache::run(const std::string& key, const std::string& fingerprint,
                            const std::function<http::Response()>& act) {
  std::unique_lock lk(mu_);
  for (;;) {
    auto it = entries_.find(key);
    if (it == entries_.end()) break;
    if (!it->second.done) {
      cv_.wait(lk);
      continue;
    }
    if (it->second.fingerprint != fingerprint)
      return http::error_response(
          conflict("op_id was already used for a different request", {{"op_id_key", key}}));
    return it->second.response;
  }
  entries_.emplace(key, Entry{false, fingerprint, {}, order_.end()});
  lk.unlock();

  http::Response response;
  try {
    response = act();
  } catch (...) {
    lk.lock();
    entries_.erase(key);
    cv_.notify_all();
    throw;
  }

  lk.lock();
  auto it = entries_.find(key);
  if (response.result_int() / 100 == 2) {
    it->second.done = true;
    it->second.response = response;
    it->second.order = order_.insert(order_.end(), key);
    while (order_.size() > capacity_) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
  } else {
    entries_.erase(it);
  }
  cv_.notify_all();
  return response;
}

std::size_t OpCache::size() const {
  std::lock_guard lk(mu_);
  return order_.size();
}

}  // namespace kvmfleet::agent
