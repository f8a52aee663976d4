#pragma once

#include <cstdint>
#include <vector>

#include "kvmfleet/scheduler/scheduler.hpp"

namespace kvmfleet::scheduler {

// Finds the best-ranked host with enough free memory and vCPUs for place_all, without
// looking at most hosts. A tournament tree over the hosts in name order: each node
// keeps the most free memory and vCPUs below it and, per memory threshold, the best
// key among the hosts below it with at least that much free. A search reads the
// threshold just under the request, so hosts far too full to fit (pack's favourites)
// do not hold up the bound, and it skips every subtree that cannot fit or cannot beat
// the best host found so far. The answer is exactly the one a full scan with the same
// filters and ranking gives.
class HostIndex {
 public:
  // `hosts` must outlive the index; call refresh() after changing one of them.
  HostIndex(const std::vector<HostView>& hosts, const Config& config);

  // Re-reads host `i` after its allocations changed.
  void refresh(std::size_t i);
  // Hides host `i` from best_fit until show(i); for per-request exclusions, which
  // touch few hosts, so they cost a flag instead of a tree update.
  void hide(std::size_t i) { hidden_[i] = 1; }
  void show(std::size_t i) { hidden_[i] = 0; }

  // The best usable host (up, schedulable, not hidden) with at least this much free;
  // hosts.size() when none. Ties go to the smaller name, then the earlier host.
  std::size_t best_fit(std::int64_t memory_mib, std::int64_t vcpus) const;

  // The ordering key best_fit uses for host `i` as it stands (higher is better).
  std::int64_t key(std::size_t i) const;

 private:
  struct Search {
    std::int64_t memory_mib;
    std::int64_t vcpus;
    std::size_t threshold;  // the largest threshold not above memory_mib
    std::int64_t best = -1;
    std::size_t found;
  };

  void set_leaf(std::size_t position, std::int64_t free_memory, std::int64_t free_vcpus,
                std::int64_t key);
  void pull(std::size_t node);
  void search(std::size_t node, Search& s) const;

  const std::vector<HostView>& hosts_;
  Config config_;
  std::vector<std::size_t> position_of_;  // host index → leaf position (name order)
  std::vector<std::size_t> host_at_;      // leaf position → host index
  std::vector<std::uint8_t> hidden_;      // by host index
  std::size_t leaves_ = 1;                // a power of two ≥ hosts
  // Nodes in 1-based heap layout, leaves at [leaves_, 2·leaves_). Unusable hosts and
  // padding hold INT64_MIN free and key -1.
  std::vector<std::int64_t> free_memory_;
  std::vector<std::int64_t> free_vcpus_;
  // best_[node · thresholds + t]: the best key below `node` among hosts with at least
  // threshold t free. Node-major, so that an update rewrites contiguous memory.
  std::vector<std::int64_t> best_;
  std::int64_t best_at(std::size_t node, std::size_t threshold) const;
};

}  // namespace kvmfleet::scheduler
