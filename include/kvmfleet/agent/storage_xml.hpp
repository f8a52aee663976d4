#pragma once

// libvirt storage XML for the agent's image pool: a "dir" pool holding qcow2 volumes.

#include <cstdint>
#include <string>
#include <string_view>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent {

Result<std::string> write_dir_pool_xml(std::string_view name, std::string_view path);
Result<std::string> write_qcow2_volume_xml(std::string_view name, std::uint64_t capacity_bytes);
// The <target><path> of a pool's XML.
Result<std::string> read_pool_target_path(std::string_view xml);

}  // namespace kvmfleet::agent
