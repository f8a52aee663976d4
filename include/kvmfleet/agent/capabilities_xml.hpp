#pragma once

// What the agent needs from libvirt's capabilities XML for its host inventory.

#include <string>
#include <string_view>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent {

struct HostCapabilities {
  std::string host_uuid;  // empty when libvirt reports none
  std::string cpu_model;  // empty when libvirt reports none
  // "kvm" when an x86_64 hvm guest can run as a kvm domain, else "qemu" (TCG).
  std::string domain_type;
};

Result<HostCapabilities> read_capabilities_xml(std::string_view xml);

}  // namespace kvmfleet::agent
