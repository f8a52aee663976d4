#pragma once

// cloud-init for kvmfleet VMs (docs/images.md): the `cloud_init` object of a VM create,
// checked (sizes, YAML well-formed, SSH keys), and the files of its NoCloud seed. Pure
// functions: the seed ISO itself is made by the agent (agent/seed_iso.hpp). What these
// refuse or return may hold secrets, so no message here quotes the content.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/vm.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace kvmfleet::cloud_init {

inline constexpr std::size_t kMaxUserData = 64 * 1024;  // bytes
inline constexpr std::size_t kMaxMetaData = 16 * 1024;
inline constexpr std::size_t kMaxNetworkConfig = 16 * 1024;
inline constexpr std::size_t kMaxSshKeys = 32;
inline constexpr std::size_t kMaxSshKeyLength = 16 * 1024;
// The whole seed, user-data with the keys merged in included.
inline constexpr std::size_t kMaxSeed = 128 * 1024;

// POST /v1/vms' "cloud_init": {"user_data"?, "meta_data"?, "hostname"?,
// "network_config"?, "ssh_authorized_keys"?}, then check(). Refusals are
// invalid_argument with details.field and a stable details.reason: cloud_init_too_large,
// malformed_yaml, bad_ssh_key, bad_hostname, meta_data_and_hostname.
Result<CloudInit> parse_cloud_init(const nlohmann::json& j);

// The checks of parse_cloud_init on a CloudInit (an agent re-checks what it is sent).
Status check(const CloudInit& c);

struct SeedFiles {
  std::string user_data;
  std::string meta_data;
  std::string network_config;  // empty: the seed has no network-config file
};

// The seed's files for a VM. meta-data: the one given, or `instance-id` (the VM's id)
// and `local-hostname` (hostname, else the VM's name). user-data: the one given, with
// the SSH keys added to its #cloud-config `ssh_authorized_keys`; only keys: a
// #cloud-config holding them. A user-data script (not #cloud-config) with keys is
// refused: the keys would be lost.
Result<SeedFiles> seed_files(const CloudInit& c, const std::string& instance_id,
                             const std::string& vm_name);

}  // namespace kvmfleet::cloud_init
