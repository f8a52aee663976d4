#pragma once

// What this host offers, as libvirt reports it: CPUs, memory, libvirt's and the
// hypervisor's versions, host name, and from the capabilities XML the host uuid, CPU
// model and the best domain type.

#include <libvirt/libvirt.h>

#include "connection.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/host.hpp"

namespace kvmfleet::agent::libvirt {

// Everything but the domains and the configured migration address.
Result<HostInventory> read_host_inventory(Connection& connection, virConnectPtr conn);

}  // namespace kvmfleet::agent::libvirt
