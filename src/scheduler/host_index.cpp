#include "host_index.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>

#include "capacity.hpp"
#include "ranking.hpp"

namespace kvmfleet::scheduler {
namespace {

// Keys pack the rank above the leaf position so that equal ranks fall to the host
// that comes first by name, matching place().
constexpr std::int64_t kPositionSpan = std::int64_t{1} << 31;

constexpr std::int64_t kNoFree = std::numeric_limits<std::int64_t>::min();

// Free-memory thresholds in MiB, an octave apart from 128 MiB to 16 TiB, after "any".
// A request reads the largest threshold not above it, so the only hosts that its
// bound still counts but that cannot fit have less than twice the request free.
// (Half-octave steps prune a little more but cost more per update; measured slower.)
constexpr std::size_t kThresholds = 19;
constexpr std::array<std::int64_t, kThresholds> make_thresholds() {
  std::array<std::int64_t, kThresholds> t{};
  t[0] = kNoFree;
  for (std::size_t j = 1; j < kThresholds; ++j) t[j] = std::int64_t{128} << (j - 1);
  return t;
}
constexpr auto kThreshold = make_thresholds();

std::size_t threshold_for(std::int64_t memory_mib) {
  const auto it = std::upper_bound(kThreshold.begin(), kThreshold.end(), memory_mib);
  return static_cast<std::size_t>(it - kThreshold.begin()) - 1;
}

}  // namespace

HostIndex::HostIndex(const std::vector<HostView>& hosts, const Config& config)
    : hosts_(hosts), config_(config), hidden_(hosts.size(), 0) {
  host_at_.resize(hosts.size());
  std::iota(host_at_.begin(), host_at_.end(), std::size_t{0});
  std::stable_sort(host_at_.begin(), host_at_.end(),
                   [&](std::size_t a, std::size_t b) { return hosts[a].name < hosts[b].name; });
  position_of_.resize(hosts.size());
  for (std::size_t p = 0; p < host_at_.size(); ++p) position_of_[host_at_[p]] = p;

  while (leaves_ < hosts.size()) leaves_ *= 2;
  free_memory_.assign(2 * leaves_, kNoFree);
  free_vcpus_.assign(2 * leaves_, kNoFree);
  best_.assign(kThresholds * 2 * leaves_, -1);
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    const HostView& h = hosts[i];
    if (!statically_usable(h)) continue;
    const std::size_t leaf = leaves_ + position_of_[i];
    free_memory_[leaf] = free_memory_mib(h, config_);
    free_vcpus_[leaf] = free_vcpus(h, config_);
    const auto k = key(i);
    for (std::size_t t = 0; t < kThresholds && free_memory_[leaf] >= kThreshold[t]; ++t)
      best_[leaf * kThresholds + t] = k;
  }
  for (std::size_t n = leaves_ - 1; n >= 1; --n) pull(n);
}

std::int64_t HostIndex::key(std::size_t i) const {
  const auto position = static_cast<std::int64_t>(position_of_[i]);
  return rank_host(hosts_[i], config_).value() * kPositionSpan + (kPositionSpan - 1 - position);
}

std::int64_t HostIndex::best_at(std::size_t node, std::size_t threshold) const {
  return best_[node * kThresholds + threshold];
}

void HostIndex::pull(std::size_t n) {
  const std::size_t l = 2 * n;
  const std::size_t r = l + 1;
  free_memory_[n] = std::max(free_memory_[l], free_memory_[r]);
  free_vcpus_[n] = std::max(free_vcpus_[l], free_vcpus_[r]);
  std::int64_t* out = &best_[n * kThresholds];
  const std::int64_t* a = &best_[l * kThresholds];
  const std::int64_t* b = &best_[r * kThresholds];
  for (std::size_t t = 0; t < kThresholds; ++t) out[t] = std::max(a[t], b[t]);
}

void HostIndex::set_leaf(std::size_t position, std::int64_t free_memory, std::int64_t free_vcpus,
                         std::int64_t key) {
  const std::size_t leaf = leaves_ + position;
  free_memory_[leaf] = free_memory;
  free_vcpus_[leaf] = free_vcpus;
  for (std::size_t t = 0; t < kThresholds; ++t)
    best_[leaf * kThresholds + t] = free_memory >= kThreshold[t] ? key : -1;
  for (std::size_t n = leaf / 2; n >= 1; n /= 2) pull(n);
}

void HostIndex::refresh(std::size_t i) {
  const HostView& h = hosts_[i];
  if (!statically_usable(h)) {
    set_leaf(position_of_[i], kNoFree, kNoFree, -1);
    return;
  }
  set_leaf(position_of_[i], free_memory_mib(h, config_), free_vcpus(h, config_), key(i));
}

std::size_t HostIndex::best_fit(std::int64_t memory_mib, std::int64_t vcpus) const {
  if (hosts_.empty()) return hosts_.size();
  Search s{memory_mib, vcpus, threshold_for(memory_mib), -1, hosts_.size()};
  search(1, s);
  return s.found;
}

void HostIndex::search(std::size_t node, Search& s) const {
  if (best_at(node, s.threshold) <= s.best || free_memory_[node] < s.memory_mib ||
      free_vcpus_[node] < s.vcpus)
    return;
  if (node >= leaves_) {
    // The leaf's own figures passed, so this host fits unless the request hid it.
    const std::size_t host = host_at_[node - leaves_];
    if (hidden_[host]) return;
    s.best = best_at(node, s.threshold);
    s.found = host;
    return;
  }
  // The child holding the better key first: if its best host fits, the other child
  // is pruned without a look.
  const std::size_t l = 2 * node;
  const std::size_t r = l + 1;
  const std::size_t first = best_at(l, s.threshold) >= best_at(r, s.threshold) ? l : r;
  search(first, s);
  search(first == l ? r : l, s);
}

}  // namespace kvmfleet::scheduler
