#pragma once

#include <cstdint>

#include "kvmfleet/scheduler/scheduler.hpp"

namespace kvmfleet::scheduler {

// Scores are fixed-point fractions (1/kScoreScale steps) so that place() and
// place_all() compare the very same integers and can never disagree over rounding.
inline constexpr std::int64_t kScoreScale = 10'000;

// A host's standing under the configured policy. Scores judge the host as it stands
// (not as it would be after this VM), so one ordering of hosts serves requests of
// every size; that is what lets place_all keep an index instead of rescanning.
struct Rank {
  std::int64_t memory = 0;  // 0..kScoreScale, the memory ranker's score
  std::int64_t vcpus = 0;   // 0..kScoreScale, the vCPU tie-break's score
  // Orders hosts: memory decides, vCPUs only break ties. Higher is better.
  std::int64_t value() const { return memory * (kScoreScale + 1) + vcpus; }
};

Rank rank_host(const HostView& host, const Config& config);

// Fills the verdict's named scores and their total. The total orders hosts exactly
// as Rank::value() does.
void add_scores(Verdict& verdict, const Rank& rank, const Config& config);

}  // namespace kvmfleet::scheduler
