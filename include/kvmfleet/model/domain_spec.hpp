#pragma once

#include "kvmfleet/model/vm.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace kvmfleet {

// What the controller asks an agent to define: a VM spec resolved for one host.
struct DomainDisk {
  std::string volume;  // volume name in the agent's image pool, e.g. "web1-disk0.qcow2"
  std::int64_t size_gib = 0;
  DiskBus bus = DiskBus::virtio;
  std::string target_dev;  // vda, sda, ...
  bool operator==(const DomainDisk&) const = default;
};

struct DomainSpec {
  std::string uuid;
  std::string name;
  int vcpus = 1;
  std::int64_t memory_mib = 0;
  std::string domain_type = "kvm";  // "kvm" or "qemu" (TCG)
  std::int64_t generation = 1;
  std::vector<DomainDisk> disks;
  bool operator==(const DomainSpec&) const = default;
};

// Resolves a VM into the spec an agent defines (disk volume names, target devices).
DomainSpec domain_spec_for(const Vm& vm, const std::string& domain_type);

}  // namespace kvmfleet
