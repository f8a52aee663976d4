#pragma once

// The scheduler is a pure function over a snapshot: it never calls an agent, the
// store, libvirt or the network. The controller builds the snapshot, applies the
// plan, and re-checks it against fresh state before committing.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/vm.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvmfleet::scheduler {

enum class RankPolicy { spread, pack };

struct Config {
  double memory_overcommit = 1.0;        // allocatable memory = total × ratio
  double cpu_overcommit = 4.0;           // allocatable vCPUs = cpus × ratio
  std::int64_t reserved_memory_mib = 0;  // kept back per host for the host itself
  RankPolicy rank = RankPolicy::spread;
};

// One host as the scheduler sees it.
struct HostView {
  std::string name;
  HostState state = HostState::down;
  bool schedulable = true;
  int cpus = 0;
  std::int64_t memory_total_mib = 0;
  std::int64_t allocated_memory_mib = 0;  // sum over VMs placed on it
  int allocated_vcpus = 0;
  std::vector<std::string> anti_affinity_groups;  // groups of VMs already on it
  std::vector<std::string> pools;                 // shared storage pools the host may use now
  std::vector<std::string> networks;              // logical networks usable on it now
  // Whether peers can reach its libvirtd for a live migration (the host reported a
  // migration address), and the accelerator its guests run under ("kvm", "qemu").
  bool has_migration_address = false;
  std::string domain_type;
};

struct Snapshot {
  std::vector<HostView> hosts;
};

// One host's view before any VM is counted on it.
HostView host_view(const Host& host);
// Counts a VM of `spec` on the host (memory, vCPUs, its anti-affinity group).
void count_vm(HostView& host, const VmSpec& spec);

// Builds a snapshot from the controller's model: allocations are summed over VMs
// with a host (whatever their power state, since a stopped VM may start again).
Snapshot snapshot_from(const std::vector<Host>& hosts, const std::vector<Vm>& vms);
// Adds which storage pools each host may use (host name → pools); hosts not named
// reach none.
void attach_pools(Snapshot& snapshot,
                  const std::map<std::string, std::vector<std::string>>& pools_by_host);

// Adds which logical networks each host may carry now (host name → networks); hosts
// not named carry none.
void attach_networks(Snapshot& snapshot,
                     const std::map<std::string, std::vector<std::string>>& networks_by_host);

// What moving an existing VM asks of its target beyond capacity.
struct Migration {
  std::string source_host;  // the VM's own host, which is never a target
  // A live migration needs a target that peers can reach; a cold move only defines
  // the VM anew there.
  bool live = false;
  // The accelerator the running guest uses, which it cannot change while it runs;
  // empty when any will do (a cold move defines the VM for the target's).
  std::string domain_type;
};

struct Request {
  VmSpec spec;
  std::vector<std::string> exclude_hosts;  // hosts the caller rules out
  std::vector<std::string> pools;          // storage pools of its disks: a host needs all
  std::optional<Migration> migration;      // set when the VM exists and moves
};

// Why one host was rejected, or how it scored.
struct Verdict {
  std::string host;
  bool feasible = false;
  std::string filter;                    // the first filter that rejected it (empty when feasible)
  std::string reason;                    // human-readable
  std::map<std::string, double> scores;  // ranker name → score (feasible hosts only)
  double total = 0;
};

struct Placement {
  std::string host;               // empty when nothing fits
  std::vector<Verdict> verdicts;  // one per host, in snapshot order
};

// Chooses a host for one VM; every host gets a verdict (for dry runs and for the
// error details when nothing fits).
Placement place(const Snapshot& snapshot, const Request& request, const Config& config);

// Places many VMs in order, each seeing the ones before it; no verdicts are kept.
// Returns the chosen host per request (empty where nothing fit).
std::vector<std::string> place_all(Snapshot snapshot, const std::vector<Request>& requests,
                                   const Config& config);

}  // namespace kvmfleet::scheduler
