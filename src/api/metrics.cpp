#include "kvmfleet/api/metrics.hpp"

#include <array>
#include <sstream>

namespace kvmfleet::api {
namespace {

// Label values come from a closed set whatever the request says: a method name or a
// status outside it is counted as "other", so no client can add series.
constexpr std::array<std::string_view, 9> kMethods = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"};

// Every status the API answers with (http::status_for, the routes and the server).
constexpr std::array<unsigned, 18> kStatuses = {200, 201, 202, 204, 400, 401, 403, 404, 405,
                                                408, 409, 413, 415, 422, 500, 501, 503, 504};

}  // namespace

std::string_view Metrics::method_label(std::string_view method) {
  for (auto m : kMethods)
    if (m == method) return m;
  return "other";
}

std::string Metrics::status_label(unsigned status) {
  for (auto s : kStatuses)
    if (s == status) return std::to_string(s);
  return "other";
}

void Metrics::count_request(std::string_view method, unsigned status) {
  std::lock_guard lk(mu_);
  ++requests_[{std::string(method_label(method)), status_label(status)}];
}

std::string Metrics::render(const ClusterState& state) const {
  std::ostringstream out;
  out << "# HELP kvmfleet_http_requests_total API requests answered, by method and status.\n"
         "# TYPE kvmfleet_http_requests_total counter\n";
  {
    std::lock_guard lk(mu_);
    for (const auto& [key, n] : requests_)
      out << "kvmfleet_http_requests_total{method=\"" << key.first << "\",code=\"" << key.second
          << "\"} " << n << "\n";
  }
  state.read([&](const ClusterState::Data& d) {
    out << "# HELP kvmfleet_hosts Hosts by state.\n# TYPE kvmfleet_hosts gauge\n";
    for (auto s : {HostState::up, HostState::unreachable, HostState::down, HostState::fencing,
                   HostState::fenced}) {
      int n = 0;
      for (const auto& [_, h] : d.hosts) n += h.state == s;
      out << "kvmfleet_hosts{state=\"" << to_string(s) << "\"} " << n << "\n";
    }
    out << "# HELP kvmfleet_vms VMs by observed state.\n# TYPE kvmfleet_vms gauge\n";
    for (auto s : {VmState::pending, VmState::stopped, VmState::running, VmState::paused,
                   VmState::shutting_down, VmState::crashed, VmState::unknown}) {
      int n = 0;
      for (const auto& [_, v] : d.vms) n += v.state == s;
      out << "kvmfleet_vms{state=\"" << to_string(s) << "\"} " << n << "\n";
    }
    out << "# HELP kvmfleet_vms_suspected_double_run VMs that may be running on more than one "
           "host: seen running away from their recorded host while it had not said it stopped "
           "running them there. No operation acts on them until that is settled.\n"
           "# TYPE kvmfleet_vms_suspected_double_run gauge\n"
           "kvmfleet_vms_suspected_double_run "
        << d.double_runs().size() << "\n";
    out << "# HELP kvmfleet_operations Operations kept, by state.\n"
           "# TYPE kvmfleet_operations gauge\n";
    for (auto s : {OpState::pending, OpState::running, OpState::succeeded, OpState::failed,
                   OpState::cancelled}) {
      int n = 0;
      for (const auto& [_, o] : d.operations) n += o.state == s;
      out << "kvmfleet_operations{state=\"" << to_string(s) << "\"} " << n << "\n";
    }
    out << "# HELP kvmfleet_host_memory_allocated_mib Memory of the VMs placed on each host.\n"
           "# TYPE kvmfleet_host_memory_allocated_mib gauge\n";
    for (const auto& [name, h] : d.hosts) {
      const std::int64_t mem = d.usage_of(name).memory_mib;
      out << "kvmfleet_host_memory_allocated_mib{host=\"" << name << "\"} " << mem << "\n";
    }
    // Pool, volume and snapshot names are [a-z0-9-]: safe as label values.
    out << "# HELP kvmfleet_storage_pool_size_bytes Size of each shared storage pool's VG.\n"
           "# TYPE kvmfleet_storage_pool_size_bytes gauge\n";
    for (const auto& [name, p] : d.pools)
      out << "kvmfleet_storage_pool_size_bytes{pool=\"" << name << "\"} " << p.size_bytes << "\n";
    out << "# HELP kvmfleet_storage_pool_free_bytes Free space of each shared storage pool's VG.\n"
           "# TYPE kvmfleet_storage_pool_free_bytes gauge\n";
    for (const auto& [name, p] : d.pools)
      out << "kvmfleet_storage_pool_free_bytes{pool=\"" << name << "\"} " << p.free_bytes << "\n";
    out << "# HELP kvmfleet_snapshot_fill_percent COW fill of each volume snapshot, as last read.\n"
           "# TYPE kvmfleet_snapshot_fill_percent gauge\n";
    for (const auto& [_, v] : d.volumes)
      for (const auto& sn : v.snapshots)
        if (sn.fill_percent)
          out << "kvmfleet_snapshot_fill_percent{volume=\"" << v.name << "\",snapshot=\"" << sn.name
              << "\"} " << *sn.fill_percent << "\n";
    return 0;
  });
  for (const auto& source : sources_) out << source();
  return out.str();
}

void Metrics::add_source(std::function<std::string()> source) {
  std::lock_guard lk(mu_);
  sources_.push_back(std::move(source));
}

void Metrics::add_health_source(std::string name, std::function<nlohmann::json()> source) {
  std::lock_guard lk(mu_);
  health_sources_.emplace_back(std::move(name), std::move(source));
}

nlohmann::json Metrics::health_details() const {
  auto details = nlohmann::json::object();
  for (const auto& [name, source] : health_sources_) details[name] = source();
  return details;
}

}  // namespace kvmfleet::api
