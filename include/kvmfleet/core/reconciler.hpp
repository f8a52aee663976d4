#pragma once

#include "kvmfleet/core/cluster_state.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace kvmfleet {

// Level-triggered reconciliation, as pure functions over the controller's data:
// each returns the writes that bring recorded state in line with what was observed.
// Observed changes are reflected, never fought: a VM stopped or started outside
// kvmfleet takes that as its new desired state; a VM with an operation in flight is
// left to that operation.
//
// `started_at` is when this controller process started. Host records loaded from the
// store carry what the hosts reported to a previous process; a VM may have moved while
// no controller watched. So a restarted controller acts on no report — changes no
// desired state, declares no VM gone or stopped — until it has heard from every host
// it holds up since `started_at`, or the heartbeat timeout has declared the silent
// ones unreachable/down (after which the usual rules for such hosts apply).

// Whether `host` sent a heartbeat to this controller process.
bool heard_since_start(const Host& host, Clock::time_point started_at);

// Whether every host recorded up has been heard since the start: until then, what any
// host reports may contradict a picture the controller does not have yet.
bool heard_from_every_up_host(const ClusterState::Data& data, Clock::time_point started_at);

// A heartbeat (or a domain event) from `host` listing what libvirt has there, merged
// into the host's list as core/domain_reports.hpp says (each entry stamped; the host's
// inventory stamp dates the absence of the others). A VM is judged only on what the
// host's agent observed after the last answer an operation had from it (Vm::seen).
WriteBatch reconcile_host(const ClusterState::Data& data, const std::string& host,
                          const std::vector<DomainStatus>& domains, Clock::time_point now,
                          Clock::time_point started_at);

// Hosts whose heartbeats stopped are judged in src/hosts/liveness.cpp
// (kvmfleet/hosts/liveness.hpp): a host not heard since the start is timed from the
// start there too.

}  // namespace kvmfleet
