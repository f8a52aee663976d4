#pragma once

// Migration requests: a VM moved to another host (live when it runs, cold when it is
// stopped), and a host put into or out of maintenance (a drain by live migration).

#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/model/migration.hpp"

#include <string>

namespace kvmfleet {

class MigrationService {
 public:
  MigrationService(Operations& operations, const ControllerConfig& config)
      : operations_(operations), config_(config) {}

  // To `target_host`, or where the scheduler puts it (never the source).
  Result<Submitted> migrate_vm(const Principal& who, const std::string& id_or_name,
                               const std::string& target_host, const MigrationPolicy& policy,
                               const SubmitOptions& opts);
  // Enabled drains the host by live migration (the host becomes unschedulable with the
  // request itself); disabled makes it schedulable again.
  Result<Submitted> set_maintenance(const Principal& who, const std::string& host, bool enabled,
                                    const MigrationPolicy& policy, const SubmitOptions& opts);

 private:
  Operations& operations_;
  const ControllerConfig& config_;
};

}  // namespace kvmfleet
