#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/controller/cluster_state.hpp"
#include "kvmfleet/controller/config.hpp"
#include "kvmfleet/controller/operation_runner.hpp"
#include "kvmfleet/model/migration.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

namespace kvmfleet {

// Who is calling, as the API authenticated them.
struct Principal {
  std::string token_id;
  std::string name;
  Role role = Role::viewer;
  std::string host;  // agents only
};

struct SubmitOptions {
  std::string idempotency_key;  // empty: none
  std::string request_hash;     // of method + path + body
};

// The submission was new, or a retry that found the operation of the first try.
struct Submitted {
  Operation operation;
  bool replayed = false;
};

struct DomainEvent {
  std::string uuid;
  std::string name;
  std::string state;
  std::string reason;
};

// The controller's behaviour behind the API: it validates preconditions against
// current state, records operations, and feeds the runner. It never talks to the
// network itself (the runner's operations do, through AgentApi).
class ClusterService {
 public:
  ClusterService(ClusterState& state, OperationRunner& runner, const ControllerConfig& config,
                 const Clock& clock, boost::asio::io_context& ioc);
  ~ClusterService();

  // Auth
  std::optional<Principal> authenticate(std::string_view bearer) const;
  // Returns the record and the token itself (shown once).
  Result<std::pair<TokenRecord, std::string>> create_token(const std::string& name, Role role);
  Status delete_token(const std::string& id);
  // First start: an admin token written to `path` when none exists.
  Status bootstrap_admin(const std::string& path);

  // Hosts
  Result<std::pair<Host, std::string>> register_host(const std::string& name,
                                                     const std::string& agent_url);
  Status set_schedulable(const std::string& name, bool schedulable);
  Status delete_host(const std::string& name);
  Status heartbeat(const Principal& who, const std::string& host, const std::string& agent_url,
                   const HostInventory& inventory);
  Status domain_events(const Principal& who, const std::string& host,
                       const std::vector<DomainEvent>& events);

  // VMs
  // The scheduler's dry run for a new VM; its volume disks are checked as a create
  // checks them (400 unknown or given twice, 409 not ready, taken or busy).
  Result<scheduler::Placement> place(const VmSpec& spec) const;
  Result<Submitted> create_vm(const Principal& who, const VmSpec& spec, bool start,
                              const SubmitOptions& opts);
  // kind: vm.start / vm.stop / vm.reboot / vm.destroy / vm.delete
  Result<Submitted> vm_action(const Principal& who, const std::string& id_or_name,
                              std::string_view kind, nlohmann::json params,
                              const SubmitOptions& opts);

  // Live migration to `target_host`, or where the scheduler puts it (never the source).
  // host.maintenance: enabled drains the host by live migration (see host_operations);
  // disabled makes it schedulable again.
  Result<Submitted> set_maintenance(const Principal& who, const std::string& host, bool enabled,
                                    const MigrationPolicy& policy, const SubmitOptions& opts);
  Result<Submitted> migrate_vm(const Principal& who, const std::string& id_or_name,
                               const std::string& target_host, const MigrationPolicy& policy,
                               const SubmitOptions& opts);

  // Shared storage (storage_service.cpp). A pool is made on `hosts` (empty: every
  // host that is up, and every host that comes up later: see StorageMonitor).
  Result<Submitted> create_pool(const Principal& who, StoragePool pool,
                                std::vector<std::string> hosts, const SubmitOptions& opts);
  // Connects `hosts` (registered, up) to a ready pool: iSCSI discovery and login or the
  // FC LUNs found, then the VG's lockspace started, each recorded in the pool. A host
  // that fails keeps its error there; the pool stays as it is.
  Result<Submitted> connect_pool(const Principal& who, const std::string& name,
                                 std::vector<std::string> hosts, const SubmitOptions& opts);
  // Detaches a pool that has no volumes: every host stops the VG's lockspace and logs
  // out; the VG stays on the LUNs (a pool created again on them adopts it).
  Result<Submitted> delete_pool(const Principal& who, const std::string& name,
                                const SubmitOptions& opts);
  Result<Submitted> create_volume(const Principal& who, const std::string& name,
                                  const std::string& pool, std::uint64_t size_bytes,
                                  const SubmitOptions& opts);
  Result<Submitted> grow_volume(const Principal& who, const std::string& id_or_name,
                                std::uint64_t size_bytes, const SubmitOptions& opts);
  Result<Submitted> delete_volume(const Principal& who, const std::string& id_or_name,
                                  const SubmitOptions& opts);
  // COW room: `size_bytes` when given, else `ratio` (0 < ratio <= 1) of the volume.
  Result<Submitted> create_snapshot(const Principal& who, const std::string& volume,
                                    const std::string& name, std::uint64_t size_bytes,
                                    double ratio, bool quiesce, const SubmitOptions& opts);
  // Snapshots every disk of a VM (all must be shared volumes) at one instant, each
  // named `name`, sized like create_snapshot.
  Result<Submitted> create_vm_snapshot(const Principal& who, const std::string& vm,
                                       const std::string& name, std::uint64_t size_bytes,
                                       double ratio, bool quiesce, const SubmitOptions& opts);
  // kind: snapshot.delete or snapshot.revert
  Result<Submitted> snapshot_action(const Principal& who, const std::string& volume,
                                    const std::string& snapshot, std::string_view kind,
                                    const SubmitOptions& opts);

  // Operations
  Status cancel_operation(const std::string& id);
  // Calls `done` once, when the operation ends or `timeout` passes, with its latest
  // state (nullopt if it vanished). Does not block.
  void wait_operation(const std::string& id, std::chrono::milliseconds timeout,
                      std::function<void(std::optional<Operation>)> done);

  // Periodic work: host liveness, pruning of old finished operations.
  void tick();

  ClusterState& state() { return state_; }
  const ControllerConfig& config() const { return config_; }
  const Clock& clock() const { return clock_; }

 private:
  Result<Submitted> submit(const Principal& who, Operation op, const SubmitOptions& opts,
                           const std::function<Status(const ClusterState::Data&, WriteBatch&, Operation&)>& plan);
  void notify(const Operation& op);

  ClusterState& state_;
  OperationRunner& runner_;
  const ControllerConfig& config_;
  const Clock& clock_;
  boost::asio::io_context& ioc_;
  // When this service started: the reconciler acts on what hosts report only once
  // every up host has heartbeated since (see reconciler.hpp).
  Clock::time_point started_at_;
  struct Waiters;
  std::shared_ptr<Waiters> waiters_;
};

}  // namespace kvmfleet
