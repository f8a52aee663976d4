#pragma once

// Finding and reading a domain, and the checks every call makes on it: kvmfleet acts
// only on domains carrying its metadata, and some calls only on running ones. A
// failure that means the connection died wakes its monitor (Connection::failed).

#include <libvirt/libvirt.h>

#include <string>

#include "connection.hpp"
#include "handles.hpp"
#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/host.hpp"

namespace kvmfleet::agent::libvirt {

// The name kvmfleet gives a libvirt domain state (and the reason for it).
std::string vm_state_name(int state, int reason);

struct Described {
  DomainStatus status;
  DomainXmlInfo info;  // what its XML says; managed only when its metadata is ours
};

struct Managed {
  DomainHandle dom;
  Described desc;
};

class DomainLookup {
 public:
  explicit DomainLookup(Connection& connection) : connection_(connection) {}

  Result<Described> describe(virDomainPtr dom);
  Result<DomainStatus> status(virDomainPtr dom);
  Result<DomainHandle> lookup(virConnectPtr c, const std::string& uuid);
  // A domain without kvmfleet's metadata is a conflict.
  Result<Managed> lookup_managed(virConnectPtr c, const std::string& uuid);
  Result<bool> is_active(virDomainPtr dom, const std::string& uuid);
  // Not running: conflict (what reboot, fsfreeze/fsthaw, block-resize and migrate need).
  Status require_running(virDomainPtr dom, const std::string& uuid);

 private:
  Connection& connection_;
};

}  // namespace kvmfleet::agent::libvirt
