#include "kvmfleet/agent/report_clock.hpp"

#include "kvmfleet/common/ids.hpp"

namespace kvmfleet::agent {

ReportClock::ReportClock() : run_(new_uuid()) {}

ReportStamp ReportClock::next() {
  return {run_, seq_.fetch_add(1, std::memory_order_relaxed) + 1};
}

}  // namespace kvmfleet::agent
