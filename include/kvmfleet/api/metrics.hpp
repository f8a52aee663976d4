#pragma once

#include "kvmfleet/controller/cluster_state.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <string>

namespace kvmfleet::api {

// Request counters kept by the API; cluster gauges are read from state at scrape
// time, so they can never drift from it.
class Metrics {
 public:
  void count_request(std::string_view method, unsigned status);
  // Prometheus text exposition format 0.0.4.
  std::string render(const ClusterState& state) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, unsigned>, std::uint64_t> requests_;
};

}  // namespace kvmfleet::api
