#pragma once

// Strict checks on what the controller asks an agent to define. Everything that can
// end up in domain XML, a volume file name or a libvirt call passes through here first.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet::agent {

inline constexpr int kMaxVcpus = 256;
inline constexpr std::int64_t kMinMemoryMib = 16;
inline constexpr std::int64_t kMaxMemoryMib = std::int64_t{4} << 20;  // 4 TiB
inline constexpr std::size_t kMaxDisks = 16;
inline constexpr std::int64_t kMaxDiskGib = 65'536;

// Volume names become file names in the image pool: [a-z0-9][a-z0-9-]{0,127}.qcow2
bool is_valid_volume_name(std::string_view name);
// vd[a-z] for virtio, sd[a-z] for sata and scsi.
bool is_valid_target_dev(std::string_view dev, DiskBus bus);

Status validate_domain_spec(const DomainSpec& spec);

// Every block device of the spec is a logical volume of one of `vgs` (the VGs this
// host's shared storage holds); the error names the disk's field.
Status check_block_device_vgs(const DomainSpec& spec, const std::vector<std::string>& vgs);

// Parses the "spec" object of a define request: unknown fields, wrong types and out of
// range values are invalid_argument errors naming the field.
Result<DomainSpec> parse_domain_spec(const nlohmann::json& j);

// One NIC (a spec's, or a hot-plugged one) read from JSON at `where` (types only), and
// checked: a canonical MAC, a Linux interface name for the bridge, an MTU in range.
Result<DomainNic> parse_domain_nic(const nlohmann::json& j, const std::string& where);
Status validate_domain_nic(const DomainNic& nic, const std::string& where);

}  // namespace kvmfleet::agent
