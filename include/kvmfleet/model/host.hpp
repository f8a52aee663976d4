#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/model/network.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

// `up`: heartbeats arrive; `unreachable`: missed for a short while; `down`: missed
// long enough that the host is considered gone — which alone proves nothing about what it
// still runs; `fencing`: being powered off by its fence devices; `fenced`: proven to run
// nothing any more (see ProvenDown). Only a fenced host's VMs may run elsewhere.
enum class HostState { up, unreachable, down, fencing, fenced };
std::string_view to_string(HostState s);
std::optional<HostState> host_state_from_string(std::string_view s);

// Where an observation stands among what one agent reported. `agent` names one run of
// the agent (random at its start), `seq` counts that run's observations: a report's
// stamp is taken before it looks (a heartbeat's inventory), an answer's after it acted
// (start, define, a migration's status), an event's when libvirt delivered it. Stamps of
// one run compare; stamps of two runs do not, and the report is then taken as news (a
// run starts after the one before it has stopped answering). Empty: not stamped.
struct ReportStamp {
  std::string agent;
  std::uint64_t seq = 0;
  bool empty() const { return agent.empty(); }
  bool operator==(const ReportStamp&) const = default;
};
// Whether what `report` saw is known to be older than what `known` saw: both stamped by
// the same run, `report` first.
bool older_than(const ReportStamp& report, const ReportStamp& known);

// A domain as the agent sees it in libvirt.
struct DomainStatus {
  std::string uuid;
  std::string name;
  std::string state;            // one of VmState's names
  bool managed = false;         // carries kvmfleet's metadata element
  std::int64_t generation = 0;  // from that metadata; 0 when unmanaged
  bool persistent = true;
  // When the agent saw it so: an answer's own stamp, or the heartbeat's or event's that
  // brought it (the controller keeps each domain's in the host's list).
  ReportStamp stamp;
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
  // Taken before the agent listed the domains.
  ReportStamp stamp;
  // The host's network links (bridges, VLANs, NICs) as `ip` reports them.
  std::vector<HostLink> links;
};

// Why a host is known to run nothing any more: the evidence an HA restart cites.
struct ProvenDown {
  // "fence": a fence device powered it off and its status confirmed it; "confirm_down":
  // an admin confirmed it by hand; "lease": the storage lease layer reports it dead.
  std::string kind;
  std::string detail;  // e.g. the fence device and agent, or the admin's reason
  std::string by;      // who: the controller's fencing, or the admin's principal
  Clock::time_point at{};
  bool operator==(const ProvenDown&) const = default;
};

// One fence device of a host (src/fencing): a fence agent of the fence-agents family and
// its options, in the order they are tried. `secrets` holds the options that are
// write-only (passwords): sealed by the store, never shown by the API or logged.
struct FenceDevice {
  std::string agent;                           // e.g. fence_ipmilan
  std::map<std::string, std::string> options;  // shown
  std::map<std::string, std::string> secrets;  // never shown
  bool operator==(const FenceDevice&) const = default;
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
  // Set while the host is `fenced`; cleared when it is heard from again.
  std::optional<ProvenDown> proven_down;
  // Tried in order to power the host off (src/fencing); empty: the host has no fencing.
  std::vector<FenceDevice> fence_devices;
  Clock::time_point created_at{};
};

}  // namespace kvmfleet
