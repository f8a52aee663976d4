#pragma once

#include "kvmfleet/core/cluster_state.hpp"

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
  // Counts under closed label sets: method_label() and status_label().
  void count_request(std::string_view method, unsigned status);
  // The label for a request's method: a standard method's name, else "other".
  static std::string_view method_label(std::string_view method);
  // The label for an answer's status: one the API answers with, else "other".
  static std::string status_label(unsigned status);
  // Prometheus text exposition format 0.0.4.
  std::string render(const ClusterState& state) const;
  // More exposition text, produced at scrape time by a part of the controller that
  // the API does not know (e.g. the metadata writer). Register before serving.
  void add_source(std::function<std::string()> source);
  // Named JSON objects for the details of /v1/healthz, produced at request time the
  // same way (e.g. {"metadata": {"healthy": true, "lag_seconds": 0, ...}}).
  void add_health_source(std::string name, std::function<nlohmann::json()> source);
  nlohmann::json health_details() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> requests_;
  std::vector<std::function<std::string()>> sources_;
  std::vector<std::pair<std::string, std::function<nlohmann::json()>>> health_sources_;
};

}  // namespace kvmfleet::api
