// network.create: makes a new network usable on each host that was up when it was
// created, one agent call per host, and records each host's result.
#include "kvmfleet/network/network_operations.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/network/network_params.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {
namespace {

Status save_host_status(OpContext& ctx, const std::string& network, const std::string& host,
                        const NetworkHostStatus& s) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Network* cur = d.find_network(network);
    if (!cur) return not_found("network no longer exists", {{"network", network}});
    Network next = *cur;
    next.hosts[host] = s;
    b.put_networks.push_back(std::move(next));
    return {};
  });
}

// A host that fails keeps its error in the network and in the result; the others go
// on: a network is cluster-wide, and the scheduler only uses the hosts it works on.
Status create_network(OpContext& ctx, const NetworkCreateParams& p, NetworkCreateResult& r) {
  auto network = ctx.state().network(ctx.op().target_id);
  if (!network) return not_found("network no longer exists", {{"network", ctx.op().target_id}});
  r.network = network->name;
  std::map<std::string, std::string> outcome =
      r.hosts.value_or(std::map<std::string, std::string>{});
  int done = 0;
  for (const auto& name : p.hosts) {
    ctx.progress(static_cast<int>(100 * done / std::max<std::size_t>(1, p.hosts.size())),
                 "making the network usable on " + name);
    ++done;
    NetworkHostStatus s;
    s.checked_at = ctx.clock().now();
    auto host = ctx.state().host(name);
    if (!host) {
      s.error = "host is no longer registered";
    } else if (host->state != HostState::up) {
      s.error = "host is " + std::string(to_string(host->state));
    } else {
      auto made = ctx.with_retry([&] {
        return ctx.agents().network_ensure(*host, ctx.step_id("ensure-" + name), *network);
      });
      if (made) {
        s.ready = true;
        if (!made->empty())
          spdlog::info("network {}: made {} link(s) on {}", network->name, made->size(), name);
      } else {
        s.error = made.error().brief();
      }
    }
    outcome[name] = s.ready ? "ready" : s.error;
    if (host)
      if (auto st = save_host_status(ctx, network->name, name, s); !st) return st;
  }
  int ready = 0;
  for (const auto& [_, v] : outcome) ready += v == "ready";
  r.hosts = outcome;
  r.hosts_ready = ready;
  r.hosts_total = static_cast<int>(outcome.size());
  return {};
}

}  // namespace

void register_network_operations(OperationRunner& runner) {
  register_operation(runner, create_network);
  register_vm_nic_operations(runner);
}

}  // namespace kvmfleet
