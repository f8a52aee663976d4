#pragma once

// kvmfleet-agent's configuration file (JSON), e.g. /etc/kvmfleet/agent.json:
//   {"host": "node1", "listen_address": "0.0.0.0", "listen_port": 7100,
//    "agent_url": "https://node1.example:7100", "controller_url": "https://ctl:7000",
//    "token_file": "/etc/kvmfleet/agent.token", "libvirt_uri": "qemu:///system",
//    "image_pool_path": "/var/lib/kvmfleet/images", "heartbeat_interval_ms": 5000,
//    "tls_cert_file": "...", "tls_key_file": "...", "controller_ca_file": "...",
//    "worker_threads": 4, "migration_address": "10.0.0.11",
//    "storage": {"host_id": 11, "udev": true, "lock_manager": "sanlock", "multipath": true,
//                "devices":
//                ["/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2026-01.com.example:san-lun-1"]}}

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent {

// Shared block storage on this host (docs/storage.md). Without it the agent serves
// no storage call.
struct StorageConfig {
  int host_id = 0;    // sanlock's host id for LVM (1..2000), unique in the cluster
  bool udev = false;  // false: LVM makes its own /dev nodes (no udev on the host)
  std::string lock_manager = "sanlock";  // lvmlockd's lock manager; only sanlock
  // The cluster's LUNs: the only devices LVM may scan. Until some are listed, every
  // LVM call is refused (iSCSI calls still work, so the LUNs can be logged in to
  // and their by-path names learnt first).
  std::vector<std::string> devices;
  // true: multipathd (multipath-tools) runs here. A LUN held by a dm-multipath map is
  // used through the map, and the inventory reports the maps and their paths' health.
  bool multipath = false;
};

struct AgentConfig {
  std::string host;
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 7100;
  std::string agent_url;  // default: http(s)://listen_address:listen_port
  std::string controller_url;
  std::string token_file;
  std::string token;  // read from token_file by load_agent_config
  std::string libvirt_uri = "qemu:///system";
  std::string image_pool_path = "/var/lib/kvmfleet/images";
  // Where virtlogd keeps each VM's serial console log (<uuid>.log); empty: "console"
  // beside the image pool's directory.
  std::string console_log_dir;
  std::chrono::milliseconds heartbeat_interval{5'000};
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string controller_ca_file;
  int worker_threads = 4;
  // Where peers' libvirtd reach this host's libvirtd for live migration (an IPv4
  // address or a host name); reported in the inventory. Empty: none announced.
  std::string migration_address;
  // "auto": guests run under KVM when /dev/kvm works, else TCG (QEMU's emulator);
  // "tcg": always TCG, for hosts whose hardware virtualization is absent or unreliable.
  // Reported in the inventory (domain_type "qemu"); a running guest only moves to a
  // host that runs its guests the same way.
  std::string guest_accelerator = "auto";
  std::optional<StorageConfig> storage;
};

// Strict: unknown fields, wrong types and bad values are invalid_argument errors.
Result<AgentConfig> parse_agent_config(const nlohmann::json& j);
// Reads the config file and the token file it names.
Result<AgentConfig> load_agent_config(const std::string& path);

}  // namespace kvmfleet::agent
