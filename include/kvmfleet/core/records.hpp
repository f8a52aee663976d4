#pragma once

// A map of records shared between copies. ClusterState keeps two views of the cluster:
// what readers see (durable) and what writers plan against (durable plus queued). Both
// hold the same records, so a record is stored once, immutable, behind a shared pointer,
// and each view's map only points at it: copying a view copies pointers, and a write
// replaces the pointer in each view to one new record. Read access looks like a map of
// values (find, at, iteration with `[key, record]`); records change only through put
// and erase, which ClusterState::Data::apply alone calls.

#include <cstddef>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace kvmfleet {

template <typename V, template <typename...> class Map>
class Records {
  using Inner = Map<std::string, std::shared_ptr<const V>>;
  using InnerIt = typename Inner::const_iterator;

 public:
  // What an iterator yields: the key and the record, both by reference.
  struct Entry {
    const std::string& first;
    const V& second;
  };

  class const_iterator {
   public:
    using iterator_category = typename std::iterator_traits<InnerIt>::iterator_category;
    using value_type = Entry;
    using difference_type = std::ptrdiff_t;
    using reference = Entry;
    struct pointer {
      Entry e;
      const Entry* operator->() const { return &e; }
    };

    const_iterator() = default;
    explicit const_iterator(InnerIt it) : it_(it) {}
    Entry operator*() const { return {it_->first, *it_->second}; }
    pointer operator->() const { return {**this}; }
    const_iterator& operator++() {
      ++it_;
      return *this;
    }
    const_iterator operator++(int) {
      auto old = *this;
      ++it_;
      return old;
    }
    const_iterator& operator--() {
      --it_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return it_ == o.it_; }
    InnerIt inner() const { return it_; }

   private:
    InnerIt it_;
  };
  using iterator = const_iterator;

  const_iterator begin() const { return const_iterator(map_.begin()); }
  const_iterator end() const { return const_iterator(map_.end()); }
  const_iterator find(const std::string& key) const { return const_iterator(map_.find(key)); }
  const_iterator lower_bound(const std::string& key) const requires requires(const Inner& m) {
    m.lower_bound(key);
  }
  { return const_iterator(map_.lower_bound(key)); }
  const_iterator upper_bound(const std::string& key) const requires requires(const Inner& m) {
    m.upper_bound(key);
  }
  { return const_iterator(map_.upper_bound(key)); }
  const V& at(const std::string& key) const {
    auto it = map_.find(key);
    if (it == map_.end()) throw std::out_of_range("no record " + key);
    return *it->second;
  }
  std::size_t count(const std::string& key) const { return map_.count(key); }
  bool contains(const std::string& key) const { return map_.count(key) > 0; }
  std::size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }

  // The record under `key`, or nullptr.
  const V* get(const std::string& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second.get();
  }
  // The shared record (for another view to hold the same one).
  std::shared_ptr<const V> shared(const std::string& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }

  // For ClusterState::Data::apply.
  void put(const std::string& key, std::shared_ptr<const V> record) {
    map_.insert_or_assign(key, std::move(record));
  }
  void erase(const std::string& key) { map_.erase(key); }
  void clear() { map_.clear(); }

 private:
  Inner map_;
};

}  // namespace kvmfleet
