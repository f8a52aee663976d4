#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace kvmfleet::api {

// Serialized bodies of list pages, reused while the data they were made from is
// unchanged: `version` is what the data was at (e.g. ClusterState::Data::vms_version),
// `key` names the page (its query). A page made from older data is never served.
// Bounded: when full, pages of older versions go first, then everything.
class PageCache {
 public:
  explicit PageCache(std::size_t capacity = 256) : capacity_(capacity) {}

  std::optional<std::string> find(const std::string& key, std::uint64_t version) const {
    std::lock_guard lk(mu_);
    auto it = pages_.find(key);
    if (it == pages_.end() || it->second.version != version) return std::nullopt;
    return it->second.body;
  }

  // A page made from older data than the one kept is dropped (pages are built outside
  // the state's lock, so two readers may finish out of order).
  void put(const std::string& key, std::uint64_t version, std::string body) {
    std::lock_guard lk(mu_);
    if (auto it = pages_.find(key); it != pages_.end() && it->second.version > version) return;
    if (pages_.size() >= capacity_ && !pages_.count(key)) {
      std::erase_if(pages_, [&](const auto& p) { return p.second.version != version; });
      if (pages_.size() >= capacity_) pages_.clear();
    }
    pages_.insert_or_assign(key, Page{version, std::move(body)});
  }

 private:
  struct Page {
    std::uint64_t version;
    std::string body;
  };
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Page> pages_;
};

}  // namespace kvmfleet::api
