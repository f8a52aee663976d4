#pragma once

// Calls into a running domain's QEMU guest agent: fsfreeze and fsthaw of every mounted
// filesystem. A guest without an agent answering is a conflict that says so
// (guest_agent_unavailable), never a reason to reconnect to libvirt.

#include <libvirt/libvirt.h>

#include <string>

#include "connection.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent::libvirt {

class GuestAgent {
 public:
  // libvirt waits at most `timeout_s` seconds for the guest's agent to answer.
  GuestAgent(Connection& connection, int timeout_s);

  // How many filesystems were frozen; the domain must be running.
  Result<int> freeze(virDomainPtr dom, const std::string& uuid);
  // How many were thawed (0 when none was frozen).
  Result<int> thaw(virDomainPtr dom, const std::string& uuid);

 private:
  Result<int> filesystems(virDomainPtr dom, const std::string& uuid, bool freeze);

  Connection& connection_;
  int timeout_s_;
};

}  // namespace kvmfleet::agent::libvirt
