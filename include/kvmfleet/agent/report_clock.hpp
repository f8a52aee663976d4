#pragma once

// Stamps what the agent tells the controller about its domains, so that the controller
// can tell a report the agent observed before an answer it already has from one it
// observed after (ReportStamp in model/host.hpp). One per agent process, shared by the
// call handlers (an answer is stamped after its action) and the heartbeat loop (a
// heartbeat before it lists the domains, an event when libvirt delivers it).

#include <atomic>
#include <cstdint>
#include <string>

#include "kvmfleet/model/host.hpp"

namespace kvmfleet::agent {

class ReportClock {
 public:
  // A new run: a random name, so that no earlier run's stamps compare with its own.
  ReportClock();
  // The next stamp of this run; every call's is later than every earlier call's.
  ReportStamp next();
  const std::string& run() const { return run_; }

 private:
  const std::string run_;
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace kvmfleet::agent
