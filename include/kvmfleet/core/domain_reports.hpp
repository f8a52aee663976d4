#pragma once

// What a host's agent reports of its domains, merged into what the controller already
// knows, so that a report never takes the controller back in time.
//
// Heartbeats, events and operations' answers travel on separate connections and may
// arrive in another order than the agent observed them in: a heartbeat that listed the
// domains while a start was under way can arrive after the start's answer, and would
// then say "not running" of a VM that runs. Every report and answer carries the agent's
// stamp (ReportStamp, model/host.hpp); the controller keeps, for each domain of a
// host's list, the stamp of what it took it from, and each VM keeps the stamp of the
// last answer an operation had from each host (Vm::seen). A report is news about a
// domain only if it is not older than both: otherwise the controller keeps what it had
// (including "not there": an operation that undefined it or moved it away).
//
// Pure functions over the state's data; the reconciler then judges the merged list.

#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/model/host.hpp"

#include <string>
#include <vector>

namespace kvmfleet {

// The host's domain list once `reported` (observed at `stamp`, its entries unstamped)
// is merged into `known` (the host's list as the controller has it). Each entry of the
// result carries the stamp of what it came from.
std::vector<DomainStatus> merge_domain_report(const ClusterState::Data& d, const std::string& host,
                                              const std::vector<DomainStatus>& known,
                                              const std::vector<DomainStatus>& reported,
                                              const ReportStamp& stamp);

// A domain event: the domain named `uuid` is in `state` ("undefined": gone) as of
// `stamp`. Applied to the host's list `domains` unless it is older than what the list
// or the VM already hold; returns whether it was.
struct ObservedChange {
  std::string uuid;
  std::string name;
  std::string state;
  ReportStamp stamp;
};
bool apply_domain_event(const ClusterState::Data& d, const std::string& host,
                        std::vector<DomainStatus>& domains, const ObservedChange& change);

// What an operation learned from a host's agent about domain `uuid` (stamped `stamp`),
// written into the host's list: `answer` as its entry, or, with no answer, the domain
// gone from it; unless the list's entry was observed later.
void note_domain_answer(std::vector<DomainStatus>& domains, const std::string& uuid,
                        const DomainStatus* answer, const ReportStamp& stamp);

}  // namespace kvmfleet
