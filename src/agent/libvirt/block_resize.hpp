#pragma once

// Block resize: telling a running domain that the block device behind one of its disks
// (a shared volume whose LV was just extended) has a new size (virDomainBlockResize),
// so that the guest sees it at once.

#include <libvirt/libvirt.h>

#include <cstdint>
#include <string>

#include "connection.hpp"
#include "domain_lookup.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent::libvirt {

// The arguments, checked before libvirt sees them: a device path and a positive
// multiple of 512 bytes.
Status check_block_resize(const std::string& device, std::uint64_t size_bytes);

// No disk of the domain on `device`: not_found; not running: conflict.
Status resize_block_disk(Connection& connection, DomainLookup& domains, const Managed& domain,
                         const std::string& uuid, const std::string& device,
                         std::uint64_t size_bytes);

}  // namespace kvmfleet::agent::libvirt
