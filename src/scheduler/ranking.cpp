#include "ranking.hpp"

#include <algorithm>
#include <limits>

#include "capacity.hpp"

namespace kvmfleet::scheduler {
namespace {

// The free share of a capacity, in 1/kScoreScale steps, clamped to [0, kScoreScale].
std::int64_t free_share(std::int64_t free, std::int64_t allocatable) {
  if (allocatable <= 0) return 0;
  free = std::clamp<std::int64_t>(free, 0, allocatable);
  if (free <= std::numeric_limits<std::int64_t>::max() / kScoreScale)
    return free * kScoreScale / allocatable;
  // Only absurd capacities get here; overflowing instead would silently reorder hosts.
  return static_cast<std::int64_t>(static_cast<long double>(free) * kScoreScale /
                                   static_cast<long double>(allocatable));
}

}  // namespace

Rank rank_host(const HostView& host, const Config& config) {
  const auto memory_free =
      free_share(free_memory_mib(host, config), allocatable_memory_mib(host, config));
  const auto vcpus_free = free_share(free_vcpus(host, config), allocatable_vcpus(host, config));
  switch (config.rank) {
    case RankPolicy::spread:
      // The emptiest host, then the one with the fewest vCPUs handed out.
      return {memory_free, vcpus_free};
    case RankPolicy::pack:
      // The fullest host that still fits (feasibility ran first), keeping empty
      // hosts empty for large VMs and for maintenance.
      return {kScoreScale - memory_free, kScoreScale - vcpus_free};
  }
  return {};
}

void add_scores(Verdict& verdict, const Rank& rank, const Config& config) {
  const char* memory_name = config.rank == RankPolicy::pack ? "pack" : "spread";
  const char* vcpus_name = config.rank == RankPolicy::pack ? "pack.vcpus" : "spread.vcpus";
  constexpr double scale = static_cast<double>(kScoreScale);
  // The tie-break is weighted below the memory score's smallest step, so the sum
  // keeps the lexicographic order of Rank::value().
  const double memory = static_cast<double>(rank.memory) / scale;
  const double vcpus = static_cast<double>(rank.vcpus) / (scale * (scale + 1));
  verdict.scores[memory_name] = memory;
  verdict.scores[vcpus_name] = vcpus;
  verdict.total = memory + vcpus;
}

}  // namespace kvmfleet::scheduler
