#pragma once

// NIC hot plug: a NIC on a host bridge joins or leaves a managed domain, in its
// definition (CONFIG) and, when it runs, in the guest (LIVE); each part is done only
// where it is still missing, so a repeat finishes what an earlier call began. The
// domain's metadata then takes the caller's generation.

#include <libvirt/libvirt.h>

#include <cstdint>
#include <string>

#include "connection.hpp"
#include "domain_lookup.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet::agent::libvirt {

Result<DomainStatus> attach_nic(Connection& connection, DomainLookup& domains,
                                const Managed& domain, const std::string& uuid,
                                const DomainNic& nic, std::int64_t generation);

// The guest must let a live NIC go (ACPI hot unplug); the call waits for that up to
// `patience` on `clock`, then answers conflict (details.reason "detach_pending") with
// the definition untouched, so the record and the definition keep agreeing.
Result<DomainStatus> detach_nic(Connection& connection, DomainLookup& domains, Clock& clock,
                                const Managed& domain, const std::string& uuid,
                                const std::string& mac, std::int64_t generation,
                                std::chrono::milliseconds patience);

}  // namespace kvmfleet::agent::libvirt
