#pragma once

#include "kvmfleet/common/clock.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

// `up`: heartbeats arrive; `unreachable`: missed for a short while; `down`: missed
// long enough that the host is considered gone (fencing decisions build on this).
enum class HostState { up, unreachable, down };
std::string_view to_string(HostState s);
std::optional<HostState> host_state_from_string(std::string_view s);

// A domain as the agent sees it in libvirt.
struct DomainStatus {
  std::string uuid;
  std::string name;
  std::string state;            // one of VmState's names
  bool managed = false;         // carries kvmfleet's metadata element
  std::int64_t generation = 0;  // from that metadata; 0 when unmanaged
  bool persistent = true;
  bool operator==(const DomainStatus&) const = default;
};

// What an agent reports of its host in every heartbeat.
struct HostInventory {
  std::string hostname;
  std::string host_uuid;  // libvirt's host UUID
  int cpus = 0;
  std::string cpu_model;
  std::int64_t memory_total_mib = 0;
  std::int64_t memory_free_mib = 0;
  std::string libvirt_version;
  std::string qemu_version;
  std::string domain_type;  // "kvm" when /dev/kvm works, else "qemu"
  // Where peers reach this host's libvirtd for live migration (an address, no
  // scheme); empty: the host takes no incoming migrations.
  std::string migration_address;
  std::vector<DomainStatus> domains;
};

struct Host {
  std::string name;
  std::string agent_url;  // where the controller reaches the agent, e.g. http://127.0.0.1:7100
  // The host's credential: the agent presents it to the controller and the controller
  // presents it to the agent. Kept in the store, never shown by the API.
  std::string agent_secret;
  HostState state = HostState::down;
  bool schedulable = true;
  HostInventory inventory;
  std::optional<Clock::time_point> last_heartbeat;
  // The host's shared storage as its agent last reported it (lock daemons, the
  // lockspaces started, iSCSI sessions, errors), read by the storage monitor; null
  // for a host in no storage pool.
  nlohmann::json storage = nullptr;
  Clock::time_point created_at{};
};

}  // namespace kvmfleet
