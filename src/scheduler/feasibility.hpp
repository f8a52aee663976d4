#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kvmfleet/scheduler/scheduler.hpp"

namespace kvmfleet::scheduler {

// One feasibility check. It returns why it rejects the host, or nothing when the
// host passes; the text is built only on rejection, so passing costs no allocation.
struct Filter {
  std::string_view name;
  std::optional<std::string> (*check)(const HostView& host, const Request& request,
                                      const Config& config);
};

// The chain, in the order hosts are judged: cheap and static checks first, so the
// reason a user sees is the most basic one ("host is down" before "no memory").
std::span<const Filter> filter_chain();

struct Rejection {
  std::string_view filter;
  std::string reason;
};

// Whether the host may use every storage pool the request's disks live in.
bool reaches_pools(const HostView& host, const Request& request);

// Whether the host passes the migration filters (always, for a request that moves
// nothing).
bool takes_migration(const HostView& host, const Request& request);

// The first filter of the chain that rejects `host`, if any.
std::optional<Rejection> first_rejection(const HostView& host, const Request& request,
                                         const Config& config);

}  // namespace kvmfleet::scheduler
