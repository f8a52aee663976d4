#pragma once

// What every operation on a VM does first and last: re-read the VM and its host (an
// operation never trusts what it saw when it was submitted), and record what it then
// observed. Shared by the VM lifecycle and the migration operations.

#include "kvmfleet/core/operation_runner.hpp"

#include <functional>
#include <string>

namespace kvmfleet {

// The operation's VM and the host it is recorded on.
struct Target {
  Vm vm;
  Host host;
};
// Not found: the VM is gone. Conflict: it has no (registered) host. Unavailable: the
// host is not up (when `need_host_up`).
Result<Target> load_target(OpContext& ctx, bool need_host_up = true);

// Writes the VM as `mutate` leaves it, bumping its generation and timestamp.
Status save_vm(OpContext& ctx, const std::string& id, const std::function<void(Vm&)>& mutate);

// Records the VM's state as its host reports the domain.
Status observe(OpContext& ctx, const std::string& id, const DomainStatus& dom);

}  // namespace kvmfleet
