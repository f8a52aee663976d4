#pragma once

// What every operation on a VM does first and last: re-read the VM and its host (an
// operation never trusts what it saw when it was submitted), and record what it then
// observed. Shared by the VM lifecycle and the migration operations.

#include "kvmfleet/core/operation_runner.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kvmfleet {

// The operation's VM and the host it is recorded on.
struct Target {
  Vm vm;
  Host host;
};
// Conflict (details.reason "suspected_double_run") while the VM may be running on more
// than one host (Vm::double_run): no operation acts on it until its recorded host has
// said where it runs, or was fenced. Checked when an operation is asked for and again
// when it runs.
Status check_single_copy(const Vm& vm);

// Not found: the VM is gone. Conflict: it has no (registered) host. Unavailable: the
// host is not up (when `need_host_up`).
Result<Target> load_target(OpContext& ctx, bool need_host_up = true);

// What the operation last heard from one host's agent about the VM: its domain there,
// or none (not, or no longer, on that host), and the answer's stamp.
struct HostAnswer {
  std::string host;
  std::optional<DomainStatus> domain;
  ReportStamp stamp;
};
HostAnswer answer_from(const std::string& host, const DomainStatus& dom);

// Writes the VM as `mutate` leaves it, bumping its generation and timestamp. `answers`
// become the freshest known of the VM on their hosts: the VM keeps their stamps
// (Vm::seen) and each host's domain list takes them (core/domain_reports.hpp), so that a
// report its agent observed before is not taken for news.
Status save_vm(OpContext& ctx, const std::string& id, const std::function<void(Vm&)>& mutate,
               const std::vector<HostAnswer>& answers = {});

// Records the VM's state as `host` answered with its domain.
Status observe(OpContext& ctx, const std::string& id, const std::string& host,
               const DomainStatus& dom);

}  // namespace kvmfleet
