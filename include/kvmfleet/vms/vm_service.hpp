#pragma once

// VM lifecycle requests: a placement dry run, create, and the actions on a VM (start,
// stop, reboot, destroy, delete). Each checks preconditions against the current state
// (changing nothing when it refuses) and submits the operation that does the work
// (vm_operations.hpp).

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"
#include "kvmfleet/vms/vm_params.hpp"

#include <string>
#include <string_view>

namespace kvmfleet {

class VmService {
 public:
  VmService(ClusterState& state, Operations& operations, const ControllerConfig& config,
            const Clock& clock)
      : state_(state), operations_(operations), config_(config), clock_(clock) {}

  // The scheduler's dry run for a new VM; its volume disks are checked as a create
  // checks them (400 unknown or given twice, 409 not ready, taken or busy).
  Result<scheduler::Placement> place(const VmSpec& spec) const;
  // Placement runs under the same lock that commits the VM, so two concurrent creates
  // cannot both take the last free memory.
  Result<Submitted> create_vm(const Principal& who, const VmSpec& spec, bool start,
                              const SubmitOptions& opts);
  // kind: vm.start / vm.stop / vm.reboot / vm.destroy / vm.delete, with the params
  // that kind takes (invalid_argument when they do not fit it).
  Result<Submitted> vm_action(const Principal& who, const std::string& id_or_name,
                              std::string_view kind, const VmActionParams& params,
                              const SubmitOptions& opts);

 private:
  ClusterState& state_;
  Operations& operations_;
  const ControllerConfig& config_;
  const Clock& clock_;
};

}  // namespace kvmfleet
