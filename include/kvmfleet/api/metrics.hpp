#pragma once

#include "kvmfleet/controller/cluster_state.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kvmfleet::api {

// Request counters kept by the API; cluster gauges are read from state at scrape
// time, so they can never drift from it.
class Metrics {
 public:
  void count_request(std::string_view method, unsigned status);
  // Prometheus text exposition format 0.0.4.
  std::string render(const ClusterState& state) const;
  // More exposition text, produced at scrape time by a part of the controller that
  // the API does not know (e.g. the metadata writer). Register before serving.
  void add_source(std::function<std::string()> source);

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, unsigned>, std::uint64_t> requests_;
  std::vector<std::function<std::string()>> sources_;
};

}  // namespace kvmfleet::api
